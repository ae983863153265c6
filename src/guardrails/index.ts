import type { GuardrailConfig, SqlKind } from './config.ts';
import type { SqlFacts, TableRef } from './facts.ts';
import { analysePostgres, loadPostgresParser, type PostgresReadings } from './sql-postgres.ts';
import { analyseMysql, analyseMysqlStatements, type MysqlStatement } from './sql-mysql.ts';
import { compilePattern, matchCommandLine, type CompiledPattern } from './commands.ts';

export { guardrailsSchema, SQL_KINDS, type GuardrailConfig, type SqlKind } from './config.ts';
export { loadPostgresParser, type PostgresReadings, type Reading } from './sql-postgres.ts';
export type { MysqlStatement } from './sql-mysql.ts';

/**
 * Guardrails: a decision the proxies ask before forwarding a statement or a command, like authorization
 * is asked before a session. Pure apart from its decision counters (for /metrics): the proxies answer a
 * refusal in their own protocol, record the event, and never forward what was refused.
 */

export type GuardDecision =
  | { action: 'allow' }
  | {
      action: 'block' | 'require_approval';
      /** Name of the guardrail that refused. */
      rule: string;
      /** What was recognised, for the message and the event (`DROP`, `write to payments.cards`…). */
      reason: string;
      /** Refused because the text could not be understood (on_unparsable: refuse). */
      unparsed: boolean;
    };

export type Dialect = 'postgres' | 'mysql';

const ALLOW: GuardDecision = Object.freeze({ action: 'allow' });

const KIND_TEXT: Record<SqlKind, string> = {
  drop: 'DROP',
  truncate: 'TRUNCATE',
  delete_without_where: 'DELETE without WHERE',
  update_without_where: 'UPDATE without WHERE',
  alter_system: 'ALTER SYSTEM',
  grant: 'GRANT',
  copy_program: 'COPY … PROGRAM',
};

interface SqlRule {
  name: string;
  block: ReadonlySet<SqlKind>;
  approve: ReadonlySet<SqlKind>;
  tables: { schema?: string; table: string }[];
  refuseUnparsable: boolean;
}

interface SshRule {
  name: string;
  block: CompiledPattern[];
  approve: CompiledPattern[];
  refuseUnparsable: boolean;
}

/** Counters for vigil_guardrail_decisions_total. */
type Counts = Map<string, number>;

/** The guardrails of one session (its roles on its target), asked once per statement or command. */
export class SessionGuardrails {
  constructor(
    private readonly sql: SqlRule[],
    private readonly ssh: SshRule[],
    private readonly count: (protocol: string, d: GuardDecision) => void,
  ) {}

  get guardsSql(): boolean {
    return this.sql.length > 0;
  }

  get guardsSsh(): boolean {
    return this.ssh.length > 0;
  }

  /**
   * Decide on one client text (which may hold several statements). `readings` (Postgres): how the
   * session may lex the bodies the text holds when they run (default: as a standard-strings parser).
   */
  checkSql(text: string, dialect: Dialect, readings?: PostgresReadings): GuardDecision {
    const d = this.sql.length === 0 || plainSelect(text) ? ALLOW : decideSql(dialect === 'postgres' ? analysePostgres(text, readings) : analyseMysql(text), this.sql);
    this.count(dialect, d);
    return d;
  }

  /**
   * Decide on a MySQL text as the proxy's server-faithful splitter split it: each statement in every
   * reading the grammar would read as the server does, or marked unreadable (see analyseMysqlStatements).
   */
  checkMysqlStatements(statements: readonly MysqlStatement[]): GuardDecision {
    const d = this.sql.length === 0 ? ALLOW : decideSql(analyseMysqlStatements(statements, plainSelect), this.sql);
    this.count('mysql', d);
    return d;
  }

  /** Decide on one SSH exec command line. */
  checkCommand(line: string): GuardDecision {
    const d = this.ssh.length === 0 ? ALLOW : decideCommand(line, this.ssh);
    this.count('ssh', d);
    return d;
  }

  /**
   * Decide on an SSH command line that cannot be read (a pty shell line whose keystrokes do not rebuild
   * it exactly): refused by the first rule with on_unparsable: refuse, allowed if none refuses.
   */
  checkUnreadable(why: string): GuardDecision {
    const r = this.ssh.find((x) => x.refuseUnparsable);
    const d: GuardDecision = r ? { action: 'block', rule: r.name, reason: `unparsable: ${why}`, unparsed: true } : ALLOW;
    if (this.ssh.length > 0) this.count('ssh', d);
    return d;
  }
}

/**
 * The common case, decided without the parser: one statement (no `;` but a final one) that starts with
 * the SELECT keyword and holds no block comment (MySQL runs `/*! … *\/`). A SELECT cannot hold a DROP,
 * a DML statement (data-modifying WITH must be at the top, before SELECT) or a GRANT; what it calls is
 * out of reach either way (README). Text the parser would refuse is refused by the server too.
 */
function plainSelect(text: string): boolean {
  return PLAIN_SELECT.test(text) && !text.includes('/*');
}
const PLAIN_SELECT = /^\s*select\s[^;]*;?\s*$/i;

