import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { startWorld, RawClient, type PgWorld } from './helpers.ts';
import { F, cstr, encodeMessage } from '../../proxies/postgres/frontend.ts';
import { clientEnv } from '../support/postgres.ts';
import { waitFor } from '../support/tmp.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Issue #13: a statement that reached the server is recorded even when its response never completes
 * (client gone, backend dead, size limit, revocation): as `outcome: 'unknown'`, before session.end.
 */
let w: PgWorld;
beforeAll(async () => {
  w = await startWorld({ postgres: { listen: '127.0.0.1:0', max_message_size: '1MiB' }, audit: { long_running_after: '1s' }, gateway: { shutdown_drain: '1s' } });
  w.pg.psql('CREATE TABLE inflight (id int, note text); GRANT ALL ON inflight TO scram_user');
});
afterAll(async () => {
  await w?.stop();
});

const query = (sql: string) => encodeMessage(F.Query, cstr(sql));
const sessionOf = (pred: (e: AuditEvent) => boolean) => w.tg.events.find(pred)?.session_id;

function psqlChild(sql: string): { child: ChildProcess; stderr: () => string; exit: Promise<number | null> } {
  const child = spawn('psql', ['-X', '-d', w.conn(), '-c', sql], { env: clientEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exit = new Promise<number | null>((r) => child.on('close', r));
  return { child, stderr: () => stderr, exit };
}

/** This session's events in log order: the unknown record must come before session.end. */
function sessionEvents(sessionId: string | undefined): AuditEvent[] {
  return w.tg.events.filter((e) => e.session_id === sessionId);
}

describe('postgres proxy: in-flight statements', () => {
  it('records the statement running when psql is killed (committed rows, no answer) as unknown, before session.end', async () => {
    const sql = "BEGIN; INSERT INTO inflight VALUES (1, 'killed'); COMMIT; SELECT pg_sleep(30)";
    const p = psqlChild(sql);
    // The long-running notice comes after audit.long_running_after, while the statement still runs.
    const start = await w.tg.waitForEvent((e) => e.type === 'db.query.start' && e.details.sql === 'SELECT pg_sleep(30)', 15_000);
    expect(start.details).toMatchObject({ announced: 'long_running', protocol: 'simple' });
    expect(w.pg.psql("SELECT count(*) FROM inflight WHERE note = 'killed'")).toBe('1');
    p.child.kill('SIGKILL');
    await p.exit;
    const end = await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === start.session_id);
    const evs = sessionEvents(start.session_id);
    const queries = evs.filter((e) => e.type === 'db.query').map((e) => [e.details.sql, e.outcome, e.details.end_reason]);
    expect(queries).toEqual([
      // The server sends a multi-statement query's results at its end (or when its buffer fills): none
      // was seen, so each statement is recorded, unknown, although the INSERT was committed.
      ['BEGIN', 'unknown', 'client_closed'],
      ["INSERT INTO inflight VALUES (1, 'killed')", 'unknown', 'client_closed'],
      ['COMMIT', 'unknown', 'client_closed'],
      ['SELECT pg_sleep(30)', 'unknown', 'client_closed'],
    ]);
    const last = evs.filter((e) => e.type === 'db.query').pop()!;
    expect(evs.indexOf(last)).toBeLessThan(evs.indexOf(end));
    const unknown = last;
    expect(unknown.details.duration_ms as number).toBeGreaterThan(0);
    expect(end.details.backend_pid).toEqual(expect.any(Number));
  });

  it('records every statement of a simple query not answered yet, with the rows relayed so far, when the backend dies', async () => {
    const c = await RawClient.connect(w);
    const from = c.messages.length;
    const first = "SELECT repeat('r', 100) FROM generate_series(1, 1000)";
    c.socket.write(query(`${first}; SELECT pg_sleep(30); INSERT INTO inflight VALUES (2, 'never')`));
    // The server flushes rows as its send buffer fills; the last buffer (and CommandComplete) stays there.
    await waitFor(() => c.messages.filter((m) => m.type === 'D').length > 500, 10_000, 'rows relayed');
    const pid = await waitFor(() => Number(w.pg.psql("SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT repeat(''r'', 100) FROM generate_series(1, 1000);%' AND state = 'active'")) || undefined, 30_000, 'query running');
    process.kill(pid, 'SIGKILL');
    await waitFor(() => c.closed, 10_000, 'client socket closed');
    const relayed = c.messages.slice(from).filter((m) => m.type === 'D').length;
    const sid = (await w.tg.waitForEvent((e) => e.type === 'db.query' && e.details.sql === first)).session_id;
    const end = await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === sid);
    expect(end.details.reason).toBe('backend_error');
    const queries = sessionEvents(sid).filter((e) => e.type === 'db.query').map((e) => [e.details.sql, e.outcome, e.details.rows_returned, e.details.end_reason]);
    // A row counts from its header on: the one cut by the kill may be counted but not wholly relayed.
    expect([relayed, relayed + 1]).toContain(queries[0][2]);
    queries[0][2] = relayed;
    expect(queries).toEqual([
      [first, 'unknown', relayed, 'backend_error'],
      ['SELECT pg_sleep(30)', 'unknown', 0, 'backend_error'],
      ["INSERT INTO inflight VALUES (2, 'never')", 'unknown', 0, 'backend_error'],
    ]);
    // The killed backend makes the server restart (crash recovery): the next tests need it back.
    await waitFor(() => w.pg.psql('SELECT 1') === '1', 15_000, 'the server to accept connections after the crash');
  });

  it('records the running statement when the session is revoked', async () => {
    const p = psqlChild('SELECT pg_sleep(25)');
    const start = await w.tg.waitForEvent((e) => e.type === 'db.query.start' && e.details.sql === 'SELECT pg_sleep(25)', 15_000);
    w.tg.gw.services.sessions.terminateWhere((s) => s.id === start.session_id, 'revoked', 'your access was revoked');
    expect(await p.exit).not.toBe(0);
    expect(p.stderr()).toMatch(/revoked/);
    await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === start.session_id);
    const q = sessionEvents(start.session_id).filter((e) => e.type === 'db.query');
    expect(q.map((e) => [e.details.sql, e.outcome, e.details.end_reason])).toEqual([['SELECT pg_sleep(25)', 'unknown', 'revoked']]);
  });

  it('never relays part of an oversized backend message: rows before it, then FATAL 54000, and the statement is recorded', async () => {
    const c = await RawClient.connect(w);
    const from = c.messages.length;
    // 300 small rows (several chunks), then one row of 2 MB, over the 1 MiB limit.
    const sql = "SELECT repeat('r', 100) FROM generate_series(1, 300) UNION ALL SELECT repeat('x', 2000000)";
    c.socket.write(query(sql));
    await waitFor(() => c.closed, 10_000, 'client socket closed');
    const got = c.messages.slice(from);
    const types = got.map((m) => m.type).join('');
    // Every message the client got is whole (the raw parser would otherwise have swallowed the FATAL).
    expect(types).toBe('T' + 'D'.repeat(300) + 'E');
    const fatal = got[got.length - 1].body.toString('latin1');
    expect(fatal).toContain('C54000');
    expect(fatal).toMatch(/max_message_size/);
    const rec = await w.tg.waitForEvent((e) => e.type === 'db.query' && e.details.sql === sql);
    expect(rec.outcome).toBe('unknown');
    expect(rec.details).toMatchObject({ rows_returned: 300, end_reason: 'backend_error' });
    const end = await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === rec.session_id);
    expect(end.details.sqlstate).toBe('54000');
  });

  it('records a COPY TO whose data message is over the limit, with psql getting the error', async () => {
    const p = psqlChild("COPY (SELECT 'a' UNION ALL SELECT repeat('y', 2000000)) TO STDOUT");
    expect(await p.exit).not.toBe(0);
    expect(p.stderr()).toMatch(/max_message_size/);
    const rec = await w.tg.waitForEvent((e) => e.type === 'db.query' && String(e.details.sql).startsWith('COPY (SELECT'));
    expect(rec.outcome).toBe('unknown');
    expect(rec.details).toMatchObject({ end_reason: 'backend_error', copy: { direction: 'out', bytes: 2 } });
  });

  it('records the running statement when the gateway shuts down (last: stops this world’s gateway)', async () => {
    const p = psqlChild('SELECT pg_sleep(26)');
    const start = await w.tg.waitForEvent((e) => e.type === 'db.query.start' && e.details.sql === 'SELECT pg_sleep(26)', 15_000);
    await w.tg.stop();
    expect(await p.exit).not.toBe(0);
    expect(p.stderr()).toMatch(/shutting down/);
    const q = sessionEvents(start.session_id).filter((e) => e.type === 'db.query' || e.type === 'session.end');
    expect(q.map((e) => [e.type, e.details.sql, e.outcome, e.details.end_reason ?? e.details.reason])).toEqual([
      ['db.query', 'SELECT pg_sleep(26)', 'unknown', 'shutdown'],
      ['session.end', undefined, 'success', 'shutdown'],
    ]);
  });
});
