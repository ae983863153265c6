/**
 * A small SQL tokenizer (PostgreSQL lexical rules for strings, E'' strings, dollar quotes, quoted
 * identifiers, comments, `$n` parameters) used to split a simple-query string into statements and to
 * mask secrets before SQL text reaches an audit event. It does not parse SQL: it only needs to know
 * where literals and statement boundaries are, which the lexical level decides.
 */

export type TokenKind = 'word' | 'ident' | 'string' | 'param' | 'number' | 'op' | 'semicolon' | 'open' | 'close' | 'comma';

export interface Token {
  kind: TokenKind;
  start: number;
  end: number;
  /** Lower-cased word, unquoted identifier, or `$n` number. */
  value: string;
}

const isSpace = (c: number) => c === 32 || (c >= 9 && c <= 13);
const isIdentStart = (c: number) => (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || c >= 128;
const isIdentChar = (c: number) => isIdentStart(c) || (c >= 48 && c <= 57) || c === 36;
const isDigit = (c: number) => c >= 48 && c <= 57;

/** Tokenize `sql`; whitespace and comments are dropped. Unterminated literals run to the end. */
export function tokenize(sql: string): Token[] {
  const out: Token[] = [];
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (isSpace(c)) {
      i++;
      continue;
    }
    const start = i;
    // -- comment
    if (c === 45 && sql.charCodeAt(i + 1) === 45) {
      const nl = sql.indexOf('\n', i);
      i = nl < 0 ? n : nl + 1;
      continue;
    }
    // /* nested comment */
    if (c === 47 && sql.charCodeAt(i + 1) === 42) {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql.charCodeAt(i) === 47 && sql.charCodeAt(i + 1) === 42) {
          depth++;
          i += 2;
        } else if (sql.charCodeAt(i) === 42 && sql.charCodeAt(i + 1) === 47) {
          depth--;
          i += 2;
        } else i++;
      }
      continue;
    }
    // 'string', E'string', X'..', B'..', U&'..'
    const prefixed = (c === 69 || c === 101 || c === 88 || c === 120 || c === 66 || c === 98) && sql.charCodeAt(i + 1) === 39;
    const unicode = (c === 85 || c === 117) && sql.charCodeAt(i + 1) === 38 && sql.charCodeAt(i + 2) === 39;
    if (c === 39 || prefixed || unicode) {
      const escapes = c === 69 || c === 101;
      i += c === 39 ? 1 : prefixed ? 2 : 3;
      while (i < n) {
        const d = sql.charCodeAt(i);
        if (escapes && d === 92) i += 2;
        else if (d === 39) {
          if (sql.charCodeAt(i + 1) === 39) i += 2;
          else {
            i++;
            break;
          }
        } else i++;
      }
      out.push({ kind: 'string', start, end: Math.min(i, n), value: '' });
      continue;
    }
    // "quoted identifier"
    if (c === 34) {
      i++;
      while (i < n) {
        if (sql.charCodeAt(i) === 34) {
          if (sql.charCodeAt(i + 1) === 34) i += 2;
          else {
            i++;
            break;
          }
        } else i++;
      }
      out.push({ kind: 'ident', start, end: i, value: sql.slice(start + 1, i - 1).replace(/""/g, '"') });
      continue;
    }
    // $n parameter or $tag$ dollar quote
    if (c === 36) {
      if (isDigit(sql.charCodeAt(i + 1))) {
        i++;
        while (i < n && isDigit(sql.charCodeAt(i))) i++;
        out.push({ kind: 'param', start, end: i, value: sql.slice(start + 1, i) });
        continue;
      }
      let j = i + 1;
      while (j < n && isIdentChar(sql.charCodeAt(j)) && sql.charCodeAt(j) !== 36) j++;
      if (sql.charCodeAt(j) === 36) {
        const tag = sql.slice(i, j + 1);
        const close = sql.indexOf(tag, j + 1);
        i = close < 0 ? n : close + tag.length;
        out.push({ kind: 'string', start, end: i, value: '' });
        continue;
      }
    }
    if (isIdentStart(c)) {
      i++;
      while (i < n && isIdentChar(sql.charCodeAt(i))) i++;
      out.push({ kind: 'word', start, end: i, value: sql.slice(start, i).toLowerCase() });
      continue;
    }
    if (isDigit(c) || (c === 46 && isDigit(sql.charCodeAt(i + 1)))) {
      i++;
      while (i < n && (isIdentChar(sql.charCodeAt(i)) || sql.charCodeAt(i) === 46)) i++;
      out.push({ kind: 'number', start, end: i, value: '' });
      continue;
    }
    i++;
    const kind: TokenKind = c === 59 ? 'semicolon' : c === 40 ? 'open' : c === 41 ? 'close' : c === 44 ? 'comma' : 'op';
    out.push({ kind, start, end: i, value: sql[start] });
  }
  return out;
}

