import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import mysql from 'mysql2/promise';
import { startMariadb, type MariadbHandle } from '../support/mariadb.ts';
import { analyzeSql } from '../../proxies/mysql/sql.ts';
import { Gen, generate } from './split-gen.ts';

/**
 * Differential test of the splitter against MariaDB's own parser: generated multi-statement batches (valid
 * SQL, compound blocks, stored-program bodies, comments, quoting under default, NO_BACKSLASH_ESCAPES and ANSI_QUOTES)
 * are sent as one COM_QUERY each; MariaDB's slow log (long_query_time = 0) records each top-level
 * statement as its parser delimited it (a few kinds, such as CREATE FUNCTION, are not logged). analyzeSql
 * must find the same statements: each logged one holds exactly one recorded text with only comments and
 * whitespace around it, and no recorded text straddles a server boundary.
 */
let db: MariadbHandle;
let admin: mysql.Connection;
beforeAll(async () => {
  db = await startMariadb();
  await db.query(`
    CREATE DATABASE s; CREATE TABLE s.t (a INT, b INT, \`begin\` INT, \`end\` INT); CREATE TABLE s.t2 (a INT);
    SET GLOBAL log_output = 'TABLE'; SET GLOBAL slow_query_log = 1; SET GLOBAL long_query_time = 0;
  `);
  admin = await mysql.createConnection({ socketPath: db.socket, user: 'root', database: 's' });
}, 120_000);
afterAll(async () => {
  await admin?.end();
  await db?.stop();
});

/** Whitespace and comments only (what may surround a recorded text inside the server's statement). */
const NOTHING = /^(?:\s+|\/\*(?!!)[^]*?\*\/|--(?:[ \t\n\r]|$)[^\n]*(?:\n|$)|#[^\n]*(?:\n|$))*$/;

const SENTINEL = 'DO 0 /* sentinel */';
const BATCHES = Number(process.env.VIGIL_SPLIT_SERVER_BATCHES ?? 120);

describe('splitter against MariaDB', () => {
  it(`finds the statements MariaDB's parser finds (${BATCHES} generated batches per mode)`, async () => {
    let compared = 0;
    let statements = 0;
    const rejected: string[] = [];
    const unlogged = new Set<string>();
    for (const [nbe, ansi] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      const conn = await mysql.createConnection({ socketPath: db.socket, user: 'root', database: 's', multipleStatements: true, charset: 'UTF8MB4_GENERAL_CI' });
      await conn.query(`SET SESSION sql_mode = '${[nbe ? 'NO_BACKSLASH_ESCAPES' : '', ansi ? 'ANSI_QUOTES' : ''].filter(Boolean).join(',')}'`);
      const [[{ id }]] = (await conn.query('SELECT CONNECTION_ID() AS id')) as any;
      for (let k = 0; k < BATCHES; k++) {
        const seed = 7_000_000 + k + (nbe ? 1_000_000 : 0) + (ansi ? 2_000_000 : 0);
        const c = generate(new Gen(seed, nbe, ansi, true));
        await admin.query('SET GLOBAL slow_query_log = 0');
        await admin.query('TRUNCATE mysql.slow_log');
        await admin.query('SET GLOBAL slow_query_log = 1');
        try {
          await conn.query(c.sql);
        } catch (e) {
          rejected.push(`${(e as Error).message} in seed ${seed}`);
          continue;
        }
        // The server logs a statement after answering it: a sentinel statement on the same connection,
        // once logged, says every statement of the batch is.
        await conn.query(SENTINEL);
        let texts: string[] = [];
        for (let tries = 0; tries < 200 && !texts.includes(SENTINEL); tries++) {
          if (tries > 0) await new Promise((r) => setTimeout(r, 10));
          const [rows] = (await admin.query('SELECT HEX(sql_text) AS h FROM mysql.slow_log WHERE thread_id = ? ORDER BY start_time', [id])) as any;
          texts = (rows as { h: string }[]).map((r) => Buffer.from(r.h, 'hex').toString('utf8'));
        }
        expect(texts).toContain(SENTINEL);
        const server = texts.filter((t) => t !== SENTINEL && !NOTHING.test(t));
        const ours = analyzeSql(c.sql, () => false, { noBackslashEscapes: nbe, ansiQuotes: ansi }).statements;
        const context = `seed ${seed} nbe=${nbe} ansi=${ansi}: ${JSON.stringify(c.sql)}\nserver: ${JSON.stringify(server)}\nours: ${JSON.stringify(ours.map((s) => s.text))}`;
        // Where the server's statements are in the batch (the slow log leaves some kinds out, e.g. CREATE
        // FUNCTION: those must then lie wholly between logged ones).
        let cursor = 0;
        const spans = server.map((text) => {
          // A short logged text ("BEGIN") can also occur inside an unlogged statement before it: take
          // the first occurrence where a recorded statement starts (the checks below still apply).
          let at = c.sql.indexOf(text, cursor);
          for (let k = at; k >= 0; k = c.sql.indexOf(text, k + 1)) {
            if (ours.some((s) => s.start >= k && s.start < k + text.length && NOTHING.test(c.sql.slice(k, s.start)))) {
              at = k;
              break;
            }
          }
          expect(at, context).toBeGreaterThanOrEqual(0);
          cursor = at + text.length;
          return [at, cursor] as const;
        });
        for (const [from, to] of spans) {
          const inside = ours.filter((s) => s.start >= from && s.end <= to);
          expect(inside.length, context).toBe(1);
          const s = inside[0]!;
          expect(NOTHING.test(c.sql.slice(from, s.start)) && NOTHING.test(c.sql.slice(s.end, to)), context).toBe(true);
        }
        for (const s of ours) {
          expect(s.unsplit, context).toBeUndefined();
          expect(spans.some(([from, to]) => s.start < to && s.end > from && !(s.start >= from && s.end <= to)), context).toBe(false);
          if (!spans.some(([from, to]) => s.start >= from && s.end <= to)) unlogged.add(s.text.split(/\s+/).slice(0, 4).join(' '));
        }
        compared++;
        statements += ours.length;
      }
      await conn.end();
    }
    console.log(`splitter vs MariaDB: ${compared} batches, ${statements} statements compared; ${rejected.length} batches rejected by the server`, rejected.slice(0, 5), 'not in the slow log:', [...unlogged].slice(0, 10));
    // Most generated batches are valid SQL, so the comparison is not vacuous.
    expect(compared).toBeGreaterThan(BATCHES);
  });
});
