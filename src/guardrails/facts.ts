import type { SqlKind } from './config.ts';

/** A table a statement writes, as the parser named it (lower-case unless quoted). */
export interface TableRef {
  schema?: string;
  table: string;
}

/**
 * What a statement text does, as far as guardrails care: found once per statement, then matched
 * against every rule that applies (so the cost of parsing does not grow with the number of rules).
 */
export interface SqlFacts {
  kinds: Set<SqlKind>;
  writes: TableRef[];
  /** Set when the text could not be parsed, or holds SQL whose effect is only known when it runs. */
  unparsable?: string;
}

export const emptyFacts = (): SqlFacts => ({ kinds: new Set(), writes: [] });
