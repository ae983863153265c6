import { randomBytes, randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { FiringRow, LinkRecords, LinkRow, OutboxClaim, OutboxItem, OutboxStore } from './types.ts';

/**
 * Approval links, the notification outbox and alert firings on PostgreSQL (tables of migration 3), so a
 * link minted by one replica works through the balancer on any other, and a notification queued by a
 * replica that died is delivered by another. The pool and the error mapping are the state store's.
 */

type Fail = (e: unknown) => Error;

async function query<R extends pg.QueryResultRow>(pool: pg.Pool, fail: Fail, sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
  try {
    return await pool.query<R>(sql, params);
  } catch (e) {
    throw fail(e);
  }
}

export class PgLinkRecords implements LinkRecords {
  private keyValue?: Promise<Buffer>;

  constructor(private readonly pool: pg.Pool, private readonly s: string, private readonly fail: Fail) {}

  key(): Promise<Buffer> {
    // The first replica to need it creates it; every other one reads that one.
    this.keyValue ??= (async () => {
      await query(this.pool, this.fail, `INSERT INTO ${this.s}.link_key (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`, [randomBytes(32)]);
      return (await query<{ key: Buffer }>(this.pool, this.fail, `SELECT key FROM ${this.s}.link_key WHERE id = 1`)).rows[0].key;
    })();
    this.keyValue.catch(() => (this.keyValue = undefined)); // the database was away: ask again next time
    return this.keyValue;
  }

  async add(r: Omit<LinkRow, 'used_at' | 'used_by'>): Promise<void> {
    await query(this.pool, this.fail, `INSERT INTO ${this.s}.access_links (hash, request_id, decision, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`, [r.hash, r.request_id, r.decision, r.created_at, r.expires_at]);
  }

  async get(hash: string): Promise<LinkRow | undefined> {
    const r = (await query<LinkRow & { expires_at: string }>(this.pool, this.fail, `SELECT * FROM ${this.s}.access_links WHERE hash = $1`, [hash])).rows[0];
    return r && { ...r, expires_at: Number(r.expires_at) };
  }

  /** One conditional UPDATE: a second replica claiming at the same moment waits for the row, re-checks `used_at` and gets nothing. */
  async claim(hash: string, by: string, now: number): Promise<boolean> {
    const r = await query(this.pool, this.fail, `UPDATE ${this.s}.access_links SET used_at = $1, used_by = $2 WHERE hash = $3 AND used_at IS NULL AND expires_at > $4`, [new Date(now).toISOString(), by, hash, now]);
    return r.rowCount === 1;
  }

  async release(hash: string, by: string): Promise<void> {
    await query(this.pool, this.fail, `UPDATE ${this.s}.access_links SET used_at = NULL, used_by = NULL WHERE hash = $1 AND used_by = $2`, [hash, by]);
  }

  async close(): Promise<void> {} // the store's pool
}

/** Firings kept for `vigil alerts list` (the audit log keeps all of them); as in state.db. */
const FIRINGS_KEPT = 1000;

interface ItemRow {
  id: string;
  notifier: string;
  payload: string;
  created_at: string;
  attempts: number;
  next_at: string;
  last_error: string | null;
}

const itemOf = (r: ItemRow): OutboxItem => ({ id: Number(r.id), notifier: r.notifier, payload: JSON.parse(r.payload), created_at: r.created_at, attempts: r.attempts, next_at: Number(r.next_at), last_error: r.last_error });
const ITEM = 'id, notifier, payload, created_at, attempts, next_at, last_error';

/**
 * The outbox shared by every replica. Any replica may deliver a notifier's head, but only while it holds
 * the head's lease: taking it is one conditional UPDATE of the head row (a second replica waits for the row,
 * re-checks the lease and gets nothing), so a notifier's items go out one at a time and in order whatever
 * the number of replicas. The lease runs on the database's clock and lasts the delivery timeout plus a
 * margin: a replica that dies while delivering leaves it to the others once it has run out. Finishing
 * (delete, or count the failure) only applies while the lease is still ours.
 */
export class PgOutbox implements OutboxStore {
  readonly shared = true;

  constructor(private readonly pool: pg.Pool, private readonly s: string, private readonly fail: Fail) {}

  private q<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params: unknown[] = []) {
    return query<R>(this.pool, this.fail, sql, params);
  }

  async add(notifier: string, payload: unknown, now = Date.now()): Promise<void> {
    await this.q(`INSERT INTO ${this.s}.notify_outbox (notifier, payload, created_at, next_at) VALUES ($1, $2, $3, $4)`, [notifier, JSON.stringify(payload), new Date(now).toISOString(), now]);
  }

  async claim(notifier: string, holdMs: number, now = Date.now()): Promise<OutboxClaim | 'held' | undefined> {
    const token = randomUUID();
    const got = await this.q<ItemRow>(
      `UPDATE ${this.s}.notify_outbox SET claimed_by = $2, claimed_until = clock_timestamp() + $3 * interval '1 millisecond'
       WHERE id = (SELECT min(id) FROM ${this.s}.notify_outbox WHERE NOT dead AND notifier = $1)
         AND next_at <= $4 AND (claimed_until IS NULL OR claimed_until < clock_timestamp())
       RETURNING ${ITEM}`,
      [notifier, token, holdMs, now],
    );
    if (!got.rows.length) {
      const head = (await this.q<{ held: boolean }>(
        `SELECT claimed_until > clock_timestamp() AS held FROM ${this.s}.notify_outbox WHERE NOT dead AND notifier = $1 ORDER BY id LIMIT 1`, [notifier],
      )).rows[0];
      return head?.held ? 'held' : undefined;
    }
    const item = itemOf(got.rows[0]);
    return {
      item,
      delivered: async () => void (await this.q(`DELETE FROM ${this.s}.notify_outbox WHERE id = $1 AND claimed_by = $2`, [item.id, token])),
      failed: async (error, nextAt, dead) =>
        void (await this.q(
          `UPDATE ${this.s}.notify_outbox SET attempts = attempts + 1, next_at = $3, last_error = $4, dead = $5, claimed_by = NULL, claimed_until = NULL
           WHERE id = $1 AND claimed_by = $2`,
          [item.id, token, nextAt, error.slice(0, 500), dead],
        )),
    };
  }

  async nextDue(notifiers: string[]): Promise<number | undefined> {
    if (!notifiers.length) return undefined;
    const r = await this.q<{ next: string | null }>(
      `SELECT min(next_at) AS next FROM (SELECT DISTINCT ON (notifier) next_at FROM ${this.s}.notify_outbox
         WHERE NOT dead AND notifier = ANY($1::text[]) ORDER BY notifier, id) heads`,
      [notifiers],
    );
    const v = r.rows[0]?.next;
    return v === null || v === undefined ? undefined : Number(v);
  }

  async depth(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const r of (await this.q<{ notifier: string; n: string }>(`SELECT notifier, count(*) AS n FROM ${this.s}.notify_outbox WHERE NOT dead GROUP BY notifier`)).rows) out[r.notifier] = Number(r.n);
    return out;
  }

  async deadLetters(): Promise<OutboxItem[]> {
    return (await this.q<ItemRow>(`SELECT ${ITEM} FROM ${this.s}.notify_outbox WHERE dead ORDER BY id`)).rows.map(itemOf);
  }

  async pending(): Promise<OutboxItem[]> {
    return (await this.q<ItemRow>(`SELECT ${ITEM} FROM ${this.s}.notify_outbox WHERE NOT dead ORDER BY id`)).rows.map(itemOf);
  }

  async enqueueFiring(id: string, rule: string, time: string, data: unknown, notifiers: string[], now = Date.now()): Promise<void> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (e) {
      throw this.fail(e);
    }
    let broken = false;
    const onError = () => (broken = true); // see PostgresStateStore.updateAccess
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const json = JSON.stringify(data);
      await client.query(`INSERT INTO ${this.s}.alert_firings (id, rule, "time", data) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET rule = $2, "time" = $3, data = $4`, [id, rule, time, json]);
      await client.query(`DELETE FROM ${this.s}.alert_firings WHERE id NOT IN (SELECT id FROM ${this.s}.alert_firings ORDER BY "time" COLLATE "C" DESC LIMIT ${FIRINGS_KEPT})`);
      for (const n of notifiers) {
        await client.query(`INSERT INTO ${this.s}.notify_outbox (notifier, payload, created_at, next_at) VALUES ($1, $2, $3, $4)`, [n, json, new Date(now).toISOString(), now]);
      }
      await client.query('COMMIT');
    } catch (e) {
      await client.query('ROLLBACK').catch(() => (broken = true));
      throw this.fail(e);
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  async recentFirings(limit = 20): Promise<FiringRow[]> {
    const r = await this.q<{ id: string; rule: string; time: string; data: string }>(`SELECT id, rule, "time", data FROM ${this.s}.alert_firings ORDER BY "time" COLLATE "C" DESC LIMIT $1`, [limit]);
    return r.rows.map((x) => ({ ...x, data: JSON.parse(x.data) }));
  }

  async close(): Promise<void> {} // the store's pool
}
