import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { serialize } from 'pg-protocol';
import { startWorld, RawClient, type PgWorld } from './helpers.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * An error ends an implicit transaction by rolling it back: the statements that completed before it in
 * the same Sync batch (extended protocol) or the same query string (simple protocol) are undone, and
 * their records say so (failure, rolled_back). Checked against the table's contents on a real
 * PostgreSQL 15 through the gateway; a transaction block and a statement the server commits at once
 * are not part of what is rolled back.
 */
let w: PgWorld;
beforeAll(async () => {
  w = await startWorld();
  w.pg.psql('CREATE TABLE ir (id int PRIMARY KEY); GRANT ALL ON ir TO trust_user');
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const detail = (e: AuditEvent) => e.details as Record<string, any>;
const count = (where: string) => w.pg.psql(`SELECT count(*) FROM ir WHERE ${where}`).trim();

async function sessionOf(app: string): Promise<string> {
  const e = await w.tg.waitForEvent((x) => x.type === 'session.start' && (x.details.params as Record<string, string>)?.application_name === app);
  return e.session_id!;
}

/** Runs `work` on a raw connection named `app`, then a marker query; returns the session's db.query records before it. */
async function records(app: string, work: (c: RawClient) => Promise<void>) {
  const c = await RawClient.connect(w, 'pg-trust', [['application_name', app]]);
  await work(c);
  await c.roundTrip(serialize.query("SELECT 'marker'"));
  c.close();
  const session = await sessionOf(app);
  await w.tg.waitForEvent((e) => e.type === 'db.query' && e.session_id === session && detail(e).sql === "SELECT 'marker'");
  const rs = w.tg.events.filter((e) => e.type === 'db.query' && e.session_id === session);
  return rs.slice(0, -1);
}
const row = (e: AuditEvent) => [detail(e).sql, detail(e).params, e.outcome, detail(e).rows_affected, detail(e).rolled_back];
const ins = 'INSERT INTO ir VALUES ($1)';
const pbe = (sql: string, values: string[] = []) => [serialize.parse({ text: sql }), serialize.bind({ values }), serialize.execute()];

describe('postgres: an error rolls back the implicit transaction, and the records say so', () => {
  it('extended protocol: a failing Execute in a Sync batch undoes the earlier INSERT of the batch', async () => {
    const rs = await records('ir-ext', async (c) => {
      const answer = await c.roundTrip(Buffer.concat([...pbe(ins, ['1']), ...pbe(ins, ['1']), serialize.sync()]));
      expect(answer.map((m) => m.type).join('')).toBe('12C12EZ');
      expect(answer.at(-1)!.body.toString()).toBe('I');
    });
    expect(count('id = 1')).toBe('0');
    expect(rs.map(row)).toEqual([
      [ins, ['1'], 'failure', 1, true],
      [ins, ['1'], 'failure', undefined, undefined],
    ]);
    expect(detail(rs[0]).error).toMatch(/rolled back with its implicit transaction.*23505/);
    expect(detail(rs[1]).sqlstate).toBe('23505');
  });

  it('a pipeline of two Syncs: the first batch committed at its Sync stays; only the failing batch is undone', async () => {
    const rs = await records('ir-pipe', async (c) => {
      const from = c.messages.length;
      c.socket.write(Buffer.concat([...pbe(ins, ['10']), serialize.sync(), ...pbe(ins, ['11']), ...pbe(ins, ['10']), serialize.sync()]));
      await c.until((m) => m.type === 'Z', from);
      await c.until((m) => m.type === 'Z', c.messages.findIndex((m, i) => i >= from && m.type === 'Z') + 1);
    });
    expect(count('id IN (10, 11)')).toBe('1');
    expect(count('id = 10')).toBe('1');
    expect(rs.map(row)).toEqual([
      [ins, ['10'], 'success', 1, undefined],
      [ins, ['11'], 'failure', 1, true],
      [ins, ['10'], 'failure', undefined, undefined],
    ]);
  });

  it('simple protocol: one query string is one implicit transaction; an error in its second statement undoes the first', async () => {
    const rs = await records('ir-simple', async (c) => {
      const answer = await c.roundTrip(serialize.query('INSERT INTO ir VALUES (20); INSERT INTO ir VALUES (20)'));
      expect(answer.map((m) => m.type).join('')).toBe('CEZ');
      // A ROLLBACK with no block open ends the implicit transaction too (with a warning).
      await c.roundTrip(serialize.query('INSERT INTO ir VALUES (21); ROLLBACK'));
    });
    expect(count('id IN (20, 21)')).toBe('0');
    expect(rs.map(row)).toEqual([
      ['INSERT INTO ir VALUES (20)', undefined, 'failure', 1, true],
      ['INSERT INTO ir VALUES (20)', undefined, 'failure', undefined, undefined],
      ['INSERT INTO ir VALUES (21)', undefined, 'failure', 1, true],
      ['ROLLBACK', undefined, 'success', undefined, undefined],
    ]);
  });

  it('an explicit transaction is unaffected: BEGIN … COMMIT in a batch succeeds, and statements in a block are not implicit', async () => {
    const rs = await records('ir-explicit', async (c) => {
      let answer = await c.roundTrip(Buffer.concat([...pbe('BEGIN'), ...pbe(ins, ['30']), ...pbe('COMMIT'), serialize.sync()]));
      expect(answer.at(-1)!.body.toString()).toBe('I');
      answer = await c.roundTrip(Buffer.concat([...pbe('BEGIN'), ...pbe(ins, ['31']), ...pbe(ins, ['31']), serialize.sync()]));
      expect(answer.at(-1)!.body.toString()).toBe('E');
      await c.roundTrip(serialize.query('ROLLBACK'));
    });
    expect(count('id = 30')).toBe('1');
    expect(count('id = 31')).toBe('0');
    expect(rs.map(row)).toEqual([
      ['BEGIN', [], 'success', undefined, undefined],
      [ins, ['30'], 'success', 1, undefined],
      ['COMMIT', [], 'success', undefined, undefined],
      ['BEGIN', [], 'success', undefined, undefined],
      [ins, ['31'], 'success', 1, undefined],
      [ins, ['31'], 'failure', undefined, undefined],
      ['ROLLBACK', undefined, 'success', undefined, undefined],
    ]);
  });

  it('a statement the server commits at once (VACUUM) is not undone by a later error in the batch', async () => {
    const rs = await records('ir-vacuum', async (c) => {
      const answer = await c.roundTrip(Buffer.concat([...pbe('VACUUM ir'), ...pbe(ins, ['40']), ...pbe(ins, ['40']), serialize.sync()]));
      // trust_user does not own ir: the server warns and skips it (a notice), yet VACUUM ran and committed.
      expect(answer.map((m) => m.type).filter((t) => t !== 'N').join('')).toBe('12C12C12EZ');
    });
    expect(count('id = 40')).toBe('0');
    expect(rs.map(row)).toEqual([
      ['VACUUM ir', [], 'success', undefined, undefined],
      [ins, ['40'], 'failure', 1, true],
      [ins, ['40'], 'failure', undefined, undefined],
    ]);
  });
});
