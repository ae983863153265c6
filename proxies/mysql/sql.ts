/**
 * A MySQL/MariaDB-dialect SQL scanner, enough for what the proxy must know about statement text: where
 * statements begin and end in a multi-statement COM_QUERY, the leading keyword of each (to catch KILL),
 * which string literals are secrets (masked in events), and which column each `?` placeholder stands for
 * (so that parameters named like secrets are masked). It never rejects text: the server is the authority
 * on syntax.
 *
 * Statement boundaries follow the server's parser, not the first `;`: a compound statement (BEGIN NOT
 * ATOMIC … END, IF/CASE/LOOP/WHILE/REPEAT/FOR blocks, the body of CREATE PROCEDURE/FUNCTION/TRIGGER/EVENT)
 * ends at its matching END, as MariaDB's grammar ends it. Lexing follows the session's sql_mode
 * (NO_BACKSLASH_ESCAPES, ANSI_QUOTES); when a mode is unknown and matters, the text is split under every
 * possibility and the splits must agree. Whenever the scanner is not certain where a statement ends
 * (mismatched blocks, Oracle-mode syntax, a version-conditional comment that moves a boundary, DELIMITER …) it
 * records the whole text as one statement marked `unsplit`: a statement is never cut, and every recorded
 * text is a slice of what was sent.
 *
 * Why a purpose-built lexer rather than a full SQL parser such as node-sql-parser (not a dependency here):
 * a general parser rejects or mis-reads what it does not support — stored-program bodies, MariaDB's
 * compound statements outside programs, executable comments, sql_mode-dependent quoting — and a parse
 * failure would leave us without boundaries exactly when they matter. Splitting needs only tokens and block
 * nesting; what cannot be decided from those is reported as uncertain instead of guessed.
 */

export interface Token {
  kind: 'word' | 'ident' | 'string' | 'number' | 'punct' | 'param' | 'marker';
  start: number;
  end: number;
  /** Upper-cased text for words, unquoted text for identifiers. */
  text: string;
  /** Follows a `.` (a qualified name part: an identifier whatever its spelling). */
  dotted?: boolean;
}

/** sql_mode flags that change how text is lexed; undefined = not known (every possibility is tried). */
export interface SqlMode {
  noBackslashEscapes?: boolean;
  ansiQuotes?: boolean;
}

export interface StatementInfo {
  /** The statement text (trimmed of whitespace, comments and the separating semicolon), secrets masked. */
  text: string;
  /** Offsets of the (unmasked) text in the analyzed string: `sql.slice(start, end)`. */
  start: number;
  end: number;
  /** Leading keyword, upper case ('' for an empty statement). */
  keyword: string;
  /** The boundaries could not be decided with certainty: this is the whole text, possibly several statements. */
  unsplit?: true;
  /** Comments only, after a `;`: the server answers it as an empty statement of its own (see commentsOnly). */
  commentOnly?: true;
  /** A compound statement (block or stored-program body): it may produce several results. */
  compound?: true;
  /** KILL statement, parsed when its form is one vigil maps. */
  kill?: KillStatement;
  /** Compound or unsplit text: the restricted statement words (KILL, USE, LOAD) that occur past its first
   *  word — statements the server may run inside it, which a check of `keyword` alone would miss. */
  restricted?: string[];
  /** For USE: the database named, or null when the statement is not a plain `USE name`. */
  use?: string | null;
}

export type KillStatement = { query: boolean; id: number } | { unsupported: true };

export interface SqlAnalysis {
  statements: StatementInfo[];
  /** Column names the `?` placeholders stand for (undefined when unknown), in order. */
  paramNames: (string | undefined)[];
}

const isWordStart = (c: number) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 36 || c >= 128;
const isWordChar = (c: number) => isWordStart(c) || (c >= 48 && c <= 57);
const isDigit = (c: number) => c >= 48 && c <= 57;
const isSpace = (c: number) => c === 32 || c === 9 || c === 10 || c === 13 || c === 12 || c === 11;

/** `/*!NNNNN` comments up to this version run on every server vigil supports (MySQL 5.7+, MariaDB). */
const ALWAYS_EXECUTED_VERSION = 50700;

interface Lexed {
  tokens: Token[];
  /** Something the lexer cannot place with certainty (a comment nested in an executable one). */
  uncertain: boolean;
  /** Executable-comment markers are among the tokens. */
  markers: boolean;
  /** Saw a comment whose execution depends on the server (`/*!NNNNN` above 5.7, `/*M!` — MySQL skips it). */
  conditional: boolean;
}

export interface LexMode {
  noBackslashEscapes: boolean;
  ansiQuotes: boolean;
  /** Whether version-conditional executable comments are taken as code (else as comments). */
  conditionalRuns: boolean;
  /** The session's multi-byte characters, when its character set has some that end in an ASCII byte. */
  multibyte?: Multibyte;
}

/**
 * How the server groups the text's bytes into characters (gbk, big5, sjis, cp932): at position i, the
 * length of the multi-byte character starting there, 0 when none does. The server reads such a character
 * as one, so its trail byte is never a backslash escape or a closing backtick (commands.ts multibyteReader).
 */
export type Multibyte = (i: number) => number;

