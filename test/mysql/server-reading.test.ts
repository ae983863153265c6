import fs from 'node:fs';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type MyWorld } from './helpers.ts';
import { rawLogin, RAW_CAPS, type RawClient } from './raw-client.ts';
import { enableGeneralLog, readGeneralLog, compareWithGeneralLog } from './general-log.ts';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { ResponseTracker, type CommandResponse } from '../../proxies/mysql/response.ts';
import { COM, u32 } from '../../proxies/mysql/wire.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * vigil must read what it checks and records as the server reads it: statement text in the session's
 * character set (gbk's 0xBF 0x5C is one character, not a byte and a backslash), under the sql_mode the
 * server applies (session tracking cannot be switched off under vigil), and prepared-statement
 * executions decoded against the statement the server will run. Each against real MariaDB, with the
 * general log as the witness of what ran.
 */
let w: MyWorld;
let generalLog: string;
beforeAll(async () => {
  w = await startWorld();
  generalLog = await enableGeneralLog(w.db);
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const detail = (e: AuditEvent | undefined) => e?.details as Record<string, any>;

/** Send one command payload (command byte first) and read its whole response. */
async function ask(c: RawClient, payload: Buffer): Promise<CommandResponse> {
  const t = new ResponseTracker(RAW_CAPS);
  t.expect('results');
  c.send(encodePacket(0, payload));
  for (;;) {
    const res = t.onPacket((await c.next()).payload);
    if (res) return res;
  }
}
const queryBytes = (sql: Buffer) => Buffer.concat([Buffer.from([COM.QUERY]), sql]);
const query = (c: RawClient, sql: string) => ask(c, queryBytes(Buffer.from(sql, 'utf8')));

/** The session id of a raw connection (from a marker query's event). */
async function sessionOf(c: RawClient, marker: string): Promise<string> {
  await query(c, `SELECT '${marker}'`);
  return (await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).query === `SELECT '${marker}'`)).session_id!;
}

async function quit(c: RawClient): Promise<void> {
  c.send(encodePacket(0, Buffer.from([COM.QUIT])));
  await c.closed;
}

const eventsOf = (session: string) => w.tg.events.filter((e) => e.type === 'db.query' && e.session_id === session);

/** `SELECT '<0xBF 0x5C>'` + `rest`: to a gbk server the literal ends at the second quote. */
const gbkTrap = (rest: string) => Buffer.concat([Buffer.from("SELECT '"), Buffer.from([0xbf, 0x5c]), Buffer.from(`'${rest}`)]);

describe('mysql: vigil reads statement text as the server does', () => {
  it('after SET NAMES gbk, a KILL hidden behind 0xBF 0x5C is refused, a hidden USE is checked, and a split follows the server', async () => {
    const c = await rawLogin(w.port, w.alice, 'db-limited');
    const session = await sessionOf(c, 'gbk-session');
    expect((await query(c, 'SET NAMES gbk')).results[0]!.error).toBeUndefined();

    // To vigil before the fix: one SELECT of a literal. To the server: SELECT, KILL 1234, a comment.
    const kill = await ask(c, queryBytes(gbkTrap('; KILL 1234; -- ')));
    expect(kill.results[0]!.error).toMatchObject({ code: 1148 });
    expect(kill.results[0]!.error!.message).toMatch(/only "KILL/);

    // A USE of a database the analyst role may not use (db-limited: shop only), hidden the same way.
    const use = await ask(c, queryBytes(gbkTrap('; USE secret_db; -- ')));
    expect(use.results[0]!.error).toMatchObject({ code: 1044 });

    // Allowed text: the server answers two statements, and vigil records two, each with its own text.
    const two = await ask(c, queryBytes(gbkTrap('; SELECT 2 AS gbk_second')));
    expect(two.results.map((r) => r.error)).toEqual([undefined, undefined]);
    const e2 = await w.tg.waitForEvent((e) => e.session_id === session && detail(e).query === 'SELECT 2 AS gbk_second');
    expect(detail(e2)).toMatchObject({ statement_index: 1, text_escaped: true, rows_returned: 1 });
    const e1 = eventsOf(session).find((e) => detail(e).statement_index === 0 && detail(e).query === "SELECT '\\xBF\\'")!;
    expect(detail(e1)).toMatchObject({ rows_returned: 1, text_escaped: true });
    await quit(c);
    await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === session);

    // The server saw neither refused text (no KILL, no USE from this session), and every statement it ran
    // has its event. The log holds gbk bytes: read as latin1, byte for byte.
    const thread = detail(w.tg.events.find((e) => e.type === 'session.end' && e.session_id === session)).backend_thread_id as number;
    const raw = fs.readFileSync(generalLog, 'latin1');
    expect(raw).not.toContain('KILL 1234');
    expect(raw).not.toContain('USE secret_db');
    expect(raw).toContain(`SELECT '\u00bf\\'; SELECT 2 AS gbk_second`);
    const ours = readGeneralLog(generalLog).filter((l) => l.id === thread && l.command === 'Query' && !l.text.includes('SELECT 2 AS gbk_second'));
    expect(ours.length).toBeGreaterThan(2);
    const cmp = compareWithGeneralLog(ours, w.tg.events);
    expect(cmp.unmatched).toEqual([]);
  });

  it('refuses switching session tracking off, and re-learns sql_mode if tracking was switched off unseen', async () => {
    const c = await rawLogin(w.port, w.alice);
    const session = await sessionOf(c, 'tracking-session');
    for (const sql of ["SET session_track_system_variables=''", "SET @@session.session_track_schema = OFF", "PREPARE s FROM 'SET SESSION `session_track_system_variables` /* x */ := \"\"'"]) {
      const r = await query(c, sql);
      expect(r.results[0]!.error).toMatchObject({ code: 1148 });
      const e = await w.tg.waitForEvent((x) => x.session_id === session && detail(x).query === sql);
      expect(e.outcome).toBe('failure');
      expect(detail(e).error.message).toMatch(/session_track_system_variables/);
    }
    // Dynamic SQL hides the name from the text check: the server switches tracking off. NO_BACKSLASH_ESCAPES
    // then comes without a tracked sql_mode, but with the status flag: vigil sets tracking up again.
    expect((await query(c, "EXECUTE IMMEDIATE CONCAT('SET session_track_', 'system_variables=''''')")).results[0]!.error).toBeUndefined();
    expect((await query(c, "SET sql_mode='NO_BACKSLASH_ESCAPES'")).results[0]!.error).toBeUndefined();
    // Under NO_BACKSLASH_ESCAPES 'a\' is a whole literal: two statements, and vigil records two.
    const r = await query(c, "SELECT 'a\\'; SELECT 'nbe second' AS x");
    expect(r.results.map((x) => x.error)).toEqual([undefined, undefined]);
    const second = await w.tg.waitForEvent((x) => x.session_id === session && detail(x).query === "SELECT 'nbe second' AS x");
    expect(detail(second).statement_index).toBe(1);
    expect((await query(c, 'SELECT @@session.session_track_system_variables')).results[0]!.error).toBeUndefined();
    await quit(c);
    await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === session);
    const thread = detail(w.tg.events.find((e) => e.type === 'session.end' && e.session_id === session)).backend_thread_id as number;
    const log = readGeneralLog(generalLog).filter((l) => l.id === thread);
    // The refused ones never reached the server.
    expect(log.some((l) => /@@session.session_track_schema|PREPARE s/.test(l.text))).toBe(false);
    // The server logs EXECUTE IMMEDIATE's generated statement as an Execute line of its own; its event is
    // the EXECUTE IMMEDIATE's (this session prepares nothing over the binary protocol).
    expect(compareWithGeneralLog(log.filter((l) => l.command !== 'Execute'), w.tg.events).unmatched).toEqual([]);
  });

  it('an EXECUTE of the id a pipelined PREPARE will get is decoded with its parameters; an id never confirmed is refused', async () => {
    const c = await rawLogin(w.port, w.alice);
    const session = await sessionOf(c, 'pipelined-execute');
    const prepare = (sql: string) => encodePacket(0, Buffer.concat([Buffer.from([COM.STMT_PREPARE]), Buffer.from(sql)]));
    // One LONGLONG parameter, bound with its type.
    const value = Buffer.alloc(8);
    value.writeBigInt64LE(4242n);
    const execute = (id: number) => encodePacket(0, Buffer.concat([Buffer.from([COM.STMT_EXECUTE]), u32(id), Buffer.from([0]), u32(1), Buffer.from([0, 1, 0x08, 0]), value]));
    c.send(prepare('SELECT ? AS first_prepared'));
    const first = await w.tg.waitForEvent((e) => e.session_id === session && detail(e).command === 'COM_STMT_PREPARE');
    const predicted = (detail(first).statement_id as number) + 1;
    // PREPARE and EXECUTE(predicted id) in one write: the server runs the EXECUTE with 4242.
    c.send(Buffer.concat([prepare('SELECT ? AS predicted'), execute(predicted)]));
    const ex = await w.tg.waitForEvent((e) => e.session_id === session && detail(e).command === 'COM_STMT_EXECUTE');
    expect(detail(ex)).toMatchObject({ query: 'SELECT ? AS predicted', params: [4242], statement_id: predicted, rows_returned: 1 });
    expect(detail(ex).unknown_statement).toBeUndefined();

    // An id the server never confirmed: refused by vigil with the server's own error, and recorded.
    const from = w.tg.events.length;
    c.send(execute(9999));
    const refused = await w.tg.waitForEvent((e) => e.session_id === session && detail(e).command === 'COM_STMT_EXECUTE' && w.tg.events.indexOf(e) >= from);
    expect(refused.outcome).toBe('failure');
    expect(detail(refused)).toMatchObject({ statement_id: 9999, unknown_statement: true, error: { code: 1243 } });
    // The session stays in step.
    await sessionOf(c, 'after-unknown-execute');
    await quit(c);
    await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === session);
    const thread = detail(w.tg.events.find((e) => e.type === 'session.end' && e.session_id === session)).backend_thread_id as number;
    const log = readGeneralLog(generalLog).filter((l) => l.id === thread);
    const executes = log.filter((l) => l.command === 'Execute');
    expect(executes.map((l) => l.text)).toEqual(['SELECT 4242 AS predicted']);
    expect(compareWithGeneralLog(log, w.tg.events).unmatched).toEqual([]);
  });
});
