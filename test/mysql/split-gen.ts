/**
 * A seeded generator of multi-statement MySQL/MariaDB text whose statement boundaries it knows: quoting
 * under each sql_mode, comments, executable comments, nested compound blocks and stored-program bodies.
 * Shared by the splitter's property test and its differential test against a real MariaDB.
 */

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Gen {
  private readonly r: () => number;
  /** `valid`: only SQL MariaDB runs without error (the differential test against a real server). */
  constructor(
    seed: number,
    readonly noBackslashEscapes: boolean,
    readonly ansiQuotes: boolean,
    readonly valid = false,
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
        // Under ANSI_QUOTES "…" names something: a valid batch uses it as an alias.
        return this.valid && this.ansiQuotes ? `(SELECT 1 AS "${this.content('"')}x")` : `"${this.content('"')}"`;
      case 3:
        return this.valid ? `(SELECT 1 AS \`${this.content('`')}x\`)` : `\`${this.content('`')}\``;
      case 4:
        return this.valid ? '@x' : 't.end';
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

  /** `noResults`: inside a function, trigger or event, where a SELECT returning rows is refused. */
  simple(noResults = false): string {
    switch (this.int(5) || (noResults ? 1 + this.int(4) : 0)) {
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
  body(depth: number, noResults = false): string {
    let s = '';
    const n = 1 + this.int(3);
    for (let i = 0; i < n; i++) s += `${this.gap()} ${this.inner(depth, noResults)}${this.gap()};`;
    return `${s} `;
  }

  inner(depth: number, noResults = false): string {
    if (depth >= 3 || this.chance(0.45)) return this.simple(noResults);
    const nr = noResults;
    // A valid loop must end: WHILE never enters, REPEAT runs once.
    const whileCond = this.valid ? '0' : this.atom(0);
    const untilCond = this.valid ? '1' : this.atom(0);
    const d = depth + 1;
    // Outside a program a block is BEGIN NOT ATOMIC (plain BEGIN starts a transaction).
    const begin = depth === 0 ? 'BEGIN NOT ATOMIC' : 'BEGIN';
    const kind = this.int(8);
    // MariaDB takes no label on a compound statement outside a program (a syntax error there).
    switch (this.valid && depth === 0 && (kind === 3 || kind === 7) ? 4 : kind) {
      case 0:
        return `${begin} ${this.chance(0.5) ? 'DECLARE CONTINUE HANDLER FOR SQLEXCEPTION, NOT FOUND ' + this.inner(d, nr) + ';' : ''}${this.body(d, nr)}END`;
      case 1:
        return `IF ${this.atom(0)} THEN ${this.body(d, nr)}${this.chance(0.5) ? `ELSEIF ${this.atom(0)} THEN ${this.body(d, nr)}` : ''}${this.chance(0.5) ? `ELSE ${this.body(d, nr)}` : ''}END IF`;
      case 2:
        return `CASE ${this.atom(0)} WHEN 1 THEN ${this.body(d, nr)}ELSE ${this.body(d, nr)}END CASE`;
      case 3:
        return `lbl${d}: LOOP ${this.body(d, nr)}LEAVE lbl${d}; END LOOP lbl${d}`;
      case 4:
        return `WHILE ${whileCond} DO ${this.body(d, nr)}END WHILE`;
      case 5:
        return `REPEAT ${this.body(d, nr)}UNTIL ${untilCond} END REPEAT`;
      case 6:
        return `FOR i IN 1..3 DO ${this.body(d, nr)}END FOR`;
      default:
        return `blk${d}: ${begin} ${this.body(d, nr)}END blk${d}`;
    }
  }

  top(): string {
    switch (this.int(10)) {
      case 0:
        return `BEGIN NOT ATOMIC ${this.body(1)}END`;
      case 1:
        return this.inner(0);
      case 2:
        return this.valid
          ? `CREATE OR REPLACE ${this.pick(['', 'DEFINER=`root`@`localhost` '])}PROCEDURE p(IN a INT) ${this.pick(['', "COMMENT 'x;' ", 'MODIFIES SQL DATA '])}${this.inner(1)}`
          : `CREATE ${this.pick(['', 'OR REPLACE ', 'DEFINER=`root`@`localhost` '])}PROCEDURE ${this.pick(['', 'IF NOT EXISTS '])}p(IN a INT) ${this.pick(['', "COMMENT 'x;' ", 'MODIFIES SQL DATA '])}${this.inner(1)}`;
      case 3:
        return `CREATE ${this.valid ? 'OR REPLACE ' : ''}FUNCTION f(a INT) RETURNS VARCHAR(5) CHARACTER SET utf8mb4 DETERMINISTIC ${this.chance(0.5) ? `RETURN ${this.atom(0)}` : `BEGIN ${this.body(1, true)}RETURN 1; END`}`;
      case 4:
        return `CREATE ${this.valid ? 'OR REPLACE ' : ''}TRIGGER tr BEFORE INSERT ON t2 FOR EACH ROW ${this.inner(1, true)}`;
      case 5:
        return `CREATE ${this.valid ? 'OR REPLACE ' : ''}EVENT e ON SCHEDULE EVERY 1 HOUR DO ${this.inner(1, true)}`;
      case 6:
        return this.pick(['BEGIN', 'COMMIT', 'BEGIN WORK', 'SELECT begin, end FROM t']);
      default:
        return this.simple();
    }
  }
}

export interface Case {
  sql: string;
  statements: string[];
}

export function generate(g: Gen): Case {
  let sql = g.gap();
  const statements: string[] = [];
  const n = 1 + g.int(4);
  for (let i = 0; i < n; i++) {
    const s = g.top();
    sql += s;
    statements.push(s);
    if (i < n - 1 || g.chance(0.5)) {
      sql += g.gap() + ';';
      if (!g.valid && g.chance(0.2)) sql += g.gap() + ';';
    }
    sql += g.gap();
  }
  return { sql, statements };
}