export function tokenize(sql: string, { noBackslashEscapes, ansiQuotes, conditionalRuns, multibyte: mb }: LexMode): Lexed {
  const out: Token[] = [];
  const n = sql.length;
  let uncertain = false;
  let conditional = false;
  let markers = false;
  // Inside an executable comment: undefined outside, else whether it is version-conditional.
  let exec: boolean | undefined;
  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (isSpace(c)) {
      i++;
    } else if (c === 35 || (c === 45 && sql.charCodeAt(i + 1) === 45 && (i + 2 >= n || sql.charCodeAt(i + 2) <= 32))) {
      // `#` and `-- ` (a control character or space after the dashes; `1--1` is arithmetic) run to end of line.
      const e = sql.indexOf('\n', i);
      i = e < 0 ? n : e + 1;
    } else if (c === 47 && sql.charCodeAt(i + 1) === 42) {
      const bang = sql.charCodeAt(i + 2) === 33;
      const mBang = !bang && sql.charCodeAt(i + 2) === 77 && sql.charCodeAt(i + 3) === 33;
      if (exec !== undefined) uncertain = true; // nested comments: servers disagree on where they end
      if ((bang || mBang) && exec === undefined) {
        // /*! … */ and /*M! … */ are executed by the server: their content is code.
        const start = i;
        i += bang ? 3 : 4;
        const v = i;
        while (i < n && isDigit(sql.charCodeAt(i))) i++;
        const isConditional = mBang || (i > v && Number(sql.slice(v, i)) > ALWAYS_EXECUTED_VERSION);
        conditional ||= isConditional;
        if (isConditional && !conditionalRuns) {
          const e = sql.indexOf('*/', i);
          i = e < 0 ? n : e + 2;
          continue;
        }
        exec = isConditional;
        markers = true;
        out.push({ kind: 'marker', start, end: i, text: '/*!' });
      } else {
        const e = sql.indexOf('*/', i + 2);
        i = e < 0 ? n : e + 2;
      }
    } else if (c === 42 && sql.charCodeAt(i + 1) === 47 && exec !== undefined) {
      out.push({ kind: 'marker', start: i, end: i + 2, text: '*/' });
      exec = undefined;
      i += 2;
    } else if (c === 39 || c === 34 || c === 96) {
      const start = i++;
      const backslash = !noBackslashEscapes && (c === 39 || (c === 34 && !ansiQuotes));
      let text = '';
      let seg = i;
      for (;;) {
        if (i >= n) break;
        // As the server's get_text and quoted-identifier scan: a multi-byte character first, whatever
        // its trail byte is (a backslash escape then skips one byte only, as the server's does).
        const m = mb === undefined ? 0 : mb(i);
        if (m > 0) {
          i += m;
          continue;
        }
        const d = sql.charCodeAt(i);
        if (d === 92 && backslash) {
          i += 2;
          continue;
        }
        if (d === c) {
          if (sql.charCodeAt(i + 1) === c) {
            text += sql.slice(seg, i + 1);
            i += 2;
            seg = i;
            continue;
          }
          break;
        }
        i++;
      }
      text += sql.slice(seg, Math.min(i, n));
      i = Math.min(i + 1, n);
      out.push({ kind: c === 96 || (c === 34 && ansiQuotes) ? 'ident' : 'string', start, end: i, text });
    } else if (isWordStart(c) || (mb !== undefined && mb(i) > 0)) {
      const start = i;
      // A multi-byte character is part of an identifier to the server (its lead bytes lex as identifier characters).
      for (;;) {
        const m = mb === undefined ? 0 : mb(i);
        if (m > 0) i += m;
        else if (i < n && isWordChar(sql.charCodeAt(i))) i++;
        else break;
      }
      // `_utf8'…'` / `N'…'` introducers stay attached to their literal: treat as a word before a string.
      out.push({ kind: 'word', start, end: i, text: sql.slice(start, i).toUpperCase() });
    } else if (isDigit(c)) {
      const start = i;
      while (i < n && (isWordChar(sql.charCodeAt(i)) || sql.charCodeAt(i) === 46)) i++;
      out.push({ kind: 'number', start, end: i, text: sql.slice(start, i) });
    } else if (c === 63) {
      out.push({ kind: 'param', start: i, end: i + 1, text: '?' });
      i++;
    } else {
      out.push({ kind: 'punct', start: i, end: i + 1, text: sql[i]! });
      i++;
    }
  }
  for (let k = 1; k < out.length; k++) {
    const prev = out[k - 1]!;
    if (prev.kind === 'punct' && prev.text === '.' && prev.end === out[k]!.start) out[k]!.dotted = true;
  }
  return { tokens: out, uncertain, conditional, markers };
}

/** Thrown inside the splitter when it cannot decide a boundary; the text is then recorded whole. */
const UNCERTAIN = Symbol('uncertain');

type Frame = 'BEGIN' | 'IF' | 'CASE' | 'CASE_EXPR' | 'LOOP' | 'WHILE' | 'REPEAT' | 'FOR';
/** Keywords that follow END to close the block they name (`END IF`, `END LOOP`, …). */
const NAMED_ENDS = new Set(['IF', 'CASE', 'LOOP', 'WHILE', 'REPEAT', 'FOR']);
/** What a label may stand before. */
const LABELLED = new Set(['BEGIN', 'LOOP', 'WHILE', 'REPEAT', 'FOR']);
/** Compound statements MariaDB runs outside stored programs (BEGIN NOT ATOMIC is decided separately). */
const TOP_LEVEL_COMPOUND = new Set(['IF', 'CASE', 'LOOP', 'WHILE', 'REPEAT', 'FOR']);
/** Words no statement starts with outside a block: seen there, the text is not what the splitter thinks
 *  (Oracle-mode blocks, a block closed early, a client-side DELIMITER sent to the server). */
