import { describe, it, expect } from 'vitest';
import { QueryTracker, frontendNeedsBody, backendNeedsBody, type QueryRecord } from '../../proxies/postgres/tracker.ts';
import { MessageFramer } from '../../proxies/postgres/framing.ts';
import { F, cstr, int16, int32 } from '../../proxies/postgres/frontend.ts';
import { msg, parse, bind, exec, sync } from './wire.ts';
import { B, encodeError } from '../../proxies/postgres/backend.ts';
import { splitStatements, redactSql, tokenize } from '../../proxies/postgres/sql.ts';
import { compileSecretPattern } from '../../src/config/redaction.ts';
import { decodeBinary, renderValue, OID } from '../../proxies/postgres/values.ts';

const names = compileSecretPattern(['pass(word)?', 'secret', 'token', 'api_?key']);

/** Feed whole streams through framers split at `cut`, like the relay does. */
function track(front: Buffer[], back: Buffer[], cut?: number): QueryRecord[] {
  const out: QueryRecord[] = [];
  const t = new QueryTracker({ redact: names, onRecord: (r) => out.push(r) });
  const ff = new MessageFramer({ maxLength: 1 << 20, headerOnly: (x) => !frontendNeedsBody(x) });
  const bf = new MessageFramer({ maxLength: 1 << 20, headerOnly: (x) => !backendNeedsBody(x) });
  const fs = Buffer.concat(front);
  const bs = Buffer.concat(back);
  const split = (b: Buffer) => (cut === undefined ? [b] : [b.subarray(0, Math.min(cut, b.length)), b.subarray(Math.min(cut, b.length))]);
  for (const c of split(fs)) {
    ff.push(c, (ty, m, len) => t.frontend(ty, m, len, 0));
    t.forwarded(false);
  }
  for (const c of split(bs)) bf.push(c, (ty, m, len) => t.backend(ty, m, len, 1));
  expect(t.pending).toBe(0);
  return out;
}

const dataRow = msg(B.DataRow, int16(1), int32(1), Buffer.from('x'));
const complete = (tag: string) => msg(B.CommandComplete, cstr(tag));
const ready = msg(B.ReadyForQuery, Buffer.from('I'));
const one = (c: number) => msg(c);

