import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { base64url, SignJWT } from 'jose';
import { gatewayCall } from '../../src/cli/login/api.ts';
import { caDir, CA_FILES } from '../../src/identity/index.ts';
import { formatPublicKeyLine, fromKeyObject } from '../../src/identity/ssh-keys.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { secretsDir, tempDir } from '../support/tmp.ts';
import { claimsOf, signInWithBrowser, startBrowser, startTestIdp, type TestIdp } from '../support/oidc-provider.ts';

/**
 * Every refused sign-in is on the record with the reason an operator needs: a forged token is a bad
 * signature (not "an unusable answer"), a token for another party a wrong audience, an IdP that does not
 * answer an outage (502, idp_unreachable), and a poll of a device login that does not exist is recorded
 * like any other refused finish. Real OpenID Provider in-process, real browser; bad tokens are rewritten
 * at its token endpoint.
 */

let idp: TestIdp;
let tg: TestGateway;
let browser: Browser;
let call: ReturnType<typeof gatewayCall>;
let apiBase: string;
let caFile: string;

beforeAll(async () => {
  const base = tempDir('vigil-oidc-rv2-');
  [idp, browser] = await Promise.all([startTestIdp({ alice: ['sre'] }), startBrowser()]);
  const secret = secretsDir(base);
  tg = await startTestGateway(
    {
      mysql: { enabled: false },
      identity: { oidc: { issuer: idp.issuer, client_id: idp.clientId, client_secret: { file: secret('oidc-client', idp.clientSecret) }, scopes: ['openid', 'profile', 'groups'], role_map: { sre: ['oncall'] } } },
      roles: [{ name: 'oncall' }],
    },
    base,
  );
  apiBase = `https://127.0.0.1:${tg.ports.api}`;
  caFile = path.join(caDir(tg.dataDir), CA_FILES.x509CaCert);
  call = gatewayCall(apiBase, { ca: caFile });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await tg?.stop();
  // The outage test stops the IdP itself.
  await idp?.stop().catch(() => {});
});

const newKeys = () => ({
  ssh_public_key: formatPublicKeyLine(fromKeyObject(crypto.generateKeyPairSync('ed25519').privateKey), 'alice'),
  x509_public_key: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'pem', type: 'spki' }).toString(),
});

/**
 * One browser-flow sign-in as alice through the API, `tamper` rewriting the ID token at the IdP and
 * `beforeFinish` run once the callback is in hand: the user signed in, or the refusal's message.
 */
async function signIn(tamper?: (idToken: string) => Promise<string>, beforeFinish?: () => Promise<void>): Promise<string> {
  let gotCallback!: (u: string) => void;
  const callback = new Promise<string>((r) => (gotCallback = r));
  // Stands in for the CLI's loopback listener.
  const listener = http.createServer((req, res) => {
    gotCallback(`http://127.0.0.1:${(listener.address() as AddressInfo).port}${req.url}`);
    res.end('ok');
  });
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  idp.tamper = tamper;
  try {
    const started = await call<{ login_id: string; authorization_url: string }>('POST', '/v1/login/start', { ...newKeys(), redirect_uri: `http://127.0.0.1:${(listener.address() as AddressInfo).port}/callback` });
    await signInWithBrowser(browser, started.body.authorization_url, 'alice');
    const callbackUrl = await callback;
    await beforeFinish?.();
    const finished = await call<{ login: { user: string } }>('POST', '/v1/login/finish', { login_id: started.body.login_id, callback_url: callbackUrl });
    return finished.body.login.user;
  } catch (e) {
    return (e as Error).message;
  } finally {
    idp.tamper = undefined;
    listener.close();
  }
}