/**
 * Split a simple-query string into its statements (as the server does: empty statements between
 * semicolons are dropped). Returns the trimmed text of each.
 */
export function splitStatements(sql: string): string[] {
  // Fast path (one per simple query): no semicolon at all, or only a trailing one — checked without
  // copying the tail; only text starting with `--` can be nothing but comments.
  const semi = sql.indexOf(';');
  if (semi < 0 || onlySpaceFrom(sql, semi + 1)) {
    const s = (semi < 0 ? sql : sql.slice(0, semi)).trim();
    return s === '' || (s.charCodeAt(0) === 45 && /^(--[^\n]*\n?\s*)+$/.test(s)) ? [] : [s];
  }
  const out: string[] = [];
  let from = -1;
  let last = -1;
  for (const t of tokenize(sql)) {
    if (t.kind === 'semicolon') {
      if (from >= 0) out.push(sql.slice(from, last).trim());
      from = -1;
      continue;
    }
    if (from < 0) from = t.start;
    last = t.end;
  }
  if (from >= 0) out.push(sql.slice(from, last).trim());
  return out;
}

/** True when `sql` has nothing but whitespace from `from` on. */
function onlySpaceFrom(sql: string, from: number): boolean {
  for (let i = from; i < sql.length; i++) if (!isSpace(sql.charCodeAt(i))) return false;
  return true;
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
  return /password/i.test(sql) || (names !== undefined && names.test(sql));
}

export const MASK = "'***'";

const isValue = (t: Token | undefined) => !!t && (t.kind === 'string' || t.kind === 'param' || t.kind === 'number');

/**
 * Mask secrets in one statement (or a multi-statement string):
 *  - the literal after PASSWORD in CREATE/ALTER ROLE|USER|GROUP (including ENCRYPTED PASSWORD);
 *  - a literal or `$n` compared or assigned to a column whose name matches `names` (`col = 'x'`);
 *  - INSERT … (cols) VALUES (…) values in the positions of matching columns.
 */
export function redactSql(sql: string, names: RegExp | undefined): Redaction {
  if (!mayHoldSecret(sql, names)) return { text: sql, params: NO_PARAMS };
  const params = new Set<number>();
  const toks = tokenize(sql);
  const mask: Token[] = [];
  const secret = (t: Token | undefined) => {
    if (!t) return;
    if (t.kind === 'param') params.add(Number(t.value));
    else if (t.kind === 'string' || t.kind === 'number') mask.push(t);
  };
  const nameMatches = (t: Token) => !!names && (t.kind === 'word' || t.kind === 'ident') && names.test(t.value);

  let stmtStart = 0;
  for (let i = 0; i <= toks.length; i++) {
    if (i < toks.length && toks[i].kind !== 'semicolon') continue;
    const st = toks.slice(stmtStart, i);
    stmtStart = i + 1;
    if (st.length === 0) continue;
    const roleStmt = (st[0].value === 'create' || st[0].value === 'alter') && ['role', 'user', 'group'].includes(st[1]?.value);
    for (let k = 0; k < st.length; k++) {
      const t = st[k];
      if (roleStmt && t.kind === 'word' && t.value === 'password') secret(st[k + 1]);
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
  }
  if (mask.length === 0) return { text: sql, params: params.size ? params : NO_PARAMS };
  let text = '';
  let at = 0;
  for (const t of mask.sort((a, b) => a.start - b.start)) {
    text += sql.slice(at, t.start) + MASK;
    at = t.end;
  }
  return { text: text + sql.slice(at), params };
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
