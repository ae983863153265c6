/**
 * Shared gateway state: issued certificates, revocations, access requests/grants and locks. The default
 * implementation is an embedded SQLite database in the data directory (several processes — the gateway
 * and CLI invocations — may use it at once); a PostgreSQL implementation can follow for replicas.
 * Callers use only this interface, never file paths.
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

  putHold(rec: HoldRecord): Promise<void>;
  getHold(id: string): Promise<HoldRecord | undefined>;
  /** Every hold, oldest first (released ones too: filter on `released`). */
  listHolds(): Promise<HoldRecord[]>;

  /**
   * Reload caches if another process changed anything; returns true when something changed. The gateway
   * calls this every ~250 ms so CLI changes are seen within a second.
   */
  refresh(): Promise<boolean>;
  close(): Promise<void>;
}
