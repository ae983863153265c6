import { newId } from '../ids.ts';
import type { VigilConfig, TargetConfig } from '../config/schema.ts';
import type { AccessRecord, AccessState, LockRecord, StateStore } from '../store/types.ts';
import type { EventBus } from '../events/bus.ts';
import type { AuditEvent } from '../events/envelope.ts';
import type { EventType } from '../events/catalog.ts';
import { SYSTEM_ACTOR } from '../events/envelope.ts';
import { AuditUnavailableError, VigilError } from '../errors.ts';
import type { IdentityService, IssuedCredentials, Principal } from '../identity/types.ts';
import { foldUserName, isUserName, knownSpellings, USER_NAME_RULE } from '../identity/user-name.ts';
import { grantIsLive } from '../authz/index.ts';
import type { RoleConfig } from '../authz/config.ts';
import { hasAnyRole, isRequestable, roleReachesTarget } from '../authz/policy.ts';
import { AccessRefusedError, refused } from './errors.ts';

/**
 * Who is acting, and what they hold. Through the API this comes from the caller's verified client
 * certificate. On the local CLI (an operator on the gateway host with access to the data dir) the name is
 * `--by`, the roles are `--by-roles` or `access.local_roles` from config, and `local` is set: such an
 * operator can rewrite the state database anyway, so lock/unlock/revoke count as admin actions, but the
 * four-eyes rules (approver roles, no self-approval) still apply so that the record stays honest.
 */
export interface Actor {
  user: string;
  roles: string[];
  certSerial?: string;
  source: AuditEvent['source'];
  local?: boolean;
  /** The limits of the credential the actor proved itself with (the API's client certificate); none for `local`. */
  credential?: CallerCredential;
}

/** What a caller's credential is limited to: whatever it obtains (a grant certificate) may never be worth more. */
export interface CallerCredential {
  notAfter: Date;
  /** Address blocks it is bound to. */
  sourceAddresses?: string[];
  /** Issued with a forced command: it may run that one command, never a shell. */
  commandRestricted?: boolean;
}

export function callerCredential(p: Principal): CallerCredential {
  return {
    notAfter: p.notAfter,
    ...(p.sourceAddresses ? { sourceAddresses: [...p.sourceAddresses] } : {}),
    ...(p.commandRestricted || p.forceCommand !== undefined ? { commandRestricted: true } : {}),
  };
}

export interface RequestInput {
  /** Whose access; defaults to the actor. Only admins may request for someone else. */
  user?: string;
  role: string;
  /** Narrow the grant to these targets (empty = everything the role reaches). */
  targets?: string[];
  reason: string;
  /** Grant lifetime once approved; defaults to the smaller of 1 h and the role's max TTL. */
  ttlMs?: number;
  /** Self-grant as an on-call user (no approval). */
  breakGlass?: boolean;
}

export interface AccessServiceDeps {
  config: VigilConfig;
  store: StateStore;
  events: EventBus;
  /** Needed only to issue certificates for grants. */
  identity?: IdentityService;
  /** Clock, for tests. */
  now?: () => number;
}

const DEFAULT_TTL_MS = 3_600_000;

