import nodeSqlParser from 'node-sql-parser';
import { emptyFacts, type SqlFacts } from './facts.ts';

/**
 * Guardrail facts of a MySQL/MariaDB text from node-sql-parser's grammar (MariaDB dialect, then MySQL).
 * Text neither accepts is unparsable, and so is text with executable comments (`/*! … *\/`, `/*M! … *\/`):
 * the server runs what is inside them while the grammar takes them for comments, so a statement could
 * hide there.
 */

const parser = new nodeSqlParser.Parser();

type Node = Record<string, unknown>;

export function analyseMysql(sql: string): SqlFacts {
  const facts = emptyFacts();
  if (/\/\*[M]?!/i.test(sql)) {
    facts.unparsable = 'executable comments (/*! … */) run on the server but cannot be checked';
    return facts;
  }
  let ast: unknown;
  try {
    ast = parser.astify(sql, { database: 'mariadb' });
  } catch {
    try {
      ast = parser.astify(sql, { database: 'mysql' });
    } catch (e) {
      if (!harmlessUnparsed(sql)) facts.unparsable = `the MySQL parser refused it: ${(e as Error).message.split('\n')[0].slice(0, 200)}`;
      return facts;
    }
  }
  walk(ast, facts);
  return facts;
}

/**
 * Statements the grammar does not know but that change nothing guardrails guard, recognised only when
 * they stand alone (one statement, no comment): SHOW/DESCRIBE/EXPLAIN/HELP, and SET of session
 * settings (SET NAMES, SET SESSION …, SET var = …), never when GLOBAL or PERSIST appears anywhere.
 */
/**
 * One statement of a COM_QUERY as the server splits it (the proxy's splitter knows sql_mode, the
 * character set and the `-- ` rule; the grammar does not). `readings`: the statement rewritten so the
 * grammar's fixed lexing reads it as the server would, once per way the server may read it (a sql_mode
 * not known yet…). `unreadable`: why no such rewriting exists (boundaries not certain, a multi-byte
 * character hiding a backslash…): the statement is unparsable.
 */
export type MysqlStatement = { readings: readonly string[] } | { unreadable: string };

/**
 * The facts of every statement in every reading, together: what one reading does, the text does.
 * `skip`: readings known to need no parse (a plain SELECT).
 */
export function analyseMysqlStatements(statements: readonly MysqlStatement[], skip: (sql: string) => boolean = () => false): SqlFacts {
  const facts = emptyFacts();
  for (const s of statements) {
    if ('unreadable' in s) {
      facts.unparsable ??= s.unreadable;
      continue;
    }
    for (const text of new Set(s.readings)) {
      if (skip(text)) continue;
      const f = analyseMysql(text);
      for (const k of f.kinds) facts.kinds.add(k);
      facts.writes.push(...f.writes);
      if (f.unparsable !== undefined) facts.unparsable ??= f.unparsable;
    }
  }
  return facts;
}

function harmlessUnparsed(sql: string): boolean {
  if (/\/\*|--|#/.test(sql) || !/^[^;]*;?\s*$/.test(sql)) return false;
  if (/^\s*(show|describe|desc|explain|help)\s/i.test(sql)) return true;
  return /^\s*set\s+(names\s|character\s+set\s|charset\s|session\s|local\s|@@session\.|@@local\.|@[A-Za-z_]|[A-Za-z_]+\s*=)/i.test(sql) && !/\b(global|persist|persist_only)\b/i.test(sql);
}

function walk(node: unknown, facts: SqlFacts): void {
  if (Array.isArray(node)) {
    for (const n of node) walk(n, facts);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const n = node as Node;
  if (typeof n.type === 'string') statement(n, facts);
  for (const v of Object.values(n)) if (v !== null && typeof v === 'object') walk(v, facts);
}

function statement(n: Node, facts: SqlFacts): void {
  switch (n.type) {
    case 'drop':
      facts.kinds.add('drop');
      return;
    case 'truncate':
      facts.kinds.add('truncate');
      tables(n.name, facts);
      return;
    case 'delete':
      if (!hasWhere(n)) facts.kinds.add('delete_without_where');
      tables(n.from ?? n.table, facts);
      return;
    case 'update':
      if (!hasWhere(n)) facts.kinds.add('update_without_where');
      tables(n.table, facts);
      return;
    case 'alter':
      partitionChanges(n, facts);
      return;
    case 'insert':
    case 'replace':
    case 'load_data':
      tables(n.table, facts);
      return;
    case 'grant':
      facts.kinds.add('grant');
      return;
    case 'set':
      // SET GLOBAL / SET PERSIST change the server for everyone: the MySQL form of ALTER SYSTEM.
      if (SERVER_SCOPES.has(String(n.keyword ?? '').toLowerCase()) || assignsServerVariable(n.expr)) facts.kinds.add('alter_system');
      return;
  }
}

/**
 * A WHERE that is a constant true counts as none: `WHERE TRUE`, and `WHERE 1` (TRUE is 1 to MySQL, and
 * `WHERE 1` its usual spelling of "every row"). `WHERE 1=1` is not folded (as on Postgres).
 */
function hasWhere(n: Node): boolean {
  const w = n.where as { type?: unknown; value?: unknown } | null | undefined;
  if (!w) return false;
  if (w.type === 'bool') return w.value !== true;
  if (w.type === 'number') return Number(w.value) === 0 || Number.isNaN(Number(w.value));
  return true;
}

/**
 * `ALTER TABLE t TRUNCATE PARTITION p` (or `ALL`: the whole table) empties partitions as TRUNCATE does,
 * and `DROP PARTITION p` drops them with their rows: both are a TRUNCATE or a DROP, and a write to t.
 */
function partitionChanges(n: Node, facts: SqlFacts): void {
  for (const e of (Array.isArray(n.expr) ? n.expr : []) as { action?: unknown; resource?: unknown }[]) {
    if (e?.resource !== 'partition') continue;
    if (e.action === 'truncate') facts.kinds.add('truncate');
    else if (e.action === 'drop') facts.kinds.add('drop');
    else continue;
    tables(n.table, facts);
  }
}

/** Scopes whose variables are the server's (and, persisted, its next start's), not the session's. */
const SERVER_SCOPES = new Set(['global', 'persist', 'persist_only']);

/**
 * Whether one of a SET's assignments sets `@@global.x`, `@@persist.x` or `@@persist_only.x` (any case),
 * each of which may follow session ones (`SET @@session.a = 1, @@global.b = 2`). The grammar gives such
 * a target as a var named after its scope with the variable in `members`. Only the assigned side counts:
 * `SET @a = @@global.x` reads the server's value, it changes nothing.
 */
function assignsServerVariable(expr: unknown): boolean {
  const list = Array.isArray(expr) ? expr : [expr];
  return list.some((a) => {
    const left = (a as { left?: { type?: unknown; prefix?: unknown; name?: unknown } } | null)?.left;
    return left?.type === 'var' && left.prefix === '@@' && SERVER_SCOPES.has(String(left.name).toLowerCase());
  });
}

function tables(t: unknown, facts: SqlFacts): void {
  const list = Array.isArray(t) ? t : t ? [t] : [];
  for (const x of list as { db?: string | null; table?: string }[]) {
    if (x && typeof x.table === 'string') facts.writes.push({ schema: x.db ?? undefined, table: x.table.toLowerCase() });
  }
}
