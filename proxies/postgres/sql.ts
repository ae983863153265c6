/**
 * A small SQL lexer following PostgreSQL's own (src/backend/parser/scan.l) for everything that decides
 * where a literal, a comment or a statement ends: '' strings (backslash escapes only when
 * standard_conforming_strings is off), E'' strings (always), U&'', B'' and X'' strings, string
 * continuation across a newline, dollar quotes, quoted identifiers, nested comments, `$n` parameters.
 * It splits a simple-query string into statements and finds the literals to mask before SQL text reaches
 * an audit event. It does not parse SQL. When the text is something the server itself would reject at
 * the lexical level (an unterminated literal or comment…), the splitter does not guess: the whole text
 * is one statement, marked unsplit.
 */

export type TokenKind = 'word' | 'ident' | 'string' | 'param' | 'number' | 'op' | 'semicolon' | 'open' | 'close' | 'comma';

export interface Token {
  kind: TokenKind;
  start: number;
  end: number;
  /** Lower-cased word, unquoted identifier, or `$n` number. */
  value: string;
}

/**
 * The session's lexical mode as the server reported it (ParameterStatus). `undefined` means not known
 * for certain (a change may be in flight): callers then consider both modes.
 */
export type StandardConformingStrings = boolean | undefined;

const isSpace = (c: number) => c === 32 || (c >= 9 && c <= 13);
const isHorizSpace = (c: number) => c === 32 || c === 9 || c === 12;
const isNewline = (c: number) => c === 10 || c === 13;
const isIdentStart = (c: number) => (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || c >= 128;
const isDigit = (c: number) => c >= 48 && c <= 57;
/** scan.l ident_cont: letters, digits, `_`, `$`, high-bit characters. */
const isIdentChar = (c: number) => isIdentStart(c) || isDigit(c) || c === 36;
/** scan.l dolq_cont: like ident_cont but without `$`. */
const isTagChar = (c: number) => isIdentStart(c) || isDigit(c);
const isHex = (c: number) => isDigit(c) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);

/** Result of `lexOne` (module-level so the splitter's scan allocates nothing per token). */
let lexKind: TokenKind | 'comment' = 'op';
let lexEnd = 0;
/** Set when the text is lexically invalid for the server (it would reject the whole query string). */
let lexOdd: string | undefined;

const enum Quote {
  /** '' with standard_conforming_strings on, B'', X'', U&'': no backslash escapes. */
  Plain,
  /** E'', or '' with standard_conforming_strings off. */
  Escaped,
}

/**
 * Lex the token (or comment) starting at `i` (not whitespace): sets lexKind and lexEnd, and lexOdd when
 * the server would refuse the text.
 */
