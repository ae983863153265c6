import type pg from 'pg';
import type { LiveSessionStore, PublishedSession } from './types.ts';

/**
 * The live sessions of every replica on PostgreSQL (tables of migration 5). Every statement runs on the
 * database's clock, so replicas whose clocks disagree still agree on whose lease is current. The pool and
 * the error mapping are the state store's; kill requests are announced on `channel` and heard by the
 * store's listener, which passes them to `announced`.
 *
 * Replicas of different versions on one store (a newer one migrated it; an older one only warns and runs):
 * every migration so far only adds tables, so each replica runs its statements on tables unchanged for it
 * and never touches those it does not know. A replica older than migration 5 publishes nothing and hears
 * no kills: its sessions are missing from the others' listings (which cannot know it) and are killed
 * through it alone. A replica that knows these tables reads `view` as the JSON it lists, so fields a newer
 * replica adds pass through. A later migration that changes these tables must keep that true or make
 * older replicas refuse to start.
 */

type Fail = (e: unknown) => Error;

interface SessionRow {
  id: string;
  replica: string;
  view: PublishedSession['view'];
}

export class PgLiveSessions implements LiveSessionStore {
  private readonly listeners: ((replica: string) => void)[] = [];

  constructor(private readonly pool: pg.Pool, private readonly s: string, private readonly channel: string, private readonly fail: Fail) {}

  private async q<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(sql, params);
    } catch (e) {
      throw this.fail(e);
    }
  }

  /** One statement: the lease, the removals and the additions land together or not at all. */
  async publish(replica: string, leaseMs: number, upsert: { id: string; view: Record<string, unknown> }[], remove: string[]): Promise<{ id: string; message: string }[]> {
    const r = await this.q<{ id: string; message: string }>(
      `WITH lease AS (
         INSERT INTO ${this.s}.live_replicas (replica, lease_until) VALUES ($1, clock_timestamp() + $2 * interval '1 millisecond')
         ON CONFLICT (replica) DO UPDATE SET lease_until = EXCLUDED.lease_until),
       gone AS (DELETE FROM ${this.s}.live_sessions WHERE replica = $1 AND id = ANY($4::text[])),
       added AS (
         INSERT INTO ${this.s}.live_sessions (id, replica, "user", started_at, view)
         SELECT x->>'id', $1, x->'view'->>'user', coalesce(x->'view'->>'started_at', ''), x->'view' FROM jsonb_array_elements($3::jsonb) x
         ON CONFLICT (id) DO UPDATE SET view = EXCLUDED.view, replica = EXCLUDED.replica)
       SELECT id, kill_message AS message FROM ${this.s}.live_sessions WHERE replica = $1 AND kill_message IS NOT NULL AND NOT (id = ANY($4::text[]))`,
      [replica, leaseMs, JSON.stringify(upsert), remove],
    );
    return r.rows;
  }

  async forget(replica: string): Promise<void> {
    await this.q(`WITH s AS (DELETE FROM ${this.s}.live_sessions WHERE replica = $1) DELETE FROM ${this.s}.live_replicas WHERE replica = $1`, [replica]);
  }

  /**
   * A session with a kill not yet done is kept (and its replica's row with it): the replica may only have
   * been cut off from the database, and still holds the session that was recorded as killed (session.kill).
   * When it is back its first publish finds the kill and carries it out; when it restarts it forgets them.
   */
  async sweep(afterMs: number): Promise<void> {
    await this.q(
      `WITH lapsed AS (SELECT replica FROM ${this.s}.live_replicas WHERE lease_until < clock_timestamp() - $1 * interval '1 millisecond'),
       gone AS (DELETE FROM ${this.s}.live_sessions WHERE replica IN (SELECT replica FROM lapsed) AND kill_message IS NULL)
       DELETE FROM ${this.s}.live_replicas r WHERE r.lease_until < clock_timestamp() - $1 * interval '1 millisecond'
         AND NOT EXISTS (SELECT 1 FROM ${this.s}.live_sessions s WHERE s.replica = r.replica AND s.kill_message IS NOT NULL)`,
      [afterMs],
    );
  }

  async list(): Promise<PublishedSession[]> {
    const r = await this.q<SessionRow>(
      `SELECT s.id, s.replica, s.view FROM ${this.s}.live_sessions s JOIN ${this.s}.live_replicas r USING (replica)
       WHERE r.lease_until > clock_timestamp() ORDER BY s.started_at, s.id`,
    );
    return r.rows;
  }

  async find(id: string): Promise<PublishedSession | undefined> {
    const r = await this.q<SessionRow>(
      `SELECT s.id, s.replica, s.view FROM ${this.s}.live_sessions s JOIN ${this.s}.live_replicas r USING (replica)
       WHERE s.id = $1 AND r.lease_until > clock_timestamp()`,
      [id],
    );
    return r.rows[0];
  }

  /** The mark and the NOTIFY commit together: the holder hears of it, or finds it on its next publish. */
  async requestKill(id: string, message: string): Promise<boolean> {
    const r = await this.q(
      `WITH k AS (
         UPDATE ${this.s}.live_sessions s SET kill_message = $2 FROM ${this.s}.live_replicas r
         WHERE s.id = $1 AND r.replica = s.replica AND r.lease_until > clock_timestamp() RETURNING s.replica)
       SELECT pg_notify($3, replica) FROM k`,
      [id, message, this.channel],
    );
    return r.rowCount === 1;
  }

  async pendingKills(replica: string): Promise<{ id: string; message: string }[]> {
    const r = await this.q<{ id: string; message: string }>(`SELECT id, kill_message AS message FROM ${this.s}.live_sessions WHERE replica = $1 AND kill_message IS NOT NULL`, [replica]);
    return r.rows;
  }

  onKillRequested(fn: (replica: string) => void): void {
    this.listeners.push(fn);
  }

  /** A NOTIFY on the sessions channel (from the store's listener). */
  announced(replica: string): void {
    for (const fn of this.listeners) {
      try {
        fn(replica);
      } catch {
        // One listener failing must not keep the others from hearing it.
      }
    }
  }
}