export function decideSql(facts: SqlFacts, rules: SqlRule[]): GuardDecision {
  let approval: GuardDecision | undefined;
  if (facts.unparsable !== undefined) {
    const r = rules.find((x) => x.refuseUnparsable);
    return r ? { action: 'block', rule: r.name, reason: `unparsable: ${facts.unparsable}`, unparsed: true } : ALLOW;
  }
  for (const r of rules) {
    for (const k of facts.kinds) {
      if (r.block.has(k)) return { action: 'block', rule: r.name, reason: KIND_TEXT[k], unparsed: false };
      if (r.approve.has(k)) approval ??= { action: 'require_approval', rule: r.name, reason: KIND_TEXT[k], unparsed: false };
    }
    for (const w of facts.writes) {
      const t = r.tables.find((x) => tableMatches(x, w));
      if (t) return { action: 'block', rule: r.name, reason: `write to ${t.schema ? `${t.schema}.` : ''}${t.table}`, unparsed: false };
    }
  }
  return approval ?? ALLOW;
}

/**
 * `payments.cards` matches a write to payments.cards and to an unqualified `cards` (the search_path or
 * current database may well resolve it there); an unqualified pattern matches that table in any schema.
 */
function tableMatches(pattern: { schema?: string; table: string }, w: TableRef): boolean {
  if (pattern.table !== w.table.toLowerCase()) return false;
  return !pattern.schema || !w.schema || pattern.schema === w.schema.toLowerCase();
}

function decideCommand(line: string, rules: SshRule[]): GuardDecision {
  let approval: GuardDecision | undefined;
  for (const r of rules) {
    const m = matchCommandLine(line, r.block);
    if ('unknown' in m) {
      if (r.refuseUnparsable) return { action: 'block', rule: r.name, reason: `unparsable: ${m.unknown}`, unparsed: true };
    } else if (m.matched) return { action: 'block', rule: r.name, reason: `command matches "${m.pattern}"`, unparsed: false };
    if (!approval && r.approve.length) {
      const a = matchCommandLine(line, r.approve);
      if ('matched' in a && a.matched) approval = { action: 'require_approval', rule: r.name, reason: `command matches "${a.pattern}"`, unparsed: false };
    }
  }
  return approval ?? ALLOW;
}

/** All configured guardrails; `forSession` picks those that apply to a session's roles on its target. */
export class Guardrails {
  private readonly rules: { config: GuardrailConfig; sql?: SqlRule; ssh?: SshRule }[];
  private readonly counts: Counts;

  /** `previous`: the instance a config reload replaces; its decision counters carry on (Prometheus counters never go back). */
  constructor(configs: GuardrailConfig[], previous?: Guardrails) {
    this.counts = previous?.counts ?? new Map();
    this.rules = configs.map((c) => ({
      config: c,
      sql: c.sql && {
        name: c.name,
        block: new Set(c.sql.block),
        approve: new Set(c.sql.require_approval),
        tables: c.sql.block_writes_to.map(parseTable),
        refuseUnparsable: c.sql.on_unparsable === 'refuse',
      },
      ssh: c.ssh && {
        name: c.name,
        block: c.ssh.block_commands.map(compilePattern),
        approve: c.ssh.require_approval_commands.map(compilePattern),
        refuseUnparsable: c.ssh.on_unparsable === 'refuse',
      },
    }));
  }

  /** Load what the SQL parsers need (WebAssembly); call once before the first session. */
  static ready(): Promise<void> {
    return loadPostgresParser();
  }

  /** The guardrails for a session, or undefined when none applies (the proxies then ask nothing). */
  forSession(s: { roles: readonly string[]; target: string }): SessionGuardrails | undefined {
    const applies = this.rules.filter(
      (r) => (r.config.targets.includes('*') || r.config.targets.includes(s.target)) && (r.config.roles.includes('*') || r.config.roles.some((x) => s.roles.includes(x))),
    );
    if (applies.length === 0) return undefined;
    return new SessionGuardrails(
      applies.flatMap((r) => (r.sql ? [r.sql] : [])),
      applies.flatMap((r) => (r.ssh ? [r.ssh] : [])),
      (protocol, d) => this.note(protocol, d),
    );
  }

  private note(protocol: string, d: GuardDecision): void {
    const key = d.action === 'allow' ? `${protocol}\0allow\0` : `${protocol}\0${d.action}\0${d.rule}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /** Prometheus lines: decisions by protocol, decision and rule (allow has no rule). */
  renderMetrics(lines: string[]): void {
    lines.push('# HELP vigil_guardrail_decisions_total Guardrail decisions on statements and commands, by protocol, decision and rule.');
    lines.push('# TYPE vigil_guardrail_decisions_total counter');
    for (const [key, n] of [...this.counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const [protocol, decision, rule] = key.split('\0');
      lines.push(`vigil_guardrail_decisions_total{protocol="${protocol}",decision="${decision}",rule="${rule}"} ${n}`);
    }
  }
}

function parseTable(s: string): { schema?: string; table: string } {
  const dot = s.lastIndexOf('.');
  return dot < 0 ? { table: s.toLowerCase() } : { schema: s.slice(0, dot).toLowerCase(), table: s.slice(dot + 1).toLowerCase() };
}

/** The client-facing text of a refusal: names the rule; for require_approval, says how to get access. */
export function refusalMessage(d: Exclude<GuardDecision, { action: 'allow' }>, what: 'statement' | 'command'): { message: string; hint: string } {
  const message = `vigil guardrail "${d.rule}" refused this ${what} (${d.reason}); it was not sent to the target`;
  const hint =
    d.action === 'require_approval'
      ? `This ${what} needs an approval: request access with a reason (vigil access request) and run it under the granted role.`
      : d.unparsed
        ? `vigil could not check this ${what}, and guardrail "${d.rule}" refuses what it cannot check; write it in a form the parser accepts.`
        : `Guardrail "${d.rule}" applies to your role on this target; ask an administrator if this ${what} is needed.`;
  return { message, hint };
}
