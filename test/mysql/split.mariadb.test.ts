import { SESSION_PROBE, SESSION_SETUP } from '../../proxies/mysql/session-query.ts';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type MyWorld } from './helpers.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Statement boundaries through the gateway against a real MariaDB: the stock `mariadb` client sends
 * compound statements (a procedure with several inner statements, BEGIN NOT ATOMIC) followed by more
 * statements in one COM_QUERY (DELIMITER changes the client's own splitting; it never reaches the server).
 * The server's logs are the oracle: the general log holds each COM_QUERY as received, the slow log (every
 * statement, long_query_time = 0) each statement as the server's parser delimited it. The db.query events
 * must name the same statements, in order, with the same text.
 */
let w: MyWorld;
beforeAll(async () => {
  w = await startWorld();
  await w.db.query(`
    CREATE TABLE shop.log (a INT);
    SET GLOBAL log_output = 'TABLE'; SET GLOBAL general_log = 1; SET GLOBAL slow_query_log = 1; SET GLOBAL long_query_time = 0;
  `);
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const detail = (e: AuditEvent) => e.details as Record<string, any>;

/** The backend user's log rows (not root's), without what the client sends by itself at connect. */
async function serverLog(table: 'general_log' | 'slow_log'): Promise<string[]> {
  const [col, where] = table === 'general_log' ? ['argument', "AND command_type = 'Query'"] : ['sql_text', ''];
  const rows = await w.db.query(`SELECT HEX(${col}) FROM mysql.${table} WHERE user_host LIKE 'native_user%' ${where} ORDER BY ${table === 'general_log' ? 'event_time' : 'start_time'}`);
  // Left out: the client's own version query, and vigil's session-state queries (db.session_query events).
  return rows.map(([hex]) => Buffer.from(hex!, 'hex').toString('utf8')).filter((t) => !/^select @@version_comment/i.test(t) && t !== SESSION_SETUP && t !== SESSION_PROBE);
}

async function truncateLogs(): Promise<void> {
  await w.db.query('SET GLOBAL general_log = 0; SET GLOBAL slow_query_log = 0; TRUNCATE mysql.general_log; TRUNCATE mysql.slow_log; SET GLOBAL general_log = 1; SET GLOBAL slow_query_log = 1;');
}

/** Run a script through the gateway; the session's db.query texts once it has ended. */
async function run(script: string): Promise<{ texts: string[]; events: AuditEvent[] }> {
  const before = w.tg.events.length;
  // --comments: the client keeps comments in what it sends (it strips them by default).
  const r = await w.cli(['--user=db', '--comments', 'shop'], { input: script });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const end = await w.tg.waitForEvent((e) => e.type === 'session.end' && w.tg.events.indexOf(e) >= before);
  const events = w.tg.events.filter((e) => e.type === 'db.query' && e.session_id === end.session_id && detail(e).command === 'COM_QUERY');
  return { texts: events.map((e) => detail(e).query).filter((q) => !/^select @@version_comment/i.test(q)), events };
}

describe('statement boundaries match the server (stock mariadb client, real MariaDB)', () => {
  it('records a procedure with several inner statements and a BEGIN NOT ATOMIC block whole, as the server split them', async () => {
    await truncateLogs();
    const proc = 'CREATE PROCEDURE p_multi() BEGIN INSERT INTO log VALUES (1); DELETE FROM log WHERE a = 1; UPDATE log SET a = 2; END';
    const block =
      "BEGIN NOT ATOMIC DECLARE x INT DEFAULT 0; lbl: WHILE x < 3 DO SET x = x + 1; IF x = 2 THEN ITERATE lbl; END IF; INSERT INTO log VALUES (CASE WHEN x > 1 THEN x ELSE 0 END); END WHILE lbl; DELETE FROM log WHERE a = 0; END";
    const script = [
      'DELIMITER //',
      `${proc}; SELECT 'after;proc' //`,
      `${block};\nSELECT COUNT(*) FROM log /* c; */ //`,
      'DELIMITER ;',
      'CALL p_multi();',
      '',
    ].join('\n');
    const { texts } = await run(script);
    const general = await serverLog('general_log');
    const slow = await serverLog('slow_log');
    // DELIMITER is the client's: the server never saw it.
    expect(general.some((t) => /DELIMITER/i.test(t))).toBe(false);
    // The general log holds each COM_QUERY whole: the compound statements and what follows them.
    expect(general.map((t) => t.trimEnd())).toEqual([`${proc}; SELECT 'after;proc'`, `${block};\nSELECT COUNT(*) FROM log /* c; */`, 'CALL p_multi()']);
    // The slow log holds each statement as the server's parser ended it (trailing comments included).
    expect(slow.map((t) => t.trimEnd())).toEqual([proc, "SELECT 'after;proc'", block, 'SELECT COUNT(*) FROM log /* c; */', 'CALL p_multi()']);
    expect(texts).toEqual([proc, "SELECT 'after;proc'", block, 'SELECT COUNT(*) FROM log', 'CALL p_multi()']);
    // What the events leave out of the server's statements is only a trailing comment.
    slow.forEach((s, i) => expect(s.startsWith(texts[i]!)).toBe(true));
  });

  it('splits as the server does under NO_BACKSLASH_ESCAPES (announced in the OK status flags)', async () => {
    await truncateLogs();
    const two = "SELECT 'a\\'; SELECT 'b'";
    const script = ["SET sql_mode = 'NO_BACKSLASH_ESCAPES';", 'DELIMITER //', `${two} //`, ''].join('\n');
    const { texts, events } = await run(script);
    const slow = await serverLog('slow_log');
    expect(slow.map((t) => t.trimEnd())).toEqual(["SET sql_mode = 'NO_BACKSLASH_ESCAPES'", "SELECT 'a\\'", "SELECT 'b'"]);
    expect(texts).toEqual(slow.map((t) => t.trimEnd()));
    expect(events.every((e) => detail(e).unsplit === undefined)).toBe(true);
  });

  it('splits text whose boundaries depend on ANSI_QUOTES as the server does (sql_mode is session-tracked)', async () => {
    await truncateLogs();
    // Default mode: one string, one statement. Under ANSI_QUOTES it would be an identifier and two more
    // statements: vigil knows the session's sql_mode from the server, so it splits as the server did.
    const text = 'SELECT "x\\"; SELECT \'y\' -- "';
    const { texts, events } = await run(['DELIMITER //', `${text} //`, ''].join('\n'));
    const slow = await serverLog('slow_log');
    expect(slow.map((t) => t.trimEnd())).toEqual([text]);
    expect(texts).toEqual([text]);
    expect(detail(events.find((e) => detail(e).query === text)!).unsplit).toBeUndefined();
  });

  it('gives each result of a compound block to that block, and the statements after it their own texts', async () => {
    await truncateLogs();
    const block = 'BEGIN NOT ATOMIC SELECT 1; SELECT 2; END';
    const { events } = await run(['DELIMITER //', `${block}; SELECT 3 AS three //`, ''].join('\n'));
    // The block answers with two result sets and its own OK; the last statement with one result set.
    const byText = events.map((e) => [detail(e).query, detail(e).statement_index]);
    expect(byText).toEqual([
      [block, 0],
      [block, 0],
      [block, 0],
      ['SELECT 3 AS three', 1],
    ]);
  });

  it('refuses KILL inside a compound block: it cannot be checked there, so it never reaches the server', async () => {
    await truncateLogs();
    const block = 'BEGIN NOT ATOMIC KILL 999999; END';
    const before = w.tg.events.length;
    const r = await w.cli(['--user=db', 'shop'], { input: ['DELIMITER //', `${block} //`, ''].join('\n') });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/KILL is not allowed inside a compound statement/);
    const refused = await w.tg.waitForEvent((e) => e.type === 'db.query' && w.tg.events.indexOf(e) >= before && detail(e).query === block);
    expect(refused.outcome).toBe('failure');
    expect((await serverLog('general_log')).some((t) => t.includes('KILL'))).toBe(false);
  });
});
