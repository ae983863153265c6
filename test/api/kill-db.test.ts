import { spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { startPostgres, clientEnv, type PostgresHandle } from '../support/postgres.ts';
import { startMariadb, type MariadbHandle } from '../support/mariadb.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * Kill and watch of live database sessions with the stock clients: psql gets FATAL 57P01 "terminated by
 * <admin>: <reason>", the mariadb client ERROR 1927; a watcher (an auditor) tails a psql session's
 * statements. Only administrators kill: the auditor, an approver and the session's own user are refused
 * (403, each refusal a session.kill failure) and the session runs on.
 */

let pg: PostgresHandle;
let maria: MariadbHandle;
let tg: TestGateway;
let alice: IssuedFiles, audrey: IssuedFiles, bob: IssuedFiles, ada: IssuedFiles;
const MYSQL_PASSWORD = 'my-app-pass';

beforeAll(async () => {
  [pg, maria] = await Promise.all([startPostgres(), startMariadb()]);
  await maria.query(`CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY '${MYSQL_PASSWORD}'; GRANT ALL ON *.* TO 'app'@'127.0.0.1'`);
  const base = tempDir('vigil-kill-');
  const secret = path.join(base, 'mysql.pass');
  fs.writeFileSync(secret, MYSQL_PASSWORD, { mode: 0o600 });
  tg = await startTestGateway(
    {
      ssh: { enabled: false },
      targets: [
        { name: 'pg1', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user' },
        { name: 'my1', protocol: 'mysql', host: '127.0.0.1', port: maria.port, user: 'app', password: { file: secret } },
      ],
      roles: [{ name: 'engineer', targets: ['*'], logins: ['*'] }, { name: 'prod', targets: ['*'], approvers: ['sre-lead'] }, { name: 'sre-lead' }],
    },
    base,
  );
  [alice, audrey, bob, ada] = await Promise.all([
    tg.issue({ user: 'alice', roles: ['engineer'] }),
    tg.issue({ user: 'audrey', roles: ['auditor'] }),
    tg.issue({ user: 'bob', roles: ['sre-lead'] }),
    tg.issue({ user: 'ada', roles: ['admin'] }),
  ]);
}, 120_000);

afterAll(async () => {
  await tg?.stop();
  await Promise.all([pg?.stop(), maria?.stop()]);
});

function client(cmd: string, args: string[], env?: NodeJS.ProcessEnv) {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  child.stdin.on('error', () => {});
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  void exited.then(() => clearTimeout(timer));
  return { child, stdout: () => out, stderr: () => err, exited };
}

function kill(id: string, who: IssuedFiles, reason: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `https://127.0.0.1:${tg.ports.api}/v1/sessions/${id}/kill`,
      { method: 'POST', agent: false, ca: fs.readFileSync(who.ca), cert: fs.readFileSync(who.crt), key: fs.readFileSync(who.key), headers: { 'content-type': 'application/json' } },
      (res) => {
        let t = '';
        res.on('data', (d) => (t += d));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(t) }));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify({ reason }));
  });
}

/** `who` may not kill: 403, the refusal recorded as session.kill failure with who tried, and the session still runs. */
async function refusedKill(id: string, who: IssuedFiles, user: string) {
  const r = await kill(id, who, `not mine to end (${user})`);
  expect(r).toMatchObject({ status: 403, body: { error: { code: 'VIGIL_FORBIDDEN', message: 'Only administrators may terminate sessions.' } } });
  const ev = await tg.waitForEvent((e) => e.type === 'session.kill' && e.outcome === 'failure' && e.actor.user === user && e.details.session_id === id);
  expect(ev.details).toMatchObject({ code: 'VIGIL_FORBIDDEN', session_user: 'alice' });
  expect(ev.source.via).toBe('api');
  expect(tg.gw.services.sessions.get(id)).toBeDefined();
}

const liveSession = (user: string, protocol: string) =>
  waitFor(() => tg.gw.services.sessions.list().find((s) => s.principal.user === user && s.protocol === protocol), 15_000, `live ${protocol} session`);

