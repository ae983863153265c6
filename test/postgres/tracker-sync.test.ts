import { describe, it, expect } from 'vitest';
import { QueryTracker, frontendNeedsBody, backendNeedsBody, type QueryRecord } from '../../proxies/postgres/tracker.ts';
import { MessageFramer } from '../../proxies/postgres/framing.ts';
import { F, cstr, int16, int32, encodeMessage } from '../../proxies/postgres/frontend.ts';
import { B, encodeError } from '../../proxies/postgres/backend.ts';
import { splitQuery } from '../../proxies/postgres/sql.ts';

/**
 * The tracker where the server's processing is not one answer per request: messages the server skips
 * up to Sync (postgres.c ignore_till_sync), a commit that fails at Sync, and a simple query the splitter
 * cut differently from the server's grammar. Pure: the exchanges are the ones PostgreSQL 15 produces
 * (see server-agreement.test.ts for the same through the gateway).
 */

const msg = (type: number, ...parts: Buffer[]) => encodeMessage(type, Buffer.concat(parts));
const parse = (sql: string) => msg(F.Parse, cstr(''), cstr(sql), int16(0));
const bind = (vals: string[] = []) => msg(F.Bind, cstr(''), cstr(''), int16(0), int16(vals.length), ...vals.flatMap((v) => [int32(Buffer.byteLength(v)), Buffer.from(v)]), int16(0));
const exec = msg(F.Execute, cstr(''), int32(0));
const sync = msg(F.Sync);
const query = (sql: string) => msg(F.Query, cstr(sql));
const complete = (tag: string) => msg(B.CommandComplete, cstr(tag));
const ready = (status = 'I') => msg(B.ReadyForQuery, Buffer.from(status));
const one = (c: number) => msg(c);
const error = (code: string, message: string) => encodeError({ severity: 'ERROR', code, message });

/** A session driven step by step: each `client` call is one forwarded chunk, each `server` one answer. */
function session() {
  const records: QueryRecord[] = [];
  const t = new QueryTracker({ redact: undefined, onRecord: (r) => records.push(r) });
  const ff = new MessageFramer({ maxLength: 1 << 20, headerOnly: (x) => !frontendNeedsBody(x) });
  const bf = new MessageFramer({ maxLength: 1 << 20, headerOnly: (x) => !backendNeedsBody(x) });
  return {
    t,
    records,
    client(...m: Buffer[]) {
      ff.push(Buffer.concat(m), (ty, b, len) => t.frontend(ty, b, len, 0));
      t.forwarded(false);
    },
    server(...m: Buffer[]) {
      bf.push(Buffer.concat(m), (ty, b, len) => t.backend(ty, b, len, 1));
    },
  };
}

const pairs = (rs: QueryRecord[]) => rs.map((r) => [r.sql, r.command, r.outcome, r.sqlstate]);

describe('tracker: the server skips to Sync after an extended-protocol error', () => {
  it('a Query sent in the skip window is recorded as not run, and later statements keep their own text', () => {
    const s = session();
    s.client(parse('SELECT nosuchcolumn'), bind(), exec);
    s.server(error('42703', 'column "nosuchcolumn" does not exist'));
    // The client saw the error and sends a Query, then the Sync: the server reads the Query and drops it.
    s.client(query('DELETE FROM t'));
    s.client(sync);
    s.server(ready());
    expect(s.t.pending).toBe(0);
    s.client(query('SELECT 2'));
    s.server(one(B.RowDescription), msg(B.DataRow, int16(1), int32(1), Buffer.from('2')), complete('SELECT 1'), ready());
    s.client(query('UPDATE t SET x = 1'));
    s.server(complete('UPDATE 0'), ready());
    expect(pairs(s.records)).toEqual([
      ['SELECT nosuchcolumn', undefined, 'failure', '42703'],
      ['DELETE FROM t', undefined, 'failure', undefined],
      ['SELECT 2', 'SELECT', 'success', undefined],
      ['UPDATE t SET x = 1', 'UPDATE', 'success', undefined],
    ]);
    expect(s.records[1].error).toMatch(/not executed/);
    expect(s.t.pending).toBe(0);
  });

  it('a FunctionCall and a pipelined Query in the window: neither runs; the Sync ends the skip', () => {
    const s = session();
    const fcall = msg(F.FunctionCall, int32(1598), int16(0), int16(0), int16(0));
    s.client(parse('SELECT 1/0'), bind(), exec, query('DROP TABLE a; DROP TABLE b'), fcall, sync, query('SELECT 3'));
    s.server(one(B.ParseComplete), one(B.BindComplete), error('22012', 'division by zero'), ready());
    s.server(complete('SELECT 1'), ready());
    expect(pairs(s.records)).toEqual([
      ['SELECT 1/0', undefined, 'failure', '22012'],
      ['DROP TABLE a', undefined, 'failure', undefined],
      ['DROP TABLE b', undefined, 'failure', undefined],
      [undefined, undefined, 'failure', undefined],
      ['SELECT 3', 'SELECT', 'success', undefined],
    ]);
    expect(s.records[3].protocol).toBe('function_call');
    expect(s.t.pending).toBe(0);
  });
});

