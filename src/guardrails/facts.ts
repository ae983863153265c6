import type { SqlKind } from './config.ts';

/** A table a statement writes, as the parser named it (lower-case unless quoted). */
export interface TableRef {
  schema?: string;
  table: string;
}

/** CREATE/ALTER ROLE|USER|GROUP or a role's RENAME, wherever it stands (also in a DO block or function body). */
export interface RoleChange {
  action: 'create' | 'alter' | 'rename';
  /** The role named; null for CURRENT_USER, SESSION_USER and CURRENT_ROLE. */
  role: string | null;
  /** The parser's names of the options it sets (`password`, `validUntil`, `connectionlimit`…); `login` for LOGIN, and for CREATE USER without NOLOGIN. */
  options: string[];
}

/**
 * What a statement text does, as far as guardrails care: found once per statement, then matched
 * against every rule that applies (so the cost of parsing does not grow with the number of rules).
 */
export interface SqlFacts {
  kinds: Set<SqlKind>;
  writes: TableRef[];
  /** Role definitions it changes (Postgres): what the provisioned-account rule looks at (account-self-protection.ts). */
  roles?: RoleChange[];
  /** Set when the text could not be parsed, or holds SQL whose effect is only known when it runs. */
  unparsable?: string;
}

export const emptyFacts = (): SqlFacts => ({ kinds: new Set(), writes: [] });