describe('QueryTracker', () => {
  it('matches a pipelined batch in order, including an error that skips to Sync', () => {
    const front = [parse('', 'SELECT $1'), bind('', '', ['1']), exec(''), sync, parse('', 'SELECT bad'), bind('', '', []), exec(''), sync, parse('', 'UPDATE t SET x = $1'), bind('', '', ['3']), exec(''), sync];
    const back = [
      one(B.ParseComplete), one(B.BindComplete), dataRow, complete('SELECT 1'), ready,
      encodeError({ severity: 'ERROR', code: '42703', message: 'column "bad" does not exist' }), ready,
      one(B.ParseComplete), one(B.BindComplete), complete('UPDATE 4'), ready,
    ];
    const whole = track(front, back);
    expect(whole.map((r) => [r.sql, r.params, r.outcome, r.rowsReturned, r.rowsAffected, r.sqlstate])).toEqual([
      ['SELECT $1', ['1'], 'success', 1, undefined, undefined],
      ['SELECT bad', undefined, 'failure', 0, undefined, '42703'],
      ['UPDATE t SET x = $1', ['3'], 'success', 0, 4, undefined],
    ]);
    const total = Buffer.concat(front).length + Buffer.concat(back).length;
    for (let cut = 0; cut < total; cut += 3) expect(track(front, back, cut)).toEqual(whole);
  });

  it('records each statement of a simple query and stops at the first error', () => {
    const r = track(
      [msg(F.Query, cstr("SELECT 1; INSERT INTO t VALUES (1); SELECT 1/0; SELECT 'no'"))],
      [dataRow, complete('SELECT 1'), complete('INSERT 0 1'), encodeError({ severity: 'ERROR', code: '22012', message: 'division by zero' }), ready],
    );
    // One query string is one implicit transaction: the error rolls back the statements before it.
    expect(r.map((x) => [x.sql, x.outcome, x.rowsReturned, x.rowsAffected, x.rolledBack])).toEqual([
      ['SELECT 1', 'failure', 1, undefined, true],
      ['INSERT INTO t VALUES (1)', 'failure', 0, 1, true],
      ['SELECT 1/0', 'failure', 0, undefined, undefined],
    ]);
  });

  it('records suspended portals, COPY and FunctionCall', () => {
    const r = track(
      [parse('s', 'SELECT g'), bind('c', 's', []), exec('c', 2), exec('c', 2), sync],
      [one(B.ParseComplete), one(B.BindComplete), dataRow, dataRow, one(B.PortalSuspended), dataRow, complete('SELECT 1'), ready],
    );
    expect(r[0]).toMatchObject({ statement: 's', portal: 'c', suspended: true, rowsReturned: 2 });
    expect(r[1]).toMatchObject({ portal: 'c', rowsReturned: 1, command: 'SELECT' });
    // COPY FROM STDIN: the client sends its data once CopyInResponse arrived.
    const out: QueryRecord[] = [];
    const t = new QueryTracker({ redact: names, onRecord: (x) => out.push(x) });
    const f = (m: Buffer) => {
      t.frontend(m[0], m, m.length - 1, 0);
      t.forwarded(false);
    };
    const b = (m: Buffer) => t.backend(m[0], m, m.length - 1, 1);
    f(msg(F.Query, cstr('COPY t FROM STDIN')));
    b(msg(B.CopyInResponse, Buffer.from([0]), int16(1), int16(0)));
    f(msg(F.CopyData, Buffer.from('1\n2\n')));
    f(msg(F.CopyDone));
    b(complete('COPY 2'));
    b(ready);
    f(msg(F.FunctionCall, int32(1598), int16(0), int16(1), int32(1), Buffer.from('7'), int16(0)));
    b(msg(B.FunctionCallResponse, int32(1), Buffer.from('x')));
    b(ready);
    expect(out[0]).toMatchObject({ sql: 'COPY t FROM STDIN', copy: { direction: 'in', rows: 2, bytes: 4 } });
    expect(out[1]).toMatchObject({ protocol: 'function_call', functionOid: 1598, params: ['7'] });
    expect(t.pending).toBe(0);
  });

  it('masks parameters bound to secret columns', () => {
    const r = track([parse('', 'INSERT INTO users (name, password) VALUES ($1, $2)'), bind('', '', ['bob', 'hunter2']), exec(''), sync], [one(B.ParseComplete), one(B.BindComplete), complete('INSERT 0 1'), ready]);
    expect(r[0].params).toEqual(['bob', '***']);
  });

  it('abandons forwarded statements as unknown, skips what was never forwarded, and announces long runners once', () => {
    const out: QueryRecord[] = [];
    const starts: string[] = [];
    const t = new QueryTracker({ redact: names, onRecord: (x) => out.push(x), onStart: (s) => starts.push(`${s.sql}|${(s.params ?? []).join(',')}`) });
    const feed = (bufs: Buffer[], at: number) => {
      const ff = new MessageFramer({ maxLength: 1 << 20, headerOnly: (x) => !frontendNeedsBody(x) });
      ff.push(Buffer.concat(bufs), (ty, m, len) => t.frontend(ty, m, len, at));
    };
    feed([parse('s', 'UPDATE t SET x = $1'), bind('', 's', ['7']), exec(''), sync], 0);
    expect(t.statementsToForward).toBe(1);
    expect(t.startsToForward().map((x) => [x.sql, x.params])).toEqual([['UPDATE t SET x = $1', ['7']]]);
    t.forwarded(false);
    t.backend(B.ParseComplete, one(B.ParseComplete), 4, 1);
    t.backend(B.BindComplete, one(B.BindComplete), 4, 1);
    expect(t.announceDue(500, 1000)).toBe(1000);
    expect(t.announceDue(1200, 1000)).toBeUndefined();
    expect(t.announceDue(5000, 1000)).toBeUndefined();
    expect(starts).toEqual(['UPDATE t SET x = $1|7']);
    feed([msg(F.Query, cstr('SELECT 1; SELECT 2'))], 2000);
    // Refused (not forwarded): never recorded as run.
    t.discardUnforwarded();
    feed([msg(F.Query, cstr('DELETE FROM t; SELECT 3'))], 3000);
    t.forwarded(false);
    t.abandon('client_closed', 4000);
    expect(out.map((r) => [r.sql, r.outcome, r.endReason, r.durationMs])).toEqual([
      ['UPDATE t SET x = $1', 'unknown', 'client_closed', 4000],
      ['DELETE FROM t', 'unknown', 'client_closed', 1000],
      ['SELECT 3', 'unknown', 'client_closed', 1000],
    ]);
    expect(t.pending).toBe(0);
  });

  it('rejects malformed and out-of-phase client messages', () => {
    const t = new QueryTracker({ redact: names, onRecord: () => {} });
    expect(() => t.frontend(F.Password, msg(F.Password, cstr('x')), 6, 0)).toThrow(/unexpected authentication message/);
    expect(() => t.frontend(0x7a, msg(0x7a), 4, 0)).toThrow(/unknown frontend message type/);
    expect(() => t.frontend(F.Execute, msg(F.Execute, cstr('')), 5, 0)).toThrow(/malformed Execute/);
  });
});

