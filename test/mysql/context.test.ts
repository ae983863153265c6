import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type MyWorld } from './helpers.ts';
import { rawLogin, RAW_CAPS, type RawClient } from './raw-client.ts';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { ResponseTracker, type CommandResponse } from '../../proxies/mysql/response.ts';
import { parseTextRow } from '../../proxies/mysql/session-query.ts';
import { CLIENT, Reader } from '../../proxies/mysql/wire.ts';
import { enableGeneralLog, readGeneralLog, compareWithGeneralLog } from './general-log.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * The database (and sql_mode) vigil records follows the server's own reports (session-state tracking in
 * OK packets, vigil's probes after a reset or an error), however the switch was written: for each way of
 * switching, the database on the statement's db.query event, and on the `SELECT DATABASE()` run right
 * after in the same session, is what that SELECT returns. The MariaDB general log then shows no statement
 * of these sessions without its event (vigil's own probes included).
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

const detail = (e: AuditEvent) => e.details as Record<string, any>;
let marker = 0;

interface Answer {
  response: CommandResponse;
  /** Payloads of the response, as the client received them. */
  packets: Buffer[];
  rows: (string | null)[][];
}

/** Send one command (payload starting with the command byte) and read its whole response. */
async function ask(c: RawClient, payload: Buffer, caps = RAW_CAPS): Promise<Answer> {
  const t = new ResponseTracker(caps);
  t.expect('results');
  c.send(encodePacket(0, payload));
  const packets: Buffer[] = [];
  for (;;) {
    const p = await c.next();
    packets.push(p.payload);
    const res = t.onPacket(p.payload);
    if (res) {
      const rows: (string | null)[][] = [];
      // Single result sets only: column count, definitions, (EOF), rows, end.
      if (res.results.length === 1 && res.results[0]!.rows) {
        const n = new Reader(packets[0]!).lenenc();
        const first = 1 + n + (caps & CLIENT.DEPRECATE_EOF ? 0 : 1);
        for (let i = first; i < first + res.results[0]!.rows!; i++) rows.push(parseTextRow(packets[i]!));
      }
      return { response: res, packets, rows };
    }
  }
}

const query = (c: RawClient, sql: string, caps = RAW_CAPS) => ask(c, Buffer.concat([Buffer.from([0x03]), Buffer.from(sql, 'utf8')]), caps);

/** SELECT DATABASE() with a unique marker: the server's answer and vigil's event for it. */
async function serverDatabase(c: RawClient): Promise<{ db: string | null; event: AuditEvent }> {
  const sql = `SELECT DATABASE(), ${++marker} AS ctx_marker`;
  const a = await query(c, sql);
  const event = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).query === sql);
  return { db: a.rows[0]![0]!, event };
}

/** The latest db.query of `session` whose query is `text` (or whose command is `text`). */
async function eventOf(session: string, text: string): Promise<AuditEvent> {
  await w.tg.waitForEvent((e) => e.type === 'db.query' && e.session_id === session && (detail(e).query === text || detail(e).command === text));
  return w.tg.events.filter((e) => e.type === 'db.query' && e.session_id === session && (detail(e).query === text || detail(e).command === text)).at(-1)!;
}

async function quit(c: RawClient): Promise<void> {
  c.send(encodePacket(0, Buffer.from([0x01])));
  await c.closed;
}