function lexOne(sql: string, i: number, scs: boolean): void {
  const n = sql.length;
  const c = sql.charCodeAt(i);
  const c1 = sql.charCodeAt(i + 1);
  // -- comment, up to a newline (\n or \r)
  if (c === 45 && c1 === 45) {
    let j = i + 2;
    while (j < n && !isNewline(sql.charCodeAt(j))) j++;
    lexKind = 'comment';
    lexEnd = j;
    return;
  }
  // /* comment */, nested
  if (c === 47 && c1 === 42) {
    let depth = 1;
    let j = i + 2;
    while (j < n && depth > 0) {
      const d = sql.charCodeAt(j);
      if (d === 47 && sql.charCodeAt(j + 1) === 42) {
        depth++;
        j += 2;
      } else if (d === 42 && sql.charCodeAt(j + 1) === 47) {
        depth--;
        j += 2;
      } else j++;
    }
    if (depth > 0) lexOdd = 'unterminated /* comment';
    lexKind = 'comment';
    lexEnd = j;
    return;
  }
  // 'string', E'string', B'..', X'..', U&'..' (N'..' is the word N then a '' string, as in scan.l)
  if (c === 39) return lexString(sql, i + 1, scs ? Quote.Plain : Quote.Escaped);
  if (c1 === 39) {
    if (c === 69 || c === 101) return lexString(sql, i + 2, Quote.Escaped);
    if (c === 66 || c === 98 || c === 88 || c === 120) return lexString(sql, i + 2, Quote.Plain);
  }
  if ((c === 85 || c === 117) && c1 === 38 && sql.charCodeAt(i + 2) === 39) {
    // The server refuses U&'' while standard_conforming_strings is off.
    if (!scs) lexOdd = "U&'' string while standard_conforming_strings is off";
    return lexString(sql, i + 3, Quote.Plain);
  }
  // "quoted identifier"
  if (c === 34) {
    let j = i + 1;
    for (;;) {
      if (j >= n) {
        lexOdd = 'unterminated quoted identifier';
        break;
      }
      if (sql.charCodeAt(j) === 34) {
        if (sql.charCodeAt(j + 1) === 34) j += 2;
        else {
          j++;
          break;
        }
      } else j++;
    }
    if (j === i + 2) lexOdd = 'zero-length delimited identifier';
    lexKind = 'ident';
    lexEnd = j;
    return;
  }
  // $n parameter or $tag$ dollar quote
  if (c === 36) {
    if (isDigit(c1)) {
      let j = i + 1;
      while (j < n && isDigit(sql.charCodeAt(j))) j++;
      lexKind = 'param';
      lexEnd = j;
      return;
    }
    let j = i + 1;
    if (c1 !== 36 && isIdentStart(c1)) while (j < n && isTagChar(sql.charCodeAt(j))) j++;
    if (sql.charCodeAt(j) === 36) {
      // Scanning for the first occurrence of the opening tag is what scan.l's xdolq rules amount to.
      const tag = sql.slice(i, j + 1);
      const close = sql.indexOf(tag, j + 1);
      if (close < 0) lexOdd = 'unterminated dollar-quoted string';
      lexKind = 'string';
      lexEnd = close < 0 ? n : close + tag.length;
      return;
    }
    // A lone `$` is an ordinary character (scan.l dolqfailed).
  }
  if (isIdentStart(c)) {
    let j = i + 1;
    while (j < n && isIdentChar(sql.charCodeAt(j))) j++;
    lexKind = 'word';
    lexEnd = j;
    return;
  }
  if (isDigit(c) || (c === 46 && isDigit(c1))) {
    // Digits, `.`, exponent letters and trailing junk, but never `$`: `1$a$` is 1 then a dollar quote.
    let j = i + 1;
    while (j < n && (isTagChar(sql.charCodeAt(j)) || sql.charCodeAt(j) === 46)) j++;
    lexKind = 'number';
    lexEnd = j;
    return;
  }
  lexKind = c === 59 ? 'semicolon' : c === 40 ? 'open' : c === 41 ? 'close' : c === 44 ? 'comma' : 'op';
  lexEnd = i + 1;
}

/** The body of a quoted string from `i` (after the opening quote), with scan.l's continuation rule. */
function lexString(sql: string, i: number, quote: Quote): void {
  const n = sql.length;
  let j = i;
  for (;;) {
    if (j >= n) {
      lexOdd = 'unterminated quoted string';
      break;
    }
    const d = sql.charCodeAt(j);
    if (d === 92 && quote === Quote.Escaped) {
      const e = sql.charCodeAt(j + 1);
      if (e === 117 || e === 85) {
        // \uXXXX, \UXXXXXXXX: anything shorter is refused by the server.
        const len = e === 117 ? 4 : 8;
        for (let k = 0; k < len; k++) if (!isHex(sql.charCodeAt(j + 2 + k))) lexOdd = 'invalid Unicode escape';
      }
      j += 2;
    } else if (d === 39) {
      if (sql.charCodeAt(j + 1) === 39) j += 2;
      else {
        j++;
        // 'a'<newline>'b' is one literal, lexed on in the same state (an E'' string stays escaped).
        const next = continuation(sql, j);
        if (next < 0) break;
        j = next;
      }
    } else j++;
  }
  lexKind = 'string';
  lexEnd = Math.min(j, n);
}

