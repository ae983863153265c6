/**
 * Shared gateway state: issued certificates, revocations, access requests/grants and locks (with
 * PostgreSQL also approval links and the notification outbox). The default implementation is an embedded
 * SQLite database in the data directory (several processes — the gateway and CLI invocations — may use it
 * at once); the PostgreSQL one is shared by replicas. Callers use only this interface, never file paths.
 */
export interface IssuedCertRecord {
  serial: string;
  user: string;
  roles: string[];
  notBefore: string; // RFC 3339
  notAfter: string;
  grantId?: string;
  kind: 'cert' | 'token';
}

export interface RevocationRecord {
  serial: string;
  reason: string;
  by: string;
  time: string;
}

export type AccessState = 'pending' | 'active' | 'denied' | 'expired' | 'revoked';

export interface AccessApproval {
  by: string;
  time: string;
  comment?: string;
}

export interface AccessRecord {
  id: string;
  /** Who gets the grant (the beneficiary); kept under this name because authorization reads it. */
  user: string;
  /**
   * Who filed the request: an admin may file on behalf of another user. Four-eyes: neither the requester
   * nor the beneficiary may decide it. Always set in the store (rows from before it existed are migrated
   * to requester = beneficiary = user); optional here only for records built by hand.
   */
  requester?: string;
  /** Who gets the grant: the same as `user`, recorded under its own name for readers of the record. */
  beneficiary?: string;
  role: string;
  targets: string[];
  reason: string;
  /** Requested lifetime of the grant once approved. */
  ttlMs: number;
  state: AccessState;
  createdAt: string;
  /** A pending request stops being approvable at this time. */
  requestExpiresAt: string;
  approvals: AccessApproval[];
  breakGlass: boolean;
  /** Set when the request became an active grant. */
  grantedAt?: string;
  expiresAt?: string;
  decidedBy?: string;
  decisionReason?: string;
  /** Set once `access.expired` has been written, so it is written exactly once across processes. */
  expiryRecorded?: boolean;
  /** How far telling the approvers got (access.approvals): each step is claimed here exactly once. */
  notify?: { notifiedAt?: string; remindedAt?: string; escalatedAt?: string; decisionNotifiedAt?: string; told?: string[]; approvalsTold?: number };
}

export interface LockRecord {
  /** What is locked: currently users only. */
  kind: 'user';
  name: string;
  reason: string;
  by: string;
  createdAt: string;
  expiresAt?: string;
}

/**
 * Which account of the OpenID Provider a vigil user name belongs to: the (issuer, subject) that first
 * signed in as it. Names key grants, locks, certificates and four-eyes, and an IdP's user-name claims
 * are neither unique nor stable, so a name is bound to the IdP's stable subject once and for good: another
 * account whose claim maps to the same name is refused, and an account is refused under a second name.
 */
export interface IdentityBinding {
  user: string;
  issuer: string;
  subject: string;
  boundAt: string; // RFC 3339
}

/** A legal hold (`vigil hold add`): matching events and recordings are never purged while it is active. */
export interface HoldRecord {
  id: string;
  user?: string;
  target?: string;
  session?: string;
  since?: string;
  until?: string;
  reason: string;
  by: string;
  createdAt: string;
  /** Set when released; the record stays for the history. */
  released?: { by: string; time: string; reason: string };
}

export interface StateStore {
  recordIssuedCert(rec: IssuedCertRecord): Promise<void>;
  getIssuedCert(serial: string): Promise<IssuedCertRecord | undefined>;
  /** Certificates valid at some time in [since, until] (RFC 3339 bounds), oldest first (access-review report). */
  listIssuedCerts(range: { since: string; until: string }): Promise<IssuedCertRecord[]>;
  /**
   * The user names vigil knows (issued a certificate or token, bound to an SSO subject, or locked) that
   * equal `name` ignoring ASCII case, `name` itself included when known. An indexed lookup: it runs at
   * every issuance and sign-in (src/identity/user-name.ts: one spelling per person).
   */
  userSpellings(name: string): Promise<string[]>;
  /** Every revocation, oldest first. */
  listRevocations(): Promise<RevocationRecord[]>;
  /** Returns false when the serial was already revoked. */
  revoke(rec: RevocationRecord): Promise<boolean>;
  getRevocation(serial: string): Promise<RevocationRecord | undefined>;
  /** Synchronous check against a cache refreshed by `refresh()`; used on every connection. */
  isRevoked(serial: string): boolean;

  createAccess(rec: AccessRecord): Promise<void>;
  getAccess(id: string): Promise<AccessRecord | undefined>;
  /** Atomic read-modify-write: `fn` returns the new record or throws to abort. */
  updateAccess(id: string, fn: (cur: AccessRecord) => AccessRecord): Promise<AccessRecord>;
  listAccess(filter?: { state?: AccessState; user?: string }): Promise<AccessRecord[]>;

  putLock(rec: LockRecord): Promise<void>;
  /** Returns false when there was no such lock. */
  deleteLock(kind: LockRecord['kind'], name: string): Promise<boolean>;
  listLocks(): Promise<LockRecord[]>;
  /** Synchronous check against the cache. */
  isLocked(kind: LockRecord['kind'], name: string): LockRecord | undefined;

