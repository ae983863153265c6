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
  /** Statements this text prepares by name (SQL `PREPARE`), each with the class of what it prepares. */
  prepares?: PreparedSql[];
  /** The text only prepares: nothing runs until an `EXECUTE` (which is then what counts). */
  preparesOnly?: boolean;
  /**
   * Names this text EXECUTEs without preparing them itself: what they run is known only to the session
   * that prepared them, so the text is `unclassified` unless resolveExecutes() finds them.
   */
  executes?: string[];
  /** The class of the rest of the text, apart from those executions. */
  classWithoutExecutes?: SqlClass;
}

/** A statement prepared by name (`PREPARE d AS …`, MySQL `PREPARE s FROM '…'`) and what running it does. */
export interface PreparedSql {
  name: string;
  class: SqlClass;
  kinds: string[];
  error?: string;
}

/** What a text executes by name does, from the statements its session prepared (`lookup`); unknown names stay unclassified. */
export function resolveExecutes(c: SqlClassification, lookup: (name: string) => PreparedSql | undefined): SqlClassification {
  if (!c.executes?.length) return c;
  let cls = c.classWithoutExecutes ?? 'read';
  const kinds = [...c.kinds];
  for (const name of c.executes) {
    const p = lookup(name);
    if (!p) return c;
    cls = strongest(cls, p.class);
    kinds.push(`${name}: ${p.kinds.join(', ') || p.error || p.class}`);
  }
  return { class: cls, kinds };
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

/** Statements prepared so far in one text, and the names it executes that it did not prepare. */
interface PgContext {
  prepared: Map<string, PreparedSql>;
  unresolved: string[];
}

/** The class of a statement node given whole (`{ DeleteStmt: {...} }`), as a PREPARE or COPY holds it. */
function pgStmtClass(stmt: unknown, ctx: PgContext): SqlClass {
  const [kind, node] = Object.entries((stmt ?? {}) as Record<string, unknown>)[0] ?? ['(empty)', {}];
  return pgNodeClass(kind, (node ?? {}) as Record<string, unknown>, ctx);
}

/** The class of one Postgres statement node (`{ InsertStmt: {...} }`), looking into nested statements. */
function pgNodeClass(kind: string, node: Record<string, unknown>, ctx: PgContext): SqlClass {
  if (PG_PRIVILEGE.has(kind)) return 'privilege';
  if (PG_CONFIG.has(kind)) return 'config';
  if (kind === 'CopyStmt') {
    if (node.is_from) return 'dml';
    // TO PROGRAM runs a shell command on the database host: its effects are not in the text.
    const base: SqlClass = node.is_program ? 'procedure' : node.filename ? 'other' : 'read';
    // COPY (DELETE … RETURNING *) TO STDOUT runs the statement it copies out.
    return node.query ? strongest(base, pgStmtClass(node.query, ctx)) : base;
  }
  if (kind === 'ExplainStmt') {
    // Only EXPLAIN ANALYZE runs the statement it explains.
    const analyze = JSON.stringify(node.options ?? []).includes('"defname":"analyze"');
    return analyze ? nestedClass(node.query, 'read', ctx) : 'read';
  }
  // A PREPARE runs nothing itself, but what it prepares is what EXECUTE will do.
  if (kind === 'PrepareStmt') {
    const cls = pgStmtClass(node.query, ctx);
    ctx.prepared.set(String(node.name ?? ''), { name: String(node.name ?? ''), class: cls, kinds: Object.keys((node.query ?? {}) as object) });
    return cls;
  }
  if (kind === 'ExecuteStmt') return nestedClass({ ExecuteStmt: node }, 'read', ctx);
  if (PG_DML.has(kind)) return 'dml';
  if (PG_PROCEDURE.has(kind)) return 'procedure';
  if (kind === 'SelectStmt') return node.intoClause ? 'ddl' : nestedClass(node, 'read', ctx);
  // CREATE TABLE … AS EXECUTE d runs d.
  if (kind === 'CreateTableAsStmt') return nestedClass(node, 'ddl', ctx);
  if (PG_SESSION.has(kind)) return 'session';
  if (PG_DDL_PREFIX.test(kind)) return 'ddl';
  return 'other';
}

/**
 * The strongest class of any statement nested in `tree` (data-modifying CTEs, EXECUTE of a statement
 * prepared earlier in the text), else `base`. An EXECUTE of a name not prepared in the text is noted in `ctx`.
 */
function nestedClass(tree: unknown, base: SqlClass, ctx: PgContext): SqlClass {
  let out = base;
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(walk);
    if (!v || typeof v !== 'object') return;
    for (const [k, child] of Object.entries(v)) {
      if (PG_DML.has(k)) out = strongest(out, 'dml');
      if (k === 'ExecuteStmt') {
        const name = String((child as Record<string, unknown>)?.name ?? '');
        const prepared = ctx.prepared.get(name);
        if (prepared) out = strongest(out, prepared.class);
        else ctx.unresolved.push(name);
      }
      walk(child);
    }
  };
  walk(tree);
  return out;
}

