import path from 'node:path';
import type Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { openStateDatabase } from '../store/sqlite.ts';
import { searchAuditLog } from '../../recorder/audit/read.ts';
import type { AuditEvent } from '../events/envelope.ts';
import { FIRINGS_KEPT, type OutboxStore } from '../notifiers/outbox.ts';
import type { Notification } from '../notifiers/format.ts';

/**
 * `alert.fired` / `alert.resolved` is appended to the audit log first and its notifications are queued in
 * the outbox after: a gateway killed in between leaves an alert nobody is told about. At start, the alert
 * events of this gateway's audit log since the high-water mark are compared with the outbox's ledger of
 * alert ids (alert_firings, written in one transaction with the notifications) and the missing ones are
 * queued. Keyed by alert id, so nothing is queued twice.
 */

const SCHEMA = `CREATE TABLE IF NOT EXISTS alert_outbox_mark (id INTEGER PRIMARY KEY CHECK (id = 1), at_ms INTEGER NOT NULL);`;

/** Alert events this much older than the mark are still checked: writes in flight when the mark moved. */
export const RECONCILE_SLACK_MS = 5 * 60_000;
/** Without a mark (first start of a data dir with this check), how far back the log is read. */
export const FIRST_RECONCILE_MS = 60 * 60_000;
/** Never read further back than this at start, however old the mark (start-up stays cheap). */
export const MAX_RECONCILE_MS = 7 * 24 * 60 * 60_000;
/** How often the mark moves forward while nothing waits to be written. */
export const MARK_EVERY_MS = 60_000;

/**
 * The high-water mark (state.db of this data dir, even with the PostgreSQL store: the audit log it refers
 * to is this gateway's own): every alert event of the log older than it has its notifications in the outbox.
 */
export class OutboxMark {
  private readonly db: Database.Database;
  constructor(dataDir: string) {
    this.db = openStateDatabase(path.join(dataDir, 'state.db'), SCHEMA);
  }
  get(): number | undefined {
    const r = this.db.prepare('SELECT at_ms FROM alert_outbox_mark WHERE id = 1').get() as { at_ms: number } | undefined;
    return r ? Number(r.at_ms) : undefined;
  }
  set(atMs: number): void {
    this.db.prepare('INSERT INTO alert_outbox_mark VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms').run(atMs);
  }
  close(): void {
    if (this.db.open) this.db.close();
  }
}

type Details = Record<string, unknown>;
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const num = (v: unknown): number => (typeof v === 'number' ? v : 0);

/** The notification of an alert event, as onFire/onResolve queue it (rebuilt from the audit record). */
export function notificationOf(e: Pick<AuditEvent, 'id' | 'type' | 'time' | 'details'>): Notification {
  const d = e.details as Details;
  const base = { alert_id: e.id, rule: String(d.rule), group: (d.group ?? {}) as Record<string, string>, window_ms: num(d.window_ms) };
  if (e.type === 'alert.resolved') return { action: 'resolve', ...base, count: 0, threshold: 0, event_ids: [], time: e.time };
  return { action: 'trigger', ...base, count: num(d.count), threshold: num(d.threshold), event_ids: strings(d.event_ids), time: typeof d.time === 'string' ? d.time : e.time };
}

/** Queue in `outbox` the notifications of alert events in the audit log it does not know. Returns how many. */
export async function reconcileOutbox(o: { auditDir: string; outbox: OutboxStore; mark: OutboxMark; log: Pick<Logger, 'info' | 'warn'>; now?: number }): Promise<number> {
  const now = o.now ?? Date.now();
  const mark = o.mark.get();
  const since = Math.max(mark === undefined ? now - FIRST_RECONCILE_MS : mark - RECONCILE_SLACK_MS, now - MAX_RECONCILE_MS);
  const { records } = await searchAuditLog(o.auditDir, { type: 'alert.', since: new Date(since) });
  const alerts = records.map((r) => r.event).filter((e) => e.type === 'alert.fired' || e.type === 'alert.resolved');
  if (alerts.length === 0) return 0;
  const ledger = await o.outbox.recentFirings(FIRINGS_KEPT);
  const known = new Set(ledger.map((f) => f.id));
  // A full ledger forgot its oldest ids: an event older than what it keeps cannot be told apart, left alone.
  const oldestKnown = ledger.length >= FIRINGS_KEPT ? ledger.reduce((t, f) => (f.time < t ? f.time : t), ledger[0]!.time) : '';
  let queued = 0;
  for (const e of alerts) {
    if (known.has(e.id) || e.time < oldestKnown) continue;
    const notify = strings((e.details as Details).notify);
    await o.outbox.enqueueFiring(e.id, String((e.details as Details).rule), e.time, notificationOf(e), notify);
    o.log.warn({ alert_id: e.id, type: e.type, rule: (e.details as Details).rule, notify }, 'alerts: an alert recorded before the gateway stopped had no notification queued; queued now');
    queued++;
  }
  return queued;
}