  /**
   * Bind `rec.user` to (rec.issuer, rec.subject) unless the name or that subject is bound already; atomic
   * across processes and replicas (of two first sign-ins at once, one binds). Returns undefined when `rec`'s
   * name and subject are bound to each other (now or before), else the binding in the way: the one holding
   * the name, or the one holding the subject under another name.
   */
  bindIdentity(rec: IdentityBinding): Promise<IdentityBinding | undefined>;
  getIdentityBinding(user: string): Promise<IdentityBinding | undefined>;

  putHold(rec: HoldRecord): Promise<void>;
  getHold(id: string): Promise<HoldRecord | undefined>;
  /** Every hold, oldest first (released ones too: filter on `released`). */
  listHolds(): Promise<HoldRecord[]>;

  /**
   * The audit chains of every replica and the shared index of their events (PostgreSQL only: the SQLite
   * store serves one host, whose local search index already holds everything).
   */
  readonly auditChains?: AuditChainStore;

  /**
   * Approval links and the notification outbox (with alert firings), shared by every replica (PostgreSQL
   * only: with SQLite they are tables of state.db, opened by their own modules on the data directory).
   */
  readonly links?: LinkRecords;
  readonly outbox?: OutboxStore;
  /** The live sessions of every replica (PostgreSQL only: with SQLite one host holds them all in memory). */
  readonly liveSessions?: LiveSessionStore;

  /**
   * Reload caches if another process changed anything; returns true when something changed. The gateway
   * calls this every ~250 ms so CLI changes are seen within a second.
   */
  refresh(): Promise<boolean>;
  close(): Promise<void>;
}

/** A replica's hash-chained audit log as registered in the shared store. */
export interface AuditChainInfo {
  /** Stable id of the replica (DATA/replica-id). */
  replica: string;
  /** Every signing public key (SPKI PEM) the replica has registered, with its key id. */
  keys: { key_id: string; public_key: string }[];
  host: string;
  registeredAt: string;
  /** The newest record of the chain in the shared index (0 and '' when none): always a signed checkpoint. */
  indexedSeq: number;
  indexedHash: string;
  indexedAt?: string;
  /** The replica's own chain head when it last indexed (lag across replicas, for status). */
  chainSeq: number;
  /** Set when the replica's chain no longer matches what was indexed (rewritten, or restored and continued). */
  diverged?: { seq: number; at: string; problem: string };
}

/** One record of a replica's chain as stored in the shared index: enough to re-check its hash and links. */
export interface IndexedAuditRow {
  replica: string;
  seq: number;
  prev: string;
  hash: string;
  /** The event's canonical JSON, exactly the bytes the hash covers. */
  eventJson: string;
  /** Search results: the row's indexed time column, the order (and a page cursor) searches go by. */
  time?: string | null;
}

/** Filters of the shared index (the same as the local search, plus the replica). */
export interface SharedAuditQuery {
  replica?: string;
  user?: string;
  target?: string;
  /** Type prefix. */
  type?: string;
  session?: string;
  /** RFC 3339 bounds in the stored 6-digit form. */
  since?: string;
  until?: string;
  hideCheckpoints?: boolean;
  /** PostgreSQL web-search syntax over statement/command/path text. */
  text?: string;
  /** The newest N (still returned oldest first). */
  limit?: number;
  /** Keyset paging (oldest first, no `limit`): only rows after this one in (time, replica, seq) order, at most `page`. */
  after?: { time: string; replica: string; seq: number };
  page?: number;
}

export interface AppendRowsOptions {
  /**
   * Delete the replica's rows up to this seq in the same transaction: the rows carry an `audit.purged`
   * event whose retention purge removed those records from the chain, so the index lets them go too.
   */
  pruneThrough?: number;
}

export interface AuditChainStore {
  /** Register (or refresh) a replica's chain and signing key; returns what the store now holds. */
  registerChain(c: { replica: string; keyId: string; publicKey: string; host: string }): Promise<AuditChainInfo>;
  chains(): Promise<AuditChainInfo[]>;
  chain(replica: string): Promise<AuditChainInfo | undefined>;
  /**
   * Add records after the indexed head in one transaction. Refused (returns the current head) when the
   * head is not `expected` any more (another process indexed or reset meanwhile).
   */
  appendRows(replica: string, expected: { seq: number; hash: string }, rows: IndexedAuditRow[], chainSeq: number, opts?: AppendRowsOptions): Promise<{ ok: boolean; seq: number; hash: string }>;
  /** Record that the replica's chain diverged from the index at `seq`: it stops being indexed until reindexed. */
  markDiverged(replica: string, seq: number, problem: string): Promise<void>;
  /** Drop every indexed row of the replica and its divergence mark (reindex from its chain follows). */
  resetChain(replica: string): Promise<void>;
  /**
   * Move every indexed row of the replica, with its keys and head, to a new chain `archiveAs`, then reset the
   * replica as resetChain does: rows its log no longer holds stay in the index, verifiable. Returns the rows moved.
   */
  archiveChain(replica: string, archiveAs: string): Promise<number>;
  /** Rows of one replica with seq > afterSeq, in seq order, at most `limit`. */
  rows(replica: string, afterSeq: number, limit: number): Promise<IndexedAuditRow[]>;
  /** Rows matching `q`, oldest first by event time (the newest `limit` when set). */
  search(q: SharedAuditQuery): Promise<IndexedAuditRow[]>;
}

