import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { runCli } from '../../app/main.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { apiEnv, type ApiEnv, type ClientCert } from './support.ts';

let env: ApiEnv;
let alice: ClientCert, bob: ClientCert, mallory: ClientCert, admin: ClientCert, auditor: ClientCert;

beforeAll(async () => {
  env = await apiEnv();
  [alice, bob, mallory, admin, auditor] = await Promise.all([
    env.client('alice', ['dev']),
    env.client('bob', ['sre-lead']),
    env.client('mallory', ['dev']),
    env.client('root', ['admin']),
    env.client('audrey', ['auditor']),
  ]);
});
afterAll(async () => {
  await env?.stop();
});

const last = (type: string): AuditEvent => env.of(type).at(-1)!;

describe('API authentication', () => {
  it('GET /healthz needs no certificate', async () => {
    const r = await env.call('GET', '/healthz');
    expect(r).toMatchObject({ status: 200, body: { status: 'ok', audit: 'ok' } });
  });

  it('refuses calls without a client certificate, with a stable code and an api.request event', async () => {
    for (const [method, p] of [
      ['GET', '/v1/access/requests'],
      ['POST', '/v1/access/requests'],
      ['GET', '/v1/sessions'],
      ['DELETE', '/v1/locks/user/alice'],
      ['GET', '/v1/nothing-here'],
    ]) {
      const r = await env.call(method, p);
      expect(r.status).toBe(401);
      expect(r.body.error.code).toBe('VIGIL_NO_CLIENT_CERT');
    }
    const ev = last('api.request');
    expect(ev).toMatchObject({ outcome: 'failure', actor: { user: 'unknown' }, source: { ip: '127.0.0.1', via: 'api' }, details: { status: 401, code: 'VIGIL_NO_CLIENT_CERT' } });
  });

  it('refuses a certificate from another CA and a revoked one', async () => {
    const stranger = await env.foreign('alice', ['admin']);
    const r = await env.call('GET', '/v1/access/requests', stranger);
    expect(r.status).toBe(401);
    expect(r.body.error.code).toBe('VIGIL_UNAUTHENTICATED');
    expect(last('api.request').details).toMatchObject({ status: 401, code: 'VIGIL_UNAUTHENTICATED' });

    const soonRevoked = await env.client('carl', ['dev']);
    expect((await env.call('GET', '/v1/access/requests', soonRevoked)).status).toBe(200);
    await env.store.revoke({ serial: soonRevoked.serial, reason: 'lost', by: 'root', time: new Date().toISOString() });
    const after = await env.call('GET', '/v1/access/requests', soonRevoked);
    expect(after.status).toBe(401);
  });
});