const STRAY_AT_TOP = new Set(['END', 'ELSE', 'ELSEIF', 'WHEN', 'UNTIL', 'THEN', 'DECLARE', 'DELIMITER', 'EXCEPTION']);
const RESTRICTED_WORDS = new Set(['KILL', 'USE', 'LOAD']);
const PROGRAM_KINDS = new Set(['PROCEDURE', 'FUNCTION', 'TRIGGER', 'EVENT', 'PACKAGE']);
const OTHER_KINDS = new Set(['TABLE', 'VIEW', 'INDEX', 'DATABASE', 'SCHEMA', 'USER', 'ROLE', 'SEQUENCE', 'SERVER', 'TABLESPACE', 'LOGFILE', 'UNIQUE', 'FULLTEXT', 'SPATIAL', 'TEMPORARY']);
/** Words between a routine's parameter list and its body: return-type attributes and characteristics. */
const ROUTINE_HEADER_WORDS = new Set([
  'LANGUAGE', 'SQL', 'NOT', 'DETERMINISTIC', 'CONTAINS', 'NO', 'READS', 'MODIFIES', 'DATA', 'SECURITY', 'DEFINER', 'INVOKER',
  'UNSIGNED', 'SIGNED', 'ZEROFILL', 'BINARY', 'ASCII', 'UNICODE', 'BYTE', 'PRECISION', 'VARYING',
]);

/**
 * Finds the `;` tokens that end statements, as the server's grammar ends them. Works on code tokens
 * (executable-comment markers removed). Throws UNCERTAIN when the text does not fit what it knows.
 */
class Splitter {
  private i = 0;
  readonly separators = new Set<Token>();
  /** First tokens of statements that are compound blocks (they may return several results). */
  readonly compoundStarts = new Set<Token>();

  constructor(private readonly t: Token[], private readonly sql: string) {}

  run(): void {
    while (this.i < this.t.length) this.statement();
  }

  private fail(): never {
    throw UNCERTAIN;
  }

  /** Upper-case keyword at k (not a quoted or qualified name). */
  private word(k: number): string | undefined {
    const x = this.t[k];
    return x && x.kind === 'word' && !x.dotted ? x.text : undefined;
  }

  private punct(k: number, ch: string): boolean {
    const x = this.t[k];
    return x !== undefined && x.kind === 'punct' && x.text === ch;
  }

  /** `label:` (not `name :=`). */
  private isLabel(k: number): boolean {
    const x = this.t[k];
    return x !== undefined && (x.kind === 'word' || x.kind === 'ident') && !x.dotted && this.punct(k + 1, ':') && this.sql.charCodeAt(this.t[k + 1]!.end) !== 61;
  }

  private statement(): void {
    const start = this.i;
    if (this.punct(start, ';')) {
      this.separators.add(this.t[start]!);
      this.i++;
      return;
    }
    const w = this.word(start);
    if (w !== undefined && STRAY_AT_TOP.has(w)) this.fail();
    if (w === 'BEGIN') {
      if (this.word(start + 1) === 'NOT' && this.word(start + 2) === 'ATOMIC') return this.compound(start);
      // Plain BEGIN starts a transaction; followed by anything else it is an Oracle-mode block.
      if (start + 1 >= this.t.length || this.punct(start + 1, ';') || this.word(start + 1) === 'WORK') return this.simple(start);
      this.fail();
    }
    if (this.isLabel(start) || (w !== undefined && TOP_LEVEL_COMPOUND.has(w))) return this.compound(start);
    if (w === 'CREATE' || w === 'ALTER') {
      const body = this.storedProgramBody(start, w);
      if (body !== undefined) return this.block(body);
    }
    this.simple(start);
  }

  /** A statement without blocks ends at the next `;`. */
  private simple(start: number): void {
    let k = start;
    while (k < this.t.length && !this.punct(k, ';')) k++;
    if (k < this.t.length) this.separators.add(this.t[k]!);
    this.i = k + 1;
  }

  private compound(start: number): void {
    this.compoundStarts.add(this.t[start]!);
    this.block(start);
  }