describe('tracker: an error at Sync (the implicit commit failed)', () => {
  it('marks the Execute it rolled back as failed, written only once the Sync is answered', () => {
    const s = session();
    s.client(parse('INSERT INTO child VALUES ($1)'), bind(['7']), exec, sync);
    s.server(one(B.ParseComplete), one(B.BindComplete), complete('INSERT 0 1'));
    // The statement completed, but its transaction is not committed yet: nothing is written so far.
    expect(s.records).toEqual([]);
    s.server(error('23503', 'insert or update on table "child" violates foreign key constraint'), ready());
    expect(s.records.map((r) => [r.sql, r.params, r.command, r.outcome, r.sqlstate])).toEqual([['INSERT INTO child VALUES ($1)', ['7'], 'INSERT', 'failure', '23503']]);
    expect(s.records[0].error).toMatch(/foreign key/);
    // The next batch commits: success, written at its ReadyForQuery.
    s.client(parse('INSERT INTO parent VALUES ($1)'), bind(['7']), exec, sync);
    s.server(one(B.ParseComplete), one(B.BindComplete), complete('INSERT 0 1'), ready());
    expect(pairs(s.records.slice(1))).toEqual([['INSERT INTO parent VALUES ($1)', 'INSERT', 'success', undefined]]);
  });

  it('inside a transaction block nothing waits for the Sync; after COMMIT in the batch, the rest does', () => {
    const s = session();
    s.client(query('BEGIN'));
    s.server(complete('BEGIN'), ready('T'));
    s.client(parse('INSERT INTO t VALUES (1)'), bind(), exec, msg(F.Flush));
    s.server(one(B.ParseComplete), one(B.BindComplete), complete('INSERT 0 1'));
    expect(pairs(s.records)).toEqual([
      ['BEGIN', 'BEGIN', 'success', undefined],
      ['INSERT INTO t VALUES (1)', 'INSERT', 'success', undefined],
    ]);
    s.client(parse('COMMIT'), bind(), exec, parse('INSERT INTO t VALUES (2)'), bind(), exec, sync);
    s.server(one(B.ParseComplete), one(B.BindComplete), complete('COMMIT'), one(B.ParseComplete), one(B.BindComplete), complete('INSERT 0 1'));
    expect(s.records.length).toBe(3);
    s.server(error('40001', 'could not serialize access'), ready());
    expect(pairs(s.records.slice(2))).toEqual([
      ['COMMIT', 'COMMIT', 'success', undefined],
      ['INSERT INTO t VALUES (2)', 'INSERT', 'failure', '40001'],
    ]);
  });

  it('the session ends before the Sync is answered: the held Execute is written with its outcome unknown', () => {
    const s = session();
    s.client(parse('INSERT INTO t VALUES (1)'), bind(), exec, sync);
    s.server(one(B.ParseComplete), one(B.BindComplete), complete('INSERT 0 1'));
    s.t.abandon('client_closed', 2);
    expect(s.records.map((r) => [r.command, r.outcome, r.endReason])).toEqual([['INSERT', 'unknown', 'client_closed']]);
  });
});

describe('splitter and tracker: semicolons the grammar keeps inside one statement', () => {
  it('splits at top-level semicolons only: rule action lists and BEGIN ATOMIC bodies stay whole', () => {
    const rule = 'CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b)';
    expect(splitQuery(`${rule}; DROP TABLE c`, true)).toEqual({ statements: [rule, 'DROP TABLE c'], unsplit: false });
    const fn = "create or replace function f(x int) returns int language sql begin atomic select case when x > 0 then 1 else (select 2; ) end; select 'end;'; End";
    expect(splitQuery(`${fn};DROP TABLE c;`, true).statements).toEqual([fn, 'DROP TABLE c']);
    const proc = 'CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); CREATE FUNCTION g() RETURNS int BEGIN ATOMIC SELECT 1; END; END';
    expect(splitQuery(`${proc}; SELECT 1`, true).statements).toEqual([proc, 'SELECT 1']);
    // BEGIN alone is a transaction statement; a column named begin is not a body.
    expect(splitQuery('BEGIN; SELECT 1; END', true).statements).toEqual(['BEGIN', 'SELECT 1', 'END']);
    expect(splitQuery('SELECT begin atomic FROM t; SELECT 1', true).statements).toEqual(['SELECT begin atomic FROM t', 'SELECT 1']);
  });

  it('fewer results than split statements: the text without a result is recorded whole, never dropped', () => {
    // A split the server disagrees with (here forced: the splitter is not given the grammar's view).
    const s = session();
    s.client(query('SELECT 1;  SELECT 2 ;SELECT 3 -- end'));
    s.server(complete('SELECT 1'), ready());
    expect(s.records.map((r) => [r.sql, r.command, r.outcome, r.unsplit])).toEqual([
      ['SELECT 1', 'SELECT', 'success', undefined],
      ['SELECT 2 ;SELECT 3 -- end', undefined, 'success', true],
    ]);
    expect(s.t.pending).toBe(0);
    const t = session();
    // Under the server's own split (one statement), a second result would have no text: it gets the whole.
    t.client(query("SELECT 'x'; SELECT 'y'"));
    t.server(complete('SELECT 1'), complete('SELECT 1'), complete('SELECT 1'), ready());
    expect(t.records.map((r) => [r.sql, r.unsplit])).toEqual([
      ["SELECT 'x'", undefined],
      ["SELECT 'y'", undefined],
      ["SELECT 'x'; SELECT 'y'", true],
    ]);
    expect(t.t.pending).toBe(0);
  });
});
