/**
 * What the MySQL proxy writes into db.query events: the fields, statement text as recorded (secrets
 * masked, long text cut) and result summaries. Pure helpers shared by the connection.
 */
import type { ErrPacket } from './handshake.ts';
import type { ParamValue } from './commands.ts';
import type { SqlAnalysis } from './sql.ts';
import type { ResultSummary } from './response.ts';

/** What a db.query event says besides its command and database (`emitQuery` lays it out). */
export interface QueryFields {
  attributes?: Record<string, ParamValue>;
  /** Server bytes relayed for a command whose response never ended (outcome unknown). */
  bytes_relayed?: number;
  duration_ms?: number;
  /** Why the session ended while the command was in flight (outcome unknown). */
  end_reason?: string;
  error?: EventError;
  fetch_rows?: number;
  multi_statements?: boolean;
  not_executed?: string[];
  params?: unknown[];
  params_count?: number;
  query?: string;
  reason?: string;
  /** A string beyond 2^53 (JSON numbers are exact up to there). */
  rows_affected?: number | string;
  rows_returned?: number;
  statement_id?: number;
  statement_index?: number;
  /** The statement was not valid UTF-8: bytes >= 0x80 in `query` are written as \xHH (commands.ts statementText). */
  text_escaped?: boolean;
  unknown_statement?: boolean;
  unsplit?: boolean;
}

/** An error as events show it; members in sorted order like every recorded object (see `emitQuery`). */
export interface EventError {
  code: number;
  message: string;
  sqlstate?: string;
}

export function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** Statement text as recorded: secrets masked; very long text (bulk inserts) keeps a prefix and its length. */
const MAX_EVENT_TEXT = 64 * 1024;
export function eventText(t: string): string {
  return t.length > MAX_EVENT_TEXT ? `${t.slice(0, MAX_EVENT_TEXT)}… [${t.length} characters]` : t;
}

/** Recorded text per analysis: a prepared statement's text is built once, not at every execution. */
const redactedTexts = new WeakMap<SqlAnalysis, string>();
export function redactedText(a: SqlAnalysis): string {
  let text = redactedTexts.get(a);
  if (text === undefined) {
    text = eventText(a.statements.length === 1 ? a.statements[0]!.text : a.statements.map((s) => s.text).join('; '));
    redactedTexts.set(a, text);
  }
  return text;
}

export function errDetails(e: ErrPacket): EventError {
  return { code: e.code, message: e.message, sqlstate: e.sqlState };
}

export function addResult(details: QueryFields, r: ResultSummary): void {
  if (r.error) details.error = errDetails(r.error);
  else if (r.rows !== undefined) details.rows_returned = r.rows;
  else details.rows_affected = typeof r.affectedRows === 'bigint' ? r.affectedRows.toString() : (r.affectedRows ?? 0);
}


/**
 * The outcome of a command answered with several results (a CALL through COM_STMT_EXECUTE: the result
 * sets of its statements, then its own OK or an ERR): the last result decides the outcome, and the rows of
 * every result set relayed before it are counted, as one event per command cannot list them one by one.
 */
export function addResults(details: QueryFields, results: readonly ResultSummary[]): void {
  addResult(details, results[results.length - 1] ?? {});
  if (results.length < 2) return;
  let rows: number | undefined;
  for (const r of results) if (r.rows !== undefined) rows = (rows ?? 0) + r.rows;
  if (rows === undefined) return;
  details.rows_returned = rows;
  details.rows_affected = undefined;
}