  /**
   * One statement that may be a block: from `start` (a statement start), through nested blocks, to the
   * `;` (or end of text) after it. Tracks which positions begin a statement, because that is what tells
   * an IF statement from the IF() function, a CASE statement (END CASE) from a CASE expression (END),
   * and a block's END from a column named `end`.
   */
  private block(start: number): void {
    const t = this.t;
    const stack: Frame[] = [];
    let atStart = true;
    let closed = false;
    let j = start;
    while (j < t.length) {
      const x = t[j]!;
      if (x.kind === 'punct' && x.text === ';') {
        if (stack.length === 0) {
          this.separators.add(x);
          this.i = j + 1;
          return;
        }
        if (stack[stack.length - 1] === 'CASE_EXPR') this.fail();
        atStart = true;
        j++;
        continue;
      }
      // After the outermost END (and its label) only `;` may follow.
      if (closed) this.fail();
      const w = this.word(j);
      const top = stack[stack.length - 1];
      if (atStart) {
        if (this.isLabel(j)) {
          if (!LABELLED.has(this.word(j + 2) ?? '')) this.fail();
          j += 2;
          continue;
        }
        atStart = false;
        switch (w) {
          case 'BEGIN':
            stack.push('BEGIN');
            j += this.word(j + 1) === 'NOT' && this.word(j + 2) === 'ATOMIC' ? 3 : 1;
            atStart = true;
            continue;
          case 'IF':
          case 'CASE':
          case 'WHILE':
          case 'FOR':
            stack.push(w);
            j++;
            continue;
          case 'LOOP':
          case 'REPEAT':
            if (this.punct(j + 1, '(')) this.fail();
            stack.push(w);
            j++;
            atStart = true;
            continue;
          case 'END':
            j = this.close(j, stack);
            closed = stack.length === 0;
            continue;
          case 'ELSE':
            if (top !== 'IF' && top !== 'CASE') this.fail();
            atStart = true;
            j++;
            continue;
          case 'ELSEIF':
            if (top !== 'IF') this.fail();
            j++;
            continue;
          case 'WHEN':
            if (top !== 'CASE') this.fail();
            j++;
            continue;
          case 'UNTIL':
            if (top !== 'REPEAT') this.fail();
            j++;
            continue;
          case 'THEN':
            this.fail();
          case 'DECLARE': {
            const body = this.handlerBody(j);
            if (body !== undefined) {
              j = body;
              atStart = true;
              continue;
            }
            break;
          }
        }
        // The first word of a simple statement (DO, SELECT, …) opens or ends nothing.
        j++;
        continue;
      }
      // Inside a statement: only the keywords that open or close an expression block, or end a
      // condition (THEN, DO), matter.
      switch (w) {
        case 'CASE':
          stack.push('CASE_EXPR');
          break;
        case 'END':
          // REPEAT … UNTIL cond END REPEAT: the one block END that follows an expression.
          if (top === 'REPEAT' && this.word(j + 1) === 'REPEAT') {
            j = this.close(j, stack);
            closed = stack.length === 0;
            atStart = false;
            continue;
          }
          if (top === 'CASE_EXPR') stack.pop();
          else if (stack.length === 0) this.fail(); // a routine body that is not what the header scan thought
          break; // else a column named `end`: a block's END only starts a statement
        case 'THEN':
          if (top === 'IF' || top === 'CASE') atStart = true;
          else if (top !== 'CASE_EXPR') this.fail();
          break;
        case 'DO':
          if (top === 'WHILE' || top === 'FOR') atStart = true;
          break;
        case 'BEGIN':
          if (stack.length === 0) this.fail();
          break;
        case 'LOOP':
        case 'WHILE':
          this.fail(); // reserved words that only open or close a loop
      }
      j++;
    }
    if (stack.length > 0) this.fail(); // an unterminated block: where the server stops is a guess
    this.i = t.length;
  }

  /** `END [IF|CASE|LOOP|…] [label]` at j closes the innermost block, which must be the one it names. */
  private close(j: number, stack: Frame[]): number {
    const named = this.word(j + 1);
    const frame = stack.pop();
    if (named !== undefined && NAMED_ENDS.has(named)) {
      if (frame !== named) this.fail();
      j += 2;
    } else {
      if (frame !== 'BEGIN') this.fail();
      j++;
    }
    const label = this.t[j];
    return label && (label.kind === 'word' || label.kind === 'ident') ? j + 1 : j;
  }

  /** `DECLARE {CONTINUE|EXIT|UNDO} HANDLER FOR cond[, cond…]`: the index of the handler's statement. */
  private handlerBody(j: number): number | undefined {
    const kind = this.word(j + 1);
    if ((kind !== 'CONTINUE' && kind !== 'EXIT' && kind !== 'UNDO') || this.word(j + 2) !== 'HANDLER' || this.word(j + 3) !== 'FOR') return undefined;
    let k = j + 4;
    for (;;) {
      const w = this.word(k);
      if (w === 'SQLSTATE') k += this.word(k + 1) === 'VALUE' ? 3 : 2;
      else if (w === 'NOT') k += 2; // NOT FOUND
      else k++;
      if (!this.punct(k, ',')) return k;
      k++;
    }
  }

  /** Index after the balanced parentheses opening at k (stops at a `;`: the server's syntax error). */
  private skipParens(k: number): number {
    let depth = 0;
    for (; k < this.t.length; k++) {
      if (this.punct(k, ';')) return k;
      if (this.punct(k, '(')) depth++;
      else if (this.punct(k, ')') && --depth === 0) return k + 1;
    }
    return k;
  }

