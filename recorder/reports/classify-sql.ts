/**
 * What a recorded SQL statement did, decided by the database's own grammar: PostgreSQL's parser
 * (libpg_query, compiled to WebAssembly) for Postgres targets, node-sql-parser's MariaDB grammar for MySQL
 * targets. Text neither parser accepts is `unclassified` and listed as such, never dropped or guessed at.
 */
import { loadModule, parseSync } from '@libpg-query/parser';
import nodeSqlParser from 'node-sql-parser';

/**
 * `ddl` schema objects; `dml` rows; `config` server settings (ALTER SYSTEM, SET GLOBAL); `privilege`
 * grants, roles, users; `procedure` code whose effects the statement text does not show (DO, CALL);
 * `read`, `session` (transactions, session settings) and `other` change nothing lasting.
 */
export type SqlClass = 'ddl' | 'dml' | 'config' | 'privilege' | 'procedure' | 'read' | 'session' | 'other' | 'unclassified';

/** Classes that change data or configuration (unclassified text is listed apart, as such). */
export const CHANGING_SQL: ReadonlySet<SqlClass> = new Set(['ddl', 'dml', 'config', 'privilege', 'procedure']);

/** Order of precedence when one text holds several statements (or a CTE nests one in another). */
const RANK: SqlClass[] = ['unclassified', 'privilege', 'config', 'ddl', 'dml', 'procedure', 'other', 'session', 'read'];
const strongest = (a: SqlClass, b: SqlClass): SqlClass => (RANK.indexOf(a) <= RANK.indexOf(b) ? a : b);

export interface SqlClassification {
  class: SqlClass;
  /** The parser's name for each statement (`InsertStmt`, `update`…); absent when unparseable. */
  kinds: string[];
  /** Why the text is unclassified (the parser's message). */
  error?: string;
}

let pgReady: Promise<void> | undefined;

/** Load the WebAssembly Postgres parser once; classifyPostgres may be called after this resolves. */
export function loadSqlParsers(): Promise<void> {
  return (pgReady ??= loadModule());
}

const PG_PRIVILEGE = new Set(['GrantStmt', 'GrantRoleStmt', 'CreateRoleStmt', 'AlterRoleStmt', 'AlterRoleSetStmt', 'DropRoleStmt', 'AlterDefaultPrivilegesStmt', 'ReassignOwnedStmt', 'DropOwnedStmt', 'AlterOwnerStmt', 'CreateUserMappingStmt', 'AlterUserMappingStmt', 'DropUserMappingStmt']);
const PG_CONFIG = new Set(['AlterSystemStmt', 'AlterDatabaseSetStmt']);
const PG_DML = new Set(['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt', 'TruncateStmt']);
const PG_PROCEDURE = new Set(['DoStmt', 'CallStmt']);
const PG_SESSION = new Set(['TransactionStmt', 'VariableSetStmt', 'VariableShowStmt', 'DiscardStmt', 'PrepareStmt', 'DeallocateStmt', 'ListenStmt', 'UnlistenStmt', 'NotifyStmt', 'LockStmt', 'DeclareCursorStmt', 'FetchStmt', 'ClosePortalStmt', 'ConstraintsSetStmt', 'CheckPointStmt', 'LoadStmt']);
const PG_DDL_PREFIX = /^(Create|Alter|Drop|Rename|Comment|Define|Index|View|Refresh|Import|Sec|Cluster|Reindex|CompositeType|Rule)/;

/** The class of one Postgres statement node (`{ InsertStmt: {...} }`), looking into nested statements. */
function pgNodeClass(kind: string, node: Record<string, unknown>): SqlClass {
  if (PG_PRIVILEGE.has(kind)) return 'privilege';
  if (PG_CONFIG.has(kind)) return 'config';
  if (kind === 'CopyStmt') return node.is_from ? 'dml' : node.filename ? 'other' : 'read';
  if (kind === 'ExplainStmt') {
    // Only EXPLAIN ANALYZE runs the statement it explains.
    const analyze = JSON.stringify(node.options ?? []).includes('"defname":"analyze"');
    return analyze ? nestedClass(node.query, 'read') : 'read';
  }
  if (PG_DML.has(kind)) return 'dml';
  if (PG_PROCEDURE.has(kind)) return 'procedure';
  if (kind === 'SelectStmt') return node.intoClause ? 'ddl' : nestedClass(node, 'read');
  if (kind === 'CreateTableAsStmt') return 'ddl';
  if (PG_SESSION.has(kind)) return 'session';
  if (PG_DDL_PREFIX.test(kind)) return 'ddl';
  return 'other';
}

