import fs from 'node:fs';
import path from 'node:path';
import type { MariadbHandle } from '../support/mariadb.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * MariaDB's general query log as the completeness oracle: every statement the server received, by
 * connection id. A vigil session names its backend connection id in session.end (`backend_thread_id`),
 * so the statements of proxied connections can be matched against vigil's db.query events.
 */
export interface LoggedCommand {
  id: number;
  command: string;
  text: string;
  /** Server time of the line in seconds of the day (the log prints it when the second changes). */
  second: number;
}

export async function enableGeneralLog(db: MariadbHandle): Promise<string> {
  const file = path.join(db.dir, 'general.log');
  await db.query(`SET GLOBAL log_output='FILE'; SET GLOBAL general_log_file='${file}'; SET GLOBAL general_log=1`);
  return file;
}

const LINE = /^(?:\d{6}\s+(\d{1,2}):(\d{2}):(\d{2}))?\t+\s*(\d+) ([A-Z][A-Za-z ]*?)\t(.*)$/;

export function readGeneralLog(file: string): LoggedCommand[] {
  const out: LoggedCommand[] = [];
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  let second = 0;
  for (const line of lines.slice(3)) {
    const m = LINE.exec(line);
    if (m?.[1] !== undefined) second = Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
    if (m) out.push({ id: Number(m[4]), command: m[5]!, text: m[6]!, second });
    else if (out.length > 0 && line !== '') out[out.length - 1]!.text += `\n${line}`;
  }
  return out;
}

const norm = (s: string) => s.replace(/\s+/g, ' ').replace(/[\s;]+$/, '').trim();
/** vigil keeps a prefix of very long statements (`… [N characters]`): the prefix must match. */
function truncatedMatch(recorded: string, text: string): boolean {
  const m = /… \[\d+ characters\]$/.exec(recorded);
  return m !== null && text.startsWith(norm(recorded.slice(0, m.index)));
}
const escape = (s: string) => s.replace(/[.*+^${}()|[\]\\]/g, '\\$&');
/** A prepared statement's text as a pattern for the general log's Execute line: each `?` is one value
 *  (a quoted string, NULL or a number/literal token). */
const VALUE = "(?:'(?:[^'\\\\]|\\\\[\\s\\S])*'|[^\\s,()']+)";
const templatePattern = (t: string) => new RegExp(`^${escape(t).replace(/\?/g, VALUE)}$`);

export interface OracleResult {
  backend: number;
  events: number;
  unmatched: LoggedCommand[];
}

/**
 * Statements (Query / Prepare / Execute lines) of the proxied connections in `log` without a vigil
 * db.query event of the same text in the session that used that backend connection. An Execute line shows
 * the statement with its parameters filled in; it matches an execution event of that prepared text with
 * each `?` standing for any value.
 */
export function compareWithGeneralLog(log: LoggedCommand[], events: AuditEvent[]): OracleResult {
  const sessionOfThread = new Map<number, string>();
  for (const e of events) {
    const id = (e.details as { backend_thread_id?: number }).backend_thread_id;
    if (e.type === 'session.end' && id !== undefined) sessionOfThread.set(id, e.session_id!);
  }
  const bySession = new Map<string, { command: string; query: string }[]>();
  let eventCount = 0;
  for (const e of events) {
    // vigil's own session queries (db.session_query) reach the server too.
    if ((e.type !== 'db.query' && e.type !== 'db.session_query') || !e.session_id) continue;
    const d = e.details as { command: string; query?: string };
    if (d.query === undefined) continue;
    eventCount++;
    let list = bySession.get(e.session_id);
    if (!list) bySession.set(e.session_id, (list = []));
    list.push({ command: d.command, query: norm(d.query) });
  }
  const proxied = log.filter((l) => sessionOfThread.has(l.id) && (l.command === 'Query' || l.command === 'Execute' || l.command === 'Prepare'));
  const unmatched: LoggedCommand[] = [];
  for (const l of proxied) {
    const list = bySession.get(sessionOfThread.get(l.id)!) ?? [];
    const text = norm(l.text);
    const found =
      l.command === 'Execute'
        ? list.some((q) => q.command === 'COM_STMT_EXECUTE' && templatePattern(q.query).test(text))
        : list.some((q) => q.query === text || truncatedMatch(q.query, text) || (q.query.length > 0 && text.includes(q.query) && text.split(';').some((part) => norm(part) === q.query)));
    if (!found) unmatched.push(l);
  }
  return { backend: proxied.length, events: eventCount, unmatched };
}

export interface CountResult {
  /** Statements the server logged for the connections given. */
  backend: number;
  /** vigil events counted. */
  events: number;
  /** Statements without a vigil event (per statement text, counted). */
  missing: number;
  /** Statements the server logged in its last second and the one before (the crash window, at the
   *  general log's one-second resolution). */
  lastWindow: number;
}

/**
 * Count-based comparison for runs where sessions never ended (the gateway was killed): statements of
 * the connections `threads` against `events` (whatever their session), per statement text.
 */
