import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type MyWorld } from './helpers.ts';
import { rawLogin, type RawClient } from './raw-client.ts';
import { enableGeneralLog, readGeneralLog } from './general-log.ts';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { COM } from '../../proxies/mysql/wire.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Multi-statement COM_QUERY texts against the real server: what MariaDB answered (result set, OK, ERR in
 * order) and what its general log received, against vigil's db.query records of the same session — one
 * record per result, naming the statement that produced it.
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
const query = (sql: string) => encodePacket(0, Buffer.concat([Buffer.from([COM.QUERY]), Buffer.from(sql)]));
const lenencSize = (x: number) => (x < 0xfb ? 1 : x === 0xfc ? 3 : x === 0xfd ? 4 : 9);
/** Status flags of an OK or EOF packet (after its affected-rows and insert-id length-encoded integers). */
const statusOf = (p: Buffer) => {
  let i = 1;
  i += lenencSize(p[i]!);
  i += lenencSize(p[i]!);
  return p.readUInt16LE(i);
};
const MORE_RESULTS = 0x08;

/** The kinds of results of one whole answer ('rs', 'ok', 'err'), up to the one without MORE_RESULTS. */
async function results(c: RawClient): Promise<string[]> {
  const kinds: string[] = [];
  let inSet = false;
  for (;;) {
    const p = (await c.next(10_000)).payload;
    if (p[0] === 0xff) return [...kinds, 'err'];
    if (!inSet && p[0] === 0x00) {
      kinds.push('ok');
      if (!(statusOf(p) & MORE_RESULTS)) return kinds;
    } else if (!inSet) {
      kinds.push('rs');
      inSet = true;
    } else if (p[0] === 0xfe && p.length < 0xffffff) {
      // The result set's end (an OK with the 0xFE header under CLIENT_DEPRECATE_EOF).
      inSet = false;
      if (!(statusOf(p) & MORE_RESULTS)) return kinds;
    }
  }
}

async function run(sql: string) {
  const before = new Set(w.tg.events.filter((e) => e.type === 'session.end').map((e) => e.session_id));
  const c = await rawLogin(w.port, w.alice, 'db', 'shop');
  c.send(query(sql));
  const kinds = await results(c);
  c.send(encodePacket(0, Buffer.from([COM.QUIT])));
  await c.closed;
  const end = await w.tg.waitForEvent((e) => e.type === 'session.end' && !before.has(e.session_id), 15_000);
  const thread = detail(end).backend_thread_id;
  const logged = readGeneralLog(generalLog).filter((l) => l.id === thread && l.command === 'Query').map((l) => l.text);
  const recorded = w.tg.events.filter((e) => e.type === 'db.query' && e.session_id === end.session_id && detail(e).command === 'COM_QUERY').map((e) => ({ q: detail(e).query, o: e.outcome, u: detail(e).unsplit, rows: detail(e).rows_returned, aff: detail(e).rows_affected, notExecuted: detail(e).not_executed }));
  return { kinds, logged, recorded };
}

/**
 * A `;` followed by comments only (`SELECT 1; -- why`) is, to the server, one more statement of the batch:
 * it answers it with an OK of its own (an ERR when a `;` or an unterminated comment follows). The record
 * must have one entry per statement the server answered, that entry naming the comment, never a second run
 * of the statement before it. Whitespace alone after the last `;` gets no answer and no record.
 */
describe('a comment after the last `;` is a statement of its own', () => {
  it.each([
    ['SELECT 21; -- c', ['rs', 'ok'], [['SELECT 21', 'success'], ['-- c', 'success']]],
    ['SELECT 22; /* c */;', ['rs', 'ok'], [['SELECT 22', 'success'], ['/* c */', 'success']]],
    ['SELECT 23;\n# c\n', ['rs', 'ok'], [['SELECT 23', 'success'], ['# c', 'success']]],
    ['BEGIN NOT ATOMIC SELECT 24; END; -- c', ['rs', 'ok', 'ok'], [['BEGIN NOT ATOMIC SELECT 24; END', 'success'], ['BEGIN NOT ATOMIC SELECT 24; END', 'success'], ['-- c', 'success']]],
    ['SELECT 25; /* unterminated', ['rs', 'err'], [['SELECT 25', 'success'], ['/* unterminated', 'failure']]],
    ['SELECT 26; /* c */; SELECT 27', ['rs', 'err'], [['SELECT 26', 'success'], ['/* c */', 'failure']]],
    ['/* only a comment */', ['ok'], [['/* only a comment */', 'success']]],
    ['SELECT 28;  \n', ['rs'], [['SELECT 28', 'success']]],
  ] as const)('%j', async (sql, answers, records) => {
    const r = await run(sql);
    expect(r.kinds).toEqual(answers);
    // The server received the text whole (its general log has one line for the COM_QUERY).
    const norm = (t: string) => t.replace(/[\s;]+$/, '');
    expect(r.logged.map(norm)).toContain(norm(sql));
    expect(r.recorded.map((x) => [x.q, x.o])).toEqual(records);
  });

  it('a statement the comment segment stopped is named as not executed', async () => {
    const r = await run('SELECT 29; -- c\n; SELECT 30');
    expect(r.kinds).toEqual(['rs', 'err']);
    expect(r.recorded.map((x) => [x.q, x.o, x.notExecuted])).toEqual([['SELECT 29', 'success', undefined], ['-- c', 'failure', ['SELECT 30']]]);
  });
});

