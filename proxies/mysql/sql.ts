/**
 * A small MySQL-dialect SQL scanner, enough for what the proxy must know about statement text: where
 * statements begin and end (multi-statements), the leading keyword of each (to catch KILL), which string
 * literals are secrets (masked in events), and which column each `?` placeholder stands for (so that
 * parameters named like secrets are masked). It never rejects text: anything it does not understand is
 * passed through to the server, which is the authority on syntax.
 */

interface Token {
  kind: 'word' | 'ident' | 'string' | 'number' | 'punct' | 'param';
  start: number;
  end: number;
  /** Upper-cased text for words, unquoted text for identifiers. */
  text: string;
}

export interface StatementInfo {
  /** The statement text (trimmed, without the separating semicolon), secrets masked. */
  text: string;
  /** Leading keyword, upper case ('' for an empty statement). */
  keyword: string;
  /** KILL statement, parsed when its form is one vigil maps. */
  kill?: KillStatement;
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

function tokenize(sql: string): Token[] {
  const out: Token[] = [];
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === 32 || c === 9 || c === 10 || c === 13 || c === 12) {
      i++;
    } else if ((c === 45 && sql.charCodeAt(i + 1) === 45 && (i + 2 >= n || sql.charCodeAt(i + 2) <= 32)) || c === 35) {
      const e = sql.indexOf('\n', i);
      i = e < 0 ? n : e + 1;
    } else if (c === 47 && sql.charCodeAt(i + 1) === 42) {
      // /*! … */ and /*M! … */ are executed by the server: scan their content as code.
      if (sql.charCodeAt(i + 2) === 33 || (sql.charCodeAt(i + 2) === 77 && sql.charCodeAt(i + 3) === 33)) {
        i += sql.charCodeAt(i + 2) === 33 ? 3 : 4;
        while (i < n && isDigit(sql.charCodeAt(i))) i++;
      } else {
        const e = sql.indexOf('*/', i + 2);
        i = e < 0 ? n : e + 2;
      }
    } else if (c === 42 && sql.charCodeAt(i + 1) === 47) {
      i += 2; // end of an executable comment
    } else if (c === 39 || c === 34 || c === 96) {
      const start = i++;
      let text = '';
      let seg = i;
      for (;;) {
        if (i >= n) break;
        const d = sql.charCodeAt(i);
        if (d === 92 && c !== 96) {
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
      out.push({ kind: c === 96 ? 'ident' : 'string', start, end: i, text });
    } else if (isWordStart(c)) {
      const start = i;
      while (i < n && isWordChar(sql.charCodeAt(i))) i++;
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
  return out;
}


/**
 * Split and analyze `sql`. `secretName` says whether a column/variable name is a secret (config
 * `redaction.patterns`); literals assigned to or compared with such names are masked too.
 */
export function analyzeSql(sql: string, secretName: (name: string) => boolean): SqlAnalysis {
  const tokens = tokenize(sql);
  const statements: StatementInfo[] = [];
  const paramNames: (string | undefined)[] = [];
  let begin = 0;
  while (begin <= tokens.length) {
    let end = begin;
    while (end < tokens.length && !(tokens[end]!.kind === 'punct' && tokens[end]!.text === ';')) end++;
    const toks = tokens.slice(begin, end);
    if (toks.length > 0 || statements.length === 0) statements.push(analyzeStatement(sql, toks, secretName, paramNames));
    if (end >= tokens.length) break;
    begin = end + 1;
  }
  return { statements, paramNames };
}

function analyzeStatement(sql: string, toks: Token[], secretName: (n: string) => boolean, paramNames: (string | undefined)[]): StatementInfo {
  if (toks.length === 0) return { text: '', keyword: '' };
  const keyword = toks[0]!.kind === 'word' ? toks[0]!.text : '';
  const masked = new Set<number>();
  // After IDENTIFIED (CREATE/ALTER USER, GRANT) every literal is a credential; in SET PASSWORD, after `=`.
  const setPassword = keyword === 'SET' && toks[1]?.text === 'PASSWORD';
  let credential = false;
  const insertColumns = keyword === 'INSERT' || keyword === 'REPLACE' ? columnList(toks) : undefined;
  let valuesIndex = -1;
  let depth = 0;
  let inValues = false;
  for (let k = 0; k < toks.length; k++) {
    const t = toks[k]!;
    if (t.kind === 'word' && t.text === 'IDENTIFIED') credential = true;
    if (setPassword && t.kind === 'punct' && t.text === '=') credential = true;
    if (t.kind === 'word' && (t.text === 'VALUES' || t.text === 'VALUE')) inValues = true;
    if (t.kind === 'punct') {
      if (t.text === '(') {
        depth++;
        if (inValues && depth === 1) valuesIndex = 0;
      } else if (t.text === ')') depth--;
      else if (t.text === ',' && inValues && depth === 1) valuesIndex++;
    }
    if (t.kind === 'string') {
      if (credential || secretName(nameBefore(toks, k) ?? '') || isPasswordCall(toks, k)) masked.add(k);
      else if (insertColumns && inValues && depth === 1 && secretName(insertColumns[valuesIndex] ?? '')) masked.add(k);
    }
    if (t.kind === 'param') {
      paramNames.push(insertColumns && inValues && depth === 1 ? insertColumns[valuesIndex] : nameBefore(toks, k));
    }
  }
  let text = '';
  let pos = toks[0]!.start;
  for (const k of masked) {
    text += sql.slice(pos, toks[k]!.start) + "'***'";
    pos = toks[k]!.end;
  }
  text += sql.slice(pos, toks[toks.length - 1]!.end);
  const info: StatementInfo = { text, keyword };
  if (keyword === 'KILL') info.kill = parseKill(toks);
  if (keyword === 'USE') {
    const t = toks[1];
    info.use = toks.length === 2 && t && (t.kind === 'ident' || t.kind === 'word') ? (t.kind === 'ident' ? t.text : sql.slice(t.start, t.end)) : null;
  }
  return info;
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
