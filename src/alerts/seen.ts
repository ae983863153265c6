import path from 'node:path';
import type Database from 'better-sqlite3';
import { openStateDatabase } from '../store/sqlite.ts';
import type { SeenMemory } from './engine.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS alert_seen (rule TEXT NOT NULL, key TEXT NOT NULL, last_us INTEGER NOT NULL, PRIMARY KEY (rule, key)) WITHOUT ROWID;
`;

/**
 * Last-seen times of `first_in` alert rules, in state.db: "first access of a user to a target in 30 days"
 * must not fire again for everyone after a gateway restart.
 */
export class SeenStore implements SeenMemory {
  private readonly db: Database.Database;
  private readonly getStmt;
  private readonly setStmt;

  constructor(dataDir: string) {
    this.db = openStateDatabase(path.join(dataDir, 'state.db'), SCHEMA);
    // A last-seen time is a hint for a rule, not evidence: the audit log holds the events themselves.
    this.db.pragma('synchronous = NORMAL');
    this.getStmt = this.db.prepare('SELECT last_us FROM alert_seen WHERE rule = ? AND key = ?').pluck();
    this.setStmt = this.db.prepare('INSERT INTO alert_seen VALUES (?, ?, ?) ON CONFLICT (rule, key) DO UPDATE SET last_us = MAX(last_us, excluded.last_us)');
  }

  get(rule: string, key: string): number | undefined {
    const v = this.getStmt.get(rule, key) as number | undefined;
    return v === undefined ? undefined : Number(v);
  }

  set(rule: string, key: string, timeUs: number): void {
    this.setStmt.run(rule, key, timeUs);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
