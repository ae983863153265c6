import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import pg from 'pg';
import { startWorld, run, RawClient, type PgWorld } from './helpers.ts';
import { F, cstr, int16, int32, encodeMessage } from '../../proxies/postgres/frontend.ts';
import { clientEnv } from '../support/postgres.ts';
import { waitFor } from '../support/tmp.ts';

let w: PgWorld;
beforeAll(async () => {
  w = await startWorld();
  w.pg.psql('CREATE TABLE items (id int PRIMARY KEY, name text, password text); ALTER TABLE items OWNER TO scram_user');
  w.pg.psql("INSERT INTO items VALUES (1, 'a', NULL), (2, 'b', NULL)");
});
afterAll(async () => {
  await w?.stop();
});

const pgClient = (extra: Partial<pg.ClientConfig> = {}) =>
  new pg.Client({
    host: '127.0.0.1',
    port: w.port,
    database: 'pg',
    user: 'alice',
    ssl: { ca: fs.readFileSync(w.alice.ca), cert: fs.readFileSync(w.alice.crt), key: fs.readFileSync(w.alice.key), servername: 'localhost' },
    ...extra,
  });

describe('postgres proxy: queries and recording', () => {
  it('records each statement of a multi-statement psql -c with its own result', async () => {
    const r = await w.psql(['-qAt', '-c', "SELECT 1; INSERT INTO items VALUES (3, 'c', NULL), (4, 'd', NULL); SELECT * FROM items WHERE id > 0; SELECT 1/0; SELECT 'never'"]);
    expect(r.stderr).toMatch(/division by zero/);
    const qs = await waitFor(() => {
      const found = w.queries((e) => typeof e.details.sql === 'string' && (e.details.sql as string).includes('items') || e.details.sql === 'SELECT 1/0');
      return found.length >= 3 ? found : undefined;
    });
    const byText = Object.fromEntries(qs.map((e) => [e.details.sql as string, e]));
    expect(byText["INSERT INTO items VALUES (3, 'c', NULL), (4, 'd', NULL)"].details).toMatchObject({ command: 'INSERT', rows_affected: 2, protocol: 'simple' });
    expect(byText['SELECT * FROM items WHERE id > 0'].details).toMatchObject({ command: 'SELECT', rows_returned: 4 });
    const failed = byText['SELECT 1/0'];
    expect(failed.outcome).toBe('failure');
    expect(failed.details).toMatchObject({ sqlstate: '22012', error: 'division by zero' });
    expect(w.queries((e) => e.details.sql === "SELECT 'never'")).toHaveLength(0);
  });

  it('psql \\copy in both directions records direction, rows and bytes (not the data)', async () => {
    const file = path.join(w.base, 'items.csv');
    fs.writeFileSync(file, '10,x,\n11,y,\n12,z,\n');
    const into = await w.psql(['-c', `\\copy items FROM '${file}' WITH (FORMAT csv)`]);
    expect(into.stderr).toBe('');
    const out = path.join(w.base, 'out.csv');
    const from = await w.psql(['-c', `\\copy (SELECT * FROM items WHERE id >= 10 ORDER BY id) TO '${out}' WITH (FORMAT csv)`]);
    expect(from.stderr).toBe('');
    expect(fs.readFileSync(out, 'utf8')).toBe('10,x,\n11,y,\n12,z,\n');
    const copyIn = await w.tg.waitForEvent((e) => e.type === 'db.query' && (e.details.copy as { direction?: string })?.direction === 'in');
    expect(copyIn.details.copy).toEqual({ direction: 'in', rows: 3, bytes: 18 });
    const copyOut = await w.tg.waitForEvent((e) => e.type === 'db.query' && (e.details.copy as { direction?: string })?.direction === 'out');
    expect(copyOut.details.copy).toEqual({ direction: 'out', rows: 3, bytes: 18 });
    expect(JSON.stringify(copyIn)).not.toContain('10,x');
  });

  it('node-postgres: text and binary parameters, named statements, and a pipelined batch matched in order', async () => {
    const c = pgClient();
    await c.connect();
    const r1 = await c.query('SELECT $1::int + 1 AS n, $2::text AS t', [41, 'hello']);
    expect(r1.rows).toEqual([{ n: 42, t: 'hello' }]);
    const r2 = await c.query({ name: 'byid', text: 'SELECT name FROM items WHERE id = $1', values: [1] });
    expect(r2.rows).toEqual([{ name: 'a' }]);
    await c.query({ name: 'byid', text: 'SELECT name FROM items WHERE id = $1', values: [2] });
    // Buffers are sent in binary format.
    const r3 = await c.query('SELECT length($1::bytea) AS l', [Buffer.from([0xde, 0xad, 0xbe, 0xef])]);
    expect(r3.rows[0].l).toBe(4);
    // Pipelined: queued queries are written without waiting for results.
    const batch = await Promise.all([1, 2, 3, 4, 5].map((i) => c.query('SELECT $1::int * 10 AS v', [i])));
    expect(batch.map((b) => b.rows[0].v)).toEqual([10, 20, 30, 40, 50]);
    await c.query('SELECT nonexistent_column FROM items WHERE id = $1', [1]).catch(() => {});
    await c.end();

    const ext = await waitFor(() => {
      const found = w.queries((e) => e.details.protocol === "extended");
      return found.length >= 10 ? found : undefined;
    });
    const first = ext.find((e) => e.details.sql === 'SELECT $1::int + 1 AS n, $2::text AS t')!;
    expect(first.details.params).toEqual(['41', 'hello']);
    const named = ext.filter((e) => e.details.statement === 'byid');
    expect(named.map((e) => e.details.params)).toEqual([['1'], ['2']]);
    const bin = ext.find((e) => e.details.sql === 'SELECT length($1::bytea) AS l')!;
    expect(bin.details.params).toEqual(['\\xdeadbeef']);
    const piped = ext.filter((e) => e.details.sql === 'SELECT $1::int * 10 AS v');
    expect(piped.map((e) => e.details.params)).toEqual([['1'], ['2'], ['3'], ['4'], ['5']]);
    expect(piped.every((e) => e.details.rows_returned === 1)).toBe(true);
    const bad = ext.find((e) => e.details.sql === 'SELECT nonexistent_column FROM items WHERE id = $1')!;
    expect(bad.outcome).toBe('failure');
    expect(bad.details.sqlstate).toBe('42703');
  });

  it('decodes binary parameters of common types and records suspended portals', async () => {
    // A hand-built extended exchange: Parse with types, Bind with binary values, Execute with a row limit.
    const c = await RawClient.connect(w);
    const int8 = Buffer.alloc(8);
    int8.writeBigInt64BE(-5n);
    const f8 = Buffer.alloc(8);
    f8.writeDoubleBE(2.5);
    const uuid = Buffer.from('0123456789abcdef0123456789abcdef', 'hex');
    const values = [int8, f8, Buffer.from([1]), uuid];
    const sql = 'SELECT g FROM generate_series(1, 5) g WHERE $1::int8 < 0 AND $2::float8 > 0 AND $3::bool AND $4::uuid IS NOT NULL';
    const got = await c.roundTrip(
      Buffer.concat([
        encodeMessage(F.Parse, Buffer.concat([cstr('typed'), cstr(sql), int16(4), int32(20), int32(701), int32(16), int32(2950)])),
        encodeMessage(F.Bind, Buffer.concat([cstr('cur'), cstr('typed'), int16(1), int16(1), int16(4), ...values.flatMap((v) => [int32(v.length), v]), int16(0)])),
        encodeMessage(F.Execute, Buffer.concat([cstr('cur'), int32(2)])),
        encodeMessage(F.Execute, Buffer.concat([cstr('cur'), int32(10)])),
        encodeMessage(F.Sync, Buffer.alloc(0)),
      ]),
    );
    expect(got.map((m) => m.type).join('')).toBe('12DDsDDDCZ');
    c.close();
    const recs = await waitFor(() => {
      const f = w.queries((e) => e.details.portal === 'cur');
      return f.length >= 2 ? f : undefined;
    });
    expect(recs[0].details).toMatchObject({ suspended: true, rows_returned: 2, params: ['-5', '2.5', 'true', '01234567-89ab-cdef-0123-456789abcdef'] });
    expect(recs[1].details).toMatchObject({ rows_returned: 3, command: 'SELECT' });
    expect(recs[1].details.suspended).toBeUndefined();
  });

  it('masks passwords in ALTER ROLE … PASSWORD and parameters of secret columns', async () => {
    const r = await w.psql(['-c', "ALTER ROLE scram_user PASSWORD 'scr4m-pass'"]);
    expect(r.stderr).toBe('');
    const c = pgClient();
    await c.connect();
    await c.query('INSERT INTO items (id, name, password) VALUES ($1, $2, $3)', [20, 'n', 'hunter2']);
    await c.query("UPDATE items SET password = 'hunter3' WHERE id = 20");
    await c.end();
    const alter = await w.tg.waitForEvent((e) => e.type === 'db.query' && String(e.details.sql).startsWith('ALTER ROLE'));
    expect(alter.details.sql).toBe("ALTER ROLE scram_user PASSWORD '***'");
    const ins = await w.tg.waitForEvent((e) => e.type === 'db.query' && String(e.details.sql).startsWith('INSERT INTO items (id, name, password)'));
    expect(ins.details.params).toEqual(['20', 'n', '***']);
    const upd = await w.tg.waitForEvent((e) => e.type === 'db.query' && String(e.details.sql).startsWith('UPDATE items'));
    expect(upd.details.sql).toBe("UPDATE items SET password = '***' WHERE id = 20");
    const all = JSON.stringify(w.tg.events);
    expect(all).not.toContain('hunter2');
    expect(all).not.toContain('hunter3');
    expect(all).not.toContain('scr4m-pass');
  });

  it('relays LISTEN/NOTIFY notifications between sessions', async () => {
    const listener = pgClient();
    await listener.connect();
    await listener.query('LISTEN chan');
    const got = new Promise<pg.Notification>((resolve) => listener.on('notification', resolve));
    const r = await w.psql(['-c', "NOTIFY chan, 'payload-1'"]);
    expect(r.stderr).toBe('');
    const n = await got;
    expect(n).toMatchObject({ channel: 'chan', payload: 'payload-1' });
    await listener.end();
  });

  it('Ctrl-C in psql cancels pg_sleep through the gateway (CancelRequest mapped to the real key)', async () => {
    const child = spawn('psql', ['-X', '-d', w.conn(), '-c', 'SELECT pg_sleep(30)'], { env: clientEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    await waitFor(() => w.pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'") === '1', 10_000, 'pg_sleep to run');
    const t0 = Date.now();
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/canceling statement due to user request/);
    const cancel = await w.tg.waitForEvent((e) => e.type === 'db.cancel' && e.outcome === 'success');
    expect(cancel.actor.user).toBe('alice');
    const q = await w.tg.waitForEvent((e) => e.type === 'db.query' && e.details.sql === 'SELECT pg_sleep(30)');
    expect(q.details.sqlstate).toBe('57014');
  });

  it('a CancelRequest with an unknown key is not forwarded and is recorded', async () => {
    const c = pgClient();
    await c.connect();
    const conn = c as unknown as { processID: number; secretKey: number };
    // The client holds the backend's real pid, with a secret the gateway issued.
    const backendPid = Number(w.pg.psql("SELECT pid FROM pg_stat_activity WHERE application_name = 'alice via unknown' AND usename = 'scram_user' ORDER BY backend_start DESC LIMIT 1"));
    expect(conn.processID).toBe(backendPid);
    await c.end();
    const { CANCEL_REQUEST_CODE, encodeCancelRequest } = await import('../../proxies/postgres/frontend.ts');
    void CANCEL_REQUEST_CODE;
    const net = await import('node:net');
    const s = net.connect(w.port, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    s.end(encodeCancelRequest(12345, Buffer.from([1, 2, 3, 4])));
    await w.tg.waitForEvent((e) => e.type === 'db.cancel' && e.outcome === 'failure');
  });

  it('pgbench -i and a short run in simple, extended and prepared modes', async () => {
    const conn = w.conn();
    const env = {};
    const init = await run('pgbench', ['-i', '-s', '1', '-q', conn], undefined, env, 120_000);
    expect(init.code, init.stderr).toBe(0);
    for (const mode of ['simple', 'extended', 'prepared']) {
      const before = w.queries().length;
      const r = await run('pgbench', ['-M', mode, '-c', '2', '-t', '20', '-n', conn], undefined, env, 120_000);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/number of transactions actually processed: 40\/40/);
      // 7 statements per TPC-B transaction.
      await waitFor(() => w.queries().length - before >= 280, 10_000, `${mode} records`);
      if (mode !== 'simple') expect(w.queries().slice(before).some((e) => e.details.protocol === 'extended' && Array.isArray(e.details.params))).toBe(true);
    }
  });

  it('ends the session (fail closed) when a db.query event cannot be written', async () => {
    const events = w.tg.gw.services.events;
    const c = await RawClient.connect(w);
    // db.query events go through the fire-and-forget record(); a failed write reports to onFailure later.
    const orig = events.record.bind(events);
    events.record = ((e: Parameters<typeof orig>[0], onFailure?: (err: Error) => void) => {
      if (e.type === 'db.query') setImmediate(() => onFailure?.(new Error('disk full')));
      else orig(e, onFailure);
    }) as typeof events.record;
    try {
      await c.roundTrip(encodeMessage(F.Query, cstr('SELECT 1')));
      const fatal = await c.until((m) => m.type === 'E');
      expect(fatal?.body.toString('latin1')).toMatch(/cannot write its audit log/);
      await waitFor(() => c.closed, 5000, 'close');
    } finally {
      events.record = orig;
    }
    await w.tg.waitForEvent((e) => e.type === 'session.end' && e.details.reason === 'audit_unavailable');
  });
});