/** A one-time approve/deny link as stored: the token's SHA-256 (hex), never the token. */
export interface LinkRow {
  hash: string;
  request_id: string;
  decision: 'approve' | 'deny';
  created_at: string;
  /** Epoch ms. */
  expires_at: number;
  used_at: string | null;
  used_by: string | null;
}

/** Where approval links are kept (src/access/links.ts holds the token logic on top of it). */
export interface LinkRecords {
  /** The HMAC key of link tokens: created once, the same for every process using this store. */
  key(): Promise<Buffer>;
  add(row: Omit<LinkRow, 'used_at' | 'used_by'>): Promise<void>;
  get(hash: string): Promise<LinkRow | undefined>;
  /** Take the link for `by` if unused and not expired at `now` (epoch ms): true for exactly one caller. */
  claim(hash: string, by: string, now: number): Promise<boolean>;
  /** Hand back a link `by` claimed. */
  release(hash: string, by: string): Promise<void>;
  close(): Promise<void>;
}

export interface OutboxItem {
  id: number;
  notifier: string;
  payload: unknown;
  created_at: string;
  attempts: number;
  /** Epoch ms. */
  next_at: number;
  last_error: string | null;
}

export interface FiringRow {
  id: string;
  rule: string;
  time: string;
  data: unknown;
}

/** A notifier's head item, held by one dispatcher until it says how the delivery went. */
export interface OutboxClaim {
  item: OutboxItem;
  /** The receiver accepted it: remove it. */
  delivered(): Promise<void>;
  /** Count the attempt; retry at `nextAt` (epoch ms), or keep it as a dead letter. */
  failed(error: string, nextAt: number, dead: boolean): Promise<void>;
}

/**
 * The durable outbox of notifications and the recent alert firings. Each notifier's items are delivered
 * strictly in order, one at a time: only the claimed head goes out, and nothing behind it before it is done.
 */
export interface OutboxStore {
  /** Several processes deliver from it (PostgreSQL): a dispatcher must look again now and then for work others queued. */
  readonly shared: boolean;
  add(notifier: string, payload: unknown, now?: number): Promise<void>;
  /**
   * The notifier's oldest pending item if it is due, claimed for `holdMs` at most (time to deliver it);
   * 'held' when another process holds it, undefined when nothing is due.
   */
  claim(notifier: string, holdMs: number, now?: number): Promise<OutboxClaim | 'held' | undefined>;
  /** Earliest next_at of the oldest pending items of these notifiers (the ones a dispatcher may claim), or undefined. */
  nextDue(notifiers: string[]): Promise<number | undefined>;
  /** Pending (not dead) items per notifier. */
  depth(): Promise<Record<string, number>>;
  deadLetters(): Promise<OutboxItem[]>;
  pending(): Promise<OutboxItem[]>;
  /** A firing and one item per notifier, in one transaction: all of them or none. */
  enqueueFiring(id: string, rule: string, time: string, data: unknown, notifiers: string[], now?: number): Promise<void>;
  recentFirings(limit?: number): Promise<FiringRow[]>;
  close(): Promise<void>;
}

/** A live session as a replica publishes it: `view` is its API view (src/sessions/control.ts sessionView). */
export interface PublishedSession {
  id: string;
  replica: string;
  view: { user: string } & Record<string, unknown>;
}

/**
 * The live sessions of every replica on a shared store (src/sessions/shared-registry.ts). Each replica
 * holds a lease it renews with every publish; sessions of a replica whose lease ran out are not listed.
 */
export interface LiveSessionStore {
  /**
   * Renew `replica`'s lease for `leaseMs` (database clock), add (or replace) and remove its published
   * sessions; returns the kills asked of it and not done yet.
   */
  publish(replica: string, leaseMs: number, upsert: { id: string; view: Record<string, unknown> }[], remove: string[]): Promise<{ id: string; message: string }[]>;
  /** Forget every session `replica` published (at its start: what an earlier run left; at a clean stop). */
  forget(replica: string): Promise<void>;
  /** Drop replicas (and their sessions) whose lease ended more than `afterMs` ago. */
  sweep(afterMs: number): Promise<void>;
  /** Sessions of every replica whose lease is current. */
  list(): Promise<PublishedSession[]>;
  /** One session, if a replica with a current lease holds it. */
  find(id: string): Promise<PublishedSession | undefined>;
  /** Ask the replica holding `id` to end it with `message`; false when no replica with a current lease holds it. */
  requestKill(id: string, message: string): Promise<boolean>;
  /** Kills asked of `replica` and not done yet. */
  pendingKills(replica: string): Promise<{ id: string; message: string }[]>;
  /** Hear (NOTIFY) that a kill was asked of `replica`. */
  onKillRequested(fn: (replica: string) => void): void;
}
