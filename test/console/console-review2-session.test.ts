import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caDir, CA_FILES } from '../../src/identity/index.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { freePort, tempDir, secretsDir, waitFor } from '../support/tmp.ts';
import { ensureConsole, request } from '../support/console.ts';
import { startBrowser, startTestIdp, type TestIdp } from '../support/oidc-provider.ts';

/**
 * Review of the console's session handling, in a real Chromium signed in through a real OpenID Provider:
 *
 * - SameSite=Strict does not stop a *sibling* page (another host of the same site, or another port of the
 *   same host): the browser sends the console cookie with its subresource requests. A page there that
 *   embeds console API URLs must not make the console export the audit log, run reports or open live
 *   views in the signed-in auditor's name (false `console.view` records, stream slots taken).
 * - A locked user who signs in through the IdP gets no console session and no `console.signin` success.
 */

let idp: TestIdp;
let tg: TestGateway;
let browser: Browser;
let base: string;
let ca: string;
let ada: Awaited<ReturnType<TestGateway['issue']>>;
let sibling: https.Server;
let siblingBase: string;
/** What the sibling page embeds, by request path (set per test). */
let siblingPage = '';

beforeAll(async () => {
  const dir = tempDir('vigil-console-review2-');
  const apiPort = await freePort();
  base = `https://127.0.0.1:${apiPort}`;
  [idp, browser] = await Promise.all([
    startTestIdp({ audrey: ['audit'], lisa: ['audit'] }, { redirectUris: [`${base}/console/oidc/callback`] }),
    startBrowser(),
    ensureConsole(),
  ]);
  const secret = secretsDir(dir);
  tg = await startTestGateway(
    {
      api: { listen: `127.0.0.1:${apiPort}` },
      mysql: { enabled: false },
      identity: {
        oidc: {
          issuer: idp.issuer,
          client_id: idp.clientId,
          client_secret: { file: secret('oidc-client', idp.clientSecret) },
          scopes: ['openid', 'profile', 'groups'],
          role_map: { audit: ['auditor'] },
        },
      },
      roles: [{ name: 'auditor' }],
    },
    dir,
  );
  ada = await tg.issue({ user: 'ada', roles: ['admin'] });
  const cas = caDir(tg.dataDir);
  ca = fs.readFileSync(path.join(cas, CA_FILES.x509CaCert), 'utf8');
  // Another site's page on the same host, another port: same-site for cookies, not the console's origin.
  sibling = https.createServer({ key: fs.readFileSync(path.join(cas, CA_FILES.serverKey)), cert: fs.readFileSync(path.join(cas, CA_FILES.serverCert)) }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(siblingPage);
  });
  await new Promise<void>((resolve) => sibling.listen(0, '127.0.0.1', resolve));
  siblingBase = `https://127.0.0.1:${(sibling.address() as { port: number }).port}`;
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => sibling?.close(resolve));
  await tg?.stop();
  await idp?.stop();
});

/** Open the console, click "Sign in with <IdP>", sign in at the IdP as `login` until back on the gateway. */
async function signInViaIdp(login: string): Promise<{ ctx: BrowserContext; page: Page }> {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await ctx.newPage();
  await page.goto(`${base}/console/`);
  await page.getByRole('link', { name: `Sign in with ${new URL(idp.issuer).host}` }).click();
  for (let step = 0; step < 8; step++) {
    await page.waitForLoadState('load');
    if (page.url().startsWith(base)) break;
    if (await page.locator('input[name="login"]').count()) {
      await page.fill('input[name="login"]', login);
      await page.fill('input[name="password"]', 'any-password');
      await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('button[type="submit"]')]);
    } else if (await page.locator('input[name="prompt"][value="consent"]').count()) {
      await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('button[type="submit"]')]);
    } else break;
  }
  return { ctx, page };
}

const sessionCookieOf = async (ctx: BrowserContext) => (await ctx.cookies(base)).find((c) => c.name === '__Host-vigil_console');

describe('console session review', () => {
  it('a same-site page (other port, same host) embedding console API URLs makes no export or report in the signed-in auditor\'s name', async () => {
    const { ctx, page } = await signInViaIdp('audrey');
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    const marker = `zz-sibling-${Date.now().toString(36)}`;
    const exportUrl = `${base}/console/api/events/export?format=jsonl&user=${marker}`;
    const reportUrl = `${base}/console/api/reports/access?format=json&since=1h&download=${marker}`;
    siblingPage = `<!doctype html><title>sibling</title><body>
      <img id="a" src="${exportUrl}" onerror="document.body.dataset.a='done'" onload="document.body.dataset.a='done'">
      <img id="b" src="${reportUrl}" onerror="document.body.dataset.b='done'" onload="document.body.dataset.b='done'">
      <script src="${base}/console/api/me" onerror="document.body.dataset.c='done'" onload="document.body.dataset.c='done'"></script>`;
    const evil = await ctx.newPage();
    const before = tg.events.length;
    await evil.goto(`${siblingBase}/`);
    await evil.waitForFunction(`['a', 'b', 'c'].every((k) => document.body.dataset[k] === 'done')`, undefined, { timeout: 60_000 });
    // Both answers are in (a view is recorded before its first byte): nothing was viewed in the auditor's name.
    const views = tg.events.slice(before).filter((e) => e.type === 'console.view' && e.actor.user === 'audrey');
    expect(views.map((e) => e.details)).toEqual([]);
    // The browser did send the cookie along (same-site): the console saw the auditor's session and refused.
    await tg.waitForEvent((e) => e.type === 'api.request' && e.outcome === 'failure' && e.actor.user === 'audrey' && e.details.code === 'VIGIL_CROSS_SITE' && String(e.details.path).endsWith('/events/export'), 30_000);
    await tg.waitForEvent((e) => e.type === 'api.request' && e.outcome === 'failure' && e.actor.user === 'audrey' && e.details.code === 'VIGIL_CROSS_SITE' && String(e.details.path).endsWith('/reports/access'), 30_000);
    // The console itself still works in the same browser: its own calls, an export among them.
    const me = await page.evaluate(async () => (await fetch('/console/api/me')).status);
    expect(me).toBe(200);
    const own = await page.evaluate(async (u) => (await fetch(u)).status, exportUrl.slice(base.length));
    expect(own).toBe(200);
    await tg.waitForEvent((e) => e.type === 'console.view' && e.actor.user === 'audrey' && e.details.view === 'export' && String(e.details.filter).includes(marker));
    await ctx.close();
  }, 180_000);

  it('a locked user who signs in through the IdP gets a refusal page, no session cookie and no console.signin success', async () => {
    const lock = await request(`${base}/v1/locks`, { method: 'POST', ca, cert: ada.creds.x509Certificate, key: ada.creds.x509PrivateKey, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'lisa', reason: 'INC-88 offboarding' }) });
    expect(lock.status).toBeLessThan(300);
    const { ctx, page } = await signInViaIdp('lisa');
    await waitFor(() => page.url().startsWith(base), 30_000, 'the browser to be back at the console');
    expect(await sessionCookieOf(ctx)).toBeUndefined();
    expect(await page.locator('#reason').textContent()).toContain('locked');
    const refused = await tg.waitForEvent((e) => e.type === 'console.signin' && e.actor.user === 'lisa');
    expect(refused).toMatchObject({ outcome: 'failure', details: { method: 'oidc', reason: 'user_locked' } });
    expect(tg.events.some((e) => e.type === 'console.signin' && e.actor.user === 'lisa' && e.outcome === 'success')).toBe(false);
    await ctx.close();
  }, 180_000);
});
