import { SessionGuardrails, type Dialect, type GuardDecision, type MysqlStatement, type PostgresReadings } from './index.ts';
import { analysePostgres, loadPostgresParser } from './sql-postgres.ts';
import type { RoleChange } from './facts.ts';

/**
 * The built-in guardrail of a session that logs in as a vigil-provisioned account (user_provisioning):
 * the account's password is vigil's alone, so that the engineer reaches the database only through vigil
 * (and its record). A statement that would give the account (or any role) a login vigil does not hold is
 * refused before it is forwarded, whatever the configured guardrails say:
 *
 * - Postgres: ALTER ROLE|USER on the account itself (named, CURRENT_USER, SESSION_USER, CURRENT_ROLE)
 *   with any option (PASSWORD, as psql's \password sends it, VALID UNTIL, CONNECTION LIMIT…) and its
 *   RENAME; on any role: PASSWORD, LOGIN or VALID UNTIL; CREATE ROLE with LOGIN or PASSWORD, CREATE USER.
 *   PostgreSQL's parser finds them also in DO blocks and function bodies (sql-postgres.ts).
 * - MariaDB: SET PASSWORD, ALTER USER, CREATE [OR REPLACE] USER, RENAME USER, IDENTIFIED (GRANT …
 *   IDENTIFIED BY), writes to mysql.user / mysql.global_priv, also inside a compound statement or a
 *   stored-program body; PREPARE and EXECUTE IMMEDIATE of a literal are looked into.
 *
 * When it cannot tell (text that does not parse, SQL computed at run time), it refuses. Out of reach, as
 * for every guardrail: routines already in the database that a statement calls.
 *
 * It takes the place of the session's guardrails (the proxies ask it as they ask them, so a refusal is
 * answered and recorded as any guardrail refusal: a guardrail.blocked or guardrail.unparsed event and the
 * statement's db.query failure) and asks the configured ones, if any, for what it allows.
 */

export const PROVISIONED_ACCOUNT_RULE = 'provisioned_account';

const ALLOW: GuardDecision = Object.freeze({ action: 'allow' });

class ProvisionedAccountGuardrails extends SessionGuardrails {
  constructor(
    private readonly account: string,
    private readonly configured: SessionGuardrails | undefined,
  ) {
    super([], [], () => {});
  }

  override get guardsSql(): boolean {
    return true;
  }

  override get guardsSsh(): boolean {
    return false;
  }

  override checkSql(text: string, dialect: Dialect, readings?: PostgresReadings): GuardDecision {
    const own = dialect === 'postgres' ? this.postgres(text, readings) : this.mysql([{ readings: [text] }]);
    return own ?? this.configured?.checkSql(text, dialect, readings) ?? ALLOW;
  }

  override checkMysqlStatements(statements: readonly MysqlStatement[]): GuardDecision {
    return this.mysql(statements) ?? this.configured?.checkMysqlStatements(statements) ?? ALLOW;
  }

  private postgres(text: string, readings?: PostgresReadings): GuardDecision | undefined {
    if (PLAIN_SELECT.test(text) && !text.includes('/*')) return undefined;
    const facts = analysePostgres(text, readings);
    if (facts.unparsable !== undefined) return this.unsure(facts.unparsable);
    for (const r of facts.roles ?? []) {
      const why = postgresLoginChange(r, this.account);
      if (why) return this.refuse(why);
    }
    return undefined;
  }

  private mysql(statements: readonly MysqlStatement[]): GuardDecision | undefined {
    for (const s of statements) {
      if ('unreadable' in s) return this.unsure(s.unreadable);
      for (const text of new Set(s.readings)) {
        const why = mysqlLoginChange(text, 0);
        if (why) return why.unsure ? this.unsure(why.unsure) : this.refuse(why.found!);
      }
    }
    return undefined;
  }

  private refuse(what: string): GuardDecision {
    return {
      action: 'block',
      rule: PROVISIONED_ACCOUNT_RULE,
      reason: `${what}: sessions of the vigil-provisioned account "${this.account}" may not set passwords or make logins, so that the database is reached only through vigil`,
      unparsed: false,
    };
  }

  private unsure(why: string): GuardDecision {
    return {
      action: 'block',
      rule: PROVISIONED_ACCOUNT_RULE,
      reason: `unparsable: ${why}; on vigil-provisioned account "${this.account}" a statement that may change how an account logs in is refused`,
      unparsed: true,
    };
  }
}

/**
 * The guardrails of a session: logging in as the provisioned `account`, the built-in rule in front of
 * the configured ones. Loads the Postgres parser, which a gateway without configured guardrails has not.
 */
export async function guardrailsForLogin(account: string | undefined, configured: SessionGuardrails | undefined): Promise<SessionGuardrails | undefined> {
  if (!account) return configured;
  await loadPostgresParser();
  return new ProvisionedAccountGuardrails(account, configured);
}

const PLAIN_SELECT = /^\s*select\s[^;]*;?\s*$/i;

/** Options that give a role a way to log in (or keep one): never on any role from a provisioned session. */
const LOGIN_OPTIONS = new Set(['password', 'login', 'validUntil']);