describe('mysql: the recorded database follows the server', () => {
  it('EXECUTE IMMEDIATE, PREPARE/EXECUTE and a CALL: events carry the database SELECT DATABASE() reports', async () => {
    const c = await rawLogin(w.port, w.alice, 'db', 'shop');
    const cases: { sqls: string[]; expected: string }[] = [
      { sqls: ["EXECUTE IMMEDIATE 'USE other'"], expected: 'other' },
      { sqls: ["PREPARE s FROM 'USE secret_db'", 'EXECUTE s'], expected: 'secret_db' },
      { sqls: ["SET @q = 'USE shop'", 'PREPARE s2 FROM @q', 'EXECUTE s2'], expected: 'shop' },
    ];
    for (const k of cases) {
      for (const sql of k.sqls) {
        const a = await query(c, sql);
        expect(a.response.results[0]!.error).toBeUndefined();
      }
      const { db, event } = await serverDatabase(c);
      expect(db).toBe(k.expected);
      expect(detail(event).database).toBe(db);
      const switched = await eventOf(event.session_id!, k.sqls.at(-1)!);
      expect(detail(switched).database).toBe(db);
      expect(switched.target.database).toBe(db);
    }
    // A compound statement that switches and then fails: no OK reports the switch; vigil asks the server.
    const compound = "BEGIN NOT ATOMIC EXECUTE IMMEDIATE 'USE other'; SELECT * FROM no_such_table; END";
    expect((await query(c, compound)).response.results[0]!.error?.code).toBe(1146);
    const afterFailure = await serverDatabase(c);
    expect(afterFailure.db).toBe('other');
    expect(detail(afterFailure.event).database).toBe('other');
    expect((await query(c, 'USE shop')).response.results[0]!.error).toBeUndefined();
    // A procedure runs in its own database and the server returns to the caller's afterwards.
    expect((await query(c, 'CREATE PROCEDURE other.where_am_i() BEGIN SELECT DATABASE(); END')).response.results[0]!.error).toBeUndefined();
    const call = await query(c, 'CALL other.where_am_i()');
    expect(call.response.results.map((r) => r.error)).toEqual([undefined, undefined]);
    const after = await serverDatabase(c);
    expect(after.db).toBe('shop');
    expect(detail(await eventOf(after.event.session_id!, 'CALL other.where_am_i()')).database).toBe('shop');
    await quit(c);
  });

  it('a USE hidden from text scanning by NO_BACKSLASH_ESCAPES or ANSI_QUOTES quoting is recorded under the database the server switched to', async () => {
    const c = await rawLogin(w.port, w.alice, 'db', 'shop');
    // NO_BACKSLASH_ESCAPES: `'a\'` is a whole string, so USE is a statement of its own.
    await query(c, "SET sql_mode='NO_BACKSLASH_ESCAPES'");
    const a = await query(c, "SELECT 'a\\'; USE other; SELECT '\\'");
    expect(a.response.results.some((r) => r.error)).toBe(false);
    let now = await serverDatabase(c);
    expect(now.db).toBe('other');
    expect(detail(now.event).database).toBe('other');
    // ANSI_QUOTES: `"x\"` is an identifier, so USE is a statement of its own; read without ANSI_QUOTES,
    // the text is one string. Vigil splits it the server's way only by knowing the session's sql_mode.
    await query(c, "SET sql_mode='ANSI_QUOTES'");
    const ansi = 'SELECT 1 AS "x\\"; USE secret_db; SELECT 2 AS "\\"';
    const b = await query(c, ansi);
    expect(b.response.results.map((r) => r.error?.message)).toEqual([undefined, undefined, undefined]);
    now = await serverDatabase(c);
    expect(now.db).toBe('secret_db');
    const events = w.tg.events.filter((e) => e.type === 'db.query' && e.session_id === now.event.session_id && detail(e).query?.startsWith?.('USE secret_db'));
    expect(events.map((e) => [detail(e).query, detail(e).database, detail(e).unsplit])).toEqual([['USE secret_db', 'secret_db', undefined]]);
    expect(detail(now.event).database).toBe('secret_db');
    await quit(c);
  });

  it('COM_INIT_DB and COM_RESET_CONNECTION (the server keeps the database; vigil sets its tracking up again)', async () => {
    const c = await rawLogin(w.port, w.alice, 'db', 'shop');
    const init = await ask(c, Buffer.concat([Buffer.from([0x02]), Buffer.from('other')]));
    expect(init.response.results[0]!.error).toBeUndefined();
    let now = await serverDatabase(c);
    expect(now.db).toBe('other');
    expect(detail(await eventOf(now.event.session_id!, 'COM_INIT_DB')).database).toBe('other');
    expect(detail(now.event).database).toBe('other');
    await query(c, "SET sql_mode='ANSI_QUOTES'");
    const reset = await ask(c, Buffer.from([0x1f]));
    expect(reset.response.results[0]!.error).toBeUndefined();
    now = await serverDatabase(c);
    expect(now.db).toBe('other');
    expect(detail(await eventOf(now.event.session_id!, 'COM_RESET_CONNECTION')).database).toBe('other');
    expect(detail(now.event).database).toBe('other');
    // The reset returned sql_mode to the server default: plain quoting again, read back by vigil's probe.
    const plain = await query(c, "SELECT '\"'; USE shop");
    expect(plain.response.results.map((r) => r.error)).toEqual([undefined, undefined]);
    expect(detail(await eventOf(now.event.session_id!, 'USE shop')).database).toBe('shop');
    // After the reset vigil tracks sql_mode again: an ANSI_QUOTES split is still followed.
    await query(c, "SET sql_mode='ANSI_QUOTES'");
    await query(c, 'SELECT 1 AS "x\\"; USE other; SELECT 2 AS "\\"');
    now = await serverDatabase(c);
    expect(now.db).toBe('other');
    const use = await eventOf(now.event.session_id!, 'USE other');
    expect([detail(use).database, detail(use).unsplit]).toEqual(['other', undefined]);
    const probes = w.tg.events.filter((e) => e.session_id === now.event.session_id && e.type === 'db.session_query');
    // Login: setup + probe; reset: setup + probe.
    expect(probes.map((e) => detail(e).query.split(' ')[0])).toEqual(['SET', 'SELECT', 'SET', 'SELECT']);
    await quit(c);
  });

  it('COM_CHANGE_USER is refused with an ERR and an event; the session keeps its database and login', async () => {
    const c = await rawLogin(w.port, w.alice, 'db', 'shop');
    await query(c, 'USE other');
    const change = await ask(c, Buffer.concat([Buffer.from([0x11]), Buffer.from('ed_user\0'), Buffer.from([0]), Buffer.from('shop\0')]));
    expect(change.response.results[0]!.error?.code).toBe(1148);
    const now = await serverDatabase(c);
    expect(now.db).toBe('other');
    const refused = await eventOf(now.event.session_id!, 'COM_CHANGE_USER');
    expect([refused.outcome, detail(refused).database, detail(refused).reason]).toEqual(['failure', 'other', 'change_user_not_allowed']);
    const who = await query(c, 'SELECT CURRENT_USER()');
    expect(who.rows[0]![0]).toBe('native_user@%');
    await quit(c);
  });

  it('a client that asked for CLIENT_SESSION_TRACK sees the server\'s session state; one that did not gets plain OK packets', async () => {
    const tracked = await rawLogin(w.port, w.alice, 'db', 'shop');
    const t = await query(tracked, 'USE other');
    expect(t.packets[0]!.readUInt16LE(3) & 0x4000).toBe(0x4000);
    expect(t.packets[0]!.includes(Buffer.from('other'))).toBe(true);
    const caps = RAW_CAPS & ~CLIENT.SESSION_TRACK;
    const plain = await rawLogin(w.port, w.alice, 'db', 'shop', caps);
    const u = await query(plain, 'USE other', caps);
    // 00, affected 0, insert id 0, status, warnings: nothing after (no info, no session state).
    expect(u.packets[0]!.length).toBe(7);
    expect(u.packets[0]!.readUInt16LE(3) & 0x4000).toBe(0);
    const upd = await query(plain, 'UPDATE shop.items SET price = price WHERE id = 1', caps);
    // An OK the server wrote without session state reaches the client as the server wrote it.
    expect(upd.packets[0]!.subarray(7).toString()).toBe('(Rows matched: 1  Changed: 0  Warnings: 0');
    const now = await serverDatabase(plain);
    expect(now.db).toBe('other');
    expect(detail(now.event).database).toBe('other');
    await quit(tracked);
    await quit(plain);
  });

  it('a switch to a database the role does not allow, hidden from the text check, closes the session', async () => {
    // db-limited: alice's analyst role allows database shop only.
    const c = await rawLogin(w.port, w.alice, 'db-limited', 'shop');
    const sql = "EXECUTE IMMEDIATE 'USE other'";
    const a = await query(c, sql);
    expect(a.response.results[0]!.error).toBeUndefined();
    // Before anything else runs, vigil closes the session with an ERR.
    c.send(encodePacket(0, Buffer.concat([Buffer.from([0x03]), Buffer.from("SELECT 'never run'")])));
    const err = await c.next();
    expect(err.payload[0]).toBe(0xff);
    expect(err.payload.subarray(9).toString()).toContain("switched to database 'other'");
    await c.closed;
    const e = await w.tg.waitForEvent((x) => x.type === 'db.query' && detail(x).query === sql && x.target.name === 'db-limited');
    expect(detail(e).database).toBe('other');
    const end = await w.tg.waitForEvent((x) => x.type === 'session.end' && x.session_id === e.session_id);
    expect(detail(end)).toMatchObject({ error: 'database_not_allowed', database: 'other' });
    expect(w.tg.events.some((x) => x.session_id === e.session_id && detail(x).query === "SELECT 'never run'")).toBe(false);
  });

  it('the general log shows no statement of these sessions without its db.query event', async () => {
    const sessions = new Set(w.tg.events.filter((e) => e.type === 'db.query').map((e) => e.session_id));
    for (const s of sessions) await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === s);
    const log = readGeneralLog(generalLog);
    const result = compareWithGeneralLog(log, w.tg.events);
    expect(result.backend).toBeGreaterThan(20);
    // SQL-level PREPARE / EXECUTE IMMEDIATE show as Prepare/Execute lines of the dynamic text, which is
    // part of the recorded statement that ran it.
    const recorded = w.tg.events.filter((e) => e.type === 'db.query').map((e) => String(detail(e).query ?? ''));
    const dynamic = (l: { command: string; text: string }) => (l.command === 'Prepare' || l.command === 'Execute') && recorded.some((q) => q.includes(l.text));
    expect(result.unmatched.filter((l) => !dynamic(l))).toEqual([]);
    // vigil's own session queries are in the log, and recorded.
    expect(log.some((l) => l.text.startsWith('SELECT DATABASE(), @@session.sql_mode'))).toBe(true);
  });
});