/**
 * scan.l `quotecontinue`: after a closing quote, whitespace (and -- comments) containing at least one
 * newline, then a quote, continue the literal. Returns the index after that quote, or -1.
 */
function continuation(sql: string, j: number): number {
  const n = sql.length;
  // horiz_whitespace*
  for (;;) {
    const c = sql.charCodeAt(j);
    if (isHorizSpace(c)) j++;
    else if (c === 45 && sql.charCodeAt(j + 1) === 45) {
      j += 2;
      while (j < n && !isNewline(sql.charCodeAt(j))) j++;
    } else break;
  }
  if (!isNewline(sql.charCodeAt(j))) return -1;
  j++;
  // special_whitespace*: spaces and newlines, or a -- comment that ends with a newline
  for (;;) {
    const c = sql.charCodeAt(j);
    if (isHorizSpace(c) || isNewline(c)) j++;
    else if (c === 45 && sql.charCodeAt(j + 1) === 45) {
      let k = j + 2;
      while (k < n && !isNewline(sql.charCodeAt(k))) k++;
      if (k >= n) return -1;
      j = k + 1;
    } else break;
  }
  return sql.charCodeAt(j) === 39 ? j + 1 : -1;
}

/**
 * Tokenize `sql` in the given mode (default: standard_conforming_strings on); whitespace and comments
 * are dropped. Unterminated literals run to the end.
 */
export function tokenize(sql: string, scs = true): Token[] {
  const out: Token[] = [];
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (isSpace(c)) {
      i++;
      continue;
    }
    lexOne(sql, i, scs);
    const kind = lexKind;
    if (kind !== 'comment') {
      let value = '';
      if (kind === 'word') value = sql.slice(i, lexEnd).toLowerCase();
      else if (kind === 'ident') value = sql.slice(i + 1, Math.max(i + 1, lexEnd - 1)).replace(/""/g, '"');
      else if (kind === 'param') value = sql.slice(i + 1, lexEnd);
      else if (kind !== 'string' && kind !== 'number') value = sql[i];
      out.push({ kind, start: i, end: lexEnd, value });
    }
    i = lexEnd;
  }
  return out;
}

export interface Split {
  /** The statements' texts, in order. */
  statements: string[];
  /**
   * The splitter could not be certain where statements end (the text is lexically odd, or the two
   * possible modes disagree): `statements` is the whole text, as one.
   */
  unsplit: boolean;
}

/**
 * Split a simple-query string into its statements, as the server does. Invariant: each statement is a
 * substring of `sql`, they come in order without overlapping, and every character of `sql` outside them
 * is whitespace, a comment or a statement-separating `;`; each run of text between separating semicolons
 * that holds a token yields exactly one statement, from its first to its last token (a text without any
 * `;` is returned whole, trimmed). Empty statements are dropped, as the server drops them.
 * When unsure (see Split.unsplit), the one statement is the whole trimmed text. `scs` omitted or
 * undefined: the mode is not known, both are considered.
 */
export function splitQuery(sql: string, scs?: StandardConformingStrings): Split {
  // Fast path (most simple queries): no semicolon, so one statement whatever the lexing; only text
  // starting with `--` can be nothing but comments.
  const semi = sql.indexOf(';');
  if (semi < 0) {
    const s = sql.trim();
    return { statements: s === '' || (s.charCodeAt(0) === 45 && /^(--[^\n\r]*[\n\r]?\s*)+$/.test(s)) ? [] : [s], unsplit: false };
  }
  // Only a trailing semicolon, and nothing before it that could open a literal or a comment: that
  // semicolon ends the one statement.
  if (onlySpaceFrom(sql, semi + 1) && !mayQuote(sql, semi)) {
    const s = sql.slice(0, semi).trim();
    return { statements: s === '' ? [] : [s], unsplit: false };
  }
  if (scs !== undefined || !modeMatters(sql)) return splitIn(sql, scs ?? true);
  const on = splitIn(sql, true);
  const off = splitIn(sql, false);
  if (!on.unsplit && !off.unsplit && sameList(on.statements, off.statements)) return on;
  return whole(sql);
}

