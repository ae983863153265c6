import path from 'node:path';
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { NotFoundError } from '../errors.ts';
import type { AccessRecord, AccessState, HoldRecord, IdentityBinding, IssuedCertRecord, LockRecord, RevocationRecord, StateStore } from './types.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS certs (
  serial TEXT PRIMARY KEY, user TEXT NOT NULL, roles TEXT NOT NULL, not_before TEXT NOT NULL,
  not_after TEXT NOT NULL, grant_id TEXT, kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (serial TEXT PRIMARY KEY, reason TEXT NOT NULL, by TEXT NOT NULL, time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS access (id TEXT PRIMARY KEY, user TEXT NOT NULL, state TEXT NOT NULL, created_at TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS access_state ON access(state);
CREATE TABLE IF NOT EXISTS locks (kind TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, name));
CREATE TABLE IF NOT EXISTS holds (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identity_bindings (
  user TEXT PRIMARY KEY, issuer TEXT NOT NULL, subject TEXT NOT NULL, bound_at TEXT NOT NULL, UNIQUE (issuer, subject)
);
-- userSpellings(): names that differ only in case, found without reading every certificate ever issued.
CREATE INDEX IF NOT EXISTS certs_user_folded ON certs(lower(user));
CREATE INDEX IF NOT EXISTS identity_bindings_user_folded ON identity_bindings(lower(user));
`;

/**
 * Access records written before requests recorded who filed them: the only person who could file one then
 * was the beneficiary (or an admin, indistinguishable afterwards), so requester = beneficiary = user.
 * Idempotent: rows that have a requester are left alone.
 */
const MIGRATE_REQUESTER = `
UPDATE access SET data = json_set(data, '$.requester', json_extract(data, '$.user'), '$.beneficiary', json_extract(data, '$.user'))
WHERE json_extract(data, '$.requester') IS NULL;
`;

/**
 * The embedded default state store: one SQLite database (WAL) in the data directory, shared safely by
 * the gateway and CLI processes. Hot-path checks (revoked? locked?) read in-memory caches that
 * `refresh()` reloads when SQLite's data_version says another connection committed.
 */
/**
 * Open (creating if needed) a SQLite file of the data directory the way every writer of it must: 0600,
 * WAL so readers never block the writer, a busy timeout for the other process (CLI vs gateway), and full
 * sync because these rows are security state. `schema` is run once (CREATE ... IF NOT EXISTS).
 */
export function openStateDatabase(file: string, schema: string): Database.Database {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const db = new Database(file);
  try {
    fs.chmodSync(file, 0o600);
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    db.pragma('synchronous = FULL');
    db.exec(schema);
  } catch (e) {
    // A schema that cannot be set up (another process holds the write lock past busy_timeout): the
    // connection goes with the error rather than stay open behind a caller that never got it.
    db.close();
    throw e;
  }
  return db;
}

export class SqliteStateStore implements StateStore {
  private readonly db: Database.Database;
  private revoked = new Set<string>();
  private locks = new Map<string, LockRecord>();
  private lastVersion = -1;
  /** Set by this connection's own writes (data_version only counts other connections' commits). */
  private dirty = false;
  private readonly stmt;

  constructor(file: string) {
    this.db = openStateDatabase(file, SCHEMA);
    this.db.exec(MIGRATE_REQUESTER);
    this.stmt = {
      insertCert: this.db.prepare('INSERT OR REPLACE INTO certs VALUES (@serial, @user, @roles, @notBefore, @notAfter, @grantId, @kind)'),
      getCert: this.db.prepare('SELECT * FROM certs WHERE serial = ?'),
      certsOverlapping: this.db.prepare('SELECT * FROM certs WHERE not_after >= @since AND not_before <= @until ORDER BY not_before, serial'),
      allRevocations: this.db.prepare('SELECT * FROM revocations ORDER BY time, serial'),
      insertRevocation: this.db.prepare('INSERT OR IGNORE INTO revocations VALUES (@serial, @reason, @by, @time)'),
      getRevocation: this.db.prepare('SELECT * FROM revocations WHERE serial = ?'),
      allRevoked: this.db.prepare('SELECT serial FROM revocations').pluck(),
      insertAccess: this.db.prepare('INSERT INTO access VALUES (@id, @user, @state, @createdAt, @data)'),
      getAccess: this.db.prepare('SELECT data FROM access WHERE id = ?').pluck(),
      putAccess: this.db.prepare('UPDATE access SET state = @state, data = @data WHERE id = @id'),
      listAccess: this.db.prepare(
        'SELECT data FROM access WHERE (@state IS NULL OR state = @state) AND (@user IS NULL OR user = @user) ORDER BY created_at, id',
      ).pluck(),
      putLock: this.db.prepare('INSERT OR REPLACE INTO locks VALUES (@kind, @name, @data)'),
      deleteLock: this.db.prepare('DELETE FROM locks WHERE kind = ? AND name = ?'),
      allLocks: this.db.prepare('SELECT data FROM locks').pluck(),
      userSpellings: this.db.prepare(
        `SELECT user FROM certs WHERE lower(user) = lower(@name)
         UNION SELECT user FROM identity_bindings WHERE lower(user) = lower(@name)
         UNION SELECT name FROM locks WHERE kind = 'user' AND lower(name) = lower(@name)`,
      ).pluck(),
      bindingByUser: this.db.prepare('SELECT user, issuer, subject, bound_at AS boundAt FROM identity_bindings WHERE user = ?'),
      bindingBySubject: this.db.prepare('SELECT user, issuer, subject, bound_at AS boundAt FROM identity_bindings WHERE issuer = ? AND subject = ?'),
      insertBinding: this.db.prepare('INSERT INTO identity_bindings VALUES (@user, @issuer, @subject, @boundAt)'),
      putHold: this.db.prepare('INSERT OR REPLACE INTO holds VALUES (@id, @createdAt, @data)'),
      getHold: this.db.prepare('SELECT data FROM holds WHERE id = ?').pluck(),
      allHolds: this.db.prepare('SELECT data FROM holds ORDER BY created_at, id').pluck(),
    };
    this.reload();
  }

  private reload(): void {
    this.revoked = new Set(this.stmt.allRevoked.all() as string[]);
    const locks = new Map<string, LockRecord>();
    for (const d of this.stmt.allLocks.all() as string[]) {
      const l = JSON.parse(d) as LockRecord;
      locks.set(`${l.kind}/${l.name}`, l);
    }
    this.locks = locks;
    this.lastVersion = this.dataVersion();
  }

  private dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  async recordIssuedCert(rec: IssuedCertRecord): Promise<void> {
    this.dirty = true;
    this.stmt.insertCert.run({ ...rec, roles: JSON.stringify(rec.roles), grantId: rec.grantId ?? null });
  }

  async getIssuedCert(serial: string): Promise<IssuedCertRecord | undefined> {
    const r = this.stmt.getCert.get(serial) as Record<string, string> | undefined;
    return r ? certFromRow(r) : undefined;
  }

  async listIssuedCerts(range: { since: string; until: string }): Promise<IssuedCertRecord[]> {
    return (this.stmt.certsOverlapping.all(range) as Record<string, string>[]).map(certFromRow);
  }

  async userSpellings(name: string): Promise<string[]> {
    return (this.stmt.userSpellings.all({ name }) as string[]).sort();
  }

  async listRevocations(): Promise<RevocationRecord[]> {
    return this.stmt.allRevocations.all() as RevocationRecord[];
  }

  async revoke(rec: RevocationRecord): Promise<boolean> {
    this.dirty = true;
    const changed = this.stmt.insertRevocation.run(rec).changes > 0;
    this.revoked.add(rec.serial);
    return changed;
  }

  async getRevocation(serial: string): Promise<RevocationRecord | undefined> {
    return this.stmt.getRevocation.get(serial) as RevocationRecord | undefined;
  }

  isRevoked(serial: string): boolean {
    return this.revoked.has(serial);
  }

  async createAccess(rec: AccessRecord): Promise<void> {
    this.dirty = true;
    const full = { ...rec, requester: rec.requester ?? rec.user, beneficiary: rec.beneficiary ?? rec.user };
    this.stmt.insertAccess.run({ id: rec.id, user: rec.user, state: rec.state, createdAt: rec.createdAt, data: JSON.stringify(full) });
  }

  async getAccess(id: string): Promise<AccessRecord | undefined> {
    const d = this.stmt.getAccess.get(id) as string | undefined;
    return d ? (JSON.parse(d) as AccessRecord) : undefined;
  }

  async updateAccess(id: string, fn: (cur: AccessRecord) => AccessRecord): Promise<AccessRecord> {
    // IMMEDIATE takes the write lock before reading, so two processes cannot both decide the same request.
    const tx = this.db.transaction(() => {
      const d = this.stmt.getAccess.get(id) as string | undefined;
      if (!d) throw new NotFoundError(`no access request or grant ${id}`);
      const next = fn(JSON.parse(d) as AccessRecord);
      this.stmt.putAccess.run({ id, state: next.state, data: JSON.stringify(next) });
      this.dirty = true;
      return next;
    });
    return tx.immediate();
  }

  async listAccess(filter: { state?: AccessState; user?: string } = {}): Promise<AccessRecord[]> {
    const rows = this.stmt.listAccess.all({ state: filter.state ?? null, user: filter.user ?? null }) as string[];
    return rows.map((d) => JSON.parse(d) as AccessRecord);
  }

  async putLock(rec: LockRecord): Promise<void> {
    this.dirty = true;
    this.stmt.putLock.run({ kind: rec.kind, name: rec.name, data: JSON.stringify(rec) });
    this.locks.set(`${rec.kind}/${rec.name}`, rec);
  }

  async deleteLock(kind: LockRecord['kind'], name: string): Promise<boolean> {
    this.dirty = true;
    this.locks.delete(`${kind}/${name}`);
    return this.stmt.deleteLock.run(kind, name).changes > 0;
  }

  async listLocks(): Promise<LockRecord[]> {
    return (this.stmt.allLocks.all() as string[]).map((d) => JSON.parse(d) as LockRecord);
  }

  isLocked(kind: LockRecord['kind'], name: string): LockRecord | undefined {
    const l = this.locks.get(`${kind}/${name}`);
    if (l?.expiresAt && Date.parse(l.expiresAt) <= Date.now()) return undefined;
    return l;
  }

  async bindIdentity(rec: IdentityBinding): Promise<IdentityBinding | undefined> {
    // IMMEDIATE: look and insert under the write lock, so two processes cannot both bind the same name.
    const tx = this.db.transaction((): IdentityBinding | undefined => {
      const byUser = this.stmt.bindingByUser.get(rec.user) as IdentityBinding | undefined;
      if (byUser) return byUser.issuer === rec.issuer && byUser.subject === rec.subject ? undefined : byUser;
      const bySubject = this.stmt.bindingBySubject.get(rec.issuer, rec.subject) as IdentityBinding | undefined;
      if (bySubject) return bySubject;
      this.stmt.insertBinding.run(rec);
      this.dirty = true;
      return undefined;
    });
    return tx.immediate();
  }

  async getIdentityBinding(user: string): Promise<IdentityBinding | undefined> {
    return this.stmt.bindingByUser.get(user) as IdentityBinding | undefined;
  }

  async putHold(rec: HoldRecord): Promise<void> {
    this.dirty = true;
    this.stmt.putHold.run({ id: rec.id, createdAt: rec.createdAt, data: JSON.stringify(rec) });
  }

  async getHold(id: string): Promise<HoldRecord | undefined> {
    const d = this.stmt.getHold.get(id) as string | undefined;
    return d === undefined ? undefined : (JSON.parse(d) as HoldRecord);
  }

  async listHolds(): Promise<HoldRecord[]> {
    return (this.stmt.allHolds.all() as string[]).map((d) => JSON.parse(d) as HoldRecord);
  }

  async refresh(): Promise<boolean> {
    const own = this.dirty;
    this.dirty = false;
    if (this.dataVersion() === this.lastVersion) return own;
    this.reload();
    return true;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

function certFromRow(r: Record<string, string>): IssuedCertRecord {
  return {
    serial: r.serial,
    user: r.user,
    roles: JSON.parse(r.roles),
    notBefore: r.not_before,
    notAfter: r.not_after,
    grantId: r.grant_id ?? undefined,
    kind: r.kind as IssuedCertRecord['kind'],
  };
}
