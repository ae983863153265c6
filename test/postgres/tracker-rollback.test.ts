import { describe, it, expect } from 'vitest';
import { QueryTracker, frontendNeedsBody, backendNeedsBody, type QueryRecord } from '../../proxies/postgres/tracker.ts';
import { MessageFramer } from '../../proxies/postgres/framing.ts';
import { F, cstr, int16, int32, encodeMessage } from '../../proxies/postgres/frontend.ts';
import { B, encodeError } from '../../proxies/postgres/backend.ts';

/**
 * The tracker when an error (or ROLLBACK) ends an implicit transaction: what completed before it in the
 * same Sync batch or simple query string was rolled back with it. The exchanges are PostgreSQL 15's
 * (see implicit-rollback.test.ts for the same through the gateway).
 */
const msg = (type: number, ...parts: Buffer[]) => encodeMessage(type, Buffer.concat(parts));
const parse = (sql: string) => msg(F.Parse, cstr(''), cstr(sql), int16(0));
const bind = (vals: string[] = []) => msg(F.Bind, cstr(''), cstr(''), int16(0), int16(vals.length), ...vals.flatMap((v) => [int32(Buffer.byteLength(v)), Buffer.from(v)]), int16(0));
const exec = msg(F.Execute, cstr(''), int32(0));
const pbe = (sql: string, vals: string[] = []) => [parse(sql), bind(vals), exec];
const sync = msg(F.Sync);
const query = (sql: string) => msg(F.Query, cstr(sql));
const complete = (tag: string) => msg(B.CommandComplete, cstr(tag));
const ready = (status = 'I') => msg(B.ReadyForQuery, Buffer.from(status));
const one = (c: number) => msg(c);
const error = (code: string, message: string) => encodeError({ severity: 'ERROR', code, message });
const pb = [one(B.ParseComplete), one(B.BindComplete)];

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
const rows = (rs: QueryRecord[]) => rs.map((r) => [r.sql, r.outcome, r.rowsAffected, r.sqlstate, r.rolledBack]);
const dup = error('23505', 'duplicate key value violates unique constraint "t_pkey"');

describe('tracker: an error rolls back the implicit transaction', () => {
  it('a failing Execute mid-batch: the earlier Execute of the batch is recorded as rolled back', () => {
    const s = session();
    s.client(...pbe('INSERT INTO t VALUES (1)'), ...pbe('INSERT INTO t VALUES (2)'), sync);
    s.server(...pb, complete('INSERT 0 1'), ...pb, dup);
    expect(s.records).toEqual([]);
    s.server(ready());
    expect(rows(s.records)).toEqual([
      ['INSERT INTO t VALUES (1)', 'failure', 1, '23505', true],
      ['INSERT INTO t VALUES (2)', 'failure', undefined, '23505', undefined],
    ]);
    expect(s.records[0].command).toBe('INSERT');
    expect(s.records[0].error).toMatch(/^rolled back with its implicit transaction: a later statement failed \(23505\): duplicate key/);
    // Settled: a session ending now does not turn it into unknown.
    s.t.abandon('client_closed', 2);
    expect(s.records.length).toBe(2);
  });

  it('several Syncs: only the failing batch is rolled back; the committed one stays a success', () => {
    const s = session();
    s.client(...pbe('INSERT INTO t VALUES (1)'), sync, ...pbe('INSERT INTO t VALUES (2)'), ...pbe('INSERT INTO t VALUES (1)'), sync);
    s.server(...pb, complete('INSERT 0 1'), ready(), ...pb, complete('INSERT 0 1'), ...pb, dup, ready());
    expect(rows(s.records)).toEqual([
      ['INSERT INTO t VALUES (1)', 'success', 1, undefined, undefined],
      ['INSERT INTO t VALUES (2)', 'failure', 1, '23505', true],
      ['INSERT INTO t VALUES (1)', 'failure', undefined, '23505', undefined],
    ]);
  });

  it('a simple query string is one implicit transaction; a ROLLBACK in it undoes what came before', () => {
    const s = session();
    s.client(query('INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)'));
    s.server(complete('INSERT 0 1'), dup, ready());
    s.client(query('INSERT INTO t VALUES (3); ROLLBACK'));
    s.server(complete('INSERT 0 1'), complete('ROLLBACK'), ready());
    expect(rows(s.records)).toEqual([
      ['INSERT INTO t VALUES (1)', 'failure', 1, '23505', true],
      ['INSERT INTO t VALUES (1)', 'failure', undefined, '23505', undefined],
      ['INSERT INTO t VALUES (3)', 'failure', 1, undefined, true],
      ['ROLLBACK', 'success', undefined, undefined, undefined],
    ]);
  });

  it('in a transaction block (BEGIN in the batch) nothing is marked; after COMMIT the next implicit transaction is', () => {
    const s = session();
    s.client(...pbe('BEGIN'), ...pbe('INSERT INTO t VALUES (1)'), ...pbe('INSERT INTO t VALUES (1)'), sync);
    s.server(...pb, complete('BEGIN'), ...pb, complete('INSERT 0 1'), ...pb, dup, ready('E'));
    s.client(query('ROLLBACK'));
    s.server(complete('ROLLBACK'), ready());
    s.client(query('BEGIN; INSERT INTO t VALUES (5); COMMIT; INSERT INTO t VALUES (6); INSERT INTO t VALUES (5)'));
    s.server(complete('BEGIN'), complete('INSERT 0 1'), complete('COMMIT'), complete('INSERT 0 1'), dup, ready());
    expect(rows(s.records)).toEqual([
      ['BEGIN', 'success', undefined, undefined, undefined],
      ['INSERT INTO t VALUES (1)', 'success', 1, undefined, undefined],
      ['INSERT INTO t VALUES (1)', 'failure', undefined, '23505', undefined],
      ['ROLLBACK', 'success', undefined, undefined, undefined],
      ['BEGIN', 'success', undefined, undefined, undefined],
      ['INSERT INTO t VALUES (5)', 'success', 1, undefined, undefined],
      ['COMMIT', 'success', undefined, undefined, undefined],
      ['INSERT INTO t VALUES (6)', 'failure', 1, '23505', true],
      ['INSERT INTO t VALUES (5)', 'failure', undefined, '23505', undefined],
    ]);
  });

  it('a statement committed at once (VACUUM, CREATE INDEX CONCURRENTLY) is not rolled back by a later error', () => {
    const s = session();
    s.client(...pbe('VACUUM t'), ...pbe('INSERT INTO t VALUES (1)'), ...pbe('INSERT INTO t VALUES (1)'), sync);
    s.server(...pb, complete('VACUUM'), ...pb, complete('INSERT 0 1'), ...pb, dup, ready());
    s.client(...pbe('/* c */ CREATE INDEX CONCURRENTLY i ON t (x)'), ...pbe('INSERT INTO t VALUES (1)'), sync);
    s.server(...pb, complete('CREATE INDEX'), ...pb, dup, ready());
    expect(rows(s.records)).toEqual([
      ['VACUUM t', 'success', undefined, undefined, undefined],
      ['INSERT INTO t VALUES (1)', 'failure', 1, '23505', true],
      ['INSERT INTO t VALUES (1)', 'failure', undefined, '23505', undefined],
      ['/* c */ CREATE INDEX CONCURRENTLY i ON t (x)', 'success', undefined, undefined, undefined],
      ['INSERT INTO t VALUES (1)', 'failure', undefined, '23505', undefined],
    ]);
  });
});
