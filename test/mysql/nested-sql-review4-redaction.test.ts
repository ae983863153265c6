import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { startWorld, type MyWorld } from './helpers.ts';
import { waitFor } from '../support/tmp.ts';

// Passwords inside SQL run later (EXECUTE IMMEDIATE, PREPARE … FROM) and in the other credential
// clauses must not reach any recorded place: db.query, guardrail events, files under data_dir.
const SECRETS = ['r4my-create', 'r4my-exec', 'r4my-prep', 'r4my-concat', 'r4my-ed', 'r4my-grant', 'r4my-blocked'];

let w: MyWorld;
beforeAll(async () => {
  w = await startWorld({ guardrails: [{ name: 'no-drops', targets: ['db'], roles: ['*'], sql: { block: ['drop'], on_unparsable: 'allow' } }] });
}, 120_000);
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

describe('mysql gateway: passwords in nested SQL are never recorded', () => {
  it('masks EXECUTE IMMEDIATE and PREPARE literals, ed25519 and GRANT passwords in every event', async () => {
    const statements: [string, string][] = [
      ["CREATE USER r4_u@'%' IDENTIFIED BY 'r4my-create'", "CREATE USER r4_u@'%' IDENTIFIED BY '***'"],
      ["EXECUTE IMMEDIATE 'ALTER USER r4_u@''%'' IDENTIFIED BY ''r4my-exec'''", "EXECUTE IMMEDIATE '***'"],
      ["PREPARE r4s FROM 'SET PASSWORD FOR r4_u@''%'' = PASSWORD(''r4my-prep'')'", "PREPARE r4s FROM '***'"],
      ['EXECUTE r4s', 'EXECUTE r4s'],
      ["EXECUTE IMMEDIATE CONCAT('ALTER USER r4_u@''%'' IDENTIFIED BY ''', 'r4my-concat', '''')", "EXECUTE IMMEDIATE CONCAT('***', '***', '***')"],
      ["ALTER USER r4_u@'%' IDENTIFIED VIA ed25519 USING PASSWORD('r4my-ed')", "ALTER USER r4_u@'%' IDENTIFIED VIA ed25519 USING PASSWORD('***')"],
      ["GRANT SELECT ON shop.* TO r4_u@'%' IDENTIFIED BY 'r4my-grant'", "GRANT SELECT ON shop.* TO r4_u@'%' IDENTIFIED BY '***'"],
    ];
    // GRANT … IDENTIFIED BY is refused by the server (no grant option) and comes last; it is recorded all the same.
    const r = await w.cli(['--user=db', '-e', statements.map(([sql]) => sql).join('; ')]);
    expect(r.stderr).toMatch(/ERROR 1044 .*Access denied/);
    // Refused by the guardrail as a whole (one COM_QUERY, thanks to DELIMITER): recorded as guardrail.blocked with its text.
    const blocked = await w.cli(['--user=db'], { input: "DELIMITER //\nSET @r4 = 'ALTER USER r4_u@''%'' IDENTIFIED BY ''r4my-blocked'''; DROP TABLE shop.r4_none //\n" });
    expect(blocked.stderr).toMatch(/guardrail/);

    // Each statement is recorded, masked (a leaked form would leave one missing).
    await waitFor(() => statements.every(([, masked]) => w.tg.events.some((e) => e.type === 'db.query' && e.details.query === masked)) || undefined);
    const guard = await w.tg.waitForEvent((e) => (e.type === 'guardrail.blocked' || e.type === 'guardrail.unparsed') && String(e.details.query).includes('r4_none'));
    expect(guard.details.query).toBe("SET @r4 = '***'; DROP TABLE shop.r4_none");

    const events = JSON.stringify(w.tg.events);
    const files = filesText(w.tg.dataDir);
    expect(files).toContain('r4_u'); // the audit log on disk is plain text, so the search below means something
    for (const s of SECRETS) {
      expect(events).not.toContain(s);
      expect(files).not.toContain(s);
    }
  });
});