/** The strongest class of any statement nested in `tree` (data-modifying CTEs), else `base`. */
function nestedClass(tree: unknown, base: SqlClass): SqlClass {
  let out = base;
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(walk);
    if (!v || typeof v !== 'object') return;
    for (const [k, child] of Object.entries(v)) {
      if (PG_DML.has(k)) out = strongest(out, 'dml');
      walk(child);
    }
  };
  walk(tree);
  return out;
}

/** Classify Postgres SQL text (one or more statements). Call loadSqlParsers() first. */
export function classifyPostgres(sql: string): SqlClassification {
  let stmts: { stmt?: Record<string, unknown> }[];
  try {
    stmts = (parseSync(sql) as { stmts?: { stmt?: Record<string, unknown> }[] }).stmts ?? [];
  } catch (e) {
    return { class: 'unclassified', kinds: [], error: (e as Error).message };
  }
  if (stmts.length === 0) return { class: 'other', kinds: [] };
  let cls: SqlClass = 'read';
  const kinds: string[] = [];
  for (const s of stmts) {
    const [kind, node] = Object.entries(s.stmt ?? {})[0] ?? ['(empty)', {}];
    kinds.push(kind);
    cls = strongest(cls, pgNodeClass(kind, node as Record<string, unknown>));
  }
  return { class: cls, kinds };
}

const mysqlParser = new nodeSqlParser.Parser();

interface MysqlAst {
  type?: string;
  keyword?: string;
}

function mysqlNodeClass(ast: MysqlAst): SqlClass {
  const type = (ast.type ?? '').toLowerCase();
  const keyword = (ast.keyword ?? '').toLowerCase();
  if (type === 'grant' || type === 'revoke') return 'privilege';
  if ((type === 'create' || type === 'drop' || type === 'alter') && (keyword === 'user' || keyword === 'role')) return 'privilege';
  if (type === 'set') return keyword === 'global' || keyword === 'persist' || keyword === 'persist_only' ? 'config' : 'session';
  if (['insert', 'replace', 'update', 'delete', 'load_data', 'truncate'].includes(type)) return 'dml';
  if (['create', 'alter', 'drop', 'rename'].includes(type)) return 'ddl';
  if (type === 'call') return 'procedure';
  if (['select', 'show', 'desc', 'explain'].includes(type)) return 'read';
  if (['use', 'transaction', 'lock', 'unlock'].includes(type)) return 'session';
  return 'other';
}

/** Classify MySQL/MariaDB SQL text with the MariaDB grammar. */
export function classifyMysql(sql: string): SqlClassification {
  let asts: MysqlAst[];
  try {
    const r = mysqlParser.astify(sql, { database: 'MariaDB' }) as MysqlAst | MysqlAst[];
    asts = Array.isArray(r) ? r : [r];
  } catch (e) {
    return { class: 'unclassified', kinds: [], error: (e as Error).message.split('\n')[0] };
  }
  let cls: SqlClass = 'read';
  const kinds: string[] = [];
  for (const a of asts) {
    if (!a) continue;
    kinds.push(a.keyword ? `${a.type}:${a.keyword}` : String(a.type));
    cls = strongest(cls, mysqlNodeClass(a));
  }
  return { class: cls, kinds };
}

/** Statements repeat (prepared statements, the same query with other parameters): parse each text once. */
const CACHE_MAX = 10_000;
const cache = new Map<string, SqlClassification>();

/** Classify by the target's protocol; anything but postgres/mysql is unclassified. */
export function classifySql(protocol: string, sql: string): SqlClassification {
  const key = `${protocol}\u0000${sql}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const c =
    protocol === 'postgres' ? classifyPostgres(sql)
    : protocol === 'mysql' ? classifyMysql(sql)
    : { class: 'unclassified' as const, kinds: [], error: `no SQL parser for protocol ${protocol}` };
  if (cache.size >= CACHE_MAX) cache.clear();
  cache.set(key, c);
  return c;
}
