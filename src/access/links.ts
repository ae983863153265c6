import fs from 'node:fs';
import path from 'node:path';
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type Database from 'better-sqlite3';
import { VigilError } from '../errors.ts';
import { openStateDatabase } from '../store/sqlite.ts';

/**
 * One-time approve/deny links for access requests. A token is `<random id>.<HMAC-SHA256(key, id)>` in
 * base64url, the key a file of the data dir (0600); the store keeps only the token's SHA-256, so a copy of
 * state.db does not yield usable links. A link is claimed atomically (one UPDATE that succeeds once), and
 * can be handed back when the decision it was claimed for did not happen.
 */

export type LinkDecision = 'approve' | 'deny';

export interface LinkRow {
  hash: string;
  request_id: string;
  decision: LinkDecision;
  created_at: string;
  expires_at: number;
  used_at: string | null;
  used_by: string | null;
}

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

export class LinkStore {
  private readonly db: Database.Database;
  private readonly key: Buffer;
  private readonly stmt;

  constructor(dataDir: string) {
    this.key = linkKey(dataDir);
    this.db = openStateDatabase(path.join(dataDir, 'state.db'), SCHEMA);
    this.stmt = {
      add: this.db.prepare('INSERT INTO access_links (hash, request_id, decision, created_at, expires_at) VALUES (?, ?, ?, ?, ?)'),
      get: this.db.prepare('SELECT * FROM access_links WHERE hash = ?'),
      claim: this.db.prepare('UPDATE access_links SET used_at = ?, used_by = ? WHERE hash = ? AND used_at IS NULL AND expires_at > ?'),
      release: this.db.prepare('UPDATE access_links SET used_at = NULL, used_by = NULL WHERE hash = ? AND used_by = ?'),
    };
  }

  private mac(id: Buffer): Buffer {
    return createHmac('sha256', this.key).update(id).digest();
  }

  /** A new link; the token is returned once and never stored. */
  mint(requestId: string, decision: LinkDecision, expiresAt: number, now = Date.now()): { token: string; id: string } {
    const id = randomBytes(18);
    const token = `${b64u(id)}.${b64u(this.mac(id))}`;
    const hash = tokenHash(token);
    this.stmt.add.run(hash, requestId, decision, new Date(now).toISOString(), expiresAt);
    return { token, id: linkId(hash) };
  }

  /**
   * The link a token names, checked: forged or unknown → invalid, then expired, then used. Checking the
   * HMAC first means a guessed token costs no database read and reveals nothing.
   */
  resolve(token: string, now = Date.now()): LinkRow {
    const m = /^([A-Za-z0-9_-]{24})\.([A-Za-z0-9_-]{43})$/.exec(token);
    if (!m) throw linkErrors.invalid();
    const given = Buffer.from(m[2], 'base64url');
    const want = this.mac(Buffer.from(m[1], 'base64url'));
    if (given.length !== want.length || !timingSafeEqual(given, want)) throw linkErrors.invalid();
    const row = this.stmt.get.get(tokenHash(token)) as LinkRow | undefined;
    if (!row) throw linkErrors.invalid();
    if (row.used_at) throw linkErrors.used();
    if (row.expires_at <= now) throw linkErrors.expired();
    return row;
  }

  /** Take the link for `by`; false when someone else took it first or it expired meanwhile. */
  claim(hash: string, by: string, now = Date.now()): boolean {
    return this.stmt.claim.run(new Date(now).toISOString(), by, hash, now).changes === 1;
  }

  /** Hand a claimed link back (the decision it was claimed for did not happen). */
  release(hash: string, by: string): void {
    this.stmt.release.run(hash, by);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
