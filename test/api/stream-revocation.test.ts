import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { gatewayApi } from '../../src/cli/api-client.ts';
import type { CommandArgs } from '../../src/cli/command.ts';
import type { Principal } from '../../src/identity/types.ts';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { runCliCaptured } from '../support/cli.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * Open API streams end with the access that opened them, as the next call would be refused: a real gateway,
 * real certificates, the CLI's own WebSocket client (`vigil watch` uses it), and `vigil cert revoke`,
 * `vigil lock user` and `vigil access revoke` run as an operator runs them against the gateway's data.
 */

let tg: TestGateway;
let configFile: string;
let apiUrl: string;

beforeAll(async () => {
  const base = tempDir('vigil-stream-revocation-');
  configFile = path.join(base, 'vigil.json');
  tg = await startTestGateway(
    {
      ssh: { enabled: false },
      postgres: { enabled: false },
      mysql: { enabled: false },
      targets: [{ name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1', port: 5432, database: 'app', user: 'x' }],
      roles: [{ name: 'dev' }, { name: 'sre-lead' }, { name: 'admin' }, { name: 'auditor', approvers: ['sre-lead'], max_ttl: '1h' }],
    },
    base,
    { configFile },
  );
  apiUrl = `https://127.0.0.1:${tg.ports.api}`;
});
afterAll(async () => {
  await tg?.stop();
});

const vigil = (...args: string[]) => runCliCaptured([...args, '--config', configFile]);

function socketAs(who: IssuedFiles, p: string): Promise<WebSocket> {
  const args = { values: { api: apiUrl, cert: who.crt, key: who.key, ca: who.ca }, positionals: [] } as unknown as CommandArgs;
  return gatewayApi(args).socket(p);
}

/** Resolves when `ws` closes, with its code, reason and when; fails when it is still open after 10 s. */
function closed(ws: WebSocket): Promise<{ code: number; reason: string; at: number }> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('the stream is still open 10 s later')), 10_000);
    ws.once('close', (code, reason) => {
      clearTimeout(t);
      resolve({ code, reason: reason.toString(), at: Date.now() });
    });
  });
}

