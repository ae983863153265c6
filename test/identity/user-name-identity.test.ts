import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccessService } from '../../src/access/service.ts';
import { gatewayCall } from '../../src/cli/login/api.ts';
import { caDir, CA_FILES } from '../../src/identity/index.ts';
import { formatPublicKeyLine, fromKeyObject } from '../../src/identity/ssh-keys.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { secretsDir, tempDir } from '../support/tmp.ts';
import { claimsOf, signInWithBrowser, startBrowser, startTestIdp, type TestIdp } from '../support/oidc-provider.ts';

/**
 * One person, one user name. Locks, grants, revocations by user and per-user limits all key on the exact
 * name, and people read `Alice` and `alice` as the same person; so vigil never lets a second spelling
 * of a user it knows come into being (SSO sign-in, `vigil cert issue`), and an admin typing a lock in
 * another case locks the user vigil knows. Real gateway, real OpenID Provider in-process, real browser.
 */

let idp: TestIdp;
let tg: TestGateway;
let browser: Browser;
let base: string;
let caFile: string;

beforeAll(async () => {
  base = tempDir('vigil-user-name-');
  [idp, browser] = await Promise.all([startTestIdp({ alice: ['sre'], mallory: ['sre'], nora: ['sre'], pat: ['sre'] }), startBrowser()]);
  const secret = secretsDir(base);
  tg = await startTestGateway(
    {
      mysql: { enabled: false },
      identity: { oidc: { issuer: idp.issuer, client_id: idp.clientId, client_secret: { file: secret('oidc-client', idp.clientSecret) }, scopes: ['openid', 'profile', 'groups'], role_map: { sre: ['oncall'] } } },
      roles: [{ name: 'oncall' }],
    },
    base,
  );
  caFile = path.join(caDir(tg.dataDir), CA_FILES.x509CaCert);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await tg?.stop();
  await idp?.stop();
});

interface SignedIn {
  user?: string;
  error?: string;
  /** The client certificate the sign-in gave, as files an API client can use. */
  tls?: { ca: string; cert: string; key: string };
}

/** One `vigil login` browser flow as IdP account `login`, its user-name claim rewritten to `claimedName`. */
async function signIn(login: string, claimedName?: string): Promise<SignedIn> {
  let gotCallback!: (u: string) => void;
  const callback = new Promise<string>((r) => (gotCallback = r));
  const listener = http.createServer((req, res) => {
    gotCallback(`http://127.0.0.1:${(listener.address() as AddressInfo).port}${req.url}`);
    res.end('ok');
  });
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  if (claimedName) idp.tamper = async (t) => idp.resign({ ...(claimsOf(t) as Record<string, unknown>), preferred_username: claimedName });
  const x509 = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const call = gatewayCall(`https://127.0.0.1:${tg.ports.api}`, { ca: caFile });
  try {
    const started = await call<{ login_id: string; authorization_url: string }>('POST', '/v1/login/start', {
      ssh_public_key: formatPublicKeyLine(fromKeyObject(crypto.generateKeyPairSync('ed25519').privateKey), login),
      x509_public_key: x509.publicKey.export({ format: 'pem', type: 'spki' }).toString(),
      redirect_uri: `http://127.0.0.1:${(listener.address() as AddressInfo).port}/callback`,
    });
    await signInWithBrowser(browser, started.body.authorization_url, login);
    const finished = await call<{ login: { user: string; certificate: { x509_certificate: string } } }>('POST', '/v1/login/finish', { login_id: started.body.login_id, callback_url: await callback });
    const dir = fs.mkdtempSync(path.join(base, `${login}-`));
    const cert = path.join(dir, 'user.crt');
    const key = path.join(dir, 'user.key');
    fs.writeFileSync(cert, finished.body.login.certificate.x509_certificate);
    fs.writeFileSync(key, x509.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), { mode: 0o600 });
    return { user: finished.body.login.user, tls: { ca: caFile, cert, key } };
  } catch (e) {
    return { error: (e as Error).message };
  } finally {
    idp.tamper = undefined;
    listener.close();
  }
}