export function countMissing(log: LoggedCommand[], threads: ReadonlySet<number>, events: AuditEvent[]): CountResult {
  const recorded = new Map<string, number>();
  for (const e of events) {
    const q = (e.details as { query?: string }).query;
    if (q !== undefined) recorded.set(norm(q), (recorded.get(norm(q)) ?? 0) + 1);
  }
  const patterns = [...recorded.keys()].map((t) => ({ t, re: templatePattern(t) }));
  const statements = log.filter((l) => threads.has(l.id) && (l.command === 'Query' || l.command === 'Execute' || l.command === 'Prepare'));
  const logged = new Map<string, number>();
  let missing = 0;
  for (const l of statements) {
    const text = norm(l.text);
    const t = recorded.has(text) ? text : patterns.find((p) => p.re.test(text))?.t;
    if (t === undefined) missing++;
    else logged.set(t, (logged.get(t) ?? 0) + 1);
  }
  for (const [t, n] of logged) missing += Math.max(0, n - (recorded.get(t) ?? 0));
  if (process.env.VIGIL_ORACLE_DEBUG) {
    for (const [t, n] of logged) if (n !== recorded.get(t)) console.log('DIFF', JSON.stringify(t), 'backend', n, 'vigil', recorded.get(t));
    for (const l of statements) if (!recorded.has(norm(l.text)) && !patterns.some((p) => p.re.test(norm(l.text)))) console.log('NOMATCH', l.command, JSON.stringify(l.text.slice(0, 200)));
  }
  const last = statements.at(-1)?.second ?? 0;
  return { backend: statements.length, events: events.length, missing, lastWindow: statements.filter((l) => l.second >= last - 1).length };
}

/** An execution as the general log prints it: each `?` replaced by its value (strings quoted). */
function rendered(e: AuditEvent): string {
  const d = e.details as { command: string; query?: string; params?: unknown[] };
  if (d.command !== 'COM_STMT_EXECUTE' || !d.params) return norm(d.query ?? '');
  let i = 0;
  return norm((d.query ?? '').replace(/\?/g, () => {
    const v = d.params![i++];
    if (v === null) return 'NULL';
    if (typeof v === 'string') return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
    return String(v);
  }));
}

export interface TailResult {
  /** Statements the server ran whose record is missing. */
  lost: number;
  /** Connections where a missing record is followed by a recorded one (a loss outside the tail). */
  violations: string[];
}

/**
 * For runs cut by a gateway crash: each connection's records must be a prefix of what the server ran on
 * it, so that what is missing is only its last statements (the uncommitted tail), never a hole. Sessions
 * are paired with backend connections by their statements' texts with parameters filled in.
 */
export function tailCheck(log: LoggedCommand[], threads: ReadonlySet<number>, events: AuditEvent[]): TailResult {
  const kinds = new Set(['COM_QUERY', 'COM_STMT_PREPARE', 'COM_STMT_EXECUTE']);
  const bySession = new Map<string, string[]>();
  for (const e of events) {
    if ((e.type !== 'db.query' && e.type !== 'db.session_query') || (e.details as { intent?: boolean }).intent || !e.session_id || !kinds.has((e.details as { command: string }).command)) continue;
    let list = bySession.get(e.session_id);
    if (!list) bySession.set(e.session_id, (list = []));
    list.push(rendered(e));
  }
  const byThread = new Map<number, string[]>();
  for (const l of log) {
    if (!threads.has(l.id) || (l.command !== 'Query' && l.command !== 'Execute' && l.command !== 'Prepare')) continue;
    let list = byThread.get(l.id);
    if (!list) byThread.set(l.id, (list = []));
    list.push(norm(l.text));
  }
  // Texts only one connection ran (an execution with its own parameter values) identify it; texts all
  // connections share (prepares, BEGIN, COMMIT) do not.
  const owner = new Map<string, number>();
  for (const [id, ran] of byThread) for (const t of ran) owner.set(t, owner.has(t) && owner.get(t) !== id ? -1 : id);
  let lost = 0;
  const violations: string[] = [];
  const paired = new Set<number>();
  for (const [session, recorded] of bySession) {
    const hits = new Map<number, number>();
    for (const t of recorded) {
      const id = owner.get(t);
      if (id !== undefined && id >= 0) hits.set(id, (hits.get(id) ?? 0) + 1);
    }
    let best: number | undefined;
    let bestHits = 0;
    for (const [id, n] of hits) if (!paired.has(id) && n > bestHits) [best, bestHits] = [id, n];
    if (best === undefined) {
      violations.push(`session ${session}: no backend connection ran its statements`);
      continue;
    }
    paired.add(best);
    const ran = byThread.get(best)!;
    const m = recorded.length;
    if (m > ran.length || recorded[m - 1] !== ran[m - 1]) violations.push(`session ${session} / connection ${best}: ${m} records, ${ran.length} statements, last record ${JSON.stringify(recorded[m - 1]?.slice(0, 80))} vs statement ${JSON.stringify(ran[m - 1]?.slice(0, 80))}`);
    lost += Math.max(0, ran.length - m);
  }
  // Connections without any record at all lost everything they ran.
  for (const [id, ran] of byThread) if (!paired.has(id)) lost += ran.length;
  return { lost, violations };
}
