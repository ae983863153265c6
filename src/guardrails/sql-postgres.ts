import { deparseSync, loadModule, parseSync, parsePlPgSQLSync } from '@libpg-query/parser';
import type { SqlKind } from './config.ts';
import { emptyFacts, type RoleChange, type SqlFacts } from './facts.ts';

/**
 * Guardrail facts of a Postgres text from PostgreSQL's own parser (libpg_query). Every statement of a
 * multi-statement string is walked, and so is every nested statement (CTEs, PREPARE, EXPLAIN, CREATE
 * RULE): comments, case, quoting and spacing are the parser's business, never a regex's.
 *
 * Not sound, and said so in the README: SQL built at run time. A DO block or a PL/pgSQL function body is
 * parsed and its static statements are checked, and so is an EXECUTE of a single string literal; any
 * other EXECUTE (concatenation, format(), variables; RETURN QUERY EXECUTE too) is reported unparsable.
 * Functions already in the database and called by a statement are not looked into.
 *
 * The parser lexes as if standard_conforming_strings were on. Text the server lexes again later (a DO
 * body, an EXECUTE'd string, a function body) is lexed then in the mode of the session running it, which
 * may read `'a\' ; DELETE …; --'` as a literal and a DELETE: `readings` gives each such text as every
 * mode it may be lexed in would read it, and each one is checked.
 */

/** Every way the server may lex a text it reads again later, rewritten for a standard-strings parser. */
export type Reading = (text: string) => string[];

export interface PostgresReadings {
  /** Runs now, in this session's mode (a DO body, what it EXECUTEs). */
  now: Reading;
  /** Runs when a function is called, in the mode of whichever session calls it (a function body). */
  later: Reading;
}

const AS_WRITTEN: Reading = (t) => [t];
const STANDARD: PostgresReadings = { now: AS_WRITTEN, later: AS_WRITTEN };

interface Ctx {
  facts: SqlFacts;
  readings: PostgresReadings;
  /** The parse tree's version, for deparsing a CREATE FUNCTION around a body reading. */
  version: number;
}

let ready: Promise<void> | undefined;

/** Load the WebAssembly parser once; analysePostgres may be called after this resolves. */
export function loadPostgresParser(): Promise<void> {
  return (ready ??= loadModule());
}

export function analysePostgres(sql: string, readings: PostgresReadings = STANDARD): SqlFacts {
  const facts = emptyFacts();
  let tree: unknown;
  try {
    tree = parseSync(sql);
  } catch (e) {
    facts.unparsable = `the Postgres parser refused it: ${(e as Error).message}`;
    return facts;
  }
  walk(tree, { facts, readings, version: (tree as { version: number }).version }, 0, readings.now);
  return facts;
}

const MAX_DEPTH = 8;

/**
 * Walk every node of the tree; `depth` counts nested bodies (DO inside EXECUTE…) to bound recursion;
 * `read`: how a body found here will be lexed when it runs (now, or later for what a function holds).
 */
