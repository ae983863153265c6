import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../../src/identity/types.ts';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { ConsoleClient, ensureConsole, request } from '../support/console.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * A console session signed in with a client certificate is worth no more than the certificate: it ends at
 * the certificate's notAfter, and with the grant it was issued for (revoked or expired), at the next click
 * and in an open live view, as the API would refuse the certificate. Real gateway, real certificates.
 */

let tg: TestGateway;
let base: string;
let ca: string;
let bob: IssuedFiles;

beforeAll(async () => {
  await ensureConsole();
  tg = await startTestGateway(
    {
      ssh: { enabled: false },
      postgres: { enabled: false },
      mysql: { enabled: false },
      targets: [{ name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1', port: 5432, database: 'app', user: 'x' }],
      roles: [{ name: 'dev' }, { name: 'sre-lead' }, { name: 'auditor', approvers: ['sre-lead'], max_ttl: '1h' }],
    },
    tempDir('vigil-console-cert-session-'),
  );
  base = `https://127.0.0.1:${tg.ports.api}`;
  bob = await tg.issue({ user: 'bob', roles: ['sre-lead'] });
  ca = bob.creds.caCertificate;
});
afterAll(async () => {
  await tg?.stop();
});

const mtls = (f: IssuedFiles) => ({ cert: f.creds.x509Certificate, key: f.creds.x509PrivateKey });
const api = (method: string, p: string, who: { cert: string; key: string }, body?: unknown) =>
  request(`${base}${p}`, { method, ca, ...who, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });

/** `user` (no standing role) gets role auditor through an approved request and a grant certificate. */
async function grantCertificate(user: string): Promise<{ id: string; cert: { cert: string; key: string }; notAfter: string }> {
  const who = await tg.issue({ user, roles: ['dev'] });
  const filed = await api('POST', '/v1/access/requests', mtls(who), { role: 'auditor', reason: 'access review', ttl: '30m' });
  expect(filed.status).toBe(201);
  const id = filed.body.request.id;
  expect((await api('POST', `/v1/access/requests/${id}/approve`, mtls(bob), {})).status).toBe(200);
  const issued = await api('POST', `/v1/access/grants/${id}/certificate`, mtls(who), {});
  expect(issued.status).toBe(201);
  const c = issued.body.certificate;
  return { id, cert: { cert: c.x509_certificate, key: c.x509_private_key }, notAfter: c.not_after };
}

describe('console sessions of certificate sign-ins', () => {
  it('signed in with a grant certificate: the session ends at the certificate\'s notAfter, and the first call after the grant is revoked is 401 and recorded', async () => {
    const g = await grantCertificate('carol');
    const c = new ConsoleClient(base, ca, g.cert);
    const signedIn = await c.signIn();
    expect(signedIn.status).toBe(200);
    expect(signedIn.body).toMatchObject({ user: 'carol', can: { read: true } });
    // Not the console's 8 hours: the grant certificate's 30 minutes.
    expect(Date.parse(signedIn.body.expires_at)).toBeLessThanOrEqual(Date.parse(g.notAfter));
    const maxAge = Number(/Max-Age=(\d+)/.exec(String((signedIn.headers['set-cookie'] as string[])[0]))![1]);
    expect(maxAge).toBeLessThanOrEqual(30 * 60);
    expect((await c.get('/console/api/events')).status).toBe(200);

    const revoked = await api('POST', `/v1/access/grants/${g.id}/revoke`, mtls(bob), { reason: 'review finished' });
    expect(revoked.status).toBe(200);
    const after = await c.get('/console/api/events');
    expect(after.status).toBe(401);
    expect(after.body.error.message).toContain('the grant your certificate was issued for is no longer active');
    const e = await tg.waitForEvent((x) => x.type === 'console.signout' && x.actor.user === 'carol');
    expect(e).toMatchObject({ outcome: 'failure', details: { reason: 'grant_ended', method: 'cert', refused: 'GET /console/api/events' } });
    // The session is gone for good, approvals included.
    expect((await c.post('/console/api/access/requests/x/approve', {})).status).toBe(401);
  });

  it('a short-lived certificate\'s console session ends when the certificate expires', async () => {
    const short = await tg.issue({ user: 'sam', roles: ['auditor'], ttlMs: 3000 });
    const c = new ConsoleClient(base, ca, mtls(short));
    const r = await c.signIn();
    expect(r.status).toBe(200);
    expect(Date.parse(r.body.expires_at)).toBe(short.creds.notAfter.getTime());
    expect((await c.get('/console/api/me')).status).toBe(200);
    await new Promise((res) => setTimeout(res, short.creds.notAfter.getTime() - Date.now() + 200));
    expect((await c.get('/console/api/me')).status).toBe(401);
  });

  it('an open live view ends within a few seconds when the grant of the certificate it was opened with is revoked', async () => {
    const g = await grantCertificate('dora');
    const c = new ConsoleClient(base, ca, g.cert);
    expect((await c.signIn()).status).toBe(200);
    const p: Principal = { user: 'alice', roles: ['dev'], certSerial: 'a11ce02', credential: 'x509', notBefore: new Date(), notAfter: new Date(Date.now() + 3_600_000), extensions: [] };
    const h = tg.gw.services.sessions.open({ protocol: 'postgres', principal: p, target: { name: 'pg-prod', host: '127.0.0.1', port: 5432 }, source: { ip: '127.0.0.1', port: 9 }, grantIds: [] }, (reason) => h.close(reason));
    try {
      const lines: any[] = [];
      const ended = new Promise<number>((resolve, reject) => {
        https
          .get(`${base}/console/api/sessions/${h.session.id}/live?from=now`, { ca, agent: false, headers: { cookie: c.cookie!, accept: 'application/x-ndjson' } }, (res) => {
            expect(res.statusCode).toBe(200);
            let buf = '';
            res.on('data', (d) => {
              buf += d;
              for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
                lines.push(JSON.parse(buf.slice(0, i)));
                buf = buf.slice(i + 1);
              }
            });
            res.on('end', () => resolve(Date.now()));
          })
          .on('error', reject);
        setTimeout(() => reject(new Error('the live view is still open 10 s later')), 10_000).unref();
      });
      await tg.waitForEvent((x) => x.type === 'session.watch_started' && x.actor.user === 'dora' && x.outcome === 'success');
      expect((await api('POST', `/v1/access/grants/${g.id}/revoke`, mtls(bob), { reason: 'done' })).status).toBe(200);
      const revokedAt = Date.now();
      expect((await ended) - revokedAt).toBeLessThan(5000);
      expect(lines.at(-1)).toEqual({ type: 'closed', code: 1008, reason: 'console session ended' });
      const e = await tg.waitForEvent((x) => x.type === 'session.watch_ended' && x.actor.user === 'dora');
      expect(e.details).toMatchObject({ why: 'access_ended', reason: 'console_session_ended' });
    } finally {
      h.close('client_closed');
    }
  });
});

describe('console refusals before anyone is signed in are recorded', () => {
  it('an API call with no or an unknown cookie (401), and a sign-in without the console\'s header (403)', async () => {
    const before = tg.events.length;
    expect((await request(`${base}/console/api/me`, { ca })).status).toBe(401);
    expect((await request(`${base}/console/api/events`, { ca, headers: { cookie: '__Host-vigil_console=forged' } })).status).toBe(401);
    const forged = await request(`${base}/console/api/signin`, { method: 'POST', ca, ...mtls(bob) });
    expect(forged.status).toBe(403);
    // Recorded as the API records a call without a valid certificate: within the budget, not awaited.
    await tg.waitForEvent((e) => e.type === 'api.request' && e.details.code === 'VIGIL_CSRF');
    const refusals = tg.events.slice(before).filter((e) => e.type === 'api.request' && (e.details.code === 'VIGIL_CONSOLE_SIGNIN' || e.details.code === 'VIGIL_CSRF'));
    expect(refusals.map((e) => [e.details.path, e.details.status, e.details.code])).toEqual([
      ['/console/api/me', 401, 'VIGIL_CONSOLE_SIGNIN'],
      ['/console/api/events', 401, 'VIGIL_CONSOLE_SIGNIN'],
      ['/console/api/signin', 403, 'VIGIL_CSRF'],
    ]);
    expect(refusals.every((e) => e.outcome === 'failure' && e.source.ip === '127.0.0.1')).toBe(true);
  });
});
