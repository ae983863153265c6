import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLinkStore, type LinkStore } from '../../src/access/links.ts';
import { AccessService } from '../../src/access/service.ts';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * The approval link's page in a real browser (Debian chromium holding the approver's client certificate):
 * its form posts to itself, which the API's cross-site checks must admit (src/api/cross-site.ts: under the
 * page's no-referrer policy Chromium says Origin: null, with Sec-Fetch-Site: same-origin), while the same
 * post from a page on another origin, made by the same browser with the same certificate, is refused.
 */

let tg: TestGateway;
let browser: Browser;
let links: LinkStore;
let alice: IssuedFiles, bob: IssuedFiles;
let base: string;

beforeAll(async () => {
  tg = await startTestGateway(
    {
      ssh: { enabled: false },
      postgres: { enabled: false },
      mysql: { enabled: false },
      targets: [{ name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1', port: 5432, database: 'app', user: 'x', labels: { env: 'prod' } }],
      roles: [{ name: 'engineer' }, { name: 'prod-access', target_labels: { env: 'prod' }, approvers: ['sre-lead'], max_ttl: '1h' }, { name: 'sre-lead' }],
    },
    tempDir('vigil-link-browser-'),
  );
  base = `https://127.0.0.1:${tg.ports.api}`;
  links = openLinkStore(tg.dataDir, tg.gw.services.store);
  tg.gw.services.accessLinks = links;
  [alice, bob] = await Promise.all([tg.issue({ user: 'alice', roles: ['engineer'] }), tg.issue({ user: 'bob', roles: ['sre-lead'] })]);
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
});
afterAll(async () => {
  await browser?.close();
  await tg?.stop();
  await links?.close();
});

/** alice's request, filed through the access service as the API files it. */
async function pending(): Promise<string> {
  const access = new AccessService({ config: tg.gw.services.config, store: tg.gw.services.store, events: tg.gw.services.events, identity: tg.gw.services.identity });
  return (await access.request({ user: 'alice', roles: ['engineer'], certSerial: alice.creds.serial, source: { ip: '127.0.0.1', port: 1 } }, { role: 'prod-access', reason: 'INC-9 browser', ttlMs: 600_000 })).id;
}

describe('approval link page in Chromium', () => {
  it('the link page\'s own form approves; a form on another origin posting the same link is refused and leaves it usable', async () => {
    const ctx = await browser.newContext({
      ignoreHTTPSErrors: true,
      clientCertificates: [{ origin: base, cert: Buffer.from(bob.creds.x509Certificate), key: Buffer.from(bob.creds.x509PrivateKey) }],
    });
    try {
      const id = await pending();
      const { token } = await links.mint(id, 'approve', Date.now() + 600_000);
      const url = `${base}/v1/access/links/${token}`;
      const page = await ctx.newPage();

      // Another origin (a blank page is opaque: its post says Origin: null and Sec-Fetch-Site: cross-site).
      await page.setContent(`<form method="post" action="${url}"><button type="submit">go</button></form>`);
      const [foreign] = await Promise.all([page.waitForNavigation(), page.click('button')]);
      expect(foreign!.status()).toBe(403);
      expect((await tg.gw.services.store.getAccess(id))!.state).toBe('pending');
      await tg.waitForEvent((e) => e.type === 'api.request' && e.actor.user === 'bob' && e.details.code === 'VIGIL_CROSS_SITE');

      // The link opened as from a mail, then its own button.
      await page.goto(url);
      expect(await page.textContent('h1')).toBe('Approve this access request?');
      const [done] = await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
      expect(done!.status()).toBe(200);
      expect(await page.textContent('body')).toContain('approved: alice holds role prod-access');
      const sent = await done!.request().allHeaders();
      expect([sent.origin, sent['sec-fetch-site']]).toEqual(['null', 'same-origin']);
      expect((await tg.gw.services.store.getAccess(id))!.state).toBe('active');
    } finally {
      await ctx.close();
    }
  });
});
