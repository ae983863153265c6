import { loadModule, parseSync, parsePlPgSQLSync } from '@libpg-query/parser';
import { emptyFacts, type SqlFacts } from './facts.ts';

/**
 * Guardrail facts of a Postgres text from PostgreSQL's own parser (libpg_query). Every statement of a
 * multi-statement string is walked, and so is every nested statement (CTEs, PREPARE, EXPLAIN, CREATE
 * RULE): comments, case, quoting and spacing are the parser's business, never a regex's.
 *
 * Not sound, and said so in the README: SQL built at run time. A DO block or a PL/pgSQL function body is
 * parsed and its static statements are checked, and so is an EXECUTE of a single string literal; any
 * other EXECUTE (concatenation, format(), variables) is reported unparsable. Functions already in the
 * database and called by a statement are not looked into.
 */

let ready: Promise<void> | undefined;

/** Load the WebAssembly parser once; analysePostgres may be called after this resolves. */
export function loadPostgresParser(): Promise<void> {
  return (ready ??= loadModule());
}

export function analysePostgres(sql: string): SqlFacts {
  const facts = emptyFacts();
  let tree: unknown;
  try {
    tree = parseSync(sql);
  } catch (e) {
    facts.unparsable = `the Postgres parser refused it: ${(e as Error).message}`;
    return facts;
  }
  walk(tree, facts, 0);
  return facts;
}

const MAX_DEPTH = 8;

