import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayCall } from '../../src/cli/login/api.ts';
import { caDir, CA_FILES } from '../../src/identity/index.ts';
import { mapIdentity, OidcLoginError } from '../../src/identity/oidc/id-token.ts';
import { formatPublicKeyLine, fromKeyObject } from '../../src/identity/ssh-keys.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { secretsDir, tempDir } from '../support/tmp.ts';
import { claimsOf, signInWithBrowser, startBrowser, startTestIdp, type TestIdp } from '../support/oidc-provider.ts';

/**
 * A vigil user name belongs to the IdP account (issuer, sub) that first signed in as it. The user-name
 * claim (preferred_username by default) is whatever the IdP says today: another account whose claim reads
 * `alice` must not become alice (her grants, her approvals), an account renamed at the IdP must not
 * shed its locks under a new name, and a token without the claim must not fall back to `sub` in the same
 * name space. Real OpenID Provider in-process, real browser; other accounts' claims come out of the same
 * IdP, rewritten and re-signed with its key at its token endpoint.
 */

let idp: TestIdp;
let tg: TestGateway;
let browser: Browser;
let call: ReturnType<typeof gatewayCall>;

beforeAll(async () => {
  const base = tempDir('vigil-oidc-bind-');
  [idp, browser] = await Promise.all([startTestIdp({ alice: ['sre'], mallory: ['sre'], nora: ['sre'] }), startBrowser()]);
  const secret = secretsDir(base);
  tg = await startTestGateway(
    {
      mysql: { enabled: false },
      identity: { oidc: { issuer: idp.issuer, client_id: idp.clientId, client_secret: { file: secret('oidc-client', idp.clientSecret) }, scopes: ['openid', 'profile', 'groups'], role_map: { sre: ['oncall'] } } },
      roles: [{ name: 'oncall' }],
    },
    base,
  );
  call = gatewayCall(`https://127.0.0.1:${tg.ports.api}`, { ca: path.join(caDir(tg.dataDir), CA_FILES.x509CaCert) });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await tg?.stop();
  await idp?.stop();
});

/**
 * One `vigil login` browser flow through the API as IdP account `login`, with `claims` rewriting the
 * ID token's claims on the way: what /v1/login/finish answered (the user signed in, or the refusal).
 */
async function signIn(login: string, claims?: (c: Record<string, unknown>) => Record<string, unknown>): Promise<{ user?: string; serial?: string; error?: string }> {
  let gotCallback!: (u: string) => void;
  const callback = new Promise<string>((r) => (gotCallback = r));
  // Stands in for the CLI's loopback listener.
  const listener = http.createServer((req, res) => {
    gotCallback(`http://127.0.0.1:${(listener.address() as AddressInfo).port}${req.url}`);
    res.end('ok');
  });
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  if (claims) idp.tamper = async (t) => idp.resign(claims(claimsOf(t) as Record<string, unknown>));
  try {
    const started = await call<{ login_id: string; authorization_url: string }>('POST', '/v1/login/start', {
      ssh_public_key: formatPublicKeyLine(fromKeyObject(crypto.generateKeyPairSync('ed25519').privateKey), login),
      x509_public_key: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'pem', type: 'spki' }).toString(),
      redirect_uri: `http://127.0.0.1:${(listener.address() as AddressInfo).port}/callback`,
    });
    await signInWithBrowser(browser, started.body.authorization_url, login);
    const finished = await call<{ login: { user: string; certificate: { serial: string } } }>('POST', '/v1/login/finish', { login_id: started.body.login_id, callback_url: await callback });
    return { user: finished.body.login.user, serial: finished.body.login.certificate.serial };
  } catch (e) {
    return { error: (e as Error).message };
  } finally {
    idp.tamper = undefined;
    listener.close();
  }
}

const failures = (reason: string) => tg.events.filter((e) => e.type === 'auth.oidc.failure' && e.details.reason === reason);
const issuedTo = (user: string) => tg.events.filter((e) => e.type === 'cert.issued' && e.details.user === user && e.outcome === 'success');