describe('API access lifecycle', () => {
  it('request for yourself, refused approvals, approval by an approver, revoke — each recorded with the caller', async () => {
    const created = await env.call('POST', '/v1/access/requests', alice, { role: 'prod-dba', targets: ['pg-prod'], reason: 'INC-4521 replica lag', ttl: '30m' });
    expect(created.status).toBe(201);
    const id = created.body.request.id;
    expect(created.body.request).toMatchObject({ user: 'alice', role: 'prod-dba', state: 'pending', ttlMs: 1_800_000 });
    expect(last('access.requested')).toMatchObject({ actor: { user: 'alice', cert_serial: alice.serial }, source: { ip: '127.0.0.1', via: 'api' } });

    const forOther = await env.call('POST', '/v1/access/requests', alice, { user: 'bob', role: 'prod-dba', reason: 'x' });
    expect(forOther).toMatchObject({ status: 403, body: { error: { code: 'VIGIL_FORBIDDEN' } } });

    const byNonApprover = await env.call('POST', `/v1/access/requests/${id}/approve`, mallory, {});
    expect(byNonApprover).toMatchObject({ status: 403, body: { error: { code: 'VIGIL_NOT_APPROVER' } } });
    expect(last('access.refused')).toMatchObject({ actor: { user: 'mallory' }, source: { via: 'api' }, details: { action: 'approve', code: 'VIGIL_NOT_APPROVER' } });

    const bySelf = await env.call('POST', `/v1/access/requests/${id}/approve`, alice, {});
    expect(bySelf).toMatchObject({ status: 403, body: { error: { code: 'VIGIL_SELF_APPROVAL' } } });

    // Mallory cannot even see the request.
    expect((await env.call('GET', `/v1/access/requests/${id}`, mallory)).status).toBe(404);

    const approved = await env.call('POST', `/v1/access/requests/${id}/approve`, bob, { comment: 'ok, go' });
    expect(approved.status).toBe(200);
    expect(approved.body.request).toMatchObject({ state: 'active', decidedBy: 'bob' });
    expect(last('access.approved')).toMatchObject({ actor: { user: 'bob', roles: ['sre-lead'], cert_serial: bob.serial }, source: { ip: '127.0.0.1', via: 'api' }, details: { request_id: id, comment: 'ok, go' } });

    const again = await env.call('POST', `/v1/access/requests/${id}/deny`, bob, { reason: 'changed my mind' });
    expect(again).toMatchObject({ status: 409, body: { error: { code: 'VIGIL_ALREADY_DECIDED' } } });

    const listed = await env.call('GET', '/v1/access/requests?state=active', alice);
    expect(listed.body.requests.map((r: { id: string }) => r.id)).toEqual([id]);
    expect((await env.call('GET', '/v1/access/requests?state=bogus', alice)).status).toBe(400);

    const revokedByOther = await env.call('POST', `/v1/access/grants/${id}/revoke`, mallory, { reason: 'x' });
    expect(revokedByOther).toMatchObject({ status: 403, body: { error: { code: 'VIGIL_FORBIDDEN' } } });
    const revoked = await env.call('POST', `/v1/access/grants/${id}/revoke`, admin, { reason: 'incident closed' });
    expect(revoked.body.request.state).toBe('revoked');
    expect(last('access.revoked')).toMatchObject({ actor: { user: 'root' }, details: { revoke_reason: 'incident closed' } });
  });

  it('a certificate issued for a grant speaks for its holder only while the grant is active', async () => {
    const req = await env.call('POST', '/v1/access/requests', alice, { role: 'prod-dba', reason: 'grant cert' });
    await env.call('POST', `/v1/access/requests/${req.body.request.id}/approve`, bob, {});
    const c = await env.services.identity.issue({ user: 'alice', roles: [], grantId: req.body.request.id });
    const bound = { user: 'alice', serial: c.serial, cert: c.x509Certificate, key: c.x509PrivateKey };
    expect((await env.call('GET', '/v1/access/requests', bound)).status).toBe(200);
    await env.call('POST', `/v1/access/grants/${req.body.request.id}/revoke`, alice, { reason: 'done' });
    const after = await env.call('GET', '/v1/access/requests', bound);
    expect(after).toMatchObject({ status: 401, body: { error: { code: 'VIGIL_UNAUTHENTICATED' } } });
    expect(after.body.error.message).toMatch(/grant .* no longer active/);
  });

  it('the holder gets certificates bound to an active grant, which never outlive it; nobody else does', async () => {
    const req = await env.call('POST', '/v1/access/requests', alice, { role: 'prod-dba', reason: 'INC-12 need a cert', ttl: '20m' });
    const id = req.body.request.id;
    expect((await env.call('POST', `/v1/access/grants/${id}/certificate`, alice, {})).body.error.code).toBe('VIGIL_NOT_ACTIVE');
    const grant = (await env.call('POST', `/v1/access/requests/${id}/approve`, bob, {})).body.request;

    const r = await env.call('POST', `/v1/access/grants/${id}/certificate`, alice, { ttl: '2h' });
    expect(r.status).toBe(201);
    const c = r.body.certificate;
    expect(c).toMatchObject({ user: 'alice', grant_id: id, roles: ['prod-dba'] });
    expect(c.x509_certificate).toMatch(/BEGIN CERTIFICATE/);
    expect(c.ssh_certificate).toMatch(/^ssh-ed25519-cert-v01@openssh.com /);
    expect(Date.parse(c.not_after)).toBeLessThanOrEqual(Date.parse(grant.expiresAt));
    const issued = last('cert.issued');
    expect(issued).toMatchObject({ outcome: 'success', actor: { user: 'alice' }, source: { via: 'api' }, details: { serial: c.serial, grant_id: id, user: 'alice' } });

    const byOther = await env.call('POST', `/v1/access/grants/${id}/certificate`, bob, {});
    expect(byOther).toMatchObject({ status: 403, body: { error: { code: 'VIGIL_FORBIDDEN' } } });
    expect(last('access.refused').details).toMatchObject({ action: 'issue_certificate', code: 'VIGIL_FORBIDDEN' });

    // The new certificate authenticates (as the grant holder) until the grant is revoked.
    const bound = { user: 'alice', serial: c.serial, cert: c.x509_certificate, key: c.x509_private_key };
    expect((await env.call('GET', `/v1/access/requests/${id}`, bound)).status).toBe(200);
    await env.call('POST', `/v1/access/grants/${id}/revoke`, bob, { reason: 'done' });
    expect((await env.call('GET', `/v1/access/requests/${id}`, bound)).status).toBe(401);
    expect((await env.call('POST', `/v1/access/grants/${id}/certificate`, alice, {})).body.error.code).toBe('VIGIL_NOT_ACTIVE');
  });

  it('validates input: bad JSON, unknown fields, wrong method, unknown route', async () => {
    expect((await env.call('POST', '/v1/access/requests', alice, '{nope')).body.error.code).toBe('VIGIL_BAD_JSON');
    const extra = await env.call('POST', '/v1/access/requests', alice, { role: 'prod-dba', reason: 'x', sudo: true });
    expect(extra).toMatchObject({ status: 400, body: { error: { code: 'VIGIL_BAD_REQUEST' } } });
    expect((await env.call('POST', '/v1/access/requests', alice, { role: 'prod-dba', reason: 'x', ttl: 'soon' })).status).toBe(400);
    expect((await env.call('DELETE', '/v1/access/requests', alice)).status).toBe(405);
    expect((await env.call('GET', '/v1/nothing', alice)).status).toBe(404);
    expect(last('api.request')).toMatchObject({ actor: { user: 'alice' }, details: { status: 404, code: 'VIGIL_NO_ROUTE' } });
  });

  it('locks: only admins; a locked user is refused by the API too', async () => {
    const byBob = await env.call('POST', '/v1/locks', bob, { user: 'mallory', reason: 'x' });
    expect(byBob).toMatchObject({ status: 403, body: { error: { code: 'VIGIL_NOT_ADMIN' } } });
    const locked = await env.call('POST', '/v1/locks', admin, { user: 'mallory', reason: 'phished' });
    expect(locked).toMatchObject({ status: 201, body: { lock: { name: 'mallory', reason: 'phished', by: 'root' } } });
    expect(last('lock.created')).toMatchObject({ actor: { user: 'root' }, source: { via: 'api' }, target: { name: 'user/mallory' } });
    expect((await env.call('GET', '/v1/access/requests', mallory)).body.error.code).toBe('VIGIL_LOCKED');
    expect((await env.call('GET', '/v1/locks', admin)).body.locks.map((l: { name: string }) => l.name)).toEqual(['mallory']);
    expect((await env.call('DELETE', '/v1/locks/user/mallory', admin)).status).toBe(200);
    expect(last('lock.deleted')).toMatchObject({ actor: { user: 'root' }, target: { name: 'user/mallory' } });
    expect((await env.call('DELETE', '/v1/locks/user/mallory', admin)).status).toBe(404);
    expect((await env.call('GET', '/v1/access/requests', mallory)).status).toBe(200);
  });

  it('sessions: users see their own, admins and auditors see all', async () => {
    const principal = (user: string) => ({ user, roles: [], certSerial: 'ab', credential: 'x509' as const, notBefore: new Date(), notAfter: new Date(Date.now() + 60_000), extensions: [] });
    const open = (user: string) =>
      env.services.sessions.open({ protocol: 'ssh', principal: principal(user), target: { name: 'web-1', host: '127.0.0.1', port: 22, login: 'deploy' }, source: { ip: '127.0.0.1', port: 5 }, grantIds: [] }, () => {});
    const h1 = open('alice');
    const h2 = open('zed');
    try {
      const mine = await env.call('GET', '/v1/sessions', alice);
      expect(mine.body.sessions.map((s: { user: string }) => s.user)).toEqual(['alice']);
      expect(mine.body.sessions[0]).toMatchObject({ id: h1.id, protocol: 'ssh', target: { name: 'web-1', login: 'deploy' } });
      const all = await env.call('GET', '/v1/sessions', auditor);
      expect(all.body.sessions.map((s: { user: string }) => s.user).sort()).toEqual(['alice', 'zed']);
    } finally {
      h1.close('client_closed');
      h2.close('client_closed');
    }
  });
});

