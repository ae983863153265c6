import fs from 'node:fs';
import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caDir, CA_FILES } from '../../src/identity/index.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { freePort, secretsDir, tempDir } from '../support/tmp.ts';
import { ensureConsole, request } from '../support/console.ts';
import { startBrowser, startTestIdp, type TestIdp } from '../support/oidc-provider.ts';

/**
 * The web console's "Sign in with <IdP>": the same identity.oidc configuration as `vigil login`, a real
 * OpenID Provider (oidc-provider) in-process, headless Chromium clicking the console's button and signing
 * in on the IdP's pages, back to the console with a session whose roles come from role_map.
 */

let idp: TestIdp;
let tg: TestGateway;
let browser: Browser;
let base: string;
let ca: string;
const cspViolations: string[] = [];

beforeAll(async () => {
  const dir = tempDir('vigil-console-oidc-');
  const apiPort = await freePort();
  base = `https://127.0.0.1:${apiPort}`;
  [idp, browser] = await Promise.all([
    startTestIdp({ audrey: ['audit', 'staff'], mallory: ['marketing'] }, { redirectUris: [`${base}/console/oidc/callback`] }),
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
          role_map: { audit: ['auditor'], eng: ['engineer'] },
        },
      },
      roles: [{ name: 'auditor' }, { name: 'engineer' }],
    },
    dir,
  );
  ca = fs.readFileSync(path.join(caDir(tg.dataDir), CA_FILES.x509CaCert), 'utf8');
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await tg?.stop();
  await idp?.stop();
});

/** Open the console, click "Sign in with <IdP>", sign in at the IdP as `login` (form, consent) until back on the gateway. */
async function signInViaIdp(login: string): Promise<{ ctx: BrowserContext; page: Page }> {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await ctx.newPage();
  page.on('console', (m) => {
    if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text());
  });
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

describe('console sign-in with the identity provider', () => {
  it('an IdP user whose group maps to auditor signs in, lists sessions, and the sign-in is recorded with method oidc', async () => {
    const { ctx, page } = await signInViaIdp('audrey');
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    expect(new URL(page.url()).pathname).toBe('/console/');
    const cookie = await sessionCookieOf(ctx);
    expect(cookie).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict' });
    // The session cookie works for the console's API: the auditor role mapped from the group reads sessions.
    const me = await page.evaluate(async () => (await fetch('/console/api/me')).json());
    expect(me).toMatchObject({ user: 'audrey', roles: ['auditor'], method: 'oidc', can: { read: true } });
    const list = await page.evaluate(async () => {
      const r = await fetch('/console/api/sessions');
      return { status: r.status, body: await r.json() };
    });
    expect(list.status).toBe(200);
    // The same cookie from a plain HTTP client (no client certificate).
    const viaHttp = await request(`${base}/console/api/sessions`, { ca, headers: { cookie: `${cookie!.name}=${cookie!.value}` } });
    expect(viaHttp.status).toBe(200);
    const signin = await tg.waitForEvent((e) => e.type === 'console.signin' && e.actor.user === 'audrey');
    expect(signin.outcome).toBe('success');
    expect(signin.details).toMatchObject({ method: 'oidc', subject: 'audrey', groups: ['audit', 'staff'], roles: ['auditor'] });
    const ok = await tg.waitForEvent((e) => e.type === 'auth.oidc.success' && e.actor.user === 'audrey');
    expect(ok.details).toMatchObject({ flow: 'console', subject: 'audrey' });
    // No certificate is issued for a console sign-in.
    expect(tg.events.some((e) => e.type === 'cert.issued' && e.actor.user === 'audrey')).toBe(false);
    expect(cspViolations).toEqual([]);
    await ctx.close();
  });

  it('a user whose groups map to no role is refused with a clear page, auth.oidc.failure and no session cookie', async () => {
    const { ctx, page } = await signInViaIdp('mallory');
    expect(new URL(page.url()).pathname).toBe('/console/oidc/callback');
    expect(await page.locator('#reason').textContent()).toContain('None of your groups gives a vigil role');
    expect(await sessionCookieOf(ctx)).toBeUndefined();
    const failure = await tg.waitForEvent((e) => e.type === 'auth.oidc.failure' && e.details.subject === 'mallory');
    expect(failure.details).toMatchObject({ flow: 'console', reason: 'unmapped_group', groups: ['marketing'] });
    expect(tg.events.some((e) => e.type === 'console.signin' && e.actor.user === 'mallory')).toBe(false);
    await ctx.close();
  });

  it('a callback whose state is not the one the sign-in started with is refused', async () => {
    const start = await request(`${base}/console/oidc/start`, { ca });
    expect(start.status).toBe(302);
    const auth = new URL(String(start.headers.location));
    expect(auth.origin).toBe(idp.issuer);
    expect(auth.searchParams.get('redirect_uri')).toBe(`${base}/console/oidc/callback`);
    expect(auth.searchParams.get('code_challenge_method')).toBe('S256');
    expect(auth.searchParams.get('nonce')).toBeTruthy();
    const pending = String((start.headers['set-cookie'] as string[])[0]).split(';')[0];
    expect(pending).toMatch(/^__Host-vigil_console_oidc=/);
    const before = tg.events.length;
    const cb = await request(`${base}/console/oidc/callback?code=forged&state=not-${auth.searchParams.get('state')}`, { ca, headers: { cookie: pending } });
    expect(cb.status).toBe(401);
    expect(cb.text).toContain('state differs');
    expect(String(cb.headers['set-cookie'] ?? '')).not.toMatch(/__Host-vigil_console=[^;]/);
    const failure = await tg.waitForEvent((e) => e.type === 'auth.oidc.failure' && e.details.reason === 'state_mismatch');
    expect(failure.details.flow).toBe('console');
    expect(tg.events.slice(before).some((e) => e.type === 'console.signin')).toBe(false);
    // The login is used up: the right state afterwards finds nothing to finish either.
    const again = await request(`${base}/console/oidc/callback?code=forged&state=${auth.searchParams.get('state')}`, { ca, headers: { cookie: pending } });
    expect(again.status).toBe(401);
    expect(again.text).toContain('sign in to the console again');
  });

  it('shows no IdP button when identity.oidc is not configured', async () => {
    const other = await startTestGateway({ mysql: { enabled: false } }, tempDir('vigil-console-nooidc-'));
    try {
      const otherCa = fs.readFileSync(path.join(caDir(other.dataDir), CA_FILES.x509CaCert), 'utf8');
      const m = await request(`https://127.0.0.1:${other.ports.api}/console/api/signin/methods`, { ca: otherCa });
      expect(m.body).toEqual({ cert: true, oidc: null });
      const s = await request(`https://127.0.0.1:${other.ports.api}/console/oidc/start`, { ca: otherCa });
      expect(s.status).toBe(404);
    } finally {
      await other.stop();
    }
  });
});
