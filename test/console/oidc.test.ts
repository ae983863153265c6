import fs from 'node:fs';
import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caDir, CA_FILES } from '../../src/identity/index.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { freePort, secretsDir, tempDir, waitFor } from '../support/tmp.ts';
import { ensureConsole, request } from '../support/console.ts';
import { claimsOf, startBrowser, startTestIdp, type TestIdp } from '../support/oidc-provider.ts';

/**
 * The web console's "Sign in with <IdP>": the same identity.oidc configuration as `vigil login`, a real
 * OpenID Provider (oidc-provider) in-process, headless Chromium clicking the console's button and signing
 * in on the IdP's pages, back to the console with a session whose roles come from role_map. The session's
 * roles are mapped again on every request (role_map after a config reload), a lock ends it at the next
 * request (recorded), and it never outlasts the ID token / IdP session.
 */

let idp: TestIdp;
let tg: TestGateway;
let browser: Browser;
let base: string;
let ca: string;
let configFile: string;
let ada: Awaited<ReturnType<TestGateway['issue']>>;
const cspViolations: string[] = [];

beforeAll(async () => {
  const dir = tempDir('vigil-console-oidc-');
  const apiPort = await freePort();
  base = `https://127.0.0.1:${apiPort}`;
  [idp, browser] = await Promise.all([
    startTestIdp({ audrey: ['audit', 'staff'], mallory: ['marketing'], olga: ['audit'], lena: ['audit'], tess: ['audit'] }, { redirectUris: [`${base}/console/oidc/callback`] }),
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
    { configFile: (configFile = path.join(dir, 'vigil.yaml')) },
  );
  ada = await tg.issue({ user: 'ada', roles: ['admin'] });
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

/** Set identity.oidc.role_map in the config file and reload it, as `vigil config reload` does. */
async function reloadRoleMap(roleMap: Record<string, string[]>) {
  const doc = JSON.parse(fs.readFileSync(configFile, 'utf8'));
  if (JSON.stringify(doc.identity.oidc.role_map) === JSON.stringify(roleMap)) return;
  doc.identity.oidc.role_map = roleMap;
  fs.writeFileSync(configFile, JSON.stringify(doc, null, 2));
  const report = await tg.gw.reload({ via: 'test' });
  expect(report.ok).toBe(true);
  expect(report.applied).toContain('identity.oidc.role_map');
  expect(report.restart_required).toEqual([]);
}

/** Sign in through the IdP and return a plain HTTP client for the console session's cookie. */
async function oidcConsole(login: string) {
  const { ctx, page } = await signInViaIdp(login);
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  const c = await sessionCookieOf(ctx);
  await ctx.close();
  return (p: string) => request(`${base}${p}`, { ca, headers: { cookie: `${c!.name}=${c!.value}` } });
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

  it('roles follow role_map after a config reload at the next request; when no group maps any more the session ends, recorded', async () => {
    const get = await oidcConsole('olga');
    const me = await get('/console/api/me');
    expect(me.body).toMatchObject({ user: 'olga', roles: ['auditor'], method: 'oidc', can: { read: true } });
    // The session does not outlast the ID token the IdP sent (oidc-provider: 1 h), whatever console.session_ttl (8 h).
    const exp = Number(claimsOf(idp.issued.at(-1)!).exp) * 1000;
    expect(Date.parse(me.body.expires_at)).toBeLessThanOrEqual(exp);
    expect((await get('/console/api/sessions')).status).toBe(200);
    try {
      // The group now gives engineer, not auditor: the same cookie reads nothing at its next request.
      await reloadRoleMap({ audit: ['engineer'], eng: ['engineer'] });
      expect((await get('/console/api/me')).body).toMatchObject({ user: 'olga', roles: ['engineer'], can: { read: false } });
      const refused = await get('/console/api/sessions');
      expect(refused.status).toBe(403);
      const probe = await tg.waitForEvent((e) => e.type === 'api.request' && e.outcome === 'failure' && e.actor.user === 'olga');
      expect(probe.actor.roles).toEqual(['engineer']);
      // The group gives nothing: the session ends at the next request, and that is on the record.
      await reloadRoleMap({ eng: ['engineer'] });
      const ended = await get('/console/api/me');
      expect(ended.status).toBe(401);
      expect(ended.body.error.message).toContain('no longer give a vigil role');
      const out = await tg.waitForEvent((e) => e.type === 'console.signout' && e.actor.user === 'olga');
      expect(out).toMatchObject({ outcome: 'failure', source: { via: 'console' }, details: { reason: 'roles_unmapped', method: 'oidc', refused: 'GET /console/api/me' } });
      // Gone for good: mapping the group again does not bring this session back.
      await reloadRoleMap({ audit: ['auditor'], eng: ['engineer'] });
      expect((await get('/console/api/me')).status).toBe(401);
    } finally {
      await reloadRoleMap({ audit: ['auditor'], eng: ['engineer'] });
    }
  });

  it('a locked user\'s console session is refused at the next request, and the refusal is recorded', async () => {
    const get = await oidcConsole('lena');
    expect((await get('/console/api/sessions')).status).toBe(200);
    const lock = await request(`${base}/v1/locks`, { method: 'POST', ca, cert: ada.creds.x509Certificate, key: ada.creds.x509PrivateKey, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'lena', reason: 'INC-77 offboarding' }) });
    expect(lock.status).toBeLessThan(300);
    const r = await get('/console/api/sessions');
    expect(r.status).toBe(401);
    expect(r.body.error.message).toContain('your user is locked');
    const out = await tg.waitForEvent((e) => e.type === 'console.signout' && e.actor.user === 'lena');
    expect(out).toMatchObject({ outcome: 'failure', details: { reason: 'user_locked', method: 'oidc', refused: 'GET /console/api/sessions' } });
    expect((await get('/console/api/me')).status).toBe(401);
  });

  it('the session ends with the IdP session (session_expires_at) when that comes before the console\'s TTL', async () => {
    // The IdP session ends 15 s after the token is sent (the browser sign-in itself may take a while).
    let ends = 0;
    idp.tamper = async (t) => idp.resign({ ...claimsOf(t), session_expires_at: (ends = Math.floor(Date.now() / 1000) + 15) });
    let get;
    try {
      get = await oidcConsole('tess');
    } finally {
      idp.tamper = undefined;
    }
    const me = await get('/console/api/me');
    expect(me.status).toBe(200);
    expect(Date.parse(me.body.expires_at)).toBe(ends * 1000);
    await waitFor(async () => (await get('/console/api/me')).status === 401, 60_000, 'the console session to end with the IdP session');
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