describe('kill and watch of live database sessions', () => {
  it('psql: an auditor watches the statements but may not kill, nor may an approver; an admin\'s kill gives FATAL 57P01 naming them and the reason', async () => {
    // psql reading statements from a pipe runs each as its line arrives; the session stays open meanwhile.
    const c = client('psql', ['-X', '-qAt', '-v', 'VERBOSITY=verbose', '-d', `host=127.0.0.1 port=${tg.ports.postgres} dbname=pg1 user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}`], clientEnv());
    c.child.stdin.write('SELECT 1;\n');
    const s = await liveSession('alice', 'postgres');

    const msgs: any[] = [];
    const ws = new WebSocket(`wss://127.0.0.1:${tg.ports.api}/v1/sessions/${s.id}/watch`, { ca: fs.readFileSync(audrey.ca), cert: fs.readFileSync(audrey.crt), key: fs.readFileSync(audrey.key) });
    ws.on('message', (d) => msgs.push(JSON.parse(d.toString())));
    const closed = new Promise<void>((r) => ws.once('close', () => r()));
    await new Promise<void>((r, j) => ws.once('open', () => r()).once('error', j));
    await waitFor(() => msgs.length > 0, 5000, 'session message');
    expect(msgs[0]).toMatchObject({ type: 'session', mode: 'statements', session: { id: s.id, user: 'alice', protocol: 'postgres' } });

    c.child.stdin.write('SELECT 40 + 2 AS answer;\n');
    await waitFor(() => c.stdout().includes('42'), 10_000, 'psql answer');
    const st = await waitFor(() => msgs.find((m) => m.type === 'statement' && m.event.type === 'db.query' && String(m.event.details.sql).includes('40 + 2')), 10_000, 'statement in the watch');
    expect(st.event).toMatchObject({ session_id: s.id, outcome: 'success' });

    c.child.stdin.write('SELECT pg_sleep(60);\n');
    // The server says the sleep is running.
    await waitFor(() => pg.psql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(60);'", 'postgres').trim() === '1', 30_000, 'sleep running');
    await refusedKill(s.id, audrey, 'audrey');
    await refusedKill(s.id, bob, 'bob');
    expect(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(60);'", 'postgres').trim()).toBe('1');
    const r = await kill(s.id, ada, 'INC-5 runaway sleep');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ ended: true, killed: { id: s.id, user: 'alice', protocol: 'postgres' } });
    await c.exited;
    expect(c.stderr()).toContain('FATAL:  57P01: terminated by ada: INC-5 runaway sleep');
    const end = await tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === s.id);
    expect(end.details.reason).toBe('terminated');
    expect(tg.events.find((e) => e.type === 'session.kill' && e.outcome === 'success' && e.details.session_id === s.id)).toMatchObject({ actor: { user: 'ada' }, details: { reason: 'INC-5 runaway sleep', session_protocol: 'postgres' } });
    await closed;
    expect(msgs.at(-1)).toEqual({ type: 'end', reason: 'terminated' });
  }, 60_000);

  it('mariadb: the session\'s own user and an auditor may not kill; an admin\'s kill gives ERROR 1927 (70100) naming them', async () => {
    const c = client('mariadb', [
      '--no-defaults', '--protocol=TCP', '-h', '127.0.0.1', '-P', String(tg.ports.mysql), '-u', 'my1',
      `--ssl-ca=${alice.ca}`, `--ssl-cert=${alice.crt}`, `--ssl-key=${alice.key}`, '--ssl-verify-server-cert',
      '--batch', '--skip-column-names', '-e', 'SELECT SLEEP(60)',
    ]);
    const s = await liveSession('alice', 'mysql');
    await tg.waitForEvent((e) => e.session_id === s.id && e.type === 'session.start');
    await refusedKill(s.id, alice, 'alice');
    await refusedKill(s.id, audrey, 'audrey');

    const r = await kill(s.id, ada, 'INC-6 lock contention');
    expect(r.status).toBe(200);
    expect(await c.exited).not.toBe(0);
    expect(c.stderr()).toMatch(/ERROR 1927 \(70100\).*terminated by ada: INC-6 lock contention/);
    const end = await tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === s.id);
    expect(end.details.reason).toBe('terminated');
  }, 60_000);
});
