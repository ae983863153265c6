import path from 'node:path';
import type Database from 'better-sqlite3';
import { openStateDatabase } from '../store/sqlite.ts';
import type { FiringRow, OutboxClaim, OutboxItem, OutboxStore, StateStore } from '../store/types.ts';

export type { FiringRow, OutboxClaim, OutboxItem, OutboxStore } from '../store/types.ts';

/**
 * The durable outbox of notifications. A notification is written here before any delivery attempt and
 * removed only once its receiver accepted it, so a notifier outage or a gateway restart loses nothing;
 * after max_attempts it stays as a dead letter. With the PostgreSQL state store it lives there, shared by
 * every replica (src/store/postgres-outbox.ts); otherwise in state.db (SQLite, WAL), below.
 */
export function openOutbox(dataDir: string, store?: StateStore): OutboxStore {
  return store?.outbox ?? new SqliteOutbox(dataDir);
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS notify_outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT, notifier TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, dead INTEGER NOT NULL DEFAULT 0, last_error TEXT
);
CREATE INDEX IF NOT EXISTS notify_outbox_due ON notify_outbox(dead, notifier, next_at);
CREATE TABLE IF NOT EXISTS alert_firings (id TEXT PRIMARY KEY, rule TEXT NOT NULL, time TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alert_firings_time ON alert_firings(time);
`;

/** Firings kept for `vigil alerts list` (the audit log keeps all of them). */
export const FIRINGS_KEPT = 1000;

type Row = Omit<OutboxItem, 'payload'> & { payload: string };
const parsed = (r: Row): OutboxItem => ({ ...r, payload: JSON.parse(r.payload) });

/**
 * The outbox in state.db: one gateway delivers from it (the only dispatcher of its data directory), so a
 * claim is just the head; the CLI only reads it.
 */
export class SqliteOutbox implements OutboxStore {
  readonly shared = false;
  private readonly db: Database.Database;
  private readonly stmt;

  constructor(dataDir: string) {
    this.db = openStateDatabase(path.join(dataDir, 'state.db'), SCHEMA);
    this.stmt = {
      add: this.db.prepare('INSERT INTO notify_outbox (notifier, payload, created_at, next_at) VALUES (?, ?, ?, ?)'),
      head: this.db.prepare('SELECT * FROM notify_outbox WHERE dead = 0 AND notifier = ? ORDER BY id LIMIT 1'),
      // Only each notifier's head counts: items queued behind a waiting retry are not due before it.
      heads: this.db.prepare('SELECT o.notifier, o.next_at FROM notify_outbox o WHERE o.dead = 0 AND o.id = (SELECT MIN(id) FROM notify_outbox WHERE dead = 0 AND notifier = o.notifier)'),
      done: this.db.prepare('DELETE FROM notify_outbox WHERE id = ?'),
      retry: this.db.prepare('UPDATE notify_outbox SET attempts = ?, next_at = ?, last_error = ?, dead = ? WHERE id = ?'),
      depth: this.db.prepare('SELECT notifier, COUNT(*) AS n FROM notify_outbox WHERE dead = 0 GROUP BY notifier'),
      dead: this.db.prepare('SELECT * FROM notify_outbox WHERE dead = 1 ORDER BY id'),
      pending: this.db.prepare('SELECT * FROM notify_outbox WHERE dead = 0 ORDER BY id'),
      addFiring: this.db.prepare('INSERT OR REPLACE INTO alert_firings VALUES (?, ?, ?, ?)'),
      trimFirings: this.db.prepare(`DELETE FROM alert_firings WHERE id NOT IN (SELECT id FROM alert_firings ORDER BY time DESC LIMIT ${FIRINGS_KEPT})`),
      firings: this.db.prepare('SELECT * FROM alert_firings ORDER BY time DESC LIMIT ?'),
    };
  }

  private addNow(notifier: string, payload: unknown, now: number): void {
    this.stmt.add.run(notifier, JSON.stringify(payload), new Date(now).toISOString(), now);
  }

  async add(notifier: string, payload: unknown, now = Date.now()): Promise<void> {
    this.addNow(notifier, payload, now);
  }

  /**
   * The oldest pending item of a notifier if it is due. Strictly in order: while it waits for a retry,
   * newer items wait behind it (a receiver sees a resolve after its trigger, firings in the order made).
   */
  async claim(notifier: string, _holdMs: number, now = Date.now()): Promise<OutboxClaim | undefined> {
    const r = this.stmt.head.get(notifier) as Row | undefined;
    if (!r || r.next_at > now) return undefined;
    const item = parsed(r);
    return {
      item,
      delivered: async () => void this.stmt.done.run(item.id),
      failed: async (error, nextAt, dead) => void this.stmt.retry.run(item.attempts + 1, nextAt, error.slice(0, 500), dead ? 1 : 0, item.id),
    };
  }

  async nextDue(notifiers: string[]): Promise<number | undefined> {
    const wanted = new Set(notifiers);
    let next: number | undefined;
    for (const h of this.stmt.heads.all() as { notifier: string; next_at: number }[]) {
      if (wanted.has(h.notifier) && (next === undefined || h.next_at < next)) next = h.next_at;
    }
    return next;
  }

  async depth(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const r of this.stmt.depth.all() as { notifier: string; n: number }[]) out[r.notifier] = r.n;
    return out;
  }

  async deadLetters(): Promise<OutboxItem[]> {
    return (this.stmt.dead.all() as Row[]).map(parsed);
  }

  async pending(): Promise<OutboxItem[]> {
    return (this.stmt.pending.all() as Row[]).map(parsed);
  }

  async enqueueFiring(id: string, rule: string, time: string, data: unknown, notifiers: string[], now = Date.now()): Promise<void> {
    this.db.transaction(() => {
      this.stmt.addFiring.run(id, rule, time, JSON.stringify(data));
      this.stmt.trimFirings.run();
      for (const n of notifiers) this.addNow(n, data, now);
    })();
  }

  async recentFirings(limit = 20): Promise<FiringRow[]> {
    return (this.stmt.firings.all(limit) as { id: string; rule: string; time: string; data: string }[]).map((r) => ({ ...r, data: JSON.parse(r.data) }));
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
