import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { describe, it, expect, afterAll } from 'vitest';
import pg from 'pg';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPostgres, clientEnv, type PostgresHandle } from '../support/postgres.ts';
import { segmentName } from '../../recorder/audit/record.ts';
import { run, serverStatements, STATEMENT_LOG } from './helpers.ts';
import { waitFor } from '../support/tmp.ts';

/**
 * Issue #14 in the Postgres proxy: a statement is forwarded only if it can be recorded (fail closed);
 * with `audit.durability: strict` its intent record (db.query.start) is in the log before the server
 * gets its first byte.
 */
async function world(audit: Record<string, unknown>, user = 'trust_user') {
  const pg = await startPostgres({ conf: STATEMENT_LOG });
  const tg = await startTestGateway({
    audit,
    targets: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user }],
    roles: [{ name: 'dba', targets: ['pg'] }],
  });
  const alice = await tg.issue({ user: 'alice', roles: ['dba'] });
  const conn = `host=127.0.0.1 port=${tg.ports.postgres} dbname=pg user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}`;
  return { pg, tg, conn, alice };
}

/** An interactive psql fed line by line, as a person at a terminal would. */
function livePsql(conn: string) {
  const child = spawn('psql', ['-X', '-At', '-d', conn], { env: clientEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exit = new Promise<number | null>((r) => child.on('close', r));
  return { child, exit, stdout: () => stdout, stderr: () => stderr, send: (line: string) => child.stdin.write(line + '\n') };
}

describe('postgres proxy: fail closed', () => {
  let pg: PostgresHandle;
  let tg: TestGateway;
  afterAll(async () => {
    await tg?.stop();
    await pg?.stop();
  });

  it('refuses the next statement of an idle live session once the log is unwritable; PostgreSQL never sees it', async () => {
    ({ pg, tg } = await world({ segment_max_bytes: 4096 }).then((x) => ((conn = x.conn), x)));
    pg.psql('CREATE TABLE audited (v text); GRANT ALL ON audited TO trust_user');
    const live = livePsql(conn);
    live.send('SELECT 41 + 1;');
    await waitFor(() => live.stdout().includes('42'), 10_000, 'the live session to answer');

    // Every segment the writer could rotate to next is a link to a full device (as in test/core/fail-closed).
    const auditDir = path.join(tg.dataDir, 'audit');
    for (let seq = 2; seq < 2000; seq++) {
      const p = path.join(auditDir, segmentName(seq, new Date()));
      if (!fs.existsSync(p)) fs.symlinkSync('/dev/full', p);
    }
    await waitFor(async () => {
      await run('psql', ['-X', '-At', '-d', conn, '-c', `select '${'x'.repeat(2000)}'`]);
      return !tg.gw.services.events.healthy;
    }, 30_000, 'the audit log to fail');

    live.send("INSERT INTO audited VALUES ('must-not-run');");
    live.child.stdin.end();
    // Hang guard: without fail-closed the INSERT runs (its record fails later) and psql stays connected.
    const code = await Promise.race([live.exit, new Promise((r) => setTimeout(() => r('still running'), 15_000))]);
    live.child.kill('SIGKILL');
    expect(code).not.toBe(0);
    expect(live.stderr()).toMatch(/audit log unavailable/);
    expect(pg.psql('SELECT count(*) FROM audited')).toBe('0');
    // The server's own statement log: the refused statement never arrived.
    const seen = serverStatements(pg, 'trust_user').map((s) => s.sql);
    expect(seen).toContain('SELECT 41 + 1;');
    expect(seen.some((s) => s.includes('must-not-run'))).toBe(false);
    await waitFor(() => tg.gw.services.sessions.size === 0, 5000, 'the session to end');
  });
});
let conn = '';

describe('postgres proxy: strict durability', () => {
  let server: PostgresHandle;
  let tg: TestGateway;
  afterAll(async () => {
    await tg?.stop();
    await server?.stop();
  });

  it('writes the intent record before the server runs the statement (the statement reads it from the log)', async () => {
    // The superuser login lets the statement read the audit segment with pg_read_file.
    const x = await world({ durability: 'strict', long_running_after: '1s' }, 'postgres');
    ({ pg: server, tg } = x);
    await run('psql', ['-X', '-At', '-d', x.conn, '-c', 'SELECT 1']);
    const auditDir = path.join(tg.dataDir, 'audit');
    const seg = fs.readdirSync(auditDir).filter((n) => n.startsWith('seg-')).sort().pop()!;
    const segPath = path.join(auditDir, seg);
    // The server runs as another OS user: let it read the segment (and the directories above it).
    for (let d = auditDir; d !== path.dirname(d); d = path.dirname(d)) fs.chmodSync(d, fs.statSync(d).mode | 0o005);
    fs.chmodSync(segPath, 0o644);

    const marker = `intent-${Date.now()}`;
    const sql = `SELECT strpos(pg_read_file('${segPath}'), '${marker}') > 0 AS intent_on_disk`;
    const simple = await run('psql', ['-X', '-At', '-d', x.conn, '-c', sql]);
    expect(simple.stderr).toBe('');
    expect(simple.stdout.trim()).toBe('t');

    // Extended protocol (a driver's Parse/Bind/Execute/Sync in one write): the intent is taken at Execute.
    const marker2 = `intent-ext-${Date.now()}`;
    const client = new pg.Client({
      host: '127.0.0.1', port: tg.ports.postgres, database: 'pg', user: 'alice',
      ssl: { ca: fs.readFileSync(x.alice.ca), cert: fs.readFileSync(x.alice.crt), key: fs.readFileSync(x.alice.key), servername: 'localhost' },
    });
    await client.connect();
    const ext = await client.query(`SELECT strpos(pg_read_file($1), '${marker2}') > 0 AS seen`, [segPath]);
    await client.end();
    expect(ext.rows[0].seen).toBe(true);
    const intent = tg.events.find((e) => e.type === 'db.query.start' && String(e.details.sql).includes(marker2))!;
    expect(intent.details).toMatchObject({ announced: 'before_forward', protocol: 'extended', params: [segPath] });
    const done = await tg.waitForEvent((e) => e.type === 'db.query' && String(e.details.sql).includes(marker2));
    expect(tg.events.indexOf(intent)).toBeLessThan(tg.events.indexOf(done));

    // In strict mode the intent stands for the long-running notice: one db.query.start per statement.
    await run('psql', ['-X', '-At', '-d', x.conn, '-c', 'SELECT pg_sleep(1.6)']);
    expect(tg.events.filter((e) => e.type === 'db.query.start' && e.details.sql === 'SELECT pg_sleep(1.6)').length).toBe(1);
  });
});
