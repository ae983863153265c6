import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { serialize } from 'pg-protocol';
import { startWorld, RawClient, serverLog, serverStatements, STATEMENT_LOG, type PgWorld } from './helpers.ts';
import { waitFor } from '../support/tmp.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Where the server's processing is not one answer per request, vigil's record must still be what the
 * server did, checked against the server's own statement log (log_statement = 'all'): a client message
 * split across chunks while the role probe is due, a Query sent while the server skips to Sync, a
 * statement whose text holds semicolons the grammar keeps inside it, and a commit failing at Sync.
 * Each workload connects with its own application_name, which the server log carries.
 */
let w: PgWorld;
beforeAll(async () => {
  w = await startWorld({}, { pgConf: STATEMENT_LOG });
  w.pg.psql(
    [
      'CREATE ROLE agree_reader NOLOGIN',
      'GRANT agree_reader TO trust_user',
      'CREATE TABLE skip_t (id int)',
      'INSERT INTO skip_t VALUES (1), (2)',
      'CREATE TABLE dparent (id int PRIMARY KEY)',
      'CREATE TABLE dchild (pid int REFERENCES dparent DEFERRABLE INITIALLY DEFERRED)',
      'GRANT ALL ON skip_t, dparent, dchild TO trust_user',
      'GRANT CREATE ON SCHEMA public TO trust_user',
    ].join('; '),
  );
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const detail = (e: AuditEvent) => e.details as Record<string, any>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The session of the workload named `app` (its session.start carries the client's application_name). */
async function sessionOf(app: string): Promise<string> {
  const e = await w.tg.waitForEvent((x) => x.type === 'session.start' && (x.details.params as Record<string, string>)?.application_name === app);
  return e.session_id!;
}
const queriesOf = (session: string) => w.tg.events.filter((e) => e.type === 'db.query' && e.session_id === session);
/** What the server logged as received for `app` (statement texts, in order). */
const logged = (app: string) => serverStatements(w.pg, 'trust_user', (l) => l.application_name === `alice via ${app}`).map((s) => s.sql);
/** The server's log as of its line for `last` (the logging collector writes it asynchronously). */
const loggedUpTo = (app: string, last: string) => waitFor(() => (logged(app).includes(last) ? logged(app) : undefined), 10_000, `server log of ${app}`);

async function connect(app: string): Promise<RawClient> {
  return RawClient.connect(w, 'pg-trust', [['application_name', app]]);
}

describe('postgres: the record agrees with the server', () => {
  it('a client message split across chunks while the role probe is due: answered as sent; the probe runs after it', async () => {
    const app = 'agree-split';
    const c = await connect(app);
    // A 1000-byte Query: its first 10 bytes go with SET ROLE, the rest after the SET is answered.
    const head = "SELECT current_user, length('";
    const tail = "') AS n";
    const text = head + 'x'.repeat(1000 - 6 - head.length - tail.length) + tail;
    const long = serialize.query(text);
    expect(long.length).toBe(1000);
    let from = c.messages.length;
    c.socket.write(Buffer.concat([serialize.query('SET ROLE agree_reader'), long.subarray(0, 10)]));
    await c.until((m) => m.type === 'Z', from);
    // Room for the gateway to send its probe, were it to do so mid-message.
    await sleep(300);
    from = c.messages.length;
    c.socket.write(long.subarray(10));
    await c.until((m) => m.type === 'Z', from, 5000);
    const answer = c.messages.slice(from);
    // What a direct connection answers: one row (current_user, length), then CommandComplete, ReadyForQuery.
    expect(answer.map((m) => m.type).join('')).toBe('TDCZ');
    const row = answer[1].body;
    expect(row.subarray(6, 6 + row.readInt32BE(2)).toString()).toBe('agree_reader');
    expect(row.toString('latin1')).toContain(String(1000 - 6 - head.length - tail.length));
    // The session is still in step: another query gets its own answer.
    const more = await c.roundTrip(serialize.query("SELECT 'after'"));
    expect(more.map((m) => m.type).join('')).toBe('TDCZ');
    c.close();

    const session = await sessionOf(app);
    // The probe still ran, after the split message's request ended, and set the role of its record.
    await w.tg.waitForEvent((e) => e.type === 'db.session_query' && e.session_id === session);
    const ev = await w.tg.waitForEvent((e) => e.type === 'db.query' && e.session_id === session && detail(e).sql === text);
    expect([ev.outcome, detail(ev).role]).toEqual(['success', 'agree_reader']);
    await w.tg.waitForEvent((e) => e.type === 'db.query' && e.session_id === session && detail(e).sql === "SELECT 'after'");
    // The server received exactly the client's statements and the probes, each whole.
    const got = await loggedUpTo(app, "SELECT 'after'");
    expect(got.filter((s) => s !== 'SELECT current_user')).toEqual(['SET ROLE agree_reader', text, "SELECT 'after'"]);
    expect(queriesOf(session).map((e) => detail(e).sql)).toEqual(['SET ROLE agree_reader', text, "SELECT 'after'"]);
  });

  it('a Query sent while the server skips to Sync is recorded as not run; later records keep their own text', async () => {
    const app = 'agree-skip';
    const c = await connect(app);
    let from = c.messages.length;
    c.socket.write(Buffer.concat([serialize.parse({ text: 'SELECT nosuchcolumn FROM skip_t' }), serialize.bind(), serialize.execute()]));
    expect((await c.until((m) => m.type === 'E', from))?.body.toString()).toContain('42703');
    // Sent after the error, before the Sync: the server reads it and ignores it (postgres.c ignore_till_sync).
    c.socket.write(serialize.query('DELETE FROM skip_t'));
    await sleep(200);
    from = c.messages.length;
    await c.roundTrip(serialize.sync());
    expect(c.messages.slice(from).map((m) => m.type).join('')).toBe('Z');
    const count = await c.roundTrip(serialize.query('SELECT count(*) FROM skip_t'));
    expect(count.find((m) => m.type === 'D')!.body.toString('latin1')).toContain('2');
    await c.roundTrip(serialize.query('UPDATE skip_t SET id = id'));
    await c.roundTrip(serialize.query('SELECT 1'));
    c.close();

    const session = await sessionOf(app);
    await w.tg.waitForEvent((e) => e.type === 'db.query' && e.session_id === session && detail(e).sql === 'SELECT 1');
    const records = queriesOf(session).map((e) => [detail(e).sql, detail(e).command, e.outcome]);
    expect(records).toEqual([
      ['SELECT nosuchcolumn FROM skip_t', undefined, 'failure'],
      ['DELETE FROM skip_t', undefined, 'failure'],
      ['SELECT count(*) FROM skip_t', 'SELECT', 'success'],
      ['UPDATE skip_t SET id = id', 'UPDATE', 'success'],
      ['SELECT 1', 'SELECT', 'success'],
    ]);
    // The server ran exactly the statements recorded as successful (the DELETE never appears in its log),
    // and the failed Parse is its ERROR.
    expect(await loggedUpTo(app, 'SELECT 1')).toEqual(records.filter((r) => r[2] === 'success').map((r) => r[0]));
    const errors = serverLog(w.pg).filter((l) => l.application_name === `alice via ${app}` && l.error_severity === 'ERROR');
    expect(errors.map((l) => [l.statement, l.state_code])).toEqual([['SELECT nosuchcolumn FROM skip_t', '42703']]);
  });

  it('semicolons inside a rule action list or a BEGIN ATOMIC body: every statement the server ran is in a record', async () => {
    const app = 'agree-split-grammar';
    const sql = [
      'CREATE TABLE rule_t (x int)',
      'CREATE TABLE rule_c (x int)',
      'CREATE RULE rule_r AS ON INSERT TO rule_t DO ALSO (NOTIFY rule_a; NOTIFY rule_b)',
      'CREATE FUNCTION atomic_f(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 ELSE 2 END; SELECT x + 1; END',
      'DROP TABLE rule_c',
      'SELECT atomic_f(1)',
    ];
    const r = await w.psql(['-qAt', '-c', sql.join('; ')], { conn: w.conn('pg-trust'), env: { PGAPPNAME: app } });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('2\n');
    const session = await sessionOf(app);
    await w.tg.waitForEvent((e) => e.type === 'db.query' && e.session_id === session && detail(e).sql === 'SELECT atomic_f(1)');
    // The server got the string once, whole; it ran six statements, whose texts are the records'.
    expect(await loggedUpTo(app, sql.join('; '))).toEqual([sql.join('; ')]);
    const records = queriesOf(session).map((e) => [detail(e).sql, detail(e).command, e.outcome]);
    expect(records).toEqual([
      [sql[0], 'CREATE', 'success'],
      [sql[1], 'CREATE', 'success'],
      [sql[2], 'CREATE', 'success'],
      [sql[3], 'CREATE', 'success'],
      [sql[4], 'DROP', 'success'],
      [sql[5], 'SELECT', 'success'],
    ]);
    expect(w.pg.psql("SELECT count(*) FROM pg_rules WHERE rulename = 'rule_r'").trim()).toBe('1');
    expect(w.pg.psql("SELECT to_regclass('rule_c') IS NULL").trim()).toBe('t');
  });

  it('a deferred foreign key that fails at Sync: the parameterized INSERT is recorded as failed with 23503', async () => {
    const app = 'agree-deferred';
    const c = await connect(app);
    const insert = 'INSERT INTO dchild VALUES ($1)';
    const answer = await c.roundTrip(Buffer.concat([serialize.parse({ text: insert }), serialize.bind({ values: ['42'] }), serialize.execute(), serialize.sync()]));
    // The server completed the INSERT, then failed the implicit commit at Sync.
    expect(answer.map((m) => m.type).join('')).toBe('12CEZ');
    expect(answer[3].body.toString()).toContain('23503');
    await c.roundTrip(serialize.query("SELECT 'next'"));
    c.close();

    const session = await sessionOf(app);
    await w.tg.waitForEvent((e) => e.type === 'db.query' && e.session_id === session && detail(e).sql === "SELECT 'next'");
    const records = queriesOf(session);
    expect(records.map((e) => [detail(e).sql, detail(e).params, e.outcome, detail(e).sqlstate])).toEqual([
      [insert, ['42'], 'failure', '23503'],
      ["SELECT 'next'", undefined, 'success', undefined],
    ]);
    expect(detail(records[0]).error).toMatch(/foreign key/);
    // The server's own account: it executed the INSERT, and logged the 23503 error; nothing was kept.
    expect(await loggedUpTo(app, "SELECT 'next'")).toEqual([insert, "SELECT 'next'"]);
    const errors = serverLog(w.pg).filter((l) => l.application_name === `alice via ${app}` && l.error_severity === 'ERROR');
    expect(errors.map((l) => l.state_code)).toEqual(['23503']);
    expect(w.pg.psql('SELECT count(*) FROM dchild').trim()).toBe('0');
  });
});
