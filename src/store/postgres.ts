import pg from 'pg';
import type { Logger } from 'pino';
import { NotFoundError, StoreUnavailableError, VigilError } from '../errors.ts';
import { changeChannel, LATEST_VERSION, migrate, sessionsChannel } from './postgres-schema.ts';
import { describeUrl, scrubber } from './pg-url.ts';
import { PgAuditChains } from './postgres-audit.ts';
import { PgLinkRecords, PgOutbox } from './postgres-shared.ts';
import { PgLiveSessions } from './postgres-live-sessions.ts';
import type { AuditChainStore, AccessRecord, LinkRecords, OutboxStore, AccessState, HoldRecord, IdentityBinding, IssuedCertRecord, LockRecord, RevocationRecord, StateStore } from './types.ts';

export interface PostgresStoreOptions {
  /** Connection URL, password included: kept inside the pool's config, never logged or put in errors. */
  url: string;
  schema: string;
  log: Logger;
  /** Full reload of the caches this often, for notifications lost while the listener was reconnecting. */
  reconcileMs?: number;
  /** Wait before reconnecting the listener after it lost its connection. */
  reconnectMs?: number;
}

/** Client-side bound on any statement; the server-side bounds below are chosen to fire first. */
const QUERY_TIMEOUT_MS = 15_000;
/**
 * Server-side bounds on every store connection. Without them a row lock held elsewhere (a replica cut off
 * mid-transaction, an operator's open psql transaction) keeps our backend queued after the client gave up
 * at QUERY_TIMEOUT_MS: ROLLBACK then times out too, the client is discarded, and the backend stays waiting
 * on the lock: one leaked connection per attempt. With them the server cancels first, so the connection
 * comes back usable. Our transactions hold row locks for milliseconds: a wait of seconds means someone
 * else is stuck (lock_timeout counts per lock: a busy row is waited for as a tuple lock, then as its
 * holder's transaction, so a statement may wait twice this). And our own transaction left open by a
 * replica that lost its network is ended by the server, releasing its locks for the others.
 */
const SERVER_BOUNDS = { lock_timeout: 2_000, statement_timeout: 10_000, idle_in_transaction_session_timeout: 10_000 };
/** The listener only receives: this often it sends a round trip, so a silent (half-open) connection is found. */
const LISTENER_PING_MS = 5_000;
const LISTENER_PING_TIMEOUT_MS = 3_000;

/** Errors after which the connection itself cannot be trusted: socket-level, connection exception, operator intervention. */
function isConnectionLost(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return true; // ECONNREFUSED, timeouts, terminated
  return /^(08|57P)/.test(code);
}

/**
 * Errors that mean "the database is not there (or not answering)" rather than "this statement is wrong":
 * a lost connection, insufficient resources, and our own server-side bounds firing (statement_timeout
 * 57014, lock_timeout 55P03: a hung database, a table locked by a migration or VACUUM FULL). The
 * connection stays usable after the latter.
 */
function isUnavailable(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return isConnectionLost(e) || /^53/.test(String(code)) || code === '57014' || code === '55P03';
}

/**
 * The state store on PostgreSQL, shared by gateway replicas and the CLI. Revocations and locks are cached
 * in memory for the synchronous hot-path checks; the database announces every change to them (and every
 * access state change) with NOTIFY (postgres-schema.ts), a dedicated LISTEN connection reloads the caches
 * as soon as one arrives, and a periodic reconcile covers notifications missed while it reconnected.
 */
