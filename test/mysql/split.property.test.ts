import { describe, it, expect } from 'vitest';
import { analyzeSql, type SqlMode } from '../../proxies/mysql/sql.ts';

/**
 * Property test of the statement splitter with a seeded generator (fast-check is not a dependency): random
 * multi-statement text mixing quoting under each sql_mode, comments, executable comments and nested
 * compound blocks, built from statements whose boundaries the generator knows. The recorded texts must be
 * exactly those statements — nothing cut, nothing invented — or, when the splitter cannot tell (mode not
 * known), the whole text as one statement. A failure prints the seed; rerun with VIGIL_SPLIT_SEED.
 */

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  private readonly r: () => number;
  constructor(
    seed: number,
    readonly noBackslashEscapes: boolean,
    readonly ansiQuotes: boolean,
  ) {
    this.r = mulberry32(seed);
  }
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.r() < p;
  }

  /** Characters that would end a statement, a comment or a quote if the lexer got them wrong. */
  private content(quote: string): string {
    let s = '';
    const n = this.int(6);
    for (let i = 0; i < n; i++) {
      const piece = this.pick(['a', ';', ' ', '--', '-- ', '#', '/*', '*/', 'END', 'BEGIN', "'", '"', '`', '\\', '\n', 'é']);
      if (piece === quote) s += quote + quote;
      else if (piece === '\\') s += quote === '`' || (quote === '"' && this.ansiQuotes) || this.noBackslashEscapes ? '\\' : '\\\\';
      else s += piece;
    }
    // The other escape of the quote, where backslashes escape.
    if (quote === "'" && !this.noBackslashEscapes && this.chance(0.3)) s += "\\'";
    // Under NO_BACKSLASH_ESCAPES a backslash before the closing quote is a plain character.
    if (this.noBackslashEscapes && quote === "'" && this.chance(0.3)) s += '\\';
    return s;
  }

  gap(): string {
    let s = '';
    const n = this.int(3);
    for (let i = 0; i < n; i++) s += this.pick([' ', '\n', '\t', ' /* c; END */ ', ' -- c; BEGIN\n', ' #c;\n', '  ']);
    return s;
  }

  /** `exec`: inside an executable comment, where a nested comment would make the split uncertain. */
  atom(depth: number, exec = false): string {
    switch (this.int(depth > 2 ? 6 : 11)) {
      case 0:
        return String(this.int(100));
      case 1:
        return `'${this.content("'")}'`;
      case 2:
        return `"${this.content('"')}"`;
      case 3:
        return `\`${this.content('`')}\``;
      case 4:
        return 't.end';
      case 5:
        return `${this.int(9)}--${this.int(9)}`;
      case 6:
        return `CASE WHEN ${this.atom(depth + 1, exec)} THEN ${this.atom(depth + 1, exec)} ELSE ${this.atom(depth + 1, exec)} END`;
      case 7:
        return `IF(${this.atom(depth + 1, exec)}, ${this.atom(depth + 1, exec)}, 0)`;
      case 8:
        return `REPEAT(${this.atom(depth + 1, exec)}, 2)`;
      case 9:
        return exec ? '1' : `/*!${this.pick(['', '50003'])} ${this.atom(depth + 1, true)} */`;
      default:
        return `(${this.atom(depth + 1, exec)}${exec ? '' : ' /* ; */'} + ${this.atom(depth + 1, exec)})`;
    }
  }

  expr(): string {
    const n = 1 + this.int(3);
    const parts: string[] = [];
    for (let i = 0; i < n; i++) parts.push(this.atom(0));
    return parts.join(this.pick([', ', ' + ', ' /* x; */ , ', ' -- ;\n, ']));
  }

  simple(): string {
    switch (this.int(5)) {
      case 0:
        return `SELECT ${this.expr()}`;
      case 1:
        return `UPDATE t SET a = ${this.atom(0)} WHERE b = ${this.atom(0)}`;
      case 2:
        return `SET @x = ${this.atom(0)}`;
      case 3:
        return `DO ${this.expr()}`;
      default:
        return `INSERT INTO t (a) VALUES (${this.atom(0)})`;
    }
  }

  /** One to three statements of a block body, each with its `;`. */
  body(depth: number): string {
    let s = '';
    const n = 1 + this.int(3);
    for (let i = 0; i < n; i++) s += `${this.gap()} ${this.inner(depth)}${this.gap()};`;
    return `${s} `;
  }

  inner(depth: number): string {
    if (depth >= 3 || this.chance(0.45)) return this.simple();
    const d = depth + 1;
    // Outside a program a block is BEGIN NOT ATOMIC (plain BEGIN starts a transaction).
    const begin = depth === 0 ? 'BEGIN NOT ATOMIC' : 'BEGIN';
    switch (this.int(8)) {
      case 0:
        return `${begin} ${this.chance(0.5) ? 'DECLARE CONTINUE HANDLER FOR SQLEXCEPTION, NOT FOUND ' + this.inner(d) + ';' : ''}${this.body(d)}END`;
      case 1:
        return `IF ${this.atom(0)} THEN ${this.body(d)}${this.chance(0.5) ? `ELSEIF ${this.atom(0)} THEN ${this.body(d)}` : ''}${this.chance(0.5) ? `ELSE ${this.body(d)}` : ''}END IF`;
      case 2:
        return `CASE ${this.atom(0)} WHEN 1 THEN ${this.body(d)}ELSE ${this.body(d)}END CASE`;
      case 3:
        return `lbl${d}: LOOP ${this.body(d)}LEAVE lbl${d}; END LOOP lbl${d}`;
      case 4:
        return `WHILE ${this.atom(0)} DO ${this.body(d)}END WHILE`;
      case 5:
        return `REPEAT ${this.body(d)}UNTIL ${this.atom(0)} END REPEAT`;
      case 6:
        return `FOR i IN 1..3 DO ${this.body(d)}END FOR`;
      default:
        return `blk${d}: ${begin} ${this.body(d)}END blk${d}`;
    }
  }

  top(): string {
    switch (this.int(10)) {
      case 0:
        return `BEGIN NOT ATOMIC ${this.body(1)}END`;
      case 1:
        return this.inner(0);
      case 2:
        return `CREATE ${this.pick(['', 'OR REPLACE ', 'DEFINER=`root`@`localhost` '])}PROCEDURE ${this.pick(['', 'IF NOT EXISTS '])}p(IN a INT) ${this.pick(['', "COMMENT 'x;' ", 'MODIFIES SQL DATA '])}${this.inner(1)}`;
      case 3:
        return `CREATE FUNCTION f(a INT) RETURNS VARCHAR(5) CHARACTER SET utf8mb4 DETERMINISTIC ${this.chance(0.5) ? `RETURN ${this.atom(0)}` : `BEGIN ${this.body(1)}RETURN 1; END`}`;
      case 4:
        return `CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW ${this.inner(1)}`;
      case 5:
        return `CREATE EVENT e ON SCHEDULE EVERY 1 HOUR DO ${this.inner(1)}`;
      case 6:
        return this.pick(['BEGIN', 'COMMIT', 'BEGIN WORK', 'SELECT begin, end FROM t']);
      default:
        return this.simple();
    }
  }
}

interface Case {
  sql: string;
  statements: string[];
}

function generate(g: Gen): Case {
  let sql = g.gap();
  const statements: string[] = [];
  const n = 1 + g.int(4);
  for (let i = 0; i < n; i++) {
    const s = g.top();
    sql += s;
    statements.push(s);
    if (i < n - 1 || g.chance(0.5)) {
      sql += g.gap() + ';';
      if (g.chance(0.2)) sql += g.gap() + ';';
    }
    sql += g.gap();
  }
  return { sql, statements };
}

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
        const got = analyzeSql(c.sql, never, { noBackslashEscapes: nbe, ansiQuotes: ansi }).statements;
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
        const got = analyzeSql(c.sql, never, {}).statements;
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
            if (rest !== '') expect(analyzeSql(rest, never, { noBackslashEscapes: nbe, ansiQuotes: ansi }).statements[0]!.text, context).toBe('');
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
        expect(rest.every((s) => s.text === '' || /^;+$/.test(s.text.replace(/\s/g, ''))), `${JSON.stringify(sql)} leaves out ${JSON.stringify(o)}`).toBe(true);
      }
    }
  });
});