  /** Where the body of CREATE PROCEDURE/FUNCTION/TRIGGER/EVENT or ALTER EVENT … DO starts; undefined for other statements. */
  private storedProgramBody(start: number, verb: 'CREATE' | 'ALTER'): number | undefined {
    let j = start + 1;
    let kind: string | undefined;
    // The object kind follows OR REPLACE, DEFINER = user, SQL SECURITY …, AGGREGATE; a user named like a
    // kind (`DEFINER = event@localhost`) is told apart by the `@` next to it.
    for (; j < this.t.length && j < start + 40 && !this.punct(j, ';'); j++) {
      const w = this.word(j);
      if (w === undefined || this.punct(j - 1, '@') || this.punct(j + 1, '@')) continue;
      if (PROGRAM_KINDS.has(w)) {
        kind = w;
        break;
      }
      if (OTHER_KINDS.has(w)) return undefined;
    }
    if (kind === undefined || (verb === 'ALTER' && kind !== 'EVENT')) return undefined;
    if (kind === 'PACKAGE') this.fail(); // package bodies hold many routines: not modelled
    j++;
    if (kind === 'EVENT' || kind === 'TRIGGER') {
      for (; j < this.t.length && !this.punct(j, ';'); j++) {
        if (kind === 'EVENT' && this.word(j) === 'DO') return j + 1;
        if (kind === 'TRIGGER' && this.word(j) === 'FOR' && this.word(j + 1) === 'EACH' && this.word(j + 2) === 'ROW') {
          j += 3;
          const order = this.word(j);
          return order === 'FOLLOWS' || order === 'PRECEDES' ? j + 2 : j;
        }
      }
      return undefined; // no body: the server's syntax error, and the statement ends at the `;`
    }
    if (this.word(j) === 'IF' && this.word(j + 1) === 'NOT' && this.word(j + 2) === 'EXISTS') j += 3;
    j++; // name
    if (this.punct(j, '.')) j += 2;
    if (!this.punct(j, '(')) {
      // A loadable function (`RETURNS type SONAME 'lib.so'`) has no body; anything else without a
      // parameter list is not default-mode syntax (Oracle mode: `CREATE PROCEDURE p AS BEGIN …`).
      if (kind === 'FUNCTION' && this.word(j) === 'RETURNS' && this.word(j + 2) === 'SONAME') return undefined;
      this.fail();
    }
    j = this.skipParens(j);
    for (;;) {
      const w = this.word(j);
      if (w === 'RETURNS') {
        j += 2;
        if (this.punct(j, '(')) j = this.skipParens(j);
      } else if (w === 'CHARSET' || w === 'COLLATE' || w === 'COMMENT') j += 2;
      else if (w === 'CHARACTER' && this.word(j + 1) === 'SET') j += 3;
      else if (w !== undefined && ROUTINE_HEADER_WORDS.has(w)) j++;
      else return j;
    }
  }
}

interface Split {
  tokens: Token[];
  separators: Set<Token>;
  compoundStarts: Set<Token>;
  certain: boolean;
  conditional: boolean;
}

function split(sql: string, mode: LexMode): Split {
  const lexed = tokenize(sql, mode);
  const code = lexed.markers ? lexed.tokens.filter((k) => k.kind !== 'marker') : lexed.tokens;
  const splitter = new Splitter(code, sql);
  let certain = !lexed.uncertain;
  if (certain) {
    try {
      splitter.run();
    } catch (e) {
      if (e !== UNCERTAIN) throw e;
      certain = false;
    }
  }
  return { tokens: lexed.tokens, separators: splitter.separators, compoundStarts: splitter.compoundStarts, certain, conditional: lexed.conditional };
}

/** [start, end] of each statement between separators (undefined: nothing there), in order. */
function segmentSpans(s: Split): ([number, number] | undefined)[] {
  const out: ([number, number] | undefined)[] = [];
  let first: Token | undefined;
  let last: Token | undefined;
  for (const tok of s.tokens) {
    if (s.separators.has(tok)) {
      out.push(first ? [first.start, last!.end] : undefined);
      first = last = undefined;
    } else {
      first ??= tok;
      last = tok;
    }
  }
  out.push(first ? [first.start, last!.end] : undefined);
  return out;
}

/** Whether another reading of the text (other sql_mode, conditional comments skipped) ends statements at the same `;`s. */
function sameBoundaries(a: Split, b: Split): boolean {
  if (!b.certain || a.separators.size !== b.separators.size) return false;
  const offsets = new Set<number>();
  for (const s of a.separators) offsets.add(s.start);
  for (const s of b.separators) if (!offsets.has(s.start)) return false;
  return true;
}

/**
 * Split and analyze `sql`. `secretName` says whether a column/variable name is a secret (config
 * `redaction.patterns`); literals assigned to or compared with such names are masked too. `mode` is what
 * is known of the session's sql_mode; what is not known (or may change within this text, which mentions
 * sql_mode or runs EXECUTE) is tried both ways, and the text is split only if every way agrees.
 */