/** An API call with a signed-in user's certificate: what the gateway answered, or its refusal. */
async function listRequestsAs(who: SignedIn): Promise<string> {
  try {
    await gatewayCall(`https://127.0.0.1:${tg.ports.api}`, who.tls!)('GET', '/v1/access/requests');
    return 'ok';
  } catch (e) {
    return (e as Error).message;
  }
}

const admin = { user: 'ops', roles: [], local: true, source: { ip: '127.0.0.1' } };
const access = () => createAccessService({ config: tg.gw.services.config, store: tg.gw.services.store, events: tg.gw.services.events, identity: tg.gw.services.identity });
const issuedTo = (user: string) => tg.events.filter((e) => e.type === 'cert.issued' && e.details.user === user && e.outcome === 'success');

describe('one person, one user name: no second spelling of a known user', () => {
  it('another IdP account whose name differs from a signed-in user only in case is refused (user_taken): no binding, no certificate', async () => {
    expect(await signIn('alice')).toMatchObject({ user: 'alice' });

    const r = await signIn('mallory', 'ALICE');
    expect(r.user).toBeUndefined();
    expect(r.error).toMatch(/differs only in case.*\(user_taken\)/);
    const ev = tg.events.filter((e) => e.type === 'auth.oidc.failure' && e.details.reason === 'user_taken').at(-1)!;
    expect(ev.actor.user).toBe('unknown');
    expect(ev.details).toMatchObject({ subject: 'mallory' });
    expect(String(ev.details.detail)).toContain('existing user "alice"');
    expect(await tg.gw.services.store.getIdentityBinding('ALICE')).toBeUndefined();
    expect(issuedTo('ALICE')).toEqual([]);

    // alice herself is unaffected.
    expect(await signIn('alice')).toMatchObject({ user: 'alice' });
  }, 180_000);

  it('`vigil cert issue` (and tokens) for another case of a known user is refused; the known spelling still gets one', async () => {
    const identity = tg.gw.services.identity;
    await expect(identity.issue({ user: 'Alice', roles: [] })).rejects.toMatchObject({ code: 'VIGIL_USER_NAME_TAKEN', message: expect.stringContaining('existing user "alice"') });
    await expect(identity.issueToken({ user: 'aLiCe', roles: [] })).rejects.toMatchObject({ code: 'VIGIL_USER_NAME_TAKEN' });
    await expect(identity.issue({ user: 'alice', roles: [] })).resolves.toMatchObject({ user: 'alice' });
  }, 60_000);

  it('a name locked before anyone had it keeps its spelling: signing in as another case of it is refused', async () => {
    await access().lock(admin, { user: 'pat', reason: 'leaving on Friday' });
    const r = await signIn('pat', 'Pat');
    expect(r.user).toBeUndefined();
    expect(r.error).toMatch(/\(user_taken\)/);
    expect(issuedTo('Pat')).toEqual([]);
  }, 180_000);
});

describe('a lock typed in another case locks the user vigil knows', () => {
  it('`lock nora` stops the user whose certificates say `Nora`; `unlock nora` lets her back', async () => {
    const nora = await signIn('nora', 'Nora');
    expect(nora.user).toBe('Nora');
    expect(await listRequestsAs(nora)).toBe('ok');

    const lock = await access().lock(admin, { user: 'nora', reason: 'laptop stolen' });
    expect(await listRequestsAs(nora)).toMatch(/locked/);
    expect(lock.name).toBe('Nora');
    expect(tg.events.filter((e) => e.type === 'lock.created').at(-1)!.details).toMatchObject({ user: 'Nora', reason: 'laptop stolen' });

    await access().unlock(admin, 'nora');
    expect(await listRequestsAs(nora)).toBe('ok');
  }, 180_000);
});
