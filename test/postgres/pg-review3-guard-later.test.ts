import { describe, it, expect, beforeAll, beforeEach, afterAll } from 'vitest';
import { startWorld, RawClient, serverStatements, STATEMENT_LOG, answerCodes, type PgWorld } from './helpers.ts';
import { msg, parse, bind, exec, query, sync } from './wire.ts';
import { waitFor } from '../support/tmp.ts';

/**
 * A DO body, and a string it EXECUTEs, are lexed when they run, in the standard_conforming_strings mode
 * of that moment, which is not always the mode when vigil sees the text: a DO prepared by Parse runs at
 * Execute, possibly after a SET in another batch; a SET earlier in the same query string, or a
 * set_config inside the block itself, changes the mode before the body or the EXECUTE'd string is
 * lexed. `'a\' , '; DROP …; -- '` is two harmless literals with the mode on and a DROP with it off.
 * The guardrail (default on_unparsable: refuse) must refuse each, and the server must never run a DROP.
 */
const TABLE = 'guard_later_t';
const SMUGGLED = `'a\\' , '; DROP TABLE ${TABLE}; -- '`;
const DO_BODY = `DO $$BEGIN PERFORM ${SMUGGLED};\nEND$$`;
const SELF_SET = `DO $$BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); EXECUTE $q$SELECT ${SMUGGLED}$q$; END$$`;

let w: PgWorld;
beforeAll(async () => {
  w = await startWorld({ guardrails: [{ name: 'no-drops', targets: ['pg'], roles: ['*'], sql: { block: ['drop'] } }] }, { pgConf: STATEMENT_LOG });
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const codes = (ms: { type: string; body: Buffer }[]) => answerCodes(ms.filter((m) => m.type !== 'S' && m.type !== 'N'));

async function session(app: string, body: (send: (...parts: Buffer[]) => Promise<string>) => Promise<void>): Promise<void> {
  const c = await RawClient.connect(w, 'pg', [['application_name', app]]);
  await body(async (...parts) => codes(await c.pipeline(parts)));
  c.close();
}

const tableExists = () => w.pg.psql(`SELECT to_regclass('${TABLE}') IS NOT NULL`);
const ranDrop = (app: string) => serverStatements(w.pg, 'scram_user', (l) => l.application_name === `alice via ${app}`).some((s) => /DROP TABLE/.test(s.sql));

describe('postgres guardrails: bodies lexed later than vigil sees them', () => {
  // Owned by the session's login, so a DROP that reaches the server succeeds (not refused by privileges).
  beforeEach(() => {
    w.pg.psql(`CREATE TABLE IF NOT EXISTS ${TABLE} (id int); ALTER TABLE ${TABLE} OWNER TO scram_user`);
  });

  it('a DO prepared with the mode on and executed after SET standard_conforming_strings = off is refused at Parse', async () => {
    const app = 'guard-later-parse';
    await session(app, async (send) => {
      expect(await send(parse('later', DO_BODY), sync)).toBe('1 Z');
      expect(await send(query('SET standard_conforming_strings = off'))).toBe('C Z');
      expect(await send(bind('', 'later'), exec(''), sync)).toBe('2 E42501 Z');
    });
    expect(tableExists()).toBe('t');
    await w.tg.waitForEvent((e) => e.type === 'guardrail.blocked' && e.details?.sql === DO_BODY);
    expect(ranDrop(app)).toBe(false);
  });

  it('SET standard_conforming_strings = off and a DO in one query string: refused', async () => {
    const app = 'guard-later-multi';
    const sql = `SET standard_conforming_strings = off; ${DO_BODY}`;
    await session(app, async (send) => {
      expect(await send(query(sql))).toBe('E42501 Z');
    });
    expect(tableExists()).toBe('t');
    await w.tg.waitForEvent((e) => e.type === 'guardrail.blocked' && e.details?.sql === sql);
    expect(ranDrop(app)).toBe(false);
  });

  it('a DO that turns the mode off itself, then EXECUTEs a literal: refused', async () => {
    const app = 'guard-later-self';
    await session(app, async (send) => {
      expect(await send(query(SELF_SET))).toBe('E42501 Z');
    });
    expect(tableExists()).toBe('t');
    await w.tg.waitForEvent((e) => e.type === 'guardrail.blocked' && e.details?.sql === SELF_SET);
    await waitFor(() => serverStatements(w.pg, 'scram_user', (l) => l.application_name === `alice via ${app}`).length > 0 || undefined, 10_000, 'the server log');
    expect(ranDrop(app)).toBe(false);
  });
});
