import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { startWorld, type PgWorld } from './helpers.ts';
import { waitFor } from '../support/tmp.ts';

// Passwords inside SQL run later (DO bodies, EXECUTE in PL/pgSQL, function bodies) and a SCRAM verifier
// must not reach any recorded place: db.query, db.query.start, guardrail events, files under data_dir.
const SECRETS = ['r4pg-create', 'r4pg-exec', 'r4pg-do', 'r4pg-fn', 'r4pg-verifier', 'r4pg-blocked'];

let w: PgWorld;
beforeAll(async () => {
  w = await startWorld({ guardrails: [{ name: 'no-drops', targets: ['pg'], roles: ['*'], sql: { block: ['drop'], on_unparsable: 'allow' } }] });
  w.pg.psql('ALTER ROLE scram_user CREATEROLE');
});
afterAll(async () => {
  await w?.stop();
});

/** Every file under `dir`, as text (audit segments, recordings). */
function filesText(dir: string): string {
  let out = '';
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out += filesText(p);
    else if (e.isFile()) out += fs.readFileSync(p, 'latin1');
  }
  return out;
}

describe('postgres gateway: passwords in nested SQL are never recorded', () => {
  it('masks DO bodies, EXECUTE literals, function bodies and verifiers in every event', async () => {
    const statements = [
      "CREATE ROLE r4_role LOGIN ENCRYPTED PASSWORD 'r4pg-create'",
      "DO $$ BEGIN EXECUTE 'ALTER ROLE r4_role PASSWORD ''r4pg-exec'''; END $$",
      "DO $$ BEGIN ALTER ROLE r4_role PASSWORD 'r4pg-do'; END $$",
      "CREATE FUNCTION r4_set() RETURNS void LANGUAGE plpgsql AS $$ BEGIN ALTER ROLE r4_role PASSWORD 'r4pg-fn'; END $$",
      "ALTER ROLE r4_role PASSWORD 'SCRAM-SHA-256$4096:cjRwZw==$r4pg-verifier:r4pg-verifier'",
    ];
    for (const sql of statements) {
      const r = await w.psql(['-c', sql]);
      expect(r.stderr).toBe('');
    }
    // Refused by the guardrail as a whole: recorded as guardrail.blocked with its text.
    const blocked = await w.psql(['-c', "DO $$ BEGIN EXECUTE 'ALTER ROLE r4_role PASSWORD ''r4pg-blocked'''; END $$; DROP FUNCTION r4_set()"]);
    expect(blocked.stderr).toMatch(/guardrail/);

    const expected = [
      "CREATE ROLE r4_role LOGIN ENCRYPTED PASSWORD '***'",
      "DO $$ BEGIN EXECUTE '***'; END $$",
      "DO $$ BEGIN ALTER ROLE r4_role PASSWORD '***'; END $$",
      "CREATE FUNCTION r4_set() RETURNS void LANGUAGE plpgsql AS $$ BEGIN ALTER ROLE r4_role PASSWORD '***'; END $$",
      "ALTER ROLE r4_role PASSWORD '***'",
    ];
    // Each statement is recorded once, masked (a leaked form would leave one missing).
    await waitFor(() => expected.every((sql) => w.queries((e) => e.details.sql === sql).length > 0) || undefined);
    const guard = await w.tg.waitForEvent((e) => e.type === 'guardrail.blocked' && String(e.details.sql).includes('r4_set'));
    expect(guard.details.sql).toBe("DO $$ BEGIN EXECUTE '***'; END $$; DROP FUNCTION r4_set()");

    const events = JSON.stringify(w.tg.events);
    const files = filesText(w.tg.dataDir);
    expect(files).toContain('r4_role'); // the audit log on disk is plain text, so the search below means something
    for (const s of SECRETS) {
      expect(events).not.toContain(s);
      expect(files).not.toContain(s);
    }
  });
});