export function analyzeSql(sql: string, secretName: (name: string) => boolean, mode: SqlMode = {}, charsets: readonly (Multibyte | undefined)[] = [undefined]): SqlAnalysis {
  let nbe: boolean[] = [mode.noBackslashEscapes ?? false];
  let ansi: boolean[] = [mode.ansiQuotes ?? false];
  const primaryMode: LexMode = { noBackslashEscapes: nbe[0]!, ansiQuotes: ansi[0]!, conditionalRuns: true, multibyte: charsets[0] };
  const primary = split(sql, primaryMode);
  // Another mode can only read the text differently through a quoted token: a backslash inside '…' or
  // "…" (NO_BACKSLASH_ESCAPES), a "…" token at all (ANSI_QUOTES). Until a quoted token differs, both
  // readings consume the same characters the same way, so text without one needs no second reading
  // (a bulk INSERT of JSON in '…' is lexed once).
  let backslash = false;
  let doubleQuote = false;
  for (const t of primary.tokens) {
    if (t.kind !== 'string' && t.kind !== 'ident') continue;
    const q = sql.charCodeAt(t.start);
    if (q === 34) doubleQuote = true;
    if ((q === 34 || q === 39) && !backslash && sql.slice(t.start, t.end).includes('\\')) backslash = true;
  }
  // A known mode may still change within the text: it mentions sql_mode, or runs dynamic SQL (EXECUTE
  // [IMMEDIATE] of text built at run time — `CONCAT('SET sq', 'l_mode=…')` — may set it, and the server
  // parses the statements after it in the new mode). Then both ways too. (A CALL or a stored function
  // cannot: the server restores the caller's sql_mode when the routine returns.)
  const mentioned = () => /sql_mode|\bexecute\b/i.test(sql);
  if (backslash && (mode.noBackslashEscapes === undefined || mentioned())) nbe = [nbe[0]!, !nbe[0]];
  if (doubleQuote && (mode.ansiQuotes === undefined || mentioned())) ansi = [ansi[0]!, !ansi[0]];
  let certain = primary.certain;
  // Each statement's span is the union over the readings: where one reading sees a comment and another
  // a quoted string running on, the text keeps both (never cut).
  let union: ([number, number] | undefined)[] | undefined;
  const runs = primary.conditional ? [true, false] : [true];
  // `charsets`: the session's character set when known, else each way of grouping bytes it may have.
  for (const m of charsets)
    for (const b of nbe)
      for (const a of ansi)
        for (const r of runs) {
          if (!certain) break;
          if (b === nbe[0] && a === ansi[0] && r && m === charsets[0]) continue;
          const other = split(sql, { noBackslashEscapes: b, ansiQuotes: a, conditionalRuns: r, multibyte: m });
          certain = sameBoundaries(primary, other);
          if (certain) {
            union ??= segmentSpans(primary);
            segmentSpans(other).forEach((span, k) => {
              const u = union![k];
              if (span && u) union![k] = [Math.min(u[0], span[0]), Math.max(u[1], span[1])];
              else union![k] ??= span;
            });
          }
        }

  const statements: StatementInfo[] = [];
  const paramNames: (string | undefined)[] = [];
  const tokens = primary.tokens;
  if (!certain) {
    // The whole text, only surrounding whitespace trimmed: where code ends is exactly what is in doubt.
    let start = 0;
    let end = sql.length;
    while (start < end && isSpace(sql.charCodeAt(start))) start++;
    while (end > start && isSpace(sql.charCodeAt(end - 1))) end--;
    if (end > start) {
      const info: StatementInfo = { ...analyzeStatement(sql, tokens, secretName, paramNames, start, end, primaryMode), unsplit: true };
      // What is a quoted string in one reading may be a statement in another: look in every reading.
      const readings = [tokens];
      for (const m of charsets) for (const b of [false, true]) for (const a of [false, true]) for (const r of [true, false]) readings.push(tokenize(sql, { noBackslashEscapes: b, ansiQuotes: a, conditionalRuns: r, multibyte: m }).tokens);
      markRestricted(info, ...readings);
      statements.push(info);
    }
  } else {
    let from = 0;
    let segment = 0;
    let segmentStart = 0;
    for (let k = 0; k <= tokens.length; k++) {
      const tok = tokens[k];
      if (tok !== undefined && !primary.separators.has(tok)) continue;
      const own = from === 0 && k === tokens.length ? tokens : tokens.slice(from, k);
      const codeSpan = union ? union[segment++] : own.length > 0 ? [own[0]!.start, own[own.length - 1]!.end] : undefined;
      const span = codeSpan ?? commentsOnly(sql, segmentStart, tok?.start ?? sql.length);
      segmentStart = tok?.end ?? sql.length;
      if (span) {
        const info = analyzeStatement(sql, own, secretName, paramNames, span[0], span[1], primaryMode);
        if (codeSpan === undefined) info.commentOnly = true;
        const first = own.find((x) => x.kind !== 'marker');
        if (first && primary.compoundStarts.has(first)) {
          info.compound = true;
          markRestricted(info, own);
        }
        statements.push(info);
      }
      from = k + 1;
    }
  }
  if (statements.length === 0) statements.push({ text: '', start: 0, end: 0, keyword: '' });
  return { statements, paramNames };
}

/**
 * The span of a segment that holds only comments, or undefined when it holds only whitespace. The server
 * runs such a segment as an empty statement of its own (an OK, or an ERR for an unterminated comment or a
 * `;` after it), so it is recorded as one: without it, that answer would be taken for another run of the
 * statement before it. Whitespace alone after a `;` gets no answer.
 */
function commentsOnly(sql: string, from: number, to: number): [number, number] | undefined {
  while (from < to && isSpace(sql.charCodeAt(from))) from++;
  while (to > from && isSpace(sql.charCodeAt(to - 1))) to--;
  return to > from ? [from, to] : undefined;
}

/** Restricted words past the first word of a compound or unsplit statement (see `restricted`). */
function markRestricted(info: StatementInfo, ...readings: Token[][]): void {
  const found = new Set<string>();
  for (const toks of readings) {
    let first = true;
    for (const t of toks) {
      if (t.kind === 'marker') continue;
      if (!first && t.kind === 'word' && !t.dotted && RESTRICTED_WORDS.has(t.text)) found.add(t.text);
      first = false;
    }
  }
  if (found.size > 0) info.restricted = [...found];
}

/**
 * Which statement each result of a multi-statement COM_QUERY answers, by index. A simple statement
 * answers with one result; a compound statement (BEGIN NOT ATOMIC, IF …) or a CALL answers with the result
 * sets of the statements run inside it and then one OK or ERR of its own (checked against MariaDB). An
 * EXECUTE [IMMEDIATE] runs a statement the text does not show: one result, or — a CALL or a compound
 * statement run that way — several. Its share is the one that makes the results fit the statements; when
 * more than one way fits (or too many EXECUTEs to try), `certain` is false and no result can be given to
 * one statement.
 */