/** POST `body` to the gateway's API: the raw status and body (gatewayCall turns errors into exceptions). */
function postStatus(apiPath: string, body: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${apiBase}${apiPath}`, { method: 'POST', ca: fs.readFileSync(caFile), headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

const failuresFor = (reason: string) => tg.events.filter((e) => e.type === 'auth.oidc.failure' && e.details.reason === reason);

/** The IdP's public signing key as PEM: the "secret" of the classic HS256 key-confusion forgery. */
async function idpPublicKeyPem(): Promise<string> {
  const jwks = (await (await fetch(`${idp.issuer}/jwks`)).json()) as { keys: crypto.JsonWebKey[] };
  return crypto.createPublicKey({ key: jwks.keys[0], format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString();
}

describe('OIDC sign-in refusals name their real reason', () => {
  it.each([
    ['alg none (unsigned)', 'bad_signature', async (t: string) => `${base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${base64url.encode(JSON.stringify(claimsOf(t)))}.`],
    ['HS256 keyed with the IdP public key', 'bad_signature', async (t: string) => new SignJWT(claimsOf(t)).setProtectedHeader({ alg: 'HS256', kid: 'idp-1', typ: 'JWT' }).sign(new TextEncoder().encode(await idpPublicKeyPem()))],
    ['another authorized party (azp)', 'wrong_audience', async (t: string) => idp.resign({ ...claimsOf(t), aud: [idp.clientId, 'other-client'], azp: 'other-client' })],
    ['nbf an hour ahead', 'not_yet_valid', async (t: string) => idp.resign({ ...claimsOf(t), nbf: Math.floor(Date.now() / 1000) + 3600 })],
  ])('an ID token with %s is refused as %s, and recorded so', async (_what, reason, tamper) => {
    const before = failuresFor(reason).length;
    const answer = await signIn(tamper);
    expect(answer).toContain(`(${reason})`);
    expect(failuresFor(reason).length).toBe(before + 1);
    expect(tg.events.filter((e) => e.type === 'auth.oidc.failure' && e.details.reason === 'idp_error')).toEqual([]);
  }, 120_000);

  it('a poll of a device login that does not exist is refused on the record (login_unknown), like a bad finish', async () => {
    const before = failuresFor('login_unknown').length;
    await expect(call('POST', '/v1/login/device/poll', { login_id: 'stolen-or-made-up' })).rejects.toThrow(/login_unknown/);
    const recorded = failuresFor('login_unknown');
    expect(recorded.length).toBe(before + 1);
    expect(recorded.at(-1)!.details.flow).toBe('device');
  }, 60_000);

  // Last: it stops the IdP.
  it('the IdP down when the callback is finished: 502 idp_unreachable, recorded as an outage; a device start too', async () => {
    const answer = await signIn(undefined, () => idp.stop());
    expect(answer).toContain('(idp_unreachable)');
    expect(answer).toMatch(/cannot be reached/);
    const recorded = failuresFor('idp_unreachable');
    expect(recorded.length).toBe(1);
    expect(String(recorded[0].details.detail)).toMatch(/ECONNREFUSED|fetch failed/);
    // The status an operator's monitoring sees: the gateway could not reach its IdP (502), not "unauthorized".
    const device = await postStatus('/v1/login/device', newKeys());
    expect(device.status).toBe(502);
    expect(device.body).toMatch(/idp_unreachable/);
  }, 120_000);

  // After the test above: the IdP's port now accepts connections and never answers (a hung IdP, a
  // firewall dropping packets). The gateway must give up on the IdP before `vigil` gives up on the
  // gateway (its default 15 s), so the user hears that the IdP is down, not that the gateway hung.
  it('a hung IdP: `vigil`, with its default timeout, is told idp_unreachable instead of timing out on the gateway', async () => {
    const held: net.Socket[] = [];
    const blackhole = net.createServer((socket) => held.push(socket));
    await new Promise<void>((resolve, reject) => {
      blackhole.once('error', reject);
      blackhole.listen(Number(new URL(idp.issuer).port), '127.0.0.1', resolve);
    });
    try {
      const before = failuresFor('idp_unreachable').length;
      await expect(call('POST', '/v1/login/device', newKeys())).rejects.toThrow(/cannot be reached.*\(idp_unreachable\)/);
      // A start that fails is refused before anything was begun: answered, not a sign-in on the record.
      expect(failuresFor('idp_unreachable').length).toBe(before);
      expect(held.length).toBeGreaterThan(0);
    } finally {
      for (const s of held) s.destroy();
      await new Promise((r) => blackhole.close(r));
    }
  }, 120_000);
});