export class PostgresStateStore implements StateStore {
  private readonly pool: pg.Pool;
  private readonly s: string;
  readonly auditChains: AuditChainStore;
  readonly links: LinkRecords;
  readonly outbox: OutboxStore;
  readonly liveSessions: PgLiveSessions;
  private readonly log: Logger;
  private readonly where: string;
  private readonly scrubMessage: (e: unknown) => string;
  private revoked = new Set<string>();
  private locks = new Map<string, LockRecord>();
  /** Bumped by every notification (or reconcile); the caches are current when `loadedGen === gen`. */
  private gen = 0;
  private loadedGen = 0;
  private loading?: Promise<void>;
  /** Something changed since the last refresh() (own write, notification, or reconcile difference). */
  private changed = false;
  private listener?: pg.Client;
  private reconnectTimer?: NodeJS.Timeout;
  private pingTimer?: NodeJS.Timeout;
  private reconcileTimer?: NodeJS.Timeout;
  private closed = false;
  /** When refresh() last reloaded on its own because the listener was down. */
  private lastPoll = 0;
  private reloadWarnedAt = 0;
  /** Revocation and lock writes by this instance, which update the caches at once. */
  private ownWrites = 0;

  private constructor(private readonly opts: PostgresStoreOptions) {
    this.where = describeUrl(opts.url);
    this.scrubMessage = scrubber(opts.url);
    this.s = `"${opts.schema}"`;
    this.log = opts.log.child({ store: this.where });
    this.pool = new pg.Pool({ ...this.clientConfig(), max: 10, idleTimeoutMillis: 30_000 });
    // An idle client losing its connection must not crash the process; the next query reconnects.
    this.pool.on('error', (e) => this.log.warn({ err: this.scrub(e).message }, 'state store connection lost'));
    this.auditChains = new PgAuditChains(this.pool, this.s, (e) => this.fail(e));
    this.links = new PgLinkRecords(this.pool, this.s, (e) => this.fail(e));
    this.outbox = new PgOutbox(this.pool, this.s, (e) => this.fail(e));
    this.liveSessions = new PgLiveSessions(this.pool, this.s, sessionsChannel(opts.schema), (e) => this.fail(e));
  }

  /** Open, migrate the schema, load the caches and start listening. */
  static async open(opts: PostgresStoreOptions): Promise<PostgresStateStore> {
    const store = new PostgresStateStore(opts);
    try {
      const client = await store.pool.connect().catch((e) => Promise.reject(store.fail(e)));
      const onError = () => {}; // see updateAccess; the client is discarded below either way
      client.on('error', onError);
      try {
        // Migrating may wait long on purpose: replicas starting together queue on its advisory lock while the
        // first migrates, and a migration may rewrite a big table. Only query_timeout bounds it, as before;
        // the connection is discarded afterwards rather than pooled without its server-side bounds.
        await client.query('SET lock_timeout = 0; SET statement_timeout = 0');
        const { applied, current } = await migrate(client, opts.schema);
        if (applied.length) store.log.info({ applied }, 'state store schema migrated');
        if (current > LATEST_VERSION) store.log.warn({ current, known: LATEST_VERSION }, 'state store schema is newer than this vigil; running anyway');
      } finally {
        client.off('error', onError);
        client.release(true);
      }
      // Listen first, then load: a change committed between the two is then in the load or announced.
      await store.listen();
      store.gen++;
      await store.catchUp();
    } catch (e) {
      await store.close();
      throw store.fail(e);
    }
    store.reconcileTimer = setInterval(() => store.reconcile(), opts.reconcileMs ?? 5_000);
    store.reconcileTimer.unref();
    return store;
  }