describe('API live audit stream', () => {
  const connect = (who?: ClientCert) => new WebSocket(`${env.url.replace('https', 'wss')}/v1/events/stream`, { ca: env.ca, cert: who?.cert, key: who?.key });
  const refusal = (ws: WebSocket) =>
    new Promise<number>((resolve, reject) => {
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode!));
      ws.on('open', () => reject(new Error('stream should have been refused')));
      ws.on('error', () => {});
    });

  it('streams live events to admins and auditors', async () => {
    const ws = connect(auditor);
    const got: AuditEvent[] = [];
    ws.on('message', (m) => got.push(JSON.parse(String(m))));
    await new Promise((r) => ws.once('open', r));
    await env.call('POST', '/v1/access/requests', alice, { role: 'prod-dba', reason: 'streamed' });
    const ev = await waitFor(() => got.find((e) => e.type === 'access.requested' && e.details.reason === 'streamed'), 3000, 'streamed event');
    expect(ev.actor.user).toBe('alice');
    ws.close();
  });

  it('refuses the stream without a certificate (401) and to ordinary users (403)', async () => {
    expect(await refusal(connect())).toBe(401);
    expect(await refusal(connect(alice))).toBe(403);
  });
});

describe('CLI over the API', () => {
  async function cli(args: string[]) {
    const out = new PassThrough();
    const err = new PassThrough();
    let o = '';
    let e = '';
    out.on('data', (c) => (o += c));
    err.on('data', (c) => (e += c));
    const code = await runCli(args, out, err);
    return { code, out: o, err: e };
  }

  it('requests, approves and lists through the API with client certificates', async () => {
    const [a, b] = await Promise.all([env.client('alice', ['dev']), env.client('bob', ['sre-lead'])]);
    const conn = (c: { certFile: string; keyFile: string }) => ['--api', env.url, '--cert', c.certFile, '--key', c.keyFile, '--ca', env.caFile];
    const req = await cli(['access', 'request', '--role', 'prod-dba', '--reason', 'INC-77 via cli', '--ttl', '20m', '--json', ...conn(a)]);
    expect(req.err).toBe('');
    expect(req.code).toBe(0);
    const rec = JSON.parse(req.out);
    expect(rec).toMatchObject({ user: 'alice', state: 'pending', ttlMs: 1_200_000 });

    const self = await cli(['access', 'approve', rec.id, ...conn(a)]);
    expect(self.code).toBe(1);
    expect(self.err).toContain('[VIGIL_SELF_APPROVAL]');

    const ok = await cli(['access', 'approve', rec.id, '--comment', 'lgtm', ...conn(b)]);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(new RegExp(`^approved: ${rec.id}  active  alice → prod-dba`));
    expect(last('access.approved')).toMatchObject({ actor: { user: 'bob', cert_serial: b.serial }, source: { via: 'api' } });

    const out = path.join(tempDir(), 'grant-creds');
    const cert = await cli(['access', 'cert', rec.id, '--out', out, ...conn(a)]);
    expect(cert.err).toBe('');
    expect(cert.out).toMatch(new RegExp(`^issued certificate \\S+ for grant ${rec.id}`));
    expect(fs.statSync(path.join(out, 'alice.key')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(out, 'alice')).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(path.join(out, 'alice-cert.pub'), 'utf8')).toMatch(/^ssh-ed25519-cert-v01@openssh.com /);

    const list = await cli(['access', 'list', '--state', 'active', ...conn(a)]);
    expect(list.out).toContain(rec.id);
    const byFlag = await cli(['access', 'approve', rec.id, '--by', 'bob', ...conn(b)]);
    expect(byFlag.code).toBe(2);
  });
});