function postgresLoginChange(r: RoleChange, account: string): string | undefined {
  const self = r.role === null || r.role === account;
  const spelled = (o: string) => (o === 'validUntil' ? 'VALID UNTIL' : o === 'connectionlimit' ? 'CONNECTION LIMIT' : o.toUpperCase());
  if (r.action === 'rename') return self ? 'ALTER ROLE … RENAME of your own account' : undefined;
  if (r.action === 'alter' && self) return `ALTER ROLE on your own account${r.options.length ? ` (${r.options.map(spelled).join(', ')})` : ''}`;
  const login = r.options.filter((o) => LOGIN_OPTIONS.has(o));
  if (login.length === 0) return undefined;
  return `${r.action === 'create' ? 'CREATE' : 'ALTER'} ROLE ${r.role ?? ''} with ${login.map(spelled).join(', ')} (a login vigil does not hold)`.replace('  ', ' ');
}

type MysqlFinding = { found?: string; unsure?: string } | undefined;

const MAX_NESTING = 4;
const DML = new Set(['UPDATE', 'INSERT', 'REPLACE', 'SELECT', 'DELETE', 'WITH', 'LOAD', 'VALUES', 'TABLE']);
const WRITES = new Set(['INSERT', 'UPDATE', 'REPLACE', 'DELETE', 'LOAD', 'ALTER', 'RENAME', 'DROP', 'TRUNCATE', 'CREATE']);
const AUTH_TABLES = new Set(['USER', 'GLOBAL_PRIV']);

/**
 * What in one MariaDB statement (as guardStatements reads it: backslash escapes, `…` identifiers) would
 * set a password or create a login. Words in strings, identifiers and comments are not words.
 */
function mysqlLoginChange(sql: string, depth: number): MysqlFinding {
  const t = mysqlTokens(sql);
  const word = (i: number) => (t[i]?.kind === 'word' ? t[i]!.text : undefined);
  const name = (i: number) => (t[i]?.kind === 'word' || t[i]?.kind === 'ident' ? t[i]!.text.toUpperCase() : undefined);
  const first = word(0);
  const words = new Set(t.filter((x) => x.kind === 'word').map((x) => x.text));
  for (let i = 0; i < t.length; i++) {
    const w = word(i);
    if (w === undefined || t[i - 1]?.text === '.' || t[i - 1]?.text === '@') continue;
    if (w === 'IDENTIFIED') return { found: 'IDENTIFIED (sets an account\'s authentication)' };
    if (w === 'USER') {
      const verb = word(i - 1) === 'REPLACE' && word(i - 2) === 'OR' ? word(i - 3) : word(i - 1);
      if (verb === 'ALTER' || verb === 'CREATE' || verb === 'RENAME') return { found: `${verb} USER` };
    }
    if (w === 'PASSWORD' && (word(i - 1) === 'SET' || t[i - 1]?.text === ',') && !(first && DML.has(first))) {
      const next = t[i + 1];
      if (word(i + 1) === 'FOR' || next?.text === '=' || next?.text === ':') return { found: 'SET PASSWORD' };
    }
    if ((w === 'PREPARE' && word(i + 2) === 'FROM') || (w === 'EXECUTE' && word(i + 1) === 'IMMEDIATE')) {
      const at = w === 'PREPARE' ? i + 3 : i + 2;
      const arg = t[at];
      if (arg?.kind !== 'string' || (t[at + 1] && t[at + 1]!.text !== ';' && t[at + 1]!.kind !== 'word')) return { unsure: `${w === 'PREPARE' ? 'PREPARE … FROM' : 'EXECUTE IMMEDIATE'} of a computed string cannot be checked before it runs` };
      if (depth >= MAX_NESTING) return { unsure: 'nested too deeply' };
      const inner = mysqlLoginChange(arg.text, depth + 1);
      if (inner) return inner;
    }
  }
  for (let i = 0; i + 2 < t.length; i++) {
    if (name(i) === 'MYSQL' && t[i + 1]?.text === '.' && AUTH_TABLES.has(name(i + 2) ?? '') && [...WRITES].some((x) => words.has(x))) {
      return { found: `a write to mysql.${name(i + 2)!.toLowerCase()}` };
    }
  }
  return undefined;
}

interface MysqlToken {
  kind: 'word' | 'ident' | 'string' | 'punct';
  /** Upper case for words; the unquoted value for strings and identifiers. */
  text: string;
}

/** A lexer for guardStatements' readings: strings take backslash escapes, identifiers are `…`. */
function mysqlTokens(sql: string): MysqlToken[] {
  const out: MysqlToken[] = [];
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    if (/\s/.test(c)) i++;
    else if (c === '#' || (c === '-' && sql[i + 1] === '-' && (i + 2 >= sql.length || /[\s\x00-\x1f]/.test(sql[i + 2]!)))) {
      const nl = sql.indexOf('\n', i);
      i = nl < 0 ? sql.length : nl + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? sql.length : end + 2;
    } else if (c === "'" || c === '"' || c === '`') {
      let v = '';
      let j = i + 1;
      for (; j < sql.length; j++) {
        if (c !== '`' && sql[j] === '\\' && j + 1 < sql.length) v += sql[++j];
        else if (sql[j] === c && sql[j + 1] === c) v += sql[++j];
        else if (sql[j] === c) break;
        else v += sql[j];
      }
      out.push({ kind: c === '`' ? 'ident' : 'string', text: v });
      i = j + 1;
    } else if (/[A-Za-z0-9_$\u0080-\uffff]/.test(c)) {
      let j = i + 1;
      while (j < sql.length && /[A-Za-z0-9_$\u0080-\uffff]/.test(sql[j]!)) j++;
      out.push({ kind: 'word', text: sql.slice(i, j).toUpperCase() });
      i = j;
    } else {
      out.push({ kind: 'punct', text: c });
      i++;
    }
  }
  return out;
}