/** The classification of a text, given the class of its statements and what its EXECUTEs left unresolved. */
function withExecutions(cls: SqlClass, kinds: string[], ctx: PgContext): SqlClassification {
  const prepares = ctx.prepared.size ? [...ctx.prepared.values()] : undefined;
  const preparesOnly = prepares && kinds.every((k) => k === 'PrepareStmt' || k === 'prepare') ? true : undefined;
  if (!ctx.unresolved.length) return { class: cls, kinds, prepares, preparesOnly };
  return {
    class: 'unclassified',
    kinds,
    error: `executes prepared statement ${ctx.unresolved.join(', ')}, prepared before this text: what it runs is not in it`,
    prepares,
    executes: ctx.unresolved,
    classWithoutExecutes: cls,
  };
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
  const ctx: PgContext = { prepared: new Map(), unresolved: [] };
  for (const s of stmts) {
    const [kind, node] = Object.entries(s.stmt ?? {})[0] ?? ['(empty)', {}];
    kinds.push(kind);
    cls = strongest(cls, pgNodeClass(kind, node as Record<string, unknown>, ctx));
  }
  return withExecutions(cls, kinds, ctx);
}

const mysqlParser = new nodeSqlParser.Parser();

interface MysqlAst {
  type?: string;
  keyword?: string;
  expr?: { left?: { prefix?: string | null; name?: string } }[];
}

/** Scopes whose variables are the server's, not the session's (`SET GLOBAL x`, `SET @@global.x`, `SET PERSIST x`). */
const MYSQL_SERVER_SCOPES = new Set(['global', 'persist', 'persist_only']);

function mysqlNodeClass(ast: MysqlAst): SqlClass {
  const type = (ast.type ?? '').toLowerCase();
  const keyword = (ast.keyword ?? '').toLowerCase();
  if (type === 'grant' || type === 'revoke') return 'privilege';
  if ((type === 'create' || type === 'drop' || type === 'alter') && (keyword === 'user' || keyword === 'role')) return 'privilege';
  if (type === 'set') {
    // The grammar reads `@@global.max_connections` as a variable named `global` with a member.
    const serverVariable = (ast.expr ?? []).some((a) => a.left?.prefix === '@@' && MYSQL_SERVER_SCOPES.has(String(a.left.name ?? '').toLowerCase()));
    return MYSQL_SERVER_SCOPES.has(keyword) || serverVariable ? 'config' : 'session';
  }
  if (['insert', 'replace', 'update', 'delete', 'load_data', 'truncate'].includes(type)) return 'dml';
  if (['create', 'alter', 'drop', 'rename'].includes(type)) return 'ddl';
  if (type === 'call') return 'procedure';
  if (['select', 'show', 'desc', 'explain'].includes(type)) return 'read';
  if (['use', 'transaction', 'lock', 'unlock'].includes(type)) return 'session';
  return 'other';
}

/*
 * SQL-level prepared statements, which the MariaDB grammar does not cover: `PREPARE s FROM 'text'` (or from a
 * user variable, whose text the statement does not show), `EXECUTE s [USING @a, …]`, `DEALLOCATE|DROP PREPARE s`.
 */
/** A statement name: a word or a backquoted identifier. */
const MYSQL_NAME = /(\w+|`(?:[^`]|``)+`)/.source;
/** A string literal (quotes doubled or backslash-escaped inside) or a user variable. */
const MYSQL_SOURCE = /('(?:[^'\\]|''|\\[\s\S])*'|"(?:[^"\\]|""|\\[\s\S])*"|@[\w$.]+|@`(?:[^`]|``)+`)/.source;
const MYSQL_PREPARE = new RegExp(String.raw`^\s*PREPARE\s+${MYSQL_NAME}\s+FROM\s+${MYSQL_SOURCE}\s*;?\s*$`, 'i');
const MYSQL_EXECUTE = new RegExp(String.raw`^\s*EXECUTE\s+${MYSQL_NAME}(?:\s+USING\s+[^;]*)?\s*;?\s*$`, 'i');
const MYSQL_DEALLOCATE = new RegExp(String.raw`^\s*(?:DEALLOCATE|DROP)\s+PREPARE\s+${MYSQL_NAME}\s*;?\s*$`, 'i');

/** A statement name as the server compares it: unquoted, case-insensitive. */
const mysqlName = (n: string) => (n.startsWith('`') ? n.slice(1, -1).replace(/``/g, '`') : n).toLowerCase();

const MYSQL_ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', '0': '\0', b: '\b', Z: '\x1a' };

/** The text of a MySQL string literal. */
function mysqlString(lit: string): string {
  const q = lit[0];
  return lit.slice(1, -1).replace(new RegExp(String.raw`\\([\s\S])|${q}${q}`, 'g'), (_m, c: string | undefined) => (c === undefined ? q : (MYSQL_ESCAPES[c] ?? c)));
}

function classifyMysqlPrepared(sql: string): SqlClassification | undefined {
  const prepare = MYSQL_PREPARE.exec(sql);
  if (prepare) {
    const name = mysqlName(prepare[1]);
    const source = prepare[2];
    const inner: SqlClassification = source.startsWith('@')
      ? { class: 'unclassified', kinds: [], error: `prepared from the user variable ${source}: its text is not in the statement` }
      : classifyMysql(mysqlString(source));
    return { class: inner.class, kinds: ['prepare'], error: inner.error, prepares: [{ name, class: inner.class, kinds: inner.kinds, error: inner.error }], preparesOnly: true };
  }
  const execute = MYSQL_EXECUTE.exec(sql);
  if (execute) {
    const name = mysqlName(execute[1]);
    return { class: 'unclassified', kinds: ['execute'], error: `executes prepared statement ${name}, prepared before this text: what it runs is not in it`, executes: [name], classWithoutExecutes: 'read' };
  }
  if (MYSQL_DEALLOCATE.test(sql)) return { class: 'session', kinds: ['deallocate'] };
  return undefined;
}

/** Classify MySQL/MariaDB SQL text with the MariaDB grammar. */
export function classifyMysql(sql: string): SqlClassification {
  const prepared = classifyMysqlPrepared(sql);
  if (prepared) return prepared;
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