  private clientConfig(): pg.ClientConfig {
    return {
      connectionString: this.opts.url,
      application_name: 'vigil',
      connectionTimeoutMillis: 5_000,
      query_timeout: QUERY_TIMEOUT_MS,
      ...SERVER_BOUNDS,
      // The OS default waits two hours before the first probe.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    };
  }

  /** Remove the URL and password from anything about to be logged or thrown. */
  private scrub(e: unknown): Error {
    return new Error(this.scrubMessage(e));
  }

  /** The error a caller sees: unavailability as StoreUnavailableError, others scrubbed; vigil errors as they are. */
  private fail(e: unknown): Error {
    if (e instanceof VigilError) return e;
    const msg = this.scrub(e).message;
    if (isUnavailable(e)) return new StoreUnavailableError(`state store ${this.where} is unavailable: ${msg}`);
    return new VigilError('VIGIL_STORE_ERROR', `state store ${this.where}: ${msg}`);
  }

  private async q<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(sql, params);
    } catch (e) {
      throw this.fail(e);
    }
  }

  // ---- caches and change notifications -------------------------------------------------------------

  /** Read both caches; false when the result was discarded (see below) and the caches were left as they were. */
  private async load(): Promise<boolean> {
    const writes = this.ownWrites;
    // On the listener's own connection while there is one: through the pool this reload would queue behind
    // whatever keeps the pool busy (slow searches, a slow database) and a revocation announced at once would
    // reach the caches only when a pooled connection frees up, seconds later. One statement: one snapshot.
    const sql = `SELECT (SELECT coalesce(json_agg(serial), '[]') FROM ${this.s}.revocations) AS revoked,
                        (SELECT coalesce(json_agg(data), '[]') FROM ${this.s}.locks) AS locks`;
    const listener = this.listener;
    let row: { revoked: string[]; locks: LockRecord[] };
    try {
      row = (await (listener ?? this.pool).query<typeof row>(sql)).rows[0];
    } catch (e) {
      throw this.fail(e);
    }
    // A revocation or lock this instance wrote meanwhile may be missing from what was read: keep the cache
    // (it has the write); catchUp reads again.
    if (writes !== this.ownWrites) return false;
    const revoked = new Set(row.revoked);
    const lockMap = new Map(row.locks.map((l) => [`${l.kind}/${l.name}`, l] as const));
    if (!sameSet(revoked, this.revoked) || !sameLocks(lockMap, this.locks)) this.changed = true;
    this.revoked = revoked;
    this.locks = lockMap;
    return true;
  }

  /** Reload until the caches reflect every notification seen so far (one load at a time). */
  private catchUp(): Promise<void> {
    this.loading ??= (async () => {
      try {
        while (this.loadedGen < this.gen) {
          const target = this.gen; // a notification during the load asks for one more round
          // A discarded load is not a load: what it read may hold another replica's change whose notification
          // came before `target` was taken, and nothing else would announce it again. (Our own write's
          // notification usually comes after and asks for another round anyway, but it can be processed
          // before this load started, when ownWrites was not bumped yet.) Read again.
          if (await this.load()) this.loadedGen = target;
        }
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  private invalidate(): void {
    this.gen++;
    this.catchUp().catch((e) => {
      // While the database is away this fails every second: say it once every 30 s, not every time.
      if (Date.now() - this.reloadWarnedAt < 30_000) return;
      this.reloadWarnedAt = Date.now();
      this.log.warn({ err: this.fail(e).message }, 'state store reload failed; keeping the cached revocations and locks');
    });
  }

  private reconcile(): void {
    if (!this.closed) this.invalidate();
  }

  private async listen(): Promise<void> {
    const client = new pg.Client(this.clientConfig());
    const lost = (why: string) => {
      if (this.listener !== client) return;
      this.listener = undefined;
      clearInterval(this.pingTimer);
      this.log.warn({ err: why }, 'state store listener disconnected; reconnecting');
      client.end().catch(() => {});
      this.scheduleListen();
    };
    client.on('error', (e) => lost(this.scrub(e).message));
    client.on('end', () => lost('connection ended'));
    client.on('notification', (n) => {
      // A kill asked of some replica's live session: not a change to the caches.
      if (n.channel === sessionsChannel(this.opts.schema)) return this.liveSessions.announced(n.payload ?? '');
      this.changed = true;
      if (n.payload === 'revocations' || n.payload === 'locks') this.invalidate();
    });
    try {
      await client.connect();
      await client.query(`LISTEN "${changeChannel(this.opts.schema)}"; LISTEN "${sessionsChannel(this.opts.schema)}"`);
    } catch (e) {
      client.end().catch(() => {});
      throw this.fail(e);
    }
    // close() may have run while this connected: nobody would end this connection (a CLI would hang on it).
    if (this.closed) {
      await client.end().catch(() => {});
      throw new StoreUnavailableError(`state store ${this.where} is closed`);
    }
    this.listener = client;
    // A connection gone silent (failover, a NAT dropping its state) raises nothing while we only receive.
    this.pingTimer = setInterval(() => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('listener connection did not answer')), LISTENER_PING_TIMEOUT_MS)));
      Promise.race([client.query('SELECT 1'), timeout]).then(
        () => clearTimeout(timer),
        (e) => (clearTimeout(timer), lost(this.scrub(e).message)),
      );
    }, LISTENER_PING_MS);
    this.pingTimer.unref();
  }

  private scheduleListen(): void {
    if (this.closed || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closed) return;
      this.listen().then(
        () => {
          if (this.closed) return;
          this.log.info('state store listener reconnected');
          this.invalidate(); // whatever changed while nobody listened
        },
        () => this.scheduleListen(),
      );
    }, this.opts.reconnectMs ?? 1_000);
    this.reconnectTimer.unref();
  }

  /**
   * Cheap: no round trip unless a notification asked for a reload that has not finished yet. Without a
   * listener (reconnecting) nothing would announce changes, so it reloads itself, at most once a second.
   */
  async refresh(): Promise<boolean> {
    if (!this.listener && !this.closed && Date.now() - this.lastPoll >= 1_000) {
      this.lastPoll = Date.now();
      this.invalidate();
    }
    if (this.loadedGen < this.gen) await this.catchUp().catch(() => {});
    const c = this.changed;
    this.changed = false;
    return c;
  }

  // ---- certificates and revocations ----------------------------------------------------------------

  async recordIssuedCert(rec: IssuedCertRecord): Promise<void> {
    await this.q(
      `INSERT INTO ${this.s}.certs VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7)
       ON CONFLICT (serial) DO UPDATE SET "user" = $2, roles = $3::jsonb, not_before = $4, not_after = $5, grant_id = $6, kind = $7`,
      [rec.serial, rec.user, JSON.stringify(rec.roles), rec.notBefore, rec.notAfter, rec.grantId ?? null, rec.kind],
    );
    this.changed = true;
  }

  async getIssuedCert(serial: string): Promise<IssuedCertRecord | undefined> {
    const r = await this.q<CertRow>(`SELECT * FROM ${this.s}.certs WHERE serial = $1`, [serial]);
    return r.rows[0] && certFromRow(r.rows[0]);
  }

  async listIssuedCerts(range: { since: string; until: string }): Promise<IssuedCertRecord[]> {
    const r = await this.q<CertRow>(
      `SELECT * FROM ${this.s}.certs WHERE not_after >= $1 AND not_before <= $2 ORDER BY not_before COLLATE "C", serial COLLATE "C"`,
      [range.since, range.until],
    );
    return r.rows.map(certFromRow);
  }

  async userSpellings(name: string): Promise<string[]> {
    const r = await this.q<{ user: string }>(
      `SELECT "user" FROM ${this.s}.certs WHERE lower("user") = lower($1)
       UNION SELECT "user" FROM ${this.s}.identity_bindings WHERE lower("user") = lower($1)
       UNION SELECT name FROM ${this.s}.locks WHERE kind = 'user' AND lower(name) = lower($1)`,
      [name],
    );
    return r.rows.map((row) => row.user).sort();
  }

  async listRevocations(): Promise<RevocationRecord[]> {
    return (await this.q<RevocationRecord>(`SELECT serial, reason, "by", "time" FROM ${this.s}.revocations ORDER BY "time" COLLATE "C", serial COLLATE "C"`)).rows;
  }

  async revoke(rec: RevocationRecord): Promise<boolean> {
    const r = await this.q(`INSERT INTO ${this.s}.revocations VALUES ($1, $2, $3, $4) ON CONFLICT (serial) DO NOTHING`, [rec.serial, rec.reason, rec.by, rec.time]);
    this.revoked.add(rec.serial);
    this.ownWrites++;
    this.changed = true;
    return (r.rowCount ?? 0) > 0;
  }

  async getRevocation(serial: string): Promise<RevocationRecord | undefined> {
    return (await this.q<RevocationRecord>(`SELECT serial, reason, "by", "time" FROM ${this.s}.revocations WHERE serial = $1`, [serial])).rows[0];
  }

  isRevoked(serial: string): boolean {
    return this.revoked.has(serial);
  }

  // ---- access requests and grants ------------------------------------------------------------------

  async createAccess(rec: AccessRecord): Promise<void> {
    const full = { ...rec, requester: rec.requester ?? rec.user, beneficiary: rec.beneficiary ?? rec.user };
    await this.q(`INSERT INTO ${this.s}.access VALUES ($1, $2, $3, $4, $5::jsonb)`, [rec.id, rec.user, rec.state, rec.createdAt, JSON.stringify(full)]);
    this.changed = true;
  }

  async getAccess(id: string): Promise<AccessRecord | undefined> {
    return (await this.q<{ data: AccessRecord }>(`SELECT data FROM ${this.s}.access WHERE id = $1`, [id])).rows[0]?.data;
  }

  /**
   * Read-modify-write under a row lock: a second replica deciding the same request at the same moment
   * waits on FOR UPDATE and then runs `fn` on the record the first one wrote, so no approval is lost.
   */
  async updateAccess(id: string, fn: (cur: AccessRecord) => AccessRecord): Promise<AccessRecord> {
    const client = await this.pool.connect().catch((e) => Promise.reject(this.fail(e)));
    let aborted: unknown; // what `fn` threw: the caller's own error, passed on untouched
    let broken = false;
    // The pool listens for errors only on idle clients: a connection dropped while this one is checked out
    // would otherwise be an unhandled 'error' event, which ends the process.
    const onError = () => (broken = true);
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      try {
        const cur = (await client.query<{ data: AccessRecord }>(`SELECT data FROM ${this.s}.access WHERE id = $1 FOR UPDATE`, [id])).rows[0];
        if (!cur) throw (aborted = new NotFoundError(`no access request or grant ${id}`));
        let next: AccessRecord;
        try {
          next = fn(cur.data);
        } catch (e) {
          throw (aborted = e);
        }
        await client.query(`UPDATE ${this.s}.access SET state = $2, data = $3::jsonb WHERE id = $1`, [id, next.state, JSON.stringify(next)]);
        await client.query('COMMIT');
        this.changed = true;
        return next;
      } catch (e) {
        await client.query('ROLLBACK').catch(() => (broken = true));
        throw e;
      }
    } catch (e) {
      if (e === aborted) throw e;
      broken ||= isConnectionLost(e);
      throw this.fail(e);
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  async listAccess(filter: { state?: AccessState; user?: string } = {}): Promise<AccessRecord[]> {
    const r = await this.q<{ data: AccessRecord }>(
      `SELECT data FROM ${this.s}.access WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR "user" = $2)
       ORDER BY created_at COLLATE "C", id COLLATE "C"`,
      [filter.state ?? null, filter.user ?? null],
    );
    return r.rows.map((x) => x.data);
  }

  // ---- locks and holds -----------------------------------------------------------------------------

  async putLock(rec: LockRecord): Promise<void> {
    await this.q(`INSERT INTO ${this.s}.locks VALUES ($1, $2, $3::jsonb) ON CONFLICT (kind, name) DO UPDATE SET data = $3::jsonb`, [rec.kind, rec.name, JSON.stringify(rec)]);
    this.locks.set(`${rec.kind}/${rec.name}`, rec);
    this.ownWrites++;
    this.changed = true;
  }

  async deleteLock(kind: LockRecord['kind'], name: string): Promise<boolean> {
    const r = await this.q(`DELETE FROM ${this.s}.locks WHERE kind = $1 AND name = $2`, [kind, name]);
    this.locks.delete(`${kind}/${name}`);
    this.ownWrites++;
    this.changed = true;
    return (r.rowCount ?? 0) > 0;
  }

  async listLocks(): Promise<LockRecord[]> {
    return (await this.q<{ data: LockRecord }>(`SELECT data FROM ${this.s}.locks`)).rows.map((r) => r.data);
  }

  isLocked(kind: LockRecord['kind'], name: string): LockRecord | undefined {
    const l = this.locks.get(`${kind}/${name}`);
    if (l?.expiresAt && Date.parse(l.expiresAt) <= Date.now()) return undefined;
    return l;
  }

  // ---- identity bindings ---------------------------------------------------------------------------

  async bindIdentity(rec: IdentityBinding): Promise<IdentityBinding | undefined> {
    const cols = `"user", issuer, subject, bound_at AS "boundAt"`;
    for (let attempt = 0; attempt < 3; attempt++) {
      // Any unique violation (the name, or the subject) leaves the row in place: a concurrent insert of the
      // same name is waited for, so the SELECT below sees whichever binding won.
      const ins = await this.q(`INSERT INTO ${this.s}.identity_bindings VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, [rec.user, rec.issuer, rec.subject, rec.boundAt]);
      if ((ins.rowCount ?? 0) > 0) return undefined;
      const rows = (await this.q<IdentityBinding>(`SELECT ${cols} FROM ${this.s}.identity_bindings WHERE "user" = $1 OR (issuer = $2 AND subject = $3)`, [rec.user, rec.issuer, rec.subject])).rows;
      const byUser = rows.find((r) => r.user === rec.user);
      if (byUser) return byUser.issuer === rec.issuer && byUser.subject === rec.subject ? undefined : byUser;
      if (rows[0]) return rows[0];
      // The conflicting row was deleted in between: try again.
    }
    throw new VigilError('VIGIL_STORE_ERROR', `state store ${this.where}: could not bind ${rec.user}`);
  }

  async getIdentityBinding(user: string): Promise<IdentityBinding | undefined> {
    return (await this.q<IdentityBinding>(`SELECT "user", issuer, subject, bound_at AS "boundAt" FROM ${this.s}.identity_bindings WHERE "user" = $1`, [user])).rows[0];
  }

  async putHold(rec: HoldRecord): Promise<void> {
    await this.q(`INSERT INTO ${this.s}.holds VALUES ($1, $2, $3::jsonb) ON CONFLICT (id) DO UPDATE SET created_at = $2, data = $3::jsonb`, [rec.id, rec.createdAt, JSON.stringify(rec)]);
    this.changed = true;
  }

  async getHold(id: string): Promise<HoldRecord | undefined> {
    return (await this.q<{ data: HoldRecord }>(`SELECT data FROM ${this.s}.holds WHERE id = $1`, [id])).rows[0]?.data;
  }

  async listHolds(): Promise<HoldRecord[]> {
    return (await this.q<{ data: HoldRecord }>(`SELECT data FROM ${this.s}.holds ORDER BY created_at COLLATE "C", id COLLATE "C"`)).rows.map((r) => r.data);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.reconcileTimer);
    clearTimeout(this.reconnectTimer);
    clearInterval(this.pingTimer);
    const l = this.listener;
    this.listener = undefined;
    await l?.end().catch(() => {});
    await this.loading?.catch(() => {});
    await this.pool.end().catch(() => {});
  }
}

interface CertRow {
  serial: string;
  user: string;
  roles: string[];
  not_before: string;
  not_after: string;
  grant_id: string | null;
  kind: IssuedCertRecord['kind'];
}

function certFromRow(r: CertRow): IssuedCertRecord {
  return { serial: r.serial, user: r.user, roles: r.roles, notBefore: r.not_before, notAfter: r.not_after, grantId: r.grant_id ?? undefined, kind: r.kind };
}

const sameSet = (a: Set<string>, b: Set<string>) => a.size === b.size && [...a].every((x) => b.has(x));
/** jsonb does not keep key order: compare lock records by their sorted keys. */
const canon = (v: object | undefined) => (v ? JSON.stringify(v, Object.keys(v).sort()) : '');
const sameLocks = (a: Map<string, LockRecord>, b: Map<string, LockRecord>) => a.size === b.size && [...a].every(([k, v]) => canon(v) === canon(b.get(k)));