/** Walk every node of the tree; `depth` counts nested bodies (DO inside EXECUTE…) to bound recursion. */
function walk(node: unknown, facts: SqlFacts, depth: number): void {
  if (Array.isArray(node)) {
    for (const n of node) walk(n, facts, depth);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  for (const [kind, value] of Object.entries(node as Record<string, unknown>)) {
    if (value !== null && typeof value === 'object' && /^[A-Z]/.test(kind)) statement(kind, value as Record<string, unknown>, facts, depth);
    walk(value, facts, depth);
  }
}

function statement(kind: string, n: Record<string, unknown>, facts: SqlFacts, depth: number): void {
  switch (kind) {
    case 'DropStmt':
    case 'DropdbStmt':
    case 'DropRoleStmt':
    case 'DropTableSpaceStmt':
    case 'DropOwnedStmt':
    case 'DropSubscriptionStmt':
      facts.kinds.add('drop');
      return;
    case 'TruncateStmt':
      facts.kinds.add('truncate');
      for (const r of (n.relations as unknown[]) ?? []) write((r as { RangeVar?: unknown }).RangeVar, facts);
      return;
    case 'DeleteStmt':
      if (!hasWhere(n)) facts.kinds.add('delete_without_where');
      write(n.relation, facts);
      return;
    case 'UpdateStmt':
      if (!hasWhere(n)) facts.kinds.add('update_without_where');
      write(n.relation, facts);
      return;
    case 'InsertStmt':
    case 'MergeStmt':
      write(n.relation, facts);
      return;
    case 'AlterSystemStmt':
      facts.kinds.add('alter_system');
      return;
    case 'GrantStmt':
      // REVOKE is a GrantStmt too (is_grant false): taking privileges away is not what this rule guards.
      if (n.is_grant) facts.kinds.add('grant');
      return;
    case 'GrantRoleStmt':
      if (n.is_grant) facts.kinds.add('grant');
      return;
    case 'CopyStmt':
      if (n.is_program) facts.kinds.add('copy_program');
      if (n.is_from) write(n.relation, facts);
      return;
    case 'DoStmt':
      body(doBody(n), facts, depth);
      return;
    case 'CreateFunctionStmt':
      functionBody(n, facts, depth);
      return;
  }
}

/** A WHERE that is a constant true (`WHERE true`, `WHERE 1=1` is not folded) counts as none. */
function hasWhere(n: Record<string, unknown>): boolean {
  const w = n.whereClause as Record<string, unknown> | undefined;
  if (!w) return false;
  const c = w.A_Const as { boolval?: { boolval?: boolean } } | undefined;
  if (c && c.boolval && c.boolval.boolval === true) return false;
  return true;
}

function write(rv: unknown, facts: SqlFacts): void {
  const r = rv as { schemaname?: string; relname?: string } | undefined;
  if (r?.relname) facts.writes.push({ schema: r.schemaname, table: r.relname });
}

function doBody(n: Record<string, unknown>): { code: string; language: string } {
  let code = '';
  let language = 'plpgsql';
  for (const a of (n.args as { DefElem?: { defname: string; arg?: { String?: { sval: string } } } }[]) ?? []) {
    const d = a.DefElem;
    if (d?.defname === 'as') code = d.arg?.String?.sval ?? '';
    if (d?.defname === 'language') language = d.arg?.String?.sval ?? language;
  }
  return { code, language };
}

function functionBody(n: Record<string, unknown>, facts: SqlFacts, depth: number): void {
  let language = 'sql';
  let code: string | undefined;
  for (const o of (n.options as { DefElem?: { defname: string; arg?: unknown } }[]) ?? []) {
    const d = o.DefElem;
    if (d?.defname === 'language') language = (d.arg as { String?: { sval: string } })?.String?.sval ?? language;
    if (d?.defname === 'as') {
      const items = (d.arg as { List?: { items?: { String?: { sval: string } }[] } })?.List?.items ?? [];
      code = items[0]?.String?.sval;
    }
  }
  // A SQL-standard body (BEGIN ATOMIC … END) is already in the tree and walked by the caller.
  if (code === undefined) return;
  if (language === 'sql') {
    nested(code, facts, depth);
    return;
  }
  body({ code, language }, facts, depth, n);
}

/** A procedural body: PL/pgSQL is parsed; other languages cannot be looked into. */
function body(b: { code: string; language: string }, facts: SqlFacts, depth: number, fn?: Record<string, unknown>): void {
  if (b.language.toLowerCase() !== 'plpgsql') {
    facts.unparsable ??= `code in language ${b.language} cannot be checked`;
    return;
  }
  if (depth >= MAX_DEPTH) {
    facts.unparsable ??= 'nested too deeply';
    return;
  }
  let tree: unknown;
  try {
    // parsePlPgSQL takes a whole DO or CREATE FUNCTION; the body is re-quoted with a tag it cannot contain.
    let tag = 'vigil';
    while (b.code.includes(`$${tag}$`)) tag += '_';
    const q = `$${tag}$${b.code}$${tag}$`;
    tree = parsePlPgSQLSync(fn ? `CREATE FUNCTION vigil_check() RETURNS void LANGUAGE plpgsql AS ${q}` : `DO ${q}`);
  } catch (e) {
    facts.unparsable ??= `the PL/pgSQL parser refused the body: ${(e as Error).message}`;
    return;
  }
  plpgsql(tree, facts, depth + 1);
}

function plpgsql(node: unknown, facts: SqlFacts, depth: number): void {
  if (Array.isArray(node)) {
    for (const n of node) plpgsql(n, facts, depth);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  for (const [kind, value] of Object.entries(node as Record<string, unknown>)) {
    if (kind === 'PLpgSQL_stmt_dynexecute' || kind === 'PLpgSQL_stmt_dynfors' || kind === 'PLpgSQL_stmt_open') {
      const q = (value as { query?: { PLpgSQL_expr?: { query?: string } }; dynquery?: { PLpgSQL_expr?: { query?: string } } })?.query?.PLpgSQL_expr?.query ??
        (value as { dynquery?: { PLpgSQL_expr?: { query?: string } } })?.dynquery?.PLpgSQL_expr?.query;
      if (q !== undefined) {
        const literal = stringLiteral(q);
        if (literal === undefined) facts.unparsable ??= 'dynamic SQL (EXECUTE of a computed string) cannot be checked before it runs';
        else nested(literal, facts, depth);
      }
    } else if (kind === 'PLpgSQL_expr') {
      const q = (value as { query?: string }).query;
      // Whole statements (parseMode 0) are checked; expressions and assignments cannot hold a statement
      // that changes anything other than through a function call, which is out of reach anyway.
      if (q && !(value as { parseMode?: number }).parseMode) nested(q, facts, depth);
      continue;
    }
    plpgsql(value, facts, depth);
  }
}

function nested(sql: string, facts: SqlFacts, depth: number): void {
  if (depth >= MAX_DEPTH) {
    facts.unparsable ??= 'nested too deeply';
    return;
  }
  let tree: unknown;
  try {
    tree = parseSync(sql);
  } catch (e) {
    facts.unparsable ??= `a nested statement does not parse: ${(e as Error).message}`;
    return;
  }
  walk(tree, facts, depth + 1);
}

/** The value of a single SQL string literal ('…' or E'…' without escapes, $$…$$), else undefined. */
function stringLiteral(expr: string): string | undefined {
  const t = expr.trim();
  const m = /^'((?:[^']|'')*)'$/.exec(t);
  if (m) return m[1].replace(/''/g, "'");
  const d = /^\$([A-Za-z_]*)\$([\s\S]*)\$\1\$$/.exec(t);
  if (d) return d[2];
  return undefined;
}