function api(method: string, p: string, who: { cert: string; key: string; ca: string }, body?: unknown): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(`${apiUrl}${p}`, { method, ca: who.ca, cert: who.cert, key: who.key, agent: false, headers: payload ? { 'content-type': 'application/json' } : {} }, (res) => {
      let t = '';
      res.on('data', (c) => (t += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(t) }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}
const creds = (f: IssuedFiles) => ({ cert: f.creds.x509Certificate, key: f.creds.x509PrivateKey, ca: f.creds.caCertificate });

describe('API streams end with the access that opened them', () => {
  it('an auditor\'s /v1/events/stream closes within a few seconds of `vigil cert revoke` of its certificate; another auditor\'s stays open', async () => {
    const audrey = await tg.issue({ user: 'audrey', roles: ['auditor'] });
    const other = await tg.issue({ user: 'otto', roles: ['auditor'] });
    const ws = await socketAs(audrey, '/v1/events/stream');
    const bystander = await socketAs(other, '/v1/events/stream');
    const end = closed(ws);
    let bystanderClosed = false;
    bystander.once('close', () => (bystanderClosed = true));
    const r = await vigil('cert', 'revoke', audrey.creds.serial, '--reason', 'laptop stolen');
    expect(r.code, r.err).toBe(0);
    const revokedAt = Date.now();
    const c = await end;
    expect(c.at - revokedAt).toBeLessThan(5000);
    expect(c).toMatchObject({ code: 1008, reason: 'your certificate was revoked' });
    const e = await tg.waitForEvent((x) => x.type === 'api.request' && x.actor.user === 'audrey' && x.details.code === 'VIGIL_STREAM_ENDED');
    expect(e).toMatchObject({ outcome: 'failure', actor: { cert_serial: audrey.creds.serial }, details: { path: '/v1/events/stream', status: 401 } });
    expect(bystanderClosed).toBe(false);
    bystander.close();
    // And it cannot come back.
    await expect(socketAs(audrey, '/v1/events/stream')).rejects.toMatchObject({ code: 'VIGIL_UNAUTHENTICATED' });
  });

  it('a lock of the user (`vigil lock user`) closes their stream', async () => {
    const lena = await tg.issue({ user: 'lena', roles: ['auditor'] });
    const ws = await socketAs(lena, '/v1/events/stream');
    const end = closed(ws);
    const r = await vigil('lock', 'user', 'lena', '--reason', 'left the company');
    expect(r.code, r.err).toBe(0);
    const lockedAt = Date.now();
    const c = await end;
    expect(c.at - lockedAt).toBeLessThan(5000);
    expect(c).toMatchObject({ code: 1008, reason: 'your user is locked' });
    await tg.waitForEvent((x) => x.type === 'api.request' && x.actor.user === 'lena' && x.details.code === 'VIGIL_STREAM_ENDED');
  });

  it('a grant certificate\'s stream closes when the grant is revoked (`vigil access revoke`)', async () => {
    const carol = await tg.issue({ user: 'carol', roles: ['dev'] });
    const bob = await tg.issue({ user: 'bob', roles: ['sre-lead'] });
    const filed = await api('POST', '/v1/access/requests', creds(carol), { role: 'auditor', reason: 'quarterly review', ttl: '30m' });
    expect(filed.status).toBe(201);
    const id = filed.body.request.id;
    expect((await api('POST', `/v1/access/requests/${id}/approve`, creds(bob), {})).status).toBe(200);
    const issued = await api('POST', `/v1/access/grants/${id}/certificate`, creds(carol), {});
    expect(issued.status).toBe(201);
    const grantCert = { ...carol, crt: path.join(carol.dir, 'grant.crt'), key: path.join(carol.dir, 'grant.key') };
    fs.writeFileSync(grantCert.crt, issued.body.certificate.x509_certificate);
    fs.writeFileSync(grantCert.key, issued.body.certificate.x509_private_key, { mode: 0o600 });
    const ws = await socketAs(grantCert, '/v1/events/stream');
    const end = closed(ws);
    const r = await vigil('access', 'revoke', id, '--by', 'bob', '--reason', 'review done');
    expect(r.code, r.err).toBe(0);
    const revokedAt = Date.now();
    const c = await end;
    expect(c.at - revokedAt).toBeLessThan(5000);
    expect(c).toMatchObject({ code: 1008, reason: 'the grant your certificate was issued for is no longer active' });
  });

  it('a session watch closes when the watcher\'s certificate is revoked, recorded as session.watch_ended (access_ended)', async () => {
    const ada = await tg.issue({ user: 'ada', roles: ['admin'] });
    // A live database session, registered the way a proxy registers it.
    const p: Principal = { user: 'alice', roles: ['dev'], certSerial: 'a11ce01', credential: 'x509', notBefore: new Date(), notAfter: new Date(Date.now() + 3_600_000), extensions: [] };
    const h = tg.gw.services.sessions.open({ protocol: 'postgres', principal: p, target: { name: 'pg-prod', host: '127.0.0.1', port: 5432 }, source: { ip: '127.0.0.1', port: 9 }, grantIds: [] }, (reason) => h.close(reason));
    try {
      const ws = await socketAs(ada, `/v1/sessions/${h.session.id}/watch`);
      const end = closed(ws);
      const r = await vigil('cert', 'revoke', ada.creds.serial, '--reason', 'rotated');
      expect(r.code, r.err).toBe(0);
      const revokedAt = Date.now();
      const c = await end;
      expect(c.at - revokedAt).toBeLessThan(5000);
      expect(c).toMatchObject({ code: 1008, reason: 'your certificate was revoked' });
      const e = await tg.waitForEvent((x) => x.type === 'session.watch_ended' && x.actor.user === 'ada');
      expect(e.details).toMatchObject({ session_id: h.session.id, why: 'access_ended', reason: 'cert_revoked' });
    } finally {
      h.close('client_closed');
    }
  });
});

describe('API streams are bounded per user', () => {
  it('a 17th live stream of one auditor is refused with 429 VIGIL_TOO_MANY_STREAMS and recorded; closing one frees its slot; another auditor is not affected', async () => {
    const ada = await tg.issue({ user: 'ada', roles: ['auditor'] });
    const ben = await tg.issue({ user: 'ben', roles: ['auditor'] });
    const open: WebSocket[] = [];
    try {
      for (let i = 0; i < 16; i++) open.push(await socketAs(ada, '/v1/events/stream'));
      const refused = await socketAs(ada, '/v1/events/stream').then(
        () => undefined,
        (e: { code?: string; message: string }) => e,
      );
      expect(refused?.code).toBe('VIGIL_TOO_MANY_STREAMS');
      const ev = await tg.waitForEvent((e) => e.type === 'api.request' && e.actor.user === 'ada' && (e.details as { code?: string }).code === 'VIGIL_TOO_MANY_STREAMS');
      expect(ev.details).toMatchObject({ status: 429, path: '/v1/events/stream' });
      // Session watches count against the same bound.
      const watch = await socketAs(ada, '/v1/sessions/01NOSUCHSESSION0000000000/watch').then(() => undefined, (e: { code?: string }) => e);
      expect(watch?.code).toBe('VIGIL_TOO_MANY_STREAMS');
      open.push(await socketAs(ben, '/v1/events/stream'));
      const one = open.shift()!;
      const gone = closed(one);
      one.close();
      await gone;
      // The server sees the close a moment after the client: retry briefly.
      let again: WebSocket | undefined;
      for (let i = 0; i < 50 && !again; i++) {
        again = await socketAs(ada, '/v1/events/stream').catch(() => undefined);
        if (!again) await new Promise((r) => setTimeout(r, 100));
      }
      expect(again).toBeDefined();
      open.push(again!);
    } finally {
      for (const ws of open) ws.terminate();
    }
  }, 30_000);
});
