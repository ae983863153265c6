import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import net from 'node:net';
import { startWorld, type PgWorld } from './helpers.ts';
import { encodeSslRequest, GSSENC_REQUEST_CODE } from '../../proxies/postgres/frontend.ts';

let w: PgWorld;
beforeAll(async () => {
  w = await startWorld();
});
afterAll(async () => {
  await w?.stop();
});

describe('postgres proxy: login', () => {
  it('psql with a client certificate (verify-full) reaches the scram target and is recorded', async () => {
    const r = await w.psql(['-qAt', '-c', 'SELECT current_user, current_database()']);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('scram_user|app');
    const start = await w.tg.waitForEvent((e) => e.type === 'session.start' && e.target.name === 'pg');
    expect(start.actor.user).toBe('alice');
    const q = await w.tg.waitForEvent((e) => e.type === 'db.query' && e.details.sql === 'SELECT current_user, current_database()');
    expect(q.details).toMatchObject({ protocol: 'simple', rows_returned: 1, command: 'SELECT' });
    const end = await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === start.session_id);
    expect(end.details).toMatchObject({ reason: 'client_closed', statements: 1 });
    expect(end.details.bytes_to_client).toBeGreaterThan(0);
  });

  it.each([
    ['pg-md5', 'md5_user'],
    ['pg-clear', 'clear_user'],
    ['pg-trust', 'trust_user'],
  ])('logs in to %s with the backend method of %s', async (target, user) => {
    const r = await w.psql(['-qAt', '-c', 'SELECT current_user, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())'], { conn: w.conn(target) });
    expect(r.stderr).toBe('');
    // Cleartext goes to the backend only over verified TLS.
    expect(r.stdout.trim()).toBe(`${user}|${target === 'pg-clear' ? 't' : 'f'}`);
  });

  it('selects another database on the same target with TARGET/DBNAME, checked by the role', async () => {
    const r = await w.psql(['-qAt', '-c', 'SELECT current_database()'], { conn: w.conn('pg/postgres') });
    expect(r.stdout.trim()).toBe('postgres');
    const denied = await w.psql(['-c', 'SELECT 1'], { conn: w.conn('pg/template1') });
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/Database "template1" is not allowed/);
    await w.tg.waitForEvent((e) => e.type === 'auth.failure' && e.details.reason === 'database_not_allowed');
  });

  it('passes startup parameters through, except blocked ones (replication is refused)', async () => {
    const r = await w.psql(['-qAt', '-c', "SELECT current_setting('application_name'), current_setting('search_path')"], { conn: w.conn('pg', "application_name=vigil-test options='-c search_path=custom'") });
    expect(r.stderr).toBe('');
    // The backend's application_name names the engineer (target template, default `{user} via {client_app}`).
    expect(r.stdout.trim()).toBe('alice via vigil-test|custom');
    const rep = await w.psql(['-c', 'IDENTIFY_SYSTEM'], { conn: w.conn('pg', 'replication=database') });
    expect(rep.code).not.toBe(0);
    expect(rep.stderr).toMatch(/replication connections are not allowed/);
  });

  it('logs in with a token as password when no client certificate is presented', async () => {
    const { token } = await w.tg.gw.services.identity.issueToken({ user: 'alice', roles: ['dba'] });
    const conn = `host=127.0.0.1 port=${w.port} dbname=pg user=alice sslmode=verify-full sslrootcert=${w.alice.ca}`;
    const r = await w.psql(['-qAt', '-c', 'SELECT 42'], { conn, env: { PGPASSWORD: token } });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('42');
    await w.tg.waitForEvent((e) => e.type === 'auth.success' && e.details.method === 'token');
    const bad = await w.psql(['-c', 'SELECT 1'], { conn, env: { PGPASSWORD: 'not-a-token' } });
    expect(bad.code).not.toBe(0);
    await w.tg.waitForEvent((e) => e.type === 'auth.failure' && e.details.method === 'token');
  });

  it('refuses a startup user that is not the certificate identity', async () => {
    const r = await w.psql(['-c', 'SELECT 1'], { conn: w.conn('pg').replace('user=alice', 'user=postgres') });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/does not match your vigil identity "alice"/);
    await w.tg.waitForEvent((e) => e.type === 'auth.failure' && e.details.reason === 'principal_mismatch');
  });

  it('refuses plaintext with a clear error unless the target allows it (development)', async () => {
    const conn = `host=127.0.0.1 port=${w.port} dbname=pg user=alice sslmode=disable`;
    const r = await w.psql(['-c', 'SELECT 1'], { conn });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/requires an encrypted connection/);
    await w.tg.waitForEvent((e) => e.type === 'auth.failure' && e.details.detail === 'plaintext startup refused');
    const { token } = await w.tg.gw.services.identity.issueToken({ user: 'alice', roles: ['dba'] });
    const dev = await w.psql(['-qAt', '-c', 'SELECT (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())'], { conn: conn.replace('dbname=pg', 'dbname=pg-dev'), env: { PGPASSWORD: token } });
    expect(dev.stderr).toBe('');
    expect(dev.stdout.trim()).toBe('f');
  });

  it('answers GSSENCRequest with N and continues (gssencmode=prefer)', async () => {
    // libpq only sends GSSENCRequest when built with GSSAPI and credentials exist; send it by hand.
    const s = net.connect(w.port, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    s.write(encodeSslRequest(GSSENC_REQUEST_CODE));
    const answer = await new Promise<Buffer>((r) => s.once('data', r));
    expect(answer.toString()).toBe('N');
    s.write(encodeSslRequest());
    expect((await new Promise<Buffer>((r) => s.once('data', r))).toString()).toBe('S');
    s.destroy();
  });

  it('closes the connection when bytes follow SSLRequest before the TLS handshake (CVE-2021-23214)', async () => {
    const s = net.connect(w.port, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    // SSLRequest and an injected plaintext Query in one write.
    s.write(Buffer.concat([encodeSslRequest(), Buffer.from('Q\0\0\0\x0dSELECT 1\0', 'latin1')]));
    const got: Buffer[] = [];
    s.on('data', (d) => got.push(d));
    await new Promise((r) => s.once('close', r));
    expect(Buffer.concat(got).length).toBe(0);
  });

  it('refuses a certificate from another CA, an expired one and a revoked one, with auth.failure events', async () => {
    // Another vigil instance = another CA.
    const other = await startWorldCa();
    const wrong = await w.psql(['-c', 'SELECT 1'], { conn: w.conn('pg').replace(w.alice.crt, other.crt).replace(w.alice.key, other.key) });
    expect(wrong.code).not.toBe(0);
    await w.tg.waitForEvent((e) => e.type === 'auth.failure' && e.details.reason === 'wrong_ca');

    const short = await w.tg.issue({ user: 'alice', roles: ['dba'], ttlMs: 1500 });
    await new Promise((r) => setTimeout(r, 2500));
    {
      const expired = await w.psql(['-c', 'SELECT 1'], { conn: w.conn('pg').replace(w.alice.crt, short.crt).replace(w.alice.key, short.key) });
      expect(expired.code).not.toBe(0);
      await w.tg.waitForEvent((e) => e.type === 'auth.failure' && e.details.reason === 'expired');
    }

    const revoked = await w.tg.issue({ user: 'alice', roles: ['dba'] });
    await w.tg.gw.services.store.revoke({ serial: revoked.creds.serial, reason: 'test', by: 'test', time: new Date().toISOString() });
    await (w.tg.gw.services.store as unknown as { refresh?: () => Promise<void> }).refresh?.();
    const rr = await w.psql(['-c', 'SELECT 1'], { conn: w.conn('pg').replace(w.alice.crt, revoked.crt).replace(w.alice.key, revoked.key) });
    expect(rr.code).not.toBe(0);
    await w.tg.waitForEvent((e) => e.type === 'auth.failure' && e.details.reason === 'revoked');
    await other.stop();
  });

  it('reports a backend that is down with a clear error and an event', async () => {
    const r = await w.psql(['-c', 'SELECT 1'], { conn: w.conn('pg-down') });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/vigil could not connect to target "pg-down"/);
    const end = await w.tg.waitForEvent((e) => e.type === 'session.end' && e.target.name === 'pg-down');
    expect(end.details.reason).toBe('backend_error');
  });
});

async function startWorldCa() {
  const { startTestGateway } = await import('../support/gateway.ts');
  const g = await startTestGateway({});
  const f = await g.issue({ user: 'alice', roles: ['dba'] });
  return { crt: f.crt, key: f.key, stop: () => g.stop() };
}

