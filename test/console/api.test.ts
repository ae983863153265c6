import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { ConsoleClient, ensureConsole, request } from '../support/console.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * The console's HTTP surface over a real gateway (real CA and mTLS, real audit log, search index and
 * SQLite state): static files and their headers, certificate sign-in into a cookie session, CSRF on every
 * change, and who may call which endpoint.
 */

let tg: TestGateway;
let base: string;
let ca: string;
const who: Record<string, IssuedFiles> = {};

async function client(name: string): Promise<ConsoleClient> {
  const c = new ConsoleClient(base, ca, { cert: who[name].creds.x509Certificate, key: who[name].creds.x509PrivateKey });
  const r = await c.signIn();
  expect(r.status).toBe(200);
  return c;
}

const target = { name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1' };

beforeAll(async () => {
  await ensureConsole();
  tg = await startTestGateway(
    {
      targets: [{ name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1', port: 1, database: 'app', user: 'x', labels: { env: 'prod' } }],
      roles: [
        { name: 'engineer' },
        { name: 'prod-access', target_labels: { env: 'prod' }, approvers: ['sre-lead'], max_ttl: '1h' },
        { name: 'db-access', target_labels: { env: 'prod' }, approvers: ['db-lead'], max_ttl: '1h' },
        { name: 'sre-lead' },
        { name: 'db-lead' },
        { name: 'auditor' },
        { name: 'admin' },
      ],
    },
    tempDir('vigil-console-api-'),
  );
  base = `https://127.0.0.1:${tg.ports.api}`;
  for (const [user, roles] of [
    ['alice', ['engineer']],
    ['bob', ['sre-lead']],
    ['dan', ['db-lead']],
    ['audrey', ['auditor']],
    ['ada', ['admin']],
  ] as const) {
    who[user] = await tg.issue({ user, roles: [...roles] });
  }
  ca = who.alice.creds.caCertificate;
  // Sessions as the proxies record them: session.start / statements / session.end through the bus.
  const ev = tg.gw.services.events;
  for (let i = 0; i < 130; i++) {
    const session_id = `S${String(i).padStart(4, '0')}`;
    const actor = { user: i % 2 ? 'alice' : 'bob', roles: ['engineer'] };
    const src = { ip: '127.0.0.1', port: 40000 + i };
    await ev.emit({ type: 'session.start', outcome: 'success', actor, source: src, target, session_id, details: {} });
    if (i % 10 === 0) await ev.emit({ type: 'db.query', outcome: 'success', actor, source: src, target, session_id, details: { sql: `SELECT ${i}`, rows_returned: 1, duration_ms: 0.5 } });
    if (i < 120) await ev.emit({ type: 'session.end', outcome: 'success', actor, source: src, target, session_id, details: { reason: 'client_closed', duration_ms: 1000 + i } });
  }
  // A recording for S0001, written through the recording store as the ssh proxy writes it.
  const w = tg.gw.services.recordings.openAsciicast('S0001', 0, { width: 80, height: 24, timestamp: 1_700_000_000 });
  w.output('$ echo hello-from-cast\r\nhello-from-cast\r\n');
  await w.close();
});

afterAll(async () => {
  await tg?.stop();
});

describe('static files', () => {
  it('index.html: strict CSP, no caching; hashed assets: precompressed, cached for a year', async () => {
    const r = await request(`${base}/console/`, { ca });
    expect(r.status).toBe(200);
    const csp = String(r.headers['content-security-policy']);
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).toContain("frame-ancestors 'none'");
    expect(r.headers['cache-control']).toBe('no-cache');
    expect(r.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // no inline script
    const js = /src="(\/console\/assets\/[^"]+\.js)"/.exec(r.text)![1];
    const a = await request(`${base}${js}`, { ca, headers: { 'accept-encoding': 'br, gzip' } });
    expect(a.status).toBe(200);
    expect(a.headers['content-encoding']).toBe('br');
    expect(a.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect((await request(`${base}/console/assets/nope.js`, { ca })).status).toBe(404);
  });
});

describe('sign-in and CSRF', () => {
  it('a client certificate becomes an HttpOnly, Secure, SameSite=Strict session cookie; no certificate, no session', async () => {
    const none = await new ConsoleClient(base, ca).signIn();
    expect(none.status).toBe(401);
    const c = new ConsoleClient(base, ca, { cert: who.audrey.creds.x509Certificate, key: who.audrey.creds.x509PrivateKey });
    const r = await c.signIn();
    expect(r.status).toBe(200);
    const cookie = String((r.headers['set-cookie'] as string[])[0]);
    expect(cookie).toMatch(/^__Host-vigil_console=[A-Za-z0-9_-]{40,};/);
    for (const attr of ['HttpOnly', 'Secure', 'SameSite=Strict', 'Path=/']) expect(cookie).toContain(attr);
    expect(r.body).toMatchObject({ user: 'audrey', roles: ['auditor'], can: { read: true } });
    await tg.waitForEvent((e) => e.type === 'console.signin' && e.actor.user === 'audrey' && e.details.method === 'cert');
    expect((await c.get('/console/api/me')).status).toBe(200);
    expect((await new ConsoleClient(base, ca).get('/console/api/me')).status).toBe(401);
    // Sign-in from a page without the console's header (a cross-site form) is refused.
    const forged = await request(`${base}/console/api/signin`, { method: 'POST', ca, cert: who.audrey.creds.x509Certificate, key: who.audrey.creds.x509PrivateKey });
    expect(forged.status).toBe(403);
  });

  it('a POST without the CSRF token, or with another session\'s, is refused', async () => {
    const c = await client('audrey');
    const other = await client('bob');
    expect((await c.post('/console/api/signout', {}, { csrf: false })).body.error.code).toBe('VIGIL_CSRF');
    expect((await c.post('/console/api/signout', {}, { csrf: other.csrf })).status).toBe(403);
    expect((await c.get('/console/api/me')).status).toBe(200);
    expect((await c.post('/console/api/signout')).status).toBe(200);
    expect((await c.get('/console/api/me')).status).toBe(401);
    await tg.waitForEvent((e) => e.type === 'console.signout' && e.actor.user === 'audrey');
  });
});

describe('authorization', () => {
  it('sessions, recordings, events and chain status are for auditors (and admins) only', async () => {
    const alice = await client('alice');
    for (const p of ['/console/api/sessions', '/console/api/sessions/S0001', '/console/api/sessions/S0001/recordings/0', '/console/api/events', '/console/api/events/export?format=csv', '/console/api/audit/status']) {
      const r = await alice.get(p);
      expect(r.status, p).toBe(403);
      expect(r.body.error.code).toBe('VIGIL_FORBIDDEN');
    }
    // Refusals of a signed-in user are on the record.
    await tg.waitForEvent((e) => e.type === 'api.request' && e.actor.user === 'alice' && e.details.path === '/console/api/audit/status');
    expect((await alice.get('/console/api/access/requests')).status).toBe(200);
  });

  it('session list: keyset pages over all sessions, newest first, with filters', async () => {
    const c = await client('audrey');
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const r = await c.get(`/console/api/sessions?limit=50${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      seen.push(...r.body.sessions.map((s: { id: string }) => s.id));
      cursor = r.body.next;
    } while (cursor);
    expect(seen.length).toBe(130);
    expect(new Set(seen).size).toBe(130);
    expect(seen[0]).toBe('S0129');
    const alices = (await c.get('/console/api/sessions?user=alice&limit=200')).body.sessions;
    expect(alices.length).toBe(65);
    expect(alices.every((s: { user: string }) => s.user === 'alice')).toBe(true);
    const live = (await c.get('/console/api/sessions?state=live')).body.sessions;
    expect(live.map((s: { id: string }) => s.id).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `S${String(120 + i).padStart(4, '0')}`));
    const s10 = (await c.get('/console/api/sessions?protocol=postgres&limit=200')).body.sessions.find((s: { id: string }) => s.id === 'S0010');
    expect(s10).toMatchObject({ statements: 1, end_reason: 'client_closed', duration_ms: 1010, target: 'pg-prod' });
    expect((await c.get('/console/api/sessions?protocol=ssh')).body.sessions).toEqual([]);
    expect((await c.get('/console/api/sessions?cursor=bogus')).status).toBe(400);
  });

  it('session detail and recording: statements transcript, Range streaming, each view recorded', async () => {
    const c = await client('audrey');
    const d = await c.get('/console/api/sessions/S0010');
    expect(d.status).toBe(200);
    expect(d.body.statements).toEqual([expect.objectContaining({ sql: 'SELECT 10', rows_returned: 1, duration_ms: 0.5, outcome: 'success' })]);
    await tg.waitForEvent((e) => e.type === 'console.view' && e.session_id === 'S0010' && e.details.view === 'session');
    const rec = await c.get('/console/api/sessions/S0001');
    expect(rec.body.recordings).toEqual([expect.objectContaining({ url: '/console/api/sessions/S0001/recordings/0' })]);
    const part = await c.get('/console/api/sessions/S0001/recordings/0', { range: 'bytes=0-9' });
    expect(part.status).toBe(206);
    expect(part.text.length).toBe(10);
    expect(part.headers['content-range']).toMatch(/^bytes 0-9\/\d+$/);
    const all = await c.get('/console/api/sessions/S0001/recordings/0');
    expect(all.status).toBe(200);
    expect(all.text).toContain('hello-from-cast');
    await tg.waitForEvent((e) => e.type === 'console.view' && e.details.view === 'recording' && e.details.range === 'bytes=0-9' && e.actor.user === 'audrey');
    expect((await c.get('/console/api/sessions/S0001/recordings/0', { range: 'bytes=99999-' })).status).toBe(416);
  });

  it('event search with the audit search filters, and exports', async () => {
    const c = await client('audrey');
    const r = await c.get('/console/api/events?type=db.query&user=bob&limit=5');
    expect(r.status).toBe(200);
    expect(r.body.events.map((e: { details: { sql: string } }) => e.details.sql)).toEqual(['SELECT 120', 'SELECT 110', 'SELECT 100', 'SELECT 90', 'SELECT 80']);
    expect(r.body.events.every((e: { type: string; actor: { user: string } }) => e.type === 'db.query' && e.actor.user === 'bob')).toBe(true);
    const csv = await c.get(r.body.exports.csv);
    expect(csv.status).toBe(200);
    expect(csv.headers['content-type']).toContain('text/csv');
    expect(csv.text.trim().split('\n').length).toBe(14); // header + all 13 (exports take the filters, not the page size)
    expect((await c.get('/console/api/events?text=%22unterminated')).status).toBe(400);
  });

  it('chain status: last signed head and a verification', async () => {
    const c = await client('audrey');
    const r = await c.get('/console/api/audit/status?verify=now');
    expect(r.status).toBe(200);
    expect(r.body.verify.records).toBeGreaterThan(250);
    expect(['complete', 'unwitnessed', 'unsealed-tail']).toContain(r.body.verify.status);
  });

  it('live view: auditors and admins only; terminate: admins only, with the CSRF token and a reason; refusals recorded', async () => {
    const alice = await client('alice');
    const audrey = await client('audrey');
    const ada = await client('ada');
    // S0125 has no session.end, but no such session runs in this gateway: nothing to watch or end.
    const w = await alice.get('/console/api/sessions/S0125/live');
    expect(w.status).toBe(403);
    const refusedWatch = await tg.waitForEvent((e) => e.type === 'session.watch_started' && e.outcome === 'failure' && e.actor.user === 'alice');
    expect(refusedWatch.source.via).toBe('console');
    expect((await audrey.get('/console/api/sessions/S0125/live')).status).toBe(404);
    expect((await ada.get('/console/api/sessions/S0125/live')).status).toBe(404);
    for (const [c, user] of [[audrey, 'audrey'], [alice, 'alice']] as const) {
      const k = await c.post('/console/api/sessions/S0125/kill', { reason: 'INC-9' });
      expect(k.status, user).toBe(403);
      expect(k.body.error.code).toBe('VIGIL_FORBIDDEN');
      const ev = await tg.waitForEvent((e) => e.type === 'session.kill' && e.outcome === 'failure' && e.actor.user === user);
      expect(ev.source.via).toBe('console');
      expect(ev.details.session_id).toBe('S0125');
    }
    const noCsrf = await ada.post('/console/api/sessions/S0125/kill', { reason: 'INC-9' }, { csrf: false });
    expect(noCsrf.status).toBe(403);
    expect(noCsrf.body.error.code).toBe('VIGIL_CSRF');
    await tg.waitForEvent((e) => e.type === 'api.request' && e.actor.user === 'ada' && e.details.code === 'VIGIL_CSRF');
    expect((await ada.post('/console/api/sessions/S0125/kill', {})).status).toBe(400);
    expect((await ada.post('/console/api/sessions/S0125/kill', { reason: 'INC-9' })).status).toBe(404);
    // The session page offers the live view only for a session running here.
    expect((await audrey.get('/console/api/sessions/S0125')).body.links).toEqual([]);
  });

  it('access-review report: auditors and admins only, for the period asked, each view recorded with its hash', async () => {
    const alice = await client('alice');
    expect((await alice.get('/console/api/reports/access?since=1h')).status).toBe(403);
    const c = await client('audrey');
    const j = await c.get('/console/api/reports/access?since=1h&format=json');
    expect(j.status).toBe(200);
    expect(j.body.kind).toBe('vigil.access-review');
    expect(j.body.summary.sessions).toBeGreaterThan(0);
    expect(Date.parse(j.body.period.until) - Date.parse(j.body.period.since)).toBe(3_600_000);
    const ev = await tg.waitForEvent((e) => e.type === 'console.view' && e.details.view === 'report' && e.actor.user === 'audrey');
    expect(ev.details).toMatchObject({ report: 'access', format: 'json', sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    const h = await c.get('/console/api/reports/access?since=1h');
    expect(h.status).toBe(200);
    expect(h.headers['content-type']).toContain('text/html');
    expect(String(h.headers['content-security-policy'])).toMatch(/^sandbox allow-scripts;.*frame-ancestors 'self'/);
    expect(h.text).toContain('<h1>Access review');
    expect((await c.get('/console/api/reports/access?format=pdf')).status).toBe(400);
    // Refusals of the framed HTML report are pages the frame can show.
    const bad = await c.get('/console/api/reports/access?since=1h&until=2h');
    expect(bad.status).toBe(400);
    expect(bad.headers['content-type']).toContain('text/html');
    expect(bad.text).toContain('Report not available: until is before since');
    expect((await c.get('/console/api/reports/access?since=1h&until=2h&format=json')).body.error.code).toBe('VIGIL_BAD_REQUEST');
  });

  it('approvers decide only for the roles they approve; the requester never; each decision is recorded', async () => {
    const alice = await client('alice');
    const bob = await client('bob');
    const dan = await client('dan');
    const ask = (role: string) => tg.gw.services.store.listAccess({ state: 'pending' }).then((l) => l.find((x) => x.role === role));
    // Alice asks through the API of record (the access service), as `vigil access request` would.
    const access = await import('../../src/access/service.ts');
    const svc = access.createAccessService({ config: tg.gw.services.config, store: tg.gw.services.store, events: tg.gw.services.events });
    await svc.request({ user: 'alice', roles: ['engineer'], source: { ip: '127.0.0.1' } }, { role: 'prod-access', reason: 'INC-7' });
    const req = (await ask('prod-access'))!;
    // dan approves db-access, not prod-access: refused by the access service and recorded.
    const refused = await dan.post(`/console/api/access/requests/${req.id}/approve`, { comment: 'sure' });
    expect(refused.status).toBe(403);
    await tg.waitForEvent((e) => e.type === 'access.refused' && e.actor.user === 'dan' && e.source.via === 'console');
    // The requester cannot approve their own request.
    expect((await alice.post(`/console/api/access/requests/${req.id}/approve`, {})).status).toBe(403);
    // bob approves, but not without the CSRF token.
    expect((await bob.post(`/console/api/access/requests/${req.id}/approve`, { comment: 'ok' }, { csrf: false })).status).toBe(403);
    expect((await tg.gw.services.store.getAccess(req.id))!.state).toBe('pending');
    const ok = await bob.post(`/console/api/access/requests/${req.id}/approve`, { comment: 'ok for INC-7' });
    expect(ok.status).toBe(200);
    expect(ok.body.request.state).toBe('active');
    const approved = await tg.waitForEvent((e) => e.type === 'access.approved' && e.actor.user === 'bob');
    expect(approved.source.via).toBe('console');
    // dan sees the history of requests for his roles only; bob sees this one.
    expect((await bob.get('/console/api/access/requests')).body.requests.map((r: { id: string }) => r.id)).toContain(req.id);
    expect((await dan.get('/console/api/access/requests')).body.requests.map((r: { id: string }) => r.id)).not.toContain(req.id);
  });
});