export function attributeResults(statements: readonly StatementInfo[], results: readonly { rows?: number; error?: unknown }[]): { owners: number[]; certain: boolean } {
  const dynamic: number[] = [];
  statements.forEach((s, i) => {
    if (s.keyword === 'EXECUTE' && i < statements.length - 1) dynamic.push(i);
  });
  if (dynamic.length === 0) return { owners: sequentialOwners(statements, results, () => false).owners, certain: true };
  if (dynamic.length > 8) return { owners: sequentialOwners(statements, results, () => false).owners, certain: false };
  const fits = new Map<string, number[]>();
  for (let choice = 0; choice < 1 << dynamic.length; choice++) {
    const several = new Set(dynamic.filter((_, k) => choice & (1 << k)));
    const r = sequentialOwners(statements, results, (i) => several.has(i));
    if (r.fits) fits.set(r.owners.join(), r.owners);
  }
  if (fits.size === 1) return { owners: [...fits.values()][0]!, certain: true };
  return { owners: sequentialOwners(statements, results, () => false).owners, certain: false };
}

/** `attributeResults` without EXECUTE's uncertainty (kept for callers that want owners only). */
export function resultOwners(statements: readonly StatementInfo[], results: readonly { rows?: number; error?: unknown }[]): number[] {
  return attributeResults(statements, results).owners;
}

/** Results in order, each statement taking one, or (several) its result sets and the OK/ERR after them.
 *  `fits`: every result had a statement, and the last ended one (or was an ERR, which stops the batch). */
function sequentialOwners(statements: readonly StatementInfo[], results: readonly { rows?: number; error?: unknown }[], runsSeveral: (i: number) => boolean): { owners: number[]; fits: boolean } {
  const owners: number[] = [];
  let index = 0;
  let fits = true;
  for (const r of results) {
    if (index >= statements.length) fits = false;
    const at = Math.min(index, statements.length - 1);
    owners.push(at);
    const s = statements[at];
    const several = s !== undefined && (s.compound === true || s.unsplit === true || s.keyword === 'CALL' || runsSeveral(at));
    if (!several || r.rows === undefined) index++;
  }
  const last = results[results.length - 1];
  if (last !== undefined && index < statements.length && !last.error) fits = false;
  return { owners, fits };
}

function analyzeStatement(
  sql: string,
  all: Token[],
  secretName: (n: string) => boolean,
  paramNames: (string | undefined)[],
  start = all[0]!.start,
  end = all[all.length - 1]!.end,
  mode: LexMode = { noBackslashEscapes: false, ansiQuotes: false, conditionalRuns: true },
): StatementInfo {
  const toks = all.some((x) => x.kind === 'marker') ? all.filter((x) => x.kind !== 'marker') : all;
  if (toks.length === 0) return { text: sql.slice(start, end), start, end, keyword: '' };
  const keyword = toks[0]!.kind === 'word' ? toks[0]!.text : '';
  const { masked } = findSecrets(toks, secretName, paramNames, mode, 0);
  let text = '';
  let pos = start;
  for (const k of masked) {
    text += sql.slice(pos, toks[k]!.start) + "'***'";
    pos = toks[k]!.end;
  }
  text += sql.slice(pos, end);
  const info: StatementInfo = { text, start, end, keyword };

  if (keyword === 'KILL') info.kill = parseKill(toks);
  if (keyword === 'USE') {
    const t = toks[1];
    info.use = toks.length === 2 && t && (t.kind === 'ident' || t.kind === 'word') ? (t.kind === 'ident' ? t.text : sql.slice(t.start, t.end)) : null;
  }
  return info;
}

/** SQL inside a literal is looked into this deep (a literal in a literal in a literal…), no deeper. */
const MAX_NESTING = 4;

/**
 * The string tokens (indexes, in order) that are secrets. `credential` at the end: a credential clause
 * (IDENTIFIED …, SET PASSWORD … =) is open, so a literal holding this text as SQL leaves its value to
 * whatever follows it (`CONCAT('ALTER USER u IDENTIFIED BY ''', 'secret', '''')`).
 *
 * A literal that is itself SQL run later (EXECUTE IMMEDIATE '…', PREPARE s FROM '…', SET @s = '…') is
 * read as SQL too: when that SQL holds a secret, or opens a credential clause, the literal is masked
 * whole (its escapes make the positions inside uncertain) and every literal after it in the statement is
 * treated as a credential.
 */