/**
 * The server parses each statement of a batch after running the one before, under the sql_mode that one
 * left. Dynamic SQL can change the mode without the text saying "sql_mode": vigil must not split the rest
 * under the mode it knew — where the readings disagree, the whole text is the record (never a statement
 * the server ran hidden inside a string that is not one).
 */
describe('sql_mode changed mid-batch by dynamic SQL', () => {
  it('EXECUTE IMMEDIATE of a built SET sql_mode: the text is recorded whole, marked unsplit', async () => {
    const sql = "EXECUTE IMMEDIATE CONCAT('SET sq','l_mode=''NO_BACKSLASH_ESCAPES'''); SELECT 'a\\'; SELECT 99; -- '";
    const r = await run(sql);
    // The server ran four statements: the EXECUTE, SELECT 'a\', SELECT 99, and the comment.
    expect(r.kinds).toEqual(['ok', 'rs', 'rs', 'ok']);
    expect(r.recorded.map((x) => [x.q, x.u])).toEqual(Array(4).fill([sql, true]));
  });

  it('PREPARE and EXECUTE of the same: recorded whole', async () => {
    const sql = "SET @m = CONCAT('SET SESSION sq', 'l_mode = ''ANSI_QUOTES'''); PREPARE m FROM @m; EXECUTE m; SELECT 1 AS \"a\\\"; SELECT 98; -- \"";
    const r = await run(sql);
    // Under ANSI_QUOTES "a\" is an alias, SELECT 98 a statement, the rest a comment.
    expect(r.kinds).toEqual(['ok', 'ok', 'ok', 'rs', 'rs', 'ok']);
    expect(r.recorded.every((x) => x.q === sql && x.u === true)).toBe(true);
  });
});

/**
 * EXECUTE [IMMEDIATE] runs a statement the text does not show: a CALL or a compound statement run that way
 * answers with its result sets and then an OK, like one written out. The results must go to the statements
 * that produced them; where the results fit more than one way, every record carries the whole text.
 */
describe('results of a statement run by EXECUTE', () => {
  beforeAll(async () => {
    await w.db.query('CREATE PROCEDURE shop.one() SELECT 1');
  });

  it.each([
    ["EXECUTE IMMEDIATE 'CALL shop.one()'; SELECT 5", ['rs', 'ok', 'rs'], [["EXECUTE IMMEDIATE 'CALL shop.one()'", 1], ["EXECUTE IMMEDIATE 'CALL shop.one()'", undefined], ['SELECT 5', 1]]],
    ["PREPARE s FROM 'CALL shop.one()'; EXECUTE s; SELECT 6", ['ok', 'rs', 'ok', 'rs'], [["PREPARE s FROM 'CALL shop.one()'", undefined], ['EXECUTE s', 1], ['EXECUTE s', undefined], ['SELECT 6', 1]]],
    ["EXECUTE IMMEDIATE 'SELECT 7'; SELECT 8", ['rs', 'rs'], [["EXECUTE IMMEDIATE 'SELECT 7'", 1], ['SELECT 8', 1]]],
    [
      "EXECUTE IMMEDIATE 'BEGIN NOT ATOMIC SELECT 1; SELECT 2; END'; SELECT 9",
      ['rs', 'rs', 'ok', 'rs'],
      [["EXECUTE IMMEDIATE 'BEGIN NOT ATOMIC SELECT 1; SELECT 2; END'", 1], ["EXECUTE IMMEDIATE 'BEGIN NOT ATOMIC SELECT 1; SELECT 2; END'", 1], ["EXECUTE IMMEDIATE 'BEGIN NOT ATOMIC SELECT 1; SELECT 2; END'", undefined], ['SELECT 9', 1]],
    ],
  ] as const)('%j', async (sql, answers, records) => {
    const r = await run(sql);
    expect(r.kinds).toEqual(answers);
    expect(r.recorded.map((x) => [x.q, x.rows])).toEqual(records);
  });

  it('results that fit two ways (the CALL failed, or the statement after it): the whole text on each', async () => {
    expect((await run('CREATE PROCEDURE shop.fails() BEGIN SELECT 1; SELECT no_such_column FROM shop.items; END')).kinds).toEqual(['ok']);
    const sql = "EXECUTE IMMEDIATE 'CALL shop.fails()'; SELECT 10";
    const r = await run(sql);
    expect(r.kinds).toEqual(['rs', 'err']);
    expect(r.recorded.map((x) => [x.q, x.u, x.o])).toEqual([
      [sql, true, 'success'],
      [sql, true, 'failure'],
    ]);
  });
});