/** `splitQuery(sql, scs).statements` */
export function splitStatements(sql: string, scs?: StandardConformingStrings): string[] {
  return splitQuery(sql, scs).statements;
}

/** True when `sql` has nothing but whitespace from `from` on. */
function onlySpaceFrom(sql: string, from: number): boolean {
  for (let i = from; i < sql.length; i++) if (!isSpace(sql.charCodeAt(i))) return false;
  return true;
}

/** Whether `sql` before `end` holds anything that opens a literal, a quoted identifier or a comment. */
function mayQuote(sql: string, end: number): boolean {
  const at = sql.search(OPENER);
  return at >= 0 && at < end;
}
const OPENER = /['"$]|--|\/\*/;

/** Only backslashes (escapes) and U&'' strings lex differently with standard_conforming_strings off. */
const modeMatters = (sql: string) => sql.indexOf('\\') >= 0 || sql.indexOf('&') >= 0;

const whole = (sql: string): Split => ({ statements: [sql.trim()], unsplit: true });

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

/**
 * A `;` separates statements only where the server's grammar (gram.y `stmtmulti`) can end one: not
 * inside parentheses (a rule's action list, `DO ALSO (NOTIFY a; NOTIFY b)`) and not inside the
 * `BEGIN ATOMIC … END` body of a CREATE FUNCTION/PROCEDURE (where CASE … END nests). Text the grammar
 * refuses (unbalanced parentheses…) runs nothing at all, so erring towards fewer, longer statements
 * there loses nothing.
 */
function splitIn(sql: string, scs: boolean): Split {
  const out: string[] = [];
  const n = sql.length;
  let from = -1;
  let last = -1;
  let parens = 0;
  /** Open BEGIN ATOMIC bodies and CASE expressions inside them. */
  let atomic = 0;
  /** The statement begins with CREATE: only then can BEGIN ATOMIC open a body. */
  let create = false;
  /** The previous token was the word BEGIN (of a statement that begins with CREATE). */
  let afterBegin = false;
  lexOdd = undefined;
  let i = 0;
  while (i < n) {
    if (isSpace(sql.charCodeAt(i))) {
      i++;
      continue;
    }
    lexOne(sql, i, scs);
    if (lexOdd !== undefined) return whole(sql);
    if (lexKind === 'semicolon' && parens === 0 && atomic === 0) {
      if (from >= 0) out.push(sql.slice(from, last));
      from = -1;
      create = afterBegin = false;
    } else if (lexKind !== 'comment') {
      if (from < 0) {
        from = i;
        create = lexKind === 'word' && isWord(sql, i, lexEnd, 'create');
      } else if (create && lexKind === 'word') {
        if (afterBegin && isWord(sql, i, lexEnd, 'atomic')) atomic++;
        else if (atomic > 0 && isWord(sql, i, lexEnd, 'case')) atomic++;
        else if (atomic > 0 && isWord(sql, i, lexEnd, 'end')) atomic--;
      }
      afterBegin = create && lexKind === 'word' && isWord(sql, i, lexEnd, 'begin');
      if (lexKind === 'open') parens++;
      else if (lexKind === 'close' && parens > 0) parens--;
      last = lexEnd;
    }
    i = lexEnd;
  }
  if (from >= 0) out.push(sql.slice(from, last));
  return { statements: out, unsplit: false };
}

/** Whether `sql[start, end)` is the keyword `lower` (any case). */
function isWord(sql: string, start: number, end: number, lower: string): boolean {
  if (end - start !== lower.length) return false;
  for (let k = 0; k < lower.length; k++) if ((sql.charCodeAt(start + k) | 0x20) !== lower.charCodeAt(k)) return false;
  return true;
}

/**
 * The same text as the server lexes it with standard_conforming_strings off, written for a lexer that
 * assumes it on (libpg_query, as the guardrails use it): every '' string holding a backslash becomes an
 * E'' string, which both modes lex alike (a continued literal keeps the state of its first part). N''
 * becomes E'' (its type does not matter to a guard); a string right after a word gets a space first,
 * so the E is not read as part of that word.
 */
export function asStandardStrings(sql: string): string {
  if (sql.indexOf('\\') < 0) return sql;
  let out = '';
  let at = 0;
  for (const t of tokenize(sql, false)) {
    if (t.kind !== 'string' || sql.charCodeAt(t.start) !== 39 || sql.indexOf('\\', t.start) >= t.end || sql.indexOf('\\', t.start) < 0) continue;
    const before = sql.charCodeAt(t.start - 1);
    const national = (before === 78 || before === 110) && !isIdentChar(sql.charCodeAt(t.start - 2));
    if (national) out += sql.slice(at, t.start - 1) + 'E';
    else out += sql.slice(at, t.start) + (t.start > 0 && isIdentChar(before) ? ' E' : 'E');
    at = t.start;
  }
  return at === 0 ? sql : out + sql.slice(at);
}

export interface Redaction {
  /** SQL text with secret literals replaced by `'***'`. */
  text: string;
  /** 1-based `$n` parameters that sit in a secret position. */
  params: ReadonlySet<number>;
}

/** Shared by every statement with no secret parameter (most): nothing is ever added to it. */
const NO_PARAMS: ReadonlySet<number> = new Set();

/**
 * Cheap pre-check of `redactSql`: only text that mentions a password or a configured secret name can need
 * masking, so ordinary statements are neither tokenized nor given a Set of their own.
 */
function mayHoldSecret(sql: string, names: RegExp | undefined): boolean {
  return MAY_HOLD_PASSWORD.test(sql) || (names !== undefined && names.test(sql));
}

export const MASK = "'***'";

/** A libpq keyword/value password (`password=…`) or a URI with one (`postgresql://u:p@h`). */
const CONNINFO_PASSWORD = /\bpassword\s*=|:\/\/[^\s/@:']*:[^\s/@']*@/i;
const MAY_HOLD_PASSWORD = /password|:\/\/[^\s/@:']*:[^\s/@']*@/i;

const isValue = (t: Token | undefined) => !!t && (t.kind === 'string' || t.kind === 'param' || t.kind === 'number');

/**
 * Mask secrets in one statement (or a multi-statement string):
 *  - the literal after the word PASSWORD (CREATE/ALTER ROLE|USER|GROUP, ENCRYPTED PASSWORD, the
 *    `OPTIONS (password '…')` of CREATE SERVER / USER MAPPING), a SCRAM or MD5 verifier as much as a
 *    clear password;
 *  - a literal or `$n` compared or assigned to a column whose name matches `names` (`col = 'x'`);
 *  - INSERT … (cols) VALUES (…) values in the positions of matching columns;
 *  - a libpq connection string or URI with a password (`dblink_connect('… password=…')`): whole literal;
 *  - SQL inside a literal, run later (DO and function bodies, EXECUTE '…' in PL/pgSQL): a dollar-quoted
 *    body is redacted in place, as its text is verbatim; a quoted literal holding a secret is masked
 *    whole, since its escapes make the inner positions uncertain. When the nested SQL leaves a password
 *    outside the literal (`EXECUTE 'ALTER ROLE x PASSWORD ' || quote_literal('s')`), every literal after
 *    it in that statement is masked.
 * `scs` omitted or undefined: the mode is not known; what either mode calls a secret is masked.
 */
export function redactSql(sql: string, names: RegExp | undefined, scs?: StandardConformingStrings): Redaction {
  if (!mayHoldSecret(sql, names)) return { text: sql, params: NO_PARAMS };
  const params = new Set<number>();
  const mask: Range[] = [];
  // Mode not known for certain: mask what either mode would call a secret, so neither leaks.
  if (scs === undefined && modeMatters(sql)) {
    collectSecrets(sql, tokenize(sql, true), true, names, params, mask, 0);
    collectSecrets(sql, tokenize(sql, false), false, names, params, mask, 0);
  } else collectSecrets(sql, tokenize(sql, scs ?? true), scs ?? true, names, params, mask, 0);
  const secretParams = params.size ? params : NO_PARAMS;
  if (mask.length === 0) return { text: sql, params: secretParams };
  let text = '';
  let at = 0;
  for (const r of mask.sort((a, b) => a.start - b.start)) {
    if (r.end <= at) continue;
    if (r.start >= at) text += sql.slice(at, r.start) + MASK;
    at = r.end;
  }
  return { text: text + sql.slice(at), params: secretParams };
}

interface Range {
  start: number;
  end: number;
}

/** Literals nested deeper than this (SQL in a literal in a literal…) are not looked into again. */
const MAX_NESTING = 4;


/**
 * Collect what to mask in `sql` (tokens `toks`, lexed in mode `scs`). Returns true when a PASSWORD
 * clause's value is not in `sql` at all (it ends right after PASSWORD, or a non-literal follows): the
 * caller, which holds `sql` as a literal, must then mask what comes after that literal.
 */
function collectSecrets(sql: string, toks: Token[], scs: boolean, names: RegExp | undefined, params: Set<number>, mask: Range[], depth: number): boolean {
  const secret = (t: Token | undefined) => {
    if (!t) return;
    if (t.kind === 'param') params.add(Number(t.value));
    else if (t.kind === 'string' || t.kind === 'number') mask.push(t);
  };
  const nameMatches = (t: Token) => !!names && (t.kind === 'word' || t.kind === 'ident') && names.test(t.value);
  let open = false;

  let stmtStart = 0;
  for (let i = 0; i <= toks.length; i++) {
    if (i < toks.length && toks[i].kind !== 'semicolon') continue;
    const st = toks.slice(stmtStart, i);
    stmtStart = i + 1;
    if (st.length === 0) continue;
    /** A password's value is not where PASSWORD is (built by concatenation, format…): every later literal may be it. */
    let credential = false;
    /** …and no literal has followed yet: the value may be outside `sql` altogether. */
    let pending = false;
    /** Inside CREATE/ALTER ROLE|USER|GROUP or an OPTIONS list: where a bare PASSWORD is a clause, not a word in text. */
    let clause = false;
    for (let k = 0; k < st.length; k++) {
      const t = st[k];
      if (t.kind === 'word' && (t.value === 'options' || ((t.value === 'create' || t.value === 'alter') && ['role', 'user', 'group'].includes(st[k + 1]?.value)))) clause = true;
      if (t.kind === 'word' && t.value === 'password') {
        const v = st[k + 1];
        if (isValue(v)) secret(v);
        // Nothing after PASSWORD, or an operator (`PASSWORD ' || quote_literal(…)`, `%L`): the value is built elsewhere.
        else if (clause && (v === undefined || (v.kind === 'op' && v.value !== '=' && v.value !== '.'))) credential = pending = true;
      }
      if (t.kind === 'string') {
        if (credential) {
          secret(t);
          pending = false;
        } else if (depth < MAX_NESTING && nestedSecret(sql, t, scs, names, mask, depth)) credential = pending = true;
      }
      if (nameMatches(t)) {
        const op = st[k + 1];
        if (op?.kind === 'op' && (op.value === '=' || op.value === ':')) {
          // `col = v`, `col := v` (two op tokens), `col => v`
          let v = k + 2;
          while (st[v]?.kind === 'op') v++;
          if (isValue(st[v])) secret(st[v]);
        }
      }
    }
    if (st[0].value === 'insert' && names) redactInsert(st, nameMatches, secret);
    if (pending) open = true;
  }
  return open;
}

/**
 * Mask what a string literal holds: a connection string's password (whole literal), or secrets of the
 * SQL inside it. Returns true when that SQL leaves a password outside the literal (see collectSecrets).
 */
function nestedSecret(sql: string, t: Token, scs: boolean, names: RegExp | undefined, mask: Range[], depth: number): boolean {
  const raw = sql.slice(t.start, t.end);
  if (!mayHoldSecret(raw, names)) return false;
  if (CONNINFO_PASSWORD.test(raw)) {
    mask.push(t);
    return false;
  }
  const inner: Range[] = [];
  const unused = new Set<number>();
  if (sql.charCodeAt(t.start) === 36) {
    // $tag$…$tag$: the body is verbatim, so its secrets are masked where they are.
    const tagLength = raw.indexOf('$', 1) + 1;
    const closed = raw.length >= 2 * tagLength && raw.endsWith(raw.slice(0, tagLength));
    const offset = t.start + tagLength;
    const body = sql.slice(offset, closed ? t.end - tagLength : t.end);
    const open = collectSecrets(body, tokenize(body, scs), scs, names, unused, inner, depth + 1);
    for (const r of inner) mask.push({ start: offset + r.start, end: offset + r.end });
    if (open) mask.push(t);
    return open;
  }
  const body = literalText(raw, scs);
  if (body.indexOf("'") < 0 && body.indexOf('$') < 0 && !/password/i.test(body)) return false;
  const open = collectSecrets(body, tokenize(body, scs), scs, names, unused, inner, depth + 1);
  if (open || inner.length > 0) mask.push(t);
  return open;
}

/** The value of a quoted literal (prefix and quotes dropped, `''` and backslash escapes undone): close
 *  enough to read the SQL inside it, not exact (it is only ever masked whole). */
function literalText(raw: string, scs: boolean): string {
  const quote = raw.indexOf("'");
  const escaped = quote > 0 ? /^[eE]/.test(raw) : !scs;
  let body = raw.slice(quote + 1, raw.endsWith("'") && raw.length > quote + 1 ? -1 : undefined);
  body = body.replace(/'\s*\n\s*'/g, '').replace(/''/g, "'");
  return escaped ? body.replace(/\\(.)/gs, '$1') : body;
}

/** INSERT INTO t (a, b, …) VALUES (x, y, …), (…): mask values at the positions of matching columns. */
function redactInsert(st: Token[], nameMatches: (t: Token) => boolean, secret: (t: Token | undefined) => void): void {
  const open = st.findIndex((t) => t.kind === 'open');
  const values = st.findIndex((t) => t.kind === 'word' && t.value === 'values');
  if (open < 0 || values < 0 || open > values) return;
  const secretCols = new Set<number>();
  let col = 0;
  for (let k = open + 1; k < values && st[k].kind !== 'close'; k++) {
    if (st[k].kind === 'comma') col++;
    else if (nameMatches(st[k])) secretCols.add(col);
  }
  if (secretCols.size === 0) return;
  let depth = 0;
  let pos = 0;
  for (let k = values + 1; k < st.length; k++) {
    const t = st[k];
    if (t.kind === 'open') {
      depth++;
      if (depth === 1) pos = 0;
    } else if (t.kind === 'close') depth--;
    else if (t.kind === 'comma' && depth === 1) pos++;
    else if (depth === 1 && secretCols.has(pos) && isValue(t)) secret(t);
    else if (depth === 0 && t.kind === 'word') break; // RETURNING, ON CONFLICT …
  }
}