/** `90s`, `30m`, `1h30m` — for messages. */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return ms >= 3_600_000 ? `${Math.floor(ms / 3_600_000)}h${(ms % 3_600_000) / 60_000}m` : `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/**
 * The just-in-time access lifecycle: request → approve/deny → active grant → revoke/expire, plus
 * break-glass and user locks. The API and the CLI both call this; every state change writes its audit
 * event, and every refusal throws an AccessRefusedError with a stable code after writing `access.refused`.
 */
export class AccessService {
  private readonly roles: Map<string, RoleConfig>;
  private readonly targets: TargetConfig[];
  private readonly now: () => number;

  constructor(private readonly deps: AccessServiceDeps) {
    this.roles = new Map(deps.config.roles.map((r) => [r.name, r]));
    this.targets = deps.config.targets;
    this.now = deps.now ?? Date.now;
  }

  private get policy() {
    return this.deps.config.access;
  }

  isAdmin(actor: Actor): boolean {
    return actor.local === true || hasAnyRole(actor.roles, this.policy.admin_roles);
  }

  /** Admins and auditors see every request and session. */
  seesEverything(actor: Actor): boolean {
    return this.isAdmin(actor) || hasAnyRole(actor.roles, this.policy.auditor_roles);
  }

  private isApproverOf(actor: Actor, role: string): boolean {
    const r = this.roles.get(role);
    return !!r && hasAnyRole(actor.roles, r.approvers);
  }

  // ---- requests -------------------------------------------------------------------------------------

  async request(actor: Actor, input: RequestInput): Promise<AccessRecord> {
    const action = input.breakGlass ? 'break_glass' : 'request';
    const named = input.user ?? actor.user;
    const subject = { user: named, role: input.role, targets: input.targets ?? [] };
    return this.refusing(actor, action, `user/${named}`, subject, async () => {
      this.ensureAuditable();
      const reason = requireReason(input.reason, input.breakGlass ? 'use break-glass access' : 'request access');
      // A name given for someone else is checked like one a certificate names (the actor's own already was),
      // and means the user vigil knows by it: grants are matched by exact name, so a grant for `Bob` would
      // never reach the sessions of `bob`.
      if (input.user !== undefined) requireUserName(input.user);
      const user = input.user !== undefined ? await this.spellingOf(input.user) : actor.user;
      if (input.breakGlass) {
        if (!this.policy.break_glass) throw refused.breakGlassDisabled();
        if (user !== actor.user) throw refused.breakGlassForOthers();
        if (!this.policy.on_call.includes(actor.user)) throw refused.notOnCall();
      } else if (user !== actor.user && !this.isAdmin(actor)) {
        throw refused.forOthers();
      }
      const role = this.roles.get(input.role);
      if (!role) throw refused.unknownRole(input.role);
      if (!isRequestable(role)) throw refused.notRequestable(role.name);
      const ttlMs = input.ttlMs ?? Math.min(DEFAULT_TTL_MS, role.max_ttl);
      if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw refused.badTtl();
      if (ttlMs > role.max_ttl) throw refused.ttlTooLong(role.name, formatDuration(role.max_ttl));
      const targets = [...new Set(input.targets ?? [])];
      for (const name of targets) {
        const matching = this.targets.filter((t) => t.name === name);
        if (matching.length === 0) throw refused.unknownTarget(name);
        if (!matching.some((t) => roleReachesTarget(role, t))) throw refused.targetNotInRole(name, role.name);
      }

      const now = this.now();
      const rec: AccessRecord = {
        id: newId(now),
        user,
        requester: actor.user,
        beneficiary: user,
        role: role.name,
        targets,
        reason,
        ttlMs,
        state: 'pending',
        createdAt: iso(now),
        requestExpiresAt: iso(now + this.policy.request_ttl),
        approvals: [],
        breakGlass: false,
      };
      if (input.breakGlass) {
        Object.assign(rec, { state: 'active', breakGlass: true, grantedAt: iso(now), expiresAt: iso(now + ttlMs), decidedBy: actor.user });
      }
      await this.deps.store.createAccess(rec);
      if (input.breakGlass) {
        await this.emitOrUndo(rec, 'access.approved', actor, { ...describe(rec), break_glass: true, approvals: [] }, async () => {
          await this.deps.store.updateAccess(rec.id, (cur) => ({ ...cur, state: 'revoked', decisionReason: 'audit log unavailable' }));
        });
      } else {
        await this.emit('access.requested', actor, rec, { ...describe(rec), request_expires_at: rec.requestExpiresAt, approvals_required: role.approvals_required });
      }
      return rec;
    });
  }

  /** Add the actor's approval; the request becomes an active grant once it has `approvals_required` approvals. */
  async approve(actor: Actor, id: string, opts: { comment?: string } = {}): Promise<AccessRecord> {
    return this.refusing(actor, 'approve', `grant/${id}`, { request_id: id }, async () => {
      this.ensureAuditable();
      if (opts.comment !== undefined && !plainText(opts.comment)) throw refused.badText('comment');
      const before = await this.mustGet(id);
      const role = this.roles.get(before.role);
      let final = false;
      const now = this.now();
      const rec = await this.deps.store.updateAccess(id, (cur) => {
        this.checkDecidable(actor, cur, now);
        if (!role) throw refused.unknownRole(cur.role);
        // One person, one approval: `Dave` and `dave` are one approver (isParty folds names the same way).
        if (cur.approvals.some((a) => foldUserName(a.by) === foldUserName(actor.user))) throw refused.alreadyApproved(id);
        const approvals = [...cur.approvals, { by: actor.user, time: iso(now), ...(opts.comment ? { comment: opts.comment } : {}) }];
        final = approvals.length >= role.approvals_required;
        if (!final) return { ...cur, approvals };
        return { ...cur, approvals, state: 'active', grantedAt: iso(now), expiresAt: iso(now + cur.ttlMs), decidedBy: actor.user };
      });
      const details = { ...describe(rec), comment: opts.comment, approvals: rec.approvals.map((a) => a.by), approvals_required: role!.approvals_required };
      if (final) {
        await this.emitOrUndo(rec, 'access.approved', actor, { ...details, break_glass: false }, async () => {
          // Take back this approval only while the grant is still the one it made: a copy read before it
          // would also undo what others did meanwhile (another replica's revocation would be revived).
          await this.deps.store.updateAccess(id, (cur) =>
            cur.state === 'active' && cur.decidedBy === actor.user && cur.grantedAt === rec.grantedAt
              ? { ...cur, state: 'pending', approvals: cur.approvals.filter((a) => a.by !== actor.user), grantedAt: undefined, expiresAt: undefined, decidedBy: undefined }
              : cur,
          );
        });
      } else {
        // An approval that was not recorded does not count (and the approver, told it failed, may approve again).
        const mine = rec.approvals.at(-1)!;
        await this.emitOrUndo(rec, 'access.approval', actor, details, async () => {
          await this.deps.store.updateAccess(id, (cur) =>
            cur.state === 'pending' ? { ...cur, approvals: cur.approvals.filter((a) => !(a.by === mine.by && a.time === mine.time)) } : cur,
          );
        });
      }
      return rec;
    });
  }

  async deny(actor: Actor, id: string, opts: { reason: string }): Promise<AccessRecord> {
    return this.refusing(actor, 'deny', `grant/${id}`, { request_id: id }, async () => {
      this.ensureAuditable();
      const reason = requireReason(opts.reason, 'deny a request');
      await this.mustGet(id);
      const now = this.now();
      const rec = await this.deps.store.updateAccess(id, (cur) => {
        this.checkDecidable(actor, cur, now);
        return { ...cur, state: 'denied', decidedBy: actor.user, decisionReason: reason };
      });
      // A denial that was not recorded does not stand: the request goes back to pending (the denier, told
      // it failed, may deny again), unless the record is no longer the denial this call made.
      await this.emitOrUndo(rec, 'access.denied', actor, { ...describe(rec), denial_reason: reason }, async () => {
        await this.deps.store.updateAccess(id, (cur) =>
          cur.state === 'denied' && cur.decidedBy === actor.user && cur.decisionReason === reason
            ? { ...cur, state: 'pending', decidedBy: undefined, decisionReason: undefined }
            : cur,
        );
      });
      return rec;
    });
  }

  /** Refusals shared by approve and deny, checked inside the atomic update so two deciders cannot race. */
  private checkDecidable(actor: Actor, cur: AccessRecord, now: number): void {
    if (cur.state === 'expired' && !cur.grantedAt) throw refused.requestExpired(cur.id);
    if (cur.state !== 'pending') throw refused.alreadyDecided(cur.id, cur.state);
    if (Date.parse(cur.requestExpiresAt) <= now) throw refused.requestExpired(cur.id);
    if (isParty(actor.user, cur)) throw refused.selfApproval();
    if (!this.isApproverOf(actor, cur.role)) throw refused.notApprover(cur.role);
  }

  /**
   * Whether `actor` may decide `rec` as an approver right now, without deciding it: the checks of approve
   * and deny, for callers that must refuse before they consume something (a one-time link).
   */
  mayDecide(actor: Actor, rec: AccessRecord): { ok: true } | { ok: false; error: AccessRefusedError } {
    try {
      this.checkDecidable(actor, rec, this.now());
      return { ok: true };
    } catch (e) {
      if (e instanceof AccessRefusedError) return { ok: false, error: e };
      throw e;
    }
  }

  // ---- grants ---------------------------------------------------------------------------------------

  /** End an active grant now. The holder, an approver of its role, or an admin may do it. */
  async revoke(actor: Actor, id: string, opts: { reason: string }): Promise<AccessRecord> {
    return this.refusing(actor, 'revoke', `grant/${id}`, { request_id: id }, async () => {
      this.ensureAuditable();
      const reason = requireReason(opts.reason, 'revoke a grant');
      const before = await this.mustGet(id);
      if (before.user !== actor.user && !this.isAdmin(actor) && !this.isApproverOf(actor, before.role)) throw refused.mayNotRevoke();
      const now = this.now();
      const rec = await this.deps.store.updateAccess(id, (cur) => {
        if (cur.state !== 'active' || Date.parse(cur.expiresAt ?? '') <= now) throw refused.notActive(id, cur.state === 'active' ? 'expired' : cur.state);
        return { ...cur, state: 'revoked', decidedBy: actor.user, decisionReason: reason };
      });
      await this.emit('access.revoked', actor, rec, { ...describe(rec), revoke_reason: reason });
      return rec;
    });
  }

  /**
   * Issue credentials bound to an active grant for its holder: they carry the granted role, never outlive
   * the grant, and stop working when it is revoked. Recorded as `cert.issued` with the grant id. Only the
   * holder may (or a local operator, who could issue them with `vigil cert issue --grant` anyway): the
   * private key is handed to the caller. They keep the limits of the caller's credential (its source
   * addresses, its end); a credential limited to one command gets none, since they would not be.
   */
  async issueGrantCertificate(actor: Actor, id: string, opts: { sshPublicKey?: string; ttlMs?: number } = {}): Promise<IssuedCredentials> {
    return this.refusing(actor, 'issue_certificate', `grant/${id}`, { request_id: id }, async () => {
      this.ensureAuditable();
      const identity = this.deps.identity;
      if (!identity) throw new VigilError('VIGIL_INTERNAL', 'certificate issuance is not available here');
      const g = await this.mustGet(id);
      if (g.user !== actor.user && !actor.local) throw refused.notHolder(id);
      if (!grantIsLive(g, this.now())) throw refused.notActive(id, g.state === 'active' ? 'expired' : g.state);
      const held = actor.local ? undefined : actor.credential;
      // Fail closed: without knowing the caller's limits, the new certificate could not keep them.
      if (!actor.local && !held) throw restrictedRefusal('VIGIL_CREDENTIAL_UNKNOWN', 'The credential you act with is not known here, so no certificate can be issued for it.');
      if (held?.commandRestricted) {
        throw restrictedRefusal('VIGIL_RESTRICTED_CREDENTIAL', 'Your certificate is limited to one command; it cannot obtain a grant certificate, which would not be. Ask with an unrestricted certificate.');
      }
      const extensions = this.roles.get(g.role)?.port_forwarding ? ['permit-pty', 'permit-port-forwarding'] : ['permit-pty'];
      let creds: IssuedCredentials;
      try {
        creds = await identity.issue({
          user: g.user,
          roles: [],
          grantId: id,
          sshPublicKey: opts.sshPublicKey,
          ttlMs: opts.ttlMs,
          extensions,
          // Never worth more than what asked for it: bound to the same addresses, ending no later.
          ...(held?.sourceAddresses ? { sourceAddresses: held.sourceAddresses } : {}),
          ...(held ? { notAfterLimit: held.notAfter } : {}),
        });
      } catch (e) {
        if (e instanceof VigilError) throw new AccessRefusedError(e.code, 'invalid', e.message);
        throw e;
      }
      await this.emitRaw('cert.issued', actor, `user/${g.user}`, {
        serial: creds.serial,
        user: g.user,
        roles: creds.roles,
        not_before: creds.notBefore.toISOString(),
        not_after: creds.notAfter.toISOString(),
        grant_id: id,
        kind: 'cert',
        extensions,
        source_addresses: held?.sourceAddresses,
      });
      return creds;
    });
  }

  /**
   * Write `access.expired` for every grant whose time has come, and `access.request_expired` for every
   * pending request nobody decided within its window, marking each expired. The claim is one atomic update
   * (state → expired, expiryRecorded → true), so of several processes sweeping at once exactly one writes
   * the event; what expired while nothing ran is caught up on the next sweep.
   */
  async expireDue(source: AuditEvent['source']): Promise<AccessRecord[]> {
    const now = this.now();
    const grants = await this.expireClaimed('active', (r) => !!r.expiresAt && Date.parse(r.expiresAt) <= now, source, (rec) => ({
      type: 'access.expired',
      details: { ...describe(rec), granted_at: rec.grantedAt, late_ms: Math.max(0, now - Date.parse(rec.expiresAt!)) },
    }));
    const requests = await this.expireClaimed('pending', (r) => Date.parse(r.requestExpiresAt) <= now, source, (rec) => ({
      type: 'access.request_expired',
      details: { ...describe(rec), request_expires_at: rec.requestExpiresAt, approvals: rec.approvals.map((a) => a.by) },
    }));
    return [...grants, ...requests];
  }

  private async expireClaimed(
    from: 'active' | 'pending',
    due: (r: AccessRecord) => boolean,
    source: AuditEvent['source'],
    event: (rec: AccessRecord) => { type: 'access.expired' | 'access.request_expired'; details: Record<string, unknown> },
  ): Promise<AccessRecord[]> {
    const candidates = (await this.deps.store.listAccess({ state: from })).filter((r) => !r.expiryRecorded && due(r));
    const expired: AccessRecord[] = [];
    for (const candidate of candidates) {
      let rec: AccessRecord;
      try {
        rec = await this.deps.store.updateAccess(candidate.id, (cur) => {
          if (cur.state !== from || cur.expiryRecorded) throw new NotDue();
          return { ...cur, state: 'expired', expiryRecorded: true };
        });
      } catch (e) {
        if (e instanceof NotDue) continue; // claimed by another process, or revoked/decided meanwhile
        throw e;
      }
      try {
        const { type, details } = event(rec);
        await this.deps.events.emit({ type, outcome: 'success', actor: { ...SYSTEM_ACTOR, roles: [...SYSTEM_ACTOR.roles] }, source, target: grantTarget(rec.id), details });
      } catch (e) {
        // Not recorded: hand the claim back so a later sweep writes it (the time has passed either way, so
        // the grant or request stays unusable meanwhile).
        await this.deps.store.updateAccess(rec.id, (cur) => ({ ...cur, state: from, expiryRecorded: false })).catch(() => {});
        throw e;
      }
      expired.push(rec);
    }
    return expired;
  }

  // ---- locks ----------------------------------------------------------------------------------------

  /**
   * Lock a user. Locks are checked by exact name, so a lock is put on the spelling the user's credentials
   * carry: `alice` typed for the user vigil knows as `Alice` locks `Alice` (and the event says so).
   */
  async lock(actor: Actor, input: { user: string; reason: string; ttlMs?: number }): Promise<LockRecord> {
    return this.refusing(actor, 'lock', `user/${input.user}`, { user: input.user }, async () => {
      this.ensureAuditable();
      if (!this.isAdmin(actor)) throw refused.notAdmin('lock users');
      const reason = requireReason(input.reason, 'lock a user');
      requireUserName(input.user);
      const user = await this.spellingOf(input.user);
      const now = this.now();
      const lock: LockRecord = { kind: 'user', name: user, reason, by: actor.user, createdAt: iso(now) };
      if (input.ttlMs !== undefined) lock.expiresAt = iso(now + input.ttlMs);
      await this.deps.store.putLock(lock);
      await this.emitRaw('lock.created', actor, `user/${user}`, { user, reason, expires_at: lock.expiresAt });
      return lock;
    });
  }

  async unlock(actor: Actor, name: string): Promise<void> {
    return this.refusing(actor, 'unlock', `user/${name}`, { user: name }, async () => {
      this.ensureAuditable();
      if (!this.isAdmin(actor)) throw refused.notAdmin('unlock users');
      // The lock as `lock` named it: its user's own spelling, whichever case the admin types now.
      const locked = (await this.deps.store.listLocks()).filter((l) => l.kind === 'user' && foldUserName(l.name) === foldUserName(name)).map((l) => l.name);
      const user = locked.includes(name) || locked.length !== 1 ? name : locked[0];
      if (!(await this.deps.store.deleteLock('user', user))) throw refused.noSuchLock(name);
      await this.emitRaw('lock.deleted', actor, `user/${user}`, { user });
    });
  }

  /**
   * The spelling of `name` that vigil's user has (user-name.ts: one per person): `name` itself when it is
   * known as typed or nobody has it yet, else the one known spelling. Several spellings known (from before
   * one was enforced) and none as typed: ambiguous, so refused rather than guessed.
   */
  private async spellingOf(name: string): Promise<string> {
    const known = await knownSpellings(this.deps.store, name);
    if (known.length === 0 || known.includes(name)) return name;
    if (known.length === 1) return known[0];
    throw new AccessRefusedError('VIGIL_BAD_USER', 'invalid', `${JSON.stringify(name)} differs only in case from several users (${known.join(', ')}); name one of them exactly.`);
  }

  async listLocks(actor: Actor): Promise<LockRecord[]> {
    if (!this.seesEverything(actor)) return (await this.deps.store.listLocks()).filter((l) => l.name === actor.user);
    return this.deps.store.listLocks();
  }

  // ---- reading --------------------------------------------------------------------------------------

  /** Requests and grants the actor may see: everything for admins/auditors, else their own and those they may approve. */
  async list(actor: Actor, filter: { state?: AccessState; user?: string } = {}): Promise<AccessRecord[]> {
    const all = await this.deps.store.listAccess(filter);
    return all.filter((r) => this.maySee(actor, r)).sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0));
  }

  /** One request; "not found" also for one the actor may not see. */
  async show(actor: Actor, id: string): Promise<AccessRecord> {
    const rec = await this.deps.store.getAccess(id);
    if (!rec || !this.maySee(actor, rec)) throw refused.notFound(id);
    return rec;
  }

  private maySee(actor: Actor, r: AccessRecord): boolean {
    return isParty(actor.user, r) || this.seesEverything(actor) || this.isApproverOf(actor, r.role);
  }

  // ---- plumbing -------------------------------------------------------------------------------------

  private async mustGet(id: string): Promise<AccessRecord> {
    const rec = await this.deps.store.getAccess(id);
    if (!rec) throw refused.notFound(id);
    return rec;
  }

  /** State changes happen only while they can be recorded (fail closed). */
  private ensureAuditable(): void {
    if (!this.deps.events.healthy) {
      throw new AuditUnavailableError(`the audit log cannot be written, so access changes are refused: ${this.deps.events.failure?.message ?? 'unknown failure'}`);
    }
  }

  /** Run an action; a policy refusal is recorded as `access.refused` naming the reason, then rethrown. */
  private async refusing<T>(actor: Actor, action: string, target: string, subject: Record<string, unknown>, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof AccessRefusedError) {
        await this.emitRaw('access.refused', actor, target, { action, code: e.code, reason: e.message, ...subject }, 'failure');
      }
      throw e;
    }
  }

  private emit(type: EventType, actor: Actor, rec: AccessRecord, details: Record<string, unknown>) {
    return this.emitRaw(type, actor, `grant/${rec.id}`, details);
  }

  /** Emit for a change that must not stand unrecorded: undo the change when the event cannot be written. */
  private async emitOrUndo(rec: AccessRecord, type: EventType, actor: Actor, details: Record<string, unknown>, undo: () => Promise<void>) {
    try {
      await this.emit(type, actor, rec, details);
    } catch (e) {
      await undo().catch(() => {});
      throw e;
    }
  }

  private emitRaw(type: EventType, actor: Actor, target: string, details: Record<string, unknown>, outcome: 'success' | 'failure' = 'success') {
    return this.deps.events.emit({
      type,
      outcome,
      actor: { user: actor.user, roles: actor.roles, ...(actor.certSerial ? { cert_serial: actor.certSerial } : {}) },
      source: actor.source,
      target: { name: target, protocol: 'vigil' },
      details: stripUndefined(details),
    });
  }
}

class NotDue extends Error {}

/**
 * Free text a person typed (reasons, comments): kept as written, but never control characters (NUL, escape
 * sequences that would rewrite a terminal showing the audit log, C1 controls such as U+009B CSI, bidi
 * overrides and isolates that show an approver the text reordered) or lone surrogates. PostgreSQL refuses NUL
 * and malformed Unicode outright, so without this check one replica's store would accept what another's
 * refuses; now both refuse it the same way, with a message the requester can act on.
 */
const NOT_PLAIN = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function plainText(s: string): boolean {
  return !NOT_PLAIN.test(s);
}

/** A user name given for someone else: plain text first (the same refusal as any free text), then a vigil user name. */
function requireUserName(name: string): void {
  if (!plainText(name)) throw refused.badText('user name');
  if (!isUserName(name)) throw new AccessRefusedError('VIGIL_BAD_USER', 'invalid', `${JSON.stringify(name)} is not a vigil user name: those are ${USER_NAME_RULE}.`);
}

/** Refusals of a grant certificate because of what the caller's own credential is limited to. */
function restrictedRefusal(code: 'VIGIL_RESTRICTED_CREDENTIAL' | 'VIGIL_CREDENTIAL_UNKNOWN', message: string): AccessRefusedError {
  return new AccessRefusedError(code, 'forbidden', message);
}

function requireReason(value: string | undefined, what: string): string {
  const reason = (value ?? '').trim();
  if (!reason) throw refused.reasonRequired(what);
  if (!plainText(reason)) throw refused.badText('reason');
  return reason;
}

/**
 * Four-eyes: the person who filed a request and the person it grants access to are both parties to it,
 * and neither may decide it (an admin filing for bob cannot approve it, and neither can bob). Names are
 * compared case- and width-folded: `Alice` (an IdP's spelling) is the same person as `alice` (a
 * certificate's), and must not approve alice's request.
 */
export function isParty(user: string, r: AccessRecord): boolean {
  const me = foldUserName(user);
  return [r.user, r.requester ?? r.user, r.beneficiary ?? r.user].some((party) => foldUserName(party) === me);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function grantTarget(id: string) {
  return { name: `grant/${id}`, protocol: 'vigil' };
}

/** The fields every access event carries about its request/grant. */
function describe(r: AccessRecord): Record<string, unknown> {
  return {
    request_id: r.id,
    user: r.user,
    requester: r.requester ?? r.user,
    beneficiary: r.beneficiary ?? r.user,
    role: r.role,
    targets: r.targets,
    reason: r.reason,
    ttl_ms: r.ttlMs,
    state: r.state,
    expires_at: r.expiresAt,
  };
}

function stripUndefined(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out;
}

export function createAccessService(deps: AccessServiceDeps): AccessService {
  return new AccessService(deps);
}
