import fs from 'node:fs';
import path from 'node:path';
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type Database from 'better-sqlite3';
import { VigilError } from '../errors.ts';
import { openStateDatabase } from '../store/sqlite.ts';
import type { LinkRecords, LinkRow, StateStore } from '../store/types.ts';

/**
 * One-time approve/deny links for access requests. A token is `<random id>.<HMAC-SHA256(key, id)>` in
 * base64url, the key a file of the data dir (0600); the store keeps only the token's SHA-256, so a copy of
 * state.db does not yield usable links. A link is claimed atomically (one UPDATE that succeeds once), and
 * can be handed back when the decision it was claimed for did not happen. With the PostgreSQL state store
 * links and the key live there (src/store/postgres-shared.ts), so a link works through any replica.
 */

export type LinkDecision = LinkRow['decision'];
export type { LinkRow } from '../store/types.ts';

/** A refused link use. Stable codes; the HTTP status is part of the error so the API needs no table. */
export class LinkError extends VigilError {
  constructor(
    code: 'VIGIL_LINK_INVALID' | 'VIGIL_LINK_EXPIRED' | 'VIGIL_LINK_USED' | 'VIGIL_LINK_NOT_APPROVER',
    readonly status: number,
    message: string,
  ) {
    super(code, message);
  }
}

export const linkErrors = {
  invalid: () => new LinkError('VIGIL_LINK_INVALID', 404, 'This approval link is not valid.'),
  expired: () => new LinkError('VIGIL_LINK_EXPIRED', 410, 'This approval link has expired.'),
  used: () => new LinkError('VIGIL_LINK_USED', 409, 'This approval link was already used.'),
  notApprover: (why: string) => new LinkError('VIGIL_LINK_NOT_APPROVER', 403, why),
};

const SCHEMA = `
CREATE TABLE IF NOT EXISTS access_links (
  hash TEXT PRIMARY KEY, request_id TEXT NOT NULL, decision TEXT NOT NULL, created_at TEXT NOT NULL,
  expires_at INTEGER NOT NULL, used_at TEXT, used_by TEXT
);
CREATE INDEX IF NOT EXISTS access_links_request ON access_links(request_id);
`;

const KEY_FILE = 'approval_links.key';

/** The HMAC key, created once (exclusively, so two processes starting together agree on one). */
function linkKey(dataDir: string): Buffer {
  const file = path.join(dataDir, 'ca', KEY_FILE);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  try {
    fs.writeFileSync(file, randomBytes(32).toString('base64'), { mode: 0o600, flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const key = Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'base64');
  if (key.length < 32) throw new VigilError('VIGIL_KEY_INVALID', `${file} does not hold a link key`);
  return key;
}

const b64u = (b: Buffer) => b.toString('base64url');
export const tokenHash = (token: string) => createHash('sha256').update(token).digest('hex');
/** A short, non-secret name of a link for events and logs (a prefix of its hash, never the token). */
export const linkId = (hash: string) => hash.slice(0, 16);

/** The links' storage for a data directory: the shared one of the state store when it has one, else state.db. */
export function openLinkStore(dataDir: string, store?: StateStore): LinkStore {
  return new LinkStore(store?.links ?? new SqliteLinkRecords(dataDir));
}

/** Links in state.db; the key is a file of the data directory's CA folder. */
export class SqliteLinkRecords implements LinkRecords {
  private readonly db: Database.Database;
  private readonly stmt;

  private readonly keyValue: Buffer;

  constructor(dataDir: string) {
    // Read (or created) at once, as before the store could be shared: a bad key file shows at start.
    this.keyValue = linkKey(dataDir);
    this.db = openStateDatabase(path.join(dataDir, 'state.db'), SCHEMA);
    this.stmt = {
      add: this.db.prepare('INSERT INTO access_links (hash, request_id, decision, created_at, expires_at) VALUES (?, ?, ?, ?, ?)'),
      get: this.db.prepare('SELECT * FROM access_links WHERE hash = ?'),
      claim: this.db.prepare('UPDATE access_links SET used_at = ?, used_by = ? WHERE hash = ? AND used_at IS NULL AND expires_at > ?'),
      release: this.db.prepare('UPDATE access_links SET used_at = NULL, used_by = NULL WHERE hash = ? AND used_by = ?'),
    };
  }

  async key(): Promise<Buffer> {
    return this.keyValue;
  }

  async add(r: Omit<LinkRow, 'used_at' | 'used_by'>): Promise<void> {
    this.stmt.add.run(r.hash, r.request_id, r.decision, r.created_at, r.expires_at);
  }

  async get(hash: string): Promise<LinkRow | undefined> {
    return this.stmt.get.get(hash) as LinkRow | undefined;
  }

  async claim(hash: string, by: string, now: number): Promise<boolean> {
    return this.stmt.claim.run(new Date(now).toISOString(), by, hash, now).changes === 1;
  }

  async release(hash: string, by: string): Promise<void> {
    this.stmt.release.run(hash, by);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

export class LinkStore {
  private key?: Promise<Buffer>;

  constructor(private readonly records: LinkRecords) {}

  private async mac(id: Buffer): Promise<Buffer> {
    this.key ??= this.records.key();
    this.key.catch(() => (this.key = undefined));
    return createHmac('sha256', await this.key).update(id).digest();
  }

  /** A new link; the token is returned once and never stored. */
  async mint(requestId: string, decision: LinkDecision, expiresAt: number, now = Date.now()): Promise<{ token: string; id: string }> {
    const id = randomBytes(18);
    const token = `${b64u(id)}.${b64u(await this.mac(id))}`;
    const hash = tokenHash(token);
    await this.records.add({ hash, request_id: requestId, decision, created_at: new Date(now).toISOString(), expires_at: expiresAt });
    return { token, id: linkId(hash) };
  }

  /**
   * The link a token names, checked: forged or unknown → invalid, then expired, then used. Checking the
   * HMAC first means a guessed token costs no database read and reveals nothing.
   */
  async resolve(token: string, now = Date.now()): Promise<LinkRow> {
    const m = /^([A-Za-z0-9_-]{24})\.([A-Za-z0-9_-]{43})$/.exec(token);
    if (!m) throw linkErrors.invalid();
    const given = Buffer.from(m[2], 'base64url');
    const want = await this.mac(Buffer.from(m[1], 'base64url'));
    if (given.length !== want.length || !timingSafeEqual(given, want)) throw linkErrors.invalid();
    const row = await this.records.get(tokenHash(token));
    if (!row) throw linkErrors.invalid();
    if (row.used_at) throw linkErrors.used();
    if (row.expires_at <= now) throw linkErrors.expired();
    return row;
  }

  /** Take the link for `by`; false when someone else (on any replica) took it first or it expired meanwhile. */
  claim(hash: string, by: string, now = Date.now()): Promise<boolean> {
    return this.records.claim(hash, by, now);
  }

  /** Hand a claimed link back (the decision it was claimed for did not happen). */
  release(hash: string, by: string): Promise<void> {
    return this.records.release(hash, by);
  }

  close(): Promise<void> {
    return this.records.close();
  }
}