function findSecrets(toks: Token[], secretName: (n: string) => boolean, paramNames: (string | undefined)[], mode: LexMode, depth: number): { masked: Set<number>; credential: boolean } {
  const masked = new Set<number>();
  const keyword = toks[0]?.kind === 'word' ? toks[0].text : '';
  // After IDENTIFIED (CREATE/ALTER USER, GRANT) every literal is a credential; in SET PASSWORD, after `=`.
  let setPassword = false;
  let credential = false;
  const insertColumns = keyword === 'INSERT' || keyword === 'REPLACE' ? columnList(toks) : undefined;
  let valuesIndex = -1;
  let parens = 0;
  let inValues = false;
  for (let k = 0; k < toks.length; k++) {
    const t = toks[k]!;
    if (t.kind === 'word' && t.text === 'IDENTIFIED') credential = true;
    // A SET PASSWORD statement, also inside a compound statement (not UPDATE … SET password = …, a column).
    if (t.kind === 'word' && t.text === 'SET' && toks[k + 1]?.kind === 'word' && toks[k + 1]!.text === 'PASSWORD' && startsStatement(toks[k - 1])) setPassword = true;
    if (setPassword && t.kind === 'punct' && t.text === '=') credential = true;
    if (t.kind === 'word' && (t.text === 'VALUES' || t.text === 'VALUE')) inValues = true;
    if (t.kind === 'punct') {
      if (t.text === '(') {
        parens++;
        if (inValues && parens === 1) valuesIndex = 0;
      } else if (t.text === ')') parens--;
      else if (t.text === ',' && inValues && parens === 1) valuesIndex++;
    }
    if (t.kind === 'string') {
      if (credential || secretName(nameBefore(toks, k) ?? '') || isPasswordCall(toks, k)) masked.add(k);
      else if (insertColumns && inValues && parens === 1 && secretName(insertColumns[valuesIndex] ?? '')) masked.add(k);
      else if (depth < MAX_NESTING && mayBeNestedSecret(t.text)) {
        const nested = nestedSecrets(t.text, secretName, mode, depth + 1);
        if (nested.masked || nested.credential) masked.add(k);
        if (nested.credential) credential = true;
      }
    }
    if (t.kind === 'param') {
      paramNames.push(insertColumns && inValues && parens === 1 ? insertColumns[valuesIndex] : nameBefore(toks, k));
    }
  }
  return { masked, credential };
}

/** Whether a statement can begin after `prev` (in a compound statement's body or at the very start). */
function startsStatement(prev: Token | undefined): boolean {
  return prev === undefined || (prev.kind === 'punct' && (prev.text === ';' || prev.text === ':')) || (prev.kind === 'word' && STATEMENT_OPENERS.has(prev.text));
}
const STATEMENT_OPENERS = new Set(['BEGIN', 'ATOMIC', 'THEN', 'ELSE', 'DO', 'LOOP', 'REPEAT']);

/** Only a literal that opens a credential clause or can hold a quoted value of its own is read as SQL. */
function mayBeNestedSecret(text: string): boolean {
  return /identified|password/i.test(text) || ((text.includes("'") || text.includes('"')) && text.includes('='));
}

/** What `findSecrets` finds in `text`, a literal's value read as SQL (in the same sql_mode). */
function nestedSecrets(text: string, secretName: (n: string) => boolean, mode: LexMode, depth: number): { masked: boolean; credential: boolean } {
  // The token keeps backslash escapes as written; undo them so the inner quotes are quotes again.
  const sql = mode.noBackslashEscapes ? text : text.replace(/\\(.)/gs, '$1');
  const toks = tokenize(sql, { ...mode, multibyte: undefined }).tokens.filter((t) => t.kind !== 'marker');
  const found = findSecrets(toks, secretName, [], mode, depth);
  return { masked: found.masked.size > 0, credential: found.credential };
}

/** The identifier a value at token `k` is compared with or assigned to: `name = ?`, `name := 'x'`, `name 'x'`. */
function nameBefore(toks: Token[], k: number): string | undefined {
  let j = k - 1;
  while (j >= 0 && toks[j]!.kind === 'punct' && '=<>!:'.includes(toks[j]!.text)) j--;
  const t = toks[j];
  if (!t) return undefined;
  if (t.kind === 'ident') return t.text;
  if (t.kind === 'word') return t.text.toLowerCase();
  return undefined;
}

/** The literal argument of PASSWORD('…') / OLD_PASSWORD('…'). */
function isPasswordCall(toks: Token[], k: number): boolean {
  const open = toks[k - 1];
  const fn = toks[k - 2];
  return open?.text === '(' && fn?.kind === 'word' && (fn.text === 'PASSWORD' || fn.text === 'OLD_PASSWORD');
}

/** `INSERT INTO t (a, b, c) VALUES …` → ['a', 'b', 'c']. */
function columnList(toks: Token[]): string[] | undefined {
  const open = toks.findIndex((t) => t.kind === 'punct' && t.text === '(');
  if (open < 0) return undefined;
  const cols: string[] = [];
  for (let k = open + 1; k < toks.length; k++) {
    const t = toks[k]!;
    if (t.kind === 'punct' && t.text === ')') return cols;
    if (t.kind === 'ident') cols.push(t.text);
    else if (t.kind === 'word') cols.push(t.text.toLowerCase());
    else if (!(t.kind === 'punct' && (t.text === ',' || t.text === '.'))) return undefined;
  }
  return undefined;
}

/** KILL [HARD|SOFT] [CONNECTION|QUERY] <id>. Other forms (QUERY ID, USER) are not mapped. */
function parseKill(toks: Token[]): KillStatement {
  let k = 1;
  if (toks[k]?.text === 'HARD' || toks[k]?.text === 'SOFT') k++;
  let query = false;
  if (toks[k]?.text === 'QUERY') {
    query = true;
    k++;
  } else if (toks[k]?.text === 'CONNECTION') k++;
  const idTok = toks[k];
  if (!idTok || idTok.kind !== 'number' || k + 1 !== toks.length || !/^\d+$/.test(idTok.text)) return { unsupported: true };
  const id = Number(idTok.text);
  if (!Number.isSafeInteger(id) || id > 0xffffffff) return { unsupported: true };
  return { query, id };
}
