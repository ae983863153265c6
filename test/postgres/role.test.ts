import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, RawClient, type PgWorld } from './helpers.ts';
import { F, cstr, encodeMessage } from '../../proxies/postgres/frontend.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * The role recorded on each db.query is the one the server ran the statement under: after SET ROLE,
 * SET SESSION AUTHORIZATION, RESET ROLE, SET LOCAL ROLE (undone at COMMIT), set_config('role', …) and
 * startup options, the `role` of a statement's event is what `SELECT current_user` in that statement
 * returns. PostgreSQL 15 does not report `role` changes, so vigil asks the server (SELECT current_user)
 * at the next safe point; the client never sees that probe.
 */
let w: PgWorld;
beforeAll(async () => {
  w = await startWorld();
  w.pg.psql('CREATE ROLE reader NOLOGIN; CREATE ROLE writer NOLOGIN; GRANT reader, writer TO trust_user; ALTER ROLE trust_user SUPERUSER');
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const detail = (e: AuditEvent) => e.details as Record<string, any>;

/** The event of the statement with `marker` in its text. */
const eventWith = (marker: string) => w.tg.waitForEvent((e) => e.type === 'db.query' && String(detail(e).sql ?? '').includes(`'${marker}'`));

describe('postgres: the recorded role follows the server', () => {
  it('SET ROLE, SET SESSION AUTHORIZATION, RESET ROLE, SET LOCAL ROLE and set_config with psql', async () => {
    const script = [
      "SELECT current_user, 'm0';",
      'SET ROLE reader;',
      "SELECT current_user, 'm1';",
      'SET SESSION AUTHORIZATION md5_user;',
      "SELECT current_user, 'm2';",
      'RESET SESSION AUTHORIZATION;',
      'SET ROLE writer;',
      "SELECT current_user, 'm3';",
      'RESET ROLE;',
      "SELECT current_user, 'm4';",
      'BEGIN;',
      'SET LOCAL ROLE reader;',
      "SELECT current_user, 'm5';",
      'COMMIT;',
      "SELECT current_user, 'm6';",
      "SELECT set_config('role', 'writer', false) IS NOT NULL;",
      "SELECT current_user, 'm7';",
    ].join('\n');
    const r = await w.psql(['-qAt'], { conn: w.conn('pg-trust'), input: script });
    expect(r.stderr).toBe('');
    // Exactly the client's own results: vigil's probes never reach it.
    expect(r.stdout).toBe(['trust_user|m0', 'reader|m1', 'md5_user|m2', 'writer|m3', 'trust_user|m4', 'reader|m5', 'trust_user|m6', 't', 'writer|m7', ''].join('\n'));
    const returned = Object.fromEntries(r.stdout.trim().split('\n').filter((l) => l.includes('|')).map((l) => l.split('|').reverse()));
    for (const [marker, user] of Object.entries(returned)) {
      const e = await eventWith(marker);
      expect([marker, detail(e).role]).toEqual([marker, user]);
    }
    // The statement that switched ran under the role before it.
    const setRole = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).sql === 'SET ROLE reader');
    expect(detail(setRole).role).toBe('trust_user');
    const probes = w.tg.events.filter((e) => e.type === 'db.session_query' && e.session_id === setRole.session_id);
    expect(probes.length).toBeGreaterThan(0);
    expect(probes.every((e) => detail(e).sql === 'SELECT current_user' && e.outcome === 'success')).toBe(true);
  });

  it('statements after SET ROLE in the same simple query, and a role set by startup options', async () => {
    const r = await w.psql(['-qAt', '-c', "SET ROLE reader; SELECT current_user, 'n1'"], { conn: w.conn('pg-trust') });
    expect(r.stdout).toBe('reader|n1\n');
    expect(detail(await eventWith('n1')).role).toBe('reader');
    const o = await w.psql(['-qAt', '-c', "SELECT current_user, 'n2'"], { conn: w.conn('pg-trust', "options='-c role=writer'") });
    expect(o.stdout).toBe('writer|n2\n');
    expect(detail(await eventWith('n2')).role).toBe('writer');
  });

  it('a raw client inside a failed transaction: no probe runs there; the ROLLBACK settles the role', async () => {
    const c = await RawClient.connect(w, 'pg-trust');
    const q = (sql: string) => c.roundTrip(encodeMessage(F.Query, cstr(sql)));
    await q('BEGIN');
    await q('SET ROLE reader');
    const failed = await q('SELECT 1/0');
    // The server's own messages only (its ParameterStatus for is_superuser as the abort undoes SET ROLE):
    // no probe answer (T D C) reaches the client.
    const types = (ms: { type: string }[]) => ms.map((m) => m.type).filter((t) => t !== 'S').join(' ');
    expect(types(failed)).toBe('E Z');
    const afterRollback = await q('ROLLBACK');
    expect(types(afterRollback)).toBe('C Z');
    const who = await q("SELECT current_user, 'k1'");
    const row = who.find((m) => m.type === 'D')!.body;
    const user = row.toString('utf8', 6, 6 + row.readInt32BE(2));
    expect(user).toBe('trust_user');
    expect(detail(await eventWith('k1')).role).toBe(user);
    c.close();
  });
});