describe('SSO user names are bound to the IdP account that first signed in as them', () => {
  it('alice signs in and her name is bound to her IdP subject', async () => {
    const r = await signIn('alice');
    expect(r).toMatchObject({ user: 'alice' });
    expect(await tg.gw.services.store.getIdentityBinding('alice')).toMatchObject({ user: 'alice', issuer: idp.issuer, subject: 'alice' });
  }, 120_000);

  it('another account whose preferred_username is `alice` is refused (user_taken) and recorded, not as alice; alice still signs in', async () => {
    const certsBefore = issuedTo('alice').length;
    const r = await signIn('mallory', (c) => ({ ...c, preferred_username: 'alice' }));
    expect(r.user).toBeUndefined();
    expect(r.error).toMatch(/belongs to another account of your identity provider.*\(user_taken\)/);
    const ev = failures('user_taken').at(-1)!;
    expect(ev).toBeDefined();
    expect(ev.outcome).toBe('failure');
    // Never attributed to the user the account tried to become.
    expect(ev.actor.user).toBe('unknown');
    expect(ev.details).toMatchObject({ flow: 'code', issuer: idp.issuer, subject: 'mallory', groups: ['sre'] });
    expect(String(ev.details.detail)).toContain('"alice" is bound to subject "alice"');
    expect(issuedTo('alice').length).toBe(certsBefore);

    const again = await signIn('alice');
    expect(again).toMatchObject({ user: 'alice' });
    expect(issuedTo('alice').length).toBe(certsBefore + 1);
  }, 120_000);

  it('alice renamed at the IdP stays alice: a second name for her account is refused (subject_renamed), recorded as alice', async () => {
    const r = await signIn('alice', (c) => ({ ...c, preferred_username: 'alice2' }));
    expect(r.error).toMatch(/\(subject_renamed\)/);
    const ev = failures('subject_renamed').at(-1)!;
    expect(ev.actor.user).toBe('alice');
    expect(ev.details).toMatchObject({ subject: 'alice' });
    expect(await tg.gw.services.store.getIdentityBinding('alice2')).toBeUndefined();
    expect(issuedTo('alice2')).toEqual([]);
  }, 120_000);

  it('a token without the user-name claim is refused (bad_user), never signed in under its `sub`', async () => {
    const r = await signIn('nora', (c) => {
      const { preferred_username: _drop, ...rest } = c;
      return rest;
    });
    expect(r.error).toMatch(/\(bad_user\)/);
    expect(failures('bad_user').at(-1)!.details).toMatchObject({ subject: 'nora' });
    expect(issuedTo('nora')).toEqual([]);
    expect(await tg.gw.services.store.getIdentityBinding('nora')).toBeUndefined();
  }, 120_000);
});

describe('user_claim: email', () => {
  const opts = { rolesClaim: 'groups', userClaim: 'email', roleMap: { sre: ['oncall'] } };
  const payload = (over: Record<string, unknown>) => ({ sub: 's-1', iss: 'https://idp.example', groups: ['sre'], email: 'alice@example.com', ...over });
  const reason = (p: Record<string, unknown>) => {
    try {
      mapIdentity(p, opts);
      return 'ok';
    } catch (e) {
      return (e as OidcLoginError).reason;
    }
  };

  it('needs email_verified === true: unverified, absent or merely truthy is refused', () => {
    expect(reason(payload({ email_verified: true }))).toBe('ok');
    expect(mapIdentity(payload({ email_verified: true }), opts).user).toBe('alice@example.com');
    expect(reason(payload({ email_verified: false }))).toBe('email_unverified');
    expect(reason(payload({}))).toBe('email_unverified');
    expect(reason(payload({ email_verified: 'true' }))).toBe('email_unverified');
    // No e-mail at all: refused, not the subject instead.
    expect(reason(payload({ email: undefined, email_verified: true }))).toBe('bad_user');
  });
});
