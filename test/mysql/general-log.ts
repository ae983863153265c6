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
}

export async function enableGeneralLog(db: MariadbHandle): Promise<string> {
  const file = path.join(db.dir, 'general.log');
  await db.query(`SET GLOBAL log_output='FILE'; SET GLOBAL general_log_file='${file}'; SET GLOBAL general_log=1`);
  return file;
}

const LINE = /^(?:\d{6}\s+\d{1,2}:\d{2}:\d{2})?\t+\s*(\d+) ([A-Z][A-Za-z ]*?)\t(.*)$/;

export function readGeneralLog(file: string): LoggedCommand[] {
  const out: LoggedCommand[] = [];
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  for (const line of lines.slice(3)) {
    const m = LINE.exec(line);
    if (m) out.push({ id: Number(m[1]), command: m[2]!, text: m[3]! });
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
    if (e.type !== 'db.query' || !e.session_id) continue;
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
        ? list.some((q) => q.command === 'COM_STMT_EXECUTE' && new RegExp(`^${escape(q.query).replace(/\?/g, '[\\s\\S]*?')}$`).test(text))
        : list.some((q) => q.query === text || truncatedMatch(q.query, text) || (q.query.length > 0 && text.includes(q.query) && text.split(';').some((part) => norm(part) === q.query)));
    if (!found) unmatched.push(l);
  }
  return { backend: proxied.length, events: eventCount, unmatched };
}
