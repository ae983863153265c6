import path from 'node:path';
import type Database from 'better-sqlite3';
import { openStateDatabase } from '../store/sqlite.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS alert_fired_groups (
  rule TEXT NOT NULL, key TEXT NOT NULL, definition TEXT NOT NULL, grp TEXT NOT NULL, last_us INTEGER NOT NULL,
  PRIMARY KEY (rule, key)
) WITHOUT ROWID;
`;

/** A group that fired and awaits its resolution: its group values and newest matching event time (µs). */
export interface FiredGroup {
  group: Record<string, string>;
  lastUs: number;
}

/** Where the engine keeps the groups that fired and are not resolved yet (see FiredGroupStore). */
export interface FiredGroupMemory {
  /** The groups of a rule as last saved under this exact definition (a changed rule starts afresh). */
  load(rule: string, definition: string): [string, FiredGroup][];
  save(rule: string, definition: string, key: string, g: FiredGroup): void;
  forget(rule: string, key: string): void;
  /** Drop what belongs to no rule of `kept` (name → definition): removed or changed rules. */
  prune(kept: Map<string, string>): void;
}

/**
 * Fired groups in state.db: a trigger sent before a gateway restart is still resolved after it (PagerDuty
 * closes the incident it opened), instead of staying open for ever because the memory of it was lost.
 */
export class FiredGroupStore implements FiredGroupMemory {
  private readonly db: Database.Database;
  private readonly stmt;

  constructor(dataDir: string) {
    this.db = openStateDatabase(path.join(dataDir, 'state.db'), SCHEMA);
    // A hint for resolutions, not evidence (alert.fired is in the audit log): no fsync per write.
    this.db.pragma('synchronous = NORMAL');
    this.stmt = {
      load: this.db.prepare('SELECT key, grp, last_us FROM alert_fired_groups WHERE rule = ? AND definition = ?'),
      save: this.db.prepare('INSERT INTO alert_fired_groups VALUES (?, ?, ?, ?, ?) ON CONFLICT (rule, key) DO UPDATE SET definition = excluded.definition, grp = excluded.grp, last_us = excluded.last_us'),
      forget: this.db.prepare('DELETE FROM alert_fired_groups WHERE rule = ? AND key = ?'),
      all: this.db.prepare('SELECT DISTINCT rule, definition FROM alert_fired_groups'),
      dropDefinition: this.db.prepare('DELETE FROM alert_fired_groups WHERE rule = ? AND definition = ?'),
    };
  }

  load(rule: string, definition: string): [string, FiredGroup][] {
    return (this.stmt.load.all(rule, definition) as { key: string; grp: string; last_us: number | bigint }[]).map((r) => [r.key, { group: JSON.parse(r.grp), lastUs: Number(r.last_us) }]);
  }

  save(rule: string, definition: string, key: string, g: FiredGroup): void {
    this.stmt.save.run(rule, key, definition, JSON.stringify(g.group), g.lastUs);
  }

  forget(rule: string, key: string): void {
    this.stmt.forget.run(rule, key);
  }

  prune(kept: Map<string, string>): void {
    for (const r of this.stmt.all.all() as { rule: string; definition: string }[]) if (kept.get(r.rule) !== r.definition) this.stmt.dropDefinition.run(r.rule, r.definition);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