describe('SQL tokenizer and redaction', () => {
  it('splits statements but not inside strings, dollar quotes, identifiers or comments', () => {
    expect(splitStatements("SELECT ';'; SELECT $$a;b$$ ; SELECT \"x;y\" -- c;\n; /* ; */ SELECT E'\\';'")).toEqual(["SELECT ';'", 'SELECT $$a;b$$', 'SELECT "x;y"', "SELECT E'\\';'"]);
    expect(splitStatements('SELECT 1;')).toEqual(['SELECT 1']);
    expect(splitStatements(' ; ;')).toEqual([]);
  });

  it('takes the one-statement fast path only when nothing but whitespace follows the semicolon', () => {
    expect(splitStatements('SELECT 1;\n\t ')).toEqual(['SELECT 1']);
    expect(splitStatements('SELECT 1; -- trailing comment')).toEqual(['SELECT 1']);
    expect(splitStatements('SELECT 1;x')).toEqual(['SELECT 1', 'x']);
    expect(splitStatements('-- only a comment\n-- and another')).toEqual([]);
    expect(splitStatements('-- a comment\nSELECT 2')).toEqual(['-- a comment\nSELECT 2']);
    expect(splitStatements('  SELECT 3  ')).toEqual(['SELECT 3']);
  });

  it('shares one empty parameter set among statements with nothing to mask', () => {
    const a = redactSql('SELECT 1', names);
    const b = redactSql('SELECT abalance FROM t WHERE aid = $1', names);
    expect(a.text).toBe('SELECT 1');
    expect(a.params.size).toBe(0);
    expect(b.params).toBe(a.params);
    // A statement that needed the full scan but masked nothing uses it too; one that masked a $n does not.
    expect(redactSql("SELECT 'password'", names).params).toBe(a.params);
    expect([...redactSql('UPDATE t SET token = $2', names).params]).toEqual([2]);
  });

  it('masks role passwords, secret columns and INSERT values by position', () => {
    expect(redactSql("ALTER ROLE bob WITH ENCRYPTED PASSWORD 'SCRAM-SHA-256$4096:abc'", names).text).toBe("ALTER ROLE bob WITH ENCRYPTED PASSWORD '***'");
    expect(redactSql("CREATE USER x PASSWORD 'p'; SELECT 'p'", names).text).toBe("CREATE USER x PASSWORD '***'; SELECT 'p'");
    expect(redactSql("UPDATE t SET api_key = 'k1', name = 'n' WHERE \"token\" = 'k2'", names).text).toBe("UPDATE t SET api_key = '***', name = 'n' WHERE \"token\" = '***'");
    const ins = redactSql("INSERT INTO t (id, secret) VALUES (1, 's1'), (2, $1) RETURNING secret", names);
    expect(ins.text).toBe("INSERT INTO t (id, secret) VALUES (1, '***'), (2, $1) RETURNING secret");
    expect([...ins.params]).toEqual([1]);
    expect(redactSql("SELECT 'password'", names).text).toBe("SELECT 'password'");
    expect(tokenize("a.b = 'x'").map((t) => t.kind)).toEqual(['word', 'op', 'word', 'op', 'string']);
  });
});

describe('parameter rendering', () => {
  const b = (hex: string) => Buffer.from(hex, 'hex');
  it('decodes binary values of common types and falls back to hex', () => {
    expect(decodeBinary(OID.int4, b('ffffffff'))).toBe('-1');
    expect(decodeBinary(OID.int8, b('0000000000000100'))).toBe('256');
    expect(decodeBinary(OID.bool, b('00'))).toBe('false');
    expect(decodeBinary(OID.date, b('00000000'))).toBe('2000-01-01');
    expect(decodeBinary(OID.timestamp, b('0000000000000001'))).toBe('2000-01-01 00:00:00.000001');
    // numeric 12345.678: ndigits 3, weight 1, sign +, dscale 3, digits 1 2345 6780
    expect(decodeBinary(OID.numeric, b('0003000100000003' + '0001' + '0929' + '1a7c'))).toBe('12345.678');
    expect(decodeBinary(OID.numeric, b('0001ffff40000002' + '0032'))).toBe('-0.00');
    expect(renderValue(b('01020304'), 1, 0)).toBe('\\x01020304');
    expect(renderValue(Buffer.from('text'), 0, OID.int4)).toBe('text');
    expect(renderValue(null, 1, OID.int4)).toBeNull();
  });
});