function walk(node: unknown, c: Ctx, depth: number, read: Reading): void {
  if (Array.isArray(node)) {
    for (const n of node) walk(n, c, depth, read);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  for (const [kind, value] of Object.entries(node as Record<string, unknown>)) {
    if (value !== null && typeof value === 'object' && /^[A-Z]/.test(kind)) statement(kind, value as Record<string, unknown>, c, depth, read);
    walk(value, c, depth, read);
  }
}

function statement(kind: string, n: Record<string, unknown>, c: Ctx, depth: number, read: Reading): void {
  const facts = c.facts;
  switch (kind) {
    case 'DropStmt':
    case 'DropdbStmt':
    case 'DropRoleStmt':
    case 'DropTableSpaceStmt':
    case 'DropOwnedStmt':
    case 'DropSubscriptionStmt':
    case 'DropUserMappingStmt':
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
      write(n.relation, facts);
      return;
    case 'MergeStmt':
      for (const k of mergeWithoutWhere(n)) facts.kinds.add(k);
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
    case 'AlterDefaultPrivilegesStmt':
      // Its GrantStmt is the unnamed `action` node, which the walk does not see as a statement.
      if ((n.action as { is_grant?: boolean } | undefined)?.is_grant) facts.kinds.add('grant');
      return;
    case 'CreateRoleStmt':
    case 'AlterRoleStmt':
      if (grantsMembership(kind, n)) facts.kinds.add('grant');
      (facts.roles ??= []).push(roleChange(kind, n));
      return;
    case 'RenameStmt':
      if (n.renameType === 'OBJECT_ROLE') (facts.roles ??= []).push({ action: 'rename', role: String(n.subname), options: [] });
      return;
    case 'CopyStmt':
      if (n.is_program) facts.kinds.add('copy_program');
      if (n.is_from) write(n.relation, facts);
      return;
    case 'DoStmt':
      body(doBody(n), c, depth, read);
      return;
    case 'CreateFunctionStmt':
      functionBody(n, c, depth);
      return;
  }
}

/**
 * Role membership granted without a GRANT: `CREATE ROLE x IN ROLE r` / `IN GROUP r` (addroleto),
 * `ROLE m` / `USER m` (rolemembers), `ADMIN m` (adminmembers), and `ALTER GROUP r ADD USER m`, the old
 * spelling of `GRANT r TO m` (rolemembers with action 1; `DROP USER`, action -1, is a REVOKE).
 */
function grantsMembership(kind: string, n: Record<string, unknown>): boolean {
  const options = ((n.options as { DefElem?: { defname?: string } }[]) ?? []).map((o) => o.DefElem?.defname);
  if (kind === 'CreateRoleStmt') return options.some((d) => d === 'addroleto' || d === 'rolemembers' || d === 'adminmembers');
  return n.action === 1 && options.includes('rolemembers');
}

function roleChange(kind: string, n: Record<string, unknown>): RoleChange {
  type Option = { DefElem?: { defname?: string; arg?: { Boolean?: { boolval?: boolean } } } };
  const options: string[] = [];
  let login = kind === 'CreateRoleStmt' && n.stmt_type === 'ROLESTMT_USER';
  for (const o of (n.options as Option[]) ?? []) {
    const d = o.DefElem;
    if (d?.defname === 'canlogin') login = d.arg?.Boolean?.boolval === true;
    else if (d?.defname) options.push(d.defname);
  }
  if (login) options.push('login');
  if (kind === 'CreateRoleStmt') return { action: 'create', role: String(n.role), options };
  const spec = n.role as { roletype?: string; rolename?: string } | undefined;
  return { action: 'alter', role: spec?.roletype === 'ROLESPEC_CSTRING' ? String(spec.rolename) : null, options };
}

/** A WHERE that is a constant true (`WHERE true`, `WHERE 1=1` is not folded) counts as none. */
function hasWhere(n: Record<string, unknown>): boolean {
  const w = n.whereClause as Record<string, unknown> | undefined;
  return w !== undefined && !constantTrue(w);
}

function constantTrue(e: unknown): boolean {
  const c = (e as { A_Const?: { boolval?: { boolval?: boolean } } } | undefined)?.A_Const;
  return c?.boolval?.boolval === true;
}

/**
 * `MERGE INTO t USING … ON true WHEN MATCHED THEN DELETE` is `DELETE FROM t WHERE true`: every row of t
 * matches. A MATCHED action deletes or updates every row when the join condition is constant true and
 * the action has no condition of its own (or a constant true one), as hasWhere reads a WHERE.
 */
function mergeWithoutWhere(n: Record<string, unknown>): SqlKind[] {
  if (!constantTrue(n.joinCondition)) return [];
  const kinds: SqlKind[] = [];
  for (const item of (n.mergeWhenClauses as { MergeWhenClause?: Record<string, unknown> }[]) ?? []) {
    const w = item.MergeWhenClause;
    if (!w || w.matchKind !== 'MERGE_WHEN_MATCHED' || (w.condition !== undefined && !constantTrue(w.condition))) continue;
    if (w.commandType === 'CMD_DELETE') kinds.push('delete_without_where');
    if (w.commandType === 'CMD_UPDATE') kinds.push('update_without_where');
  }
  return kinds;
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

/** A function body is lexed when called, in the caller's mode: checked in every reading (`later`). */
function functionBody(n: Record<string, unknown>, c: Ctx, depth: number): void {
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
    nested(code, c, depth, c.readings.later, c.readings.later);
    return;
  }
  body({ code, language }, c, depth, c.readings.later, n);
}

/** A procedural body: PL/pgSQL is parsed, in every reading `read` gives; other languages cannot be looked into. */
function body(b: { code: string; language: string }, c: Ctx, depth: number, read: Reading, fn?: Record<string, unknown>): void {
  const facts = c.facts;
  if (b.language.toLowerCase() !== 'plpgsql') {
    facts.unparsable ??= `code in language ${b.language} cannot be checked`;
    return;
  }
  if (depth >= MAX_DEPTH) {
    facts.unparsable ??= 'nested too deeply';
    return;
  }
  for (const code of new Set(read(b.code))) {
    let tree: unknown;
    try {
      // parsePlPgSQL takes a whole DO or CREATE FUNCTION. A function keeps its own signature (deparsed
      // around this reading of the body): RETURN QUERY, RETURN NEXT and OUT parameters compile only in
      // a function whose result type allows them. A DO body is re-quoted with a tag it cannot contain.
      let sql: string;
      if (fn) sql = deparseSync({ version: c.version, stmts: [{ stmt: { CreateFunctionStmt: withBody(fn, code) } }] } as Parameters<typeof deparseSync>[0]);
      else {
        let tag = 'vigil';
        while (code.includes(`$${tag}$`)) tag += '_';
        sql = `DO $${tag}$${code}$${tag}$`;
      }
      tree = parsePlPgSQLSync(sql);
    } catch (e) {
      facts.unparsable ??= `the PL/pgSQL parser refused the body: ${(e as Error).message}`;
      return;
    }
    plpgsql(tree, c, depth + 1, read);
  }
}

/** A CREATE FUNCTION node with its body (the first item of AS) replaced by `code`. */
function withBody(fn: Record<string, unknown>, code: string): Record<string, unknown> {
  const options = ((fn.options as { DefElem?: { defname: string; arg?: { List?: { items?: unknown[] } } } }[]) ?? []).map((o) => {
    const d = o.DefElem;
    if (d?.defname !== 'as') return o;
    const items = d.arg?.List?.items ?? [];
    return { DefElem: { ...d, arg: { List: { ...d.arg?.List, items: [{ String: { sval: code } }, ...items.slice(1)] } } } };
  });
  return { ...fn, options };
}

/** Statements whose SQL is a string computed at run time (`dynquery` for OPEN … FOR EXECUTE, RETURN QUERY EXECUTE). */
const DYNAMIC = new Set(['PLpgSQL_stmt_dynexecute', 'PLpgSQL_stmt_dynfors', 'PLpgSQL_stmt_open', 'PLpgSQL_stmt_return_query']);

/**
 * `read`: how the server will lex a string this body EXECUTEs. Its static statements are slices of the
 * body as already read, so they are parsed as they are (what they nest is lexed anew: `read` again).
 */
function plpgsql(node: unknown, c: Ctx, depth: number, read: Reading): void {
  if (Array.isArray(node)) {
    for (const n of node) plpgsql(n, c, depth, read);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  for (const [kind, value] of Object.entries(node as Record<string, unknown>)) {
    type Expr = { PLpgSQL_expr?: { query?: string } };
    const dyn = value as { query?: Expr; dynquery?: Expr };
    // RETURN QUERY without EXECUTE has a static `query` only: walked below like any statement.
    if (DYNAMIC.has(kind) && (kind !== 'PLpgSQL_stmt_return_query' || dyn?.dynquery !== undefined)) {
      const q = kind === 'PLpgSQL_stmt_return_query' ? dyn.dynquery?.PLpgSQL_expr?.query : (dyn?.query?.PLpgSQL_expr?.query ?? dyn?.dynquery?.PLpgSQL_expr?.query);
      if (q !== undefined) {
        const literal = stringLiteral(q);
        if (literal === undefined) c.facts.unparsable ??= 'dynamic SQL (EXECUTE of a computed string) cannot be checked before it runs';
        // The string is lexed when it runs, in the mode of the session running it.
        else nested(literal, c, depth, read, read);
      }
    } else if (kind === 'PLpgSQL_expr') {
      const q = (value as { query?: string }).query;
      // Whole statements (parseMode 0) are checked; expressions and assignments cannot hold a statement
      // that changes anything other than through a function call, which is out of reach anyway.
      if (q && !(value as { parseMode?: number }).parseMode) nested(q, c, depth, AS_WRITTEN, read);
      continue;
    }
    plpgsql(value, c, depth, read);
  }
}

/** `sql` parsed in every reading `self` gives; bodies it holds are read with `read`. */
function nested(sql: string, c: Ctx, depth: number, self: Reading, read: Reading): void {
  if (depth >= MAX_DEPTH) {
    c.facts.unparsable ??= 'nested too deeply';
    return;
  }
  for (const text of new Set(self(sql))) {
    let tree: unknown;
    try {
      tree = parseSync(text);
    } catch (e) {
      c.facts.unparsable ??= `a nested statement does not parse: ${(e as Error).message}`;
      return;
    }
    walk(tree, c, depth + 1, read);
  }
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
