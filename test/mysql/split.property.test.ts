import { describe, it, expect } from 'vitest';
import { analyzeSql, type SqlMode } from '../../proxies/mysql/sql.ts';
import { Gen, generate, mulberry32 } from './split-gen.ts';

/**
 * Property test of the statement splitter with a seeded generator (fast-check is not a dependency): random
 * multi-statement text mixing quoting under each sql_mode, comments, executable comments and nested
 * compound blocks, built from statements whose boundaries the generator knows. The recorded texts must be
 * exactly those statements — nothing cut, nothing invented — or, when the splitter cannot tell (mode not
 * known), the whole text as one statement. A failure prints the seed; rerun with VIGIL_SPLIT_SEED.
 */

const never = () => false;
const baseSeed = Number(process.env.VIGIL_SPLIT_SEED ?? 20261206);
const RUNS = 1500;

describe('splitter property: recorded texts are exactly the statements sent', () => {
  it(`with the session's sql_mode known (${RUNS} seeded cases per mode)`, () => {
    let compound = 0;
    for (const [nbe, ansi] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      for (let k = 0; k < RUNS; k++) {
        const seed = baseSeed + k;
        const c = generate(new Gen(seed, nbe, ansi));
        // Segments of comments only are statements of their own to the server (an empty OK): the generator's
        // statements are the others.
        const got = analyzeSql(c.sql, never, { noBackslashEscapes: nbe, ansiQuotes: ansi }).statements.filter((s) => !s.commentOnly);
        const context = `seed ${seed} nbe=${nbe} ansi=${ansi}: ${JSON.stringify(c.sql)}`;
        expect(got.map((s) => s.text), context).toEqual(c.statements);
        for (const s of got) {
          expect(s.unsplit, context).toBeUndefined();
          expect(c.sql.slice(s.start, s.end), context).toBe(s.text);
          if (s.compound) compound++;
        }
      }
    }
    // The generator does reach compound statements (not a vacuous pass).
    expect(compound).toBeGreaterThan(RUNS / 2);
  });

  it('with the mode unknown: the statements, or the whole text marked unsplit', () => {
    let unsplit = 0;
    for (const [nbe, ansi] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      for (let k = 0; k < RUNS; k++) {
        const seed = baseSeed + 100_000 + k;
        const c = generate(new Gen(seed, nbe, ansi));
        const got = analyzeSql(c.sql, never, {}).statements.filter((s) => !s.commentOnly);
        const context = `seed ${seed} nbe=${nbe} ansi=${ansi}: ${JSON.stringify(c.sql)}`;
        if (got.length === 1 && got[0]!.unsplit) {
          unsplit++;
          expect(got[0]!.text, context).toBe(c.sql.trim());
        } else {
          // A reading under another mode may end the last statement's text after a trailing comment
          // (an unterminated quote): the same statements, never less.
          expect(got.length, context).toBe(c.statements.length);
          got.forEach((s, i) => {
            const expected = c.statements[i]!;
            expect(s.text.startsWith(expected), context).toBe(true);
            const rest = s.text.slice(expected.length);
            const tail = rest === '' ? undefined : analyzeSql(rest, never, { noBackslashEscapes: nbe, ansiQuotes: ansi }).statements[0]!;
            if (tail) expect(tail.text === '' || tail.commentOnly, context).toBe(true);
          });
        }
      }
    }
    // Unknown modes cost precision only where quoting actually differs between them.
    expect(unsplit).toBeGreaterThan(0);
    expect(unsplit).toBeLessThan(4 * RUNS);
  });

  it('on random token soup: never throws, every text is a slice of the input, and nothing but whitespace, comments and `;` lies between', () => {
    const r = mulberry32(baseSeed);
    const pieces = ['BEGIN', ' NOT ATOMIC ', 'END', ' IF ', 'THEN', ' ELSE ', 'CASE', 'LOOP', 'REPEAT', 'UNTIL', ' WHILE ', ' DO ', 'FOR', 'CREATE PROCEDURE p() ', 'DELIMITER', ';', ';', "'", '"', '`', '\\', '/*', '*/', '/*!', '/*!99999', '/*M!', '--', '-- ', '#', '\n', ' ', 'x', '1', ':', '(', ')', 'SELECT ', 'END IF', 'DECLARE EXIT HANDLER FOR 1 '];
    for (let k = 0; k < 5000; k++) {
      let sql = '';
      const n = Math.floor(r() * 30);
      for (let i = 0; i < n; i++) sql += pieces[Math.floor(r() * pieces.length)]!;
      const mode: SqlMode = r() < 0.5 ? {} : { noBackslashEscapes: r() < 0.5, ansiQuotes: r() < 0.5 };
      const got = analyzeSql(sql, never, mode).statements;
      let pos = 0;
      const outside: string[] = [];
      for (const s of got) {
        if (s.text === '' && s.start === s.end) continue;
        expect(s.start, JSON.stringify(sql)).toBeGreaterThanOrEqual(pos);
        expect(sql.slice(s.start, s.end), JSON.stringify(sql)).toBe(s.text);
        outside.push(sql.slice(pos, s.start));
        pos = s.end;
      }
      outside.push(sql.slice(pos));
      // A gap lexed alone loses its context; with version-conditional comments the context (inside a
      // line comment of one reading, a skipped comment of another) decides, so only the slices are checked.
      if (/\/\*(!9|M!)/.test(sql)) continue;
      for (const o of outside) {
        const rest = analyzeSql(o, never, mode).statements;
        expect(rest.every((s) => s.text === '' || s.commentOnly || /^;+$/.test(s.text.replace(/\s/g, ''))), `${JSON.stringify(sql)} leaves out ${JSON.stringify(o)}`).toBe(true);
      }
    }
  });
});
