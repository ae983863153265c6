import { VigilError } from '../errors.ts';
import type { GatewayServices } from '../gateway/services.ts';
import type { TargetConfig } from '../config/schema.ts';
import { SYSTEM_ACTOR, LOCAL_SOURCE, type AuditEvent } from '../events/envelope.ts';
import type { EndReason } from '../sessions/registry.ts';
import { accountName, databaseRoles, sessionPassword, type UserProvisioning } from './config.ts';

/**
 * What a protocol provides to manage engineers' backend accounts (proxies/<protocol>/provisioning.ts). Each
 * call opens its own connection with the target's admin credential and closes it. Implementations never
 * send the session password to the server in clear (a verifier or hash), so no server log holds it.
 */
export interface AccountDriver {
  /** Longest account name the server accepts. */
  readonly maxNameLength: number;
  /**
   * Create the account (or adopt one vigil created before; refuse any other), allow it to log in with
   * `password`, and make its database roles exactly `roles`.
   */
  open(account: string, roles: readonly string[], password: string): Promise<{ created: boolean; granted: string[]; revoked: string[] }>;
  /** Lock the account, revoke all its database roles, end all its backend connections. */
  close(account: string): Promise<{ revoked: string[]; killed: number }>;
  /** End one backend connection of the account (by the server's id for it). */
  kill(account: string, backendId: number): Promise<boolean>;
  /** Make the account's database roles exactly `roles` (another session of the account still runs). */
  sync(account: string, roles: readonly string[]): Promise<{ granted: string[]; revoked: string[] }>;
  /**
   * Accounts vigil manages on this target that can log in right now. With no session live (gateway start)
   * these were left open by a gateway that stopped without locking them (killed, host lost).
   */
  listOpen(): Promise<string[]>;
  /**
   * Run `fn` holding the server-side lock of `account` (held by an admin connection, so a gateway that dies
   * lets it go). Other gateway processes (gateway.workers) lease the same account: without it one sets
   * a password between another's setting its own and logging in with it, or both create the account.
   * Throws, without running `fn`, when the lock cannot be had within a bound.
   */
  exclusive<T>(account: string, fn: () => Promise<T>): Promise<T>;
}

/** Provisioning failed: the session is refused. The message names the step, never a secret. */
export class ProvisioningError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('VIGIL_PROVISIONING_FAILED', message, options);
  }
}

export interface LeaseRequest {
  target: TargetConfig;
  sessionId: string;
  /** vigil roles the session's admission relied on (decision.roles). */
  roles: readonly string[];
  user: string;
  eventBase: Pick<AuditEvent, 'actor' | 'source' | 'target' | 'session_id'>;
  driver: AccountDriver;
}

/** The backend credential of one session. The password exists only here and in the login exchange. */
export interface AccountCredential {
  user: string;
  password: string;
}

export interface Lease {
  readonly account: string;
  /** Database roles this session's vigil roles map to. */
  readonly roles: readonly string[];
  /** The server's id of this session's backend connection (Postgres pid, MySQL thread id), for a precise kill. */
  backendId?: number;
}

/**
 * What the other gateway processes (gateway.workers > 1) hold of an engineer's account: whether a live
 * session there uses it, and the database roles their leases need (the account must keep those too).
 */
export interface ElsewhereLeases {
  held: boolean;
  roles: readonly string[];
}

/** A lease being made here, told to the primary as it asks (it answers the other workers with its roles). */
export interface LeaseAnnouncement {
  account: string;
  roles: readonly string[];
}

/** Reasons a session ends because its access was withdrawn: its backend connection is killed at the server. */
const WITHDRAWN: ReadonlySet<EndReason> = new Set(['revoked', 'locked', 'grant_expired', 'cert_expired']);

interface AccountState {
  account: string;
  /** Sessions currently using the account (refcount): it is locked when the last one ends. */
  leases: Map<string, Lease>;
  /** Operations on one account run one at a time, in order (open, close, kill). */
  queue: Promise<unknown>;
  base: LeaseRequest['eventBase'];
  driver: AccountDriver;
}

/**
 * Per-engineer backend accounts for targets with `user_provisioning`. A session leases the account: the
 * first lease creates or unlocks it and syncs its roles; every lease sets a fresh password and logs in
 * with it (under the account's queue, so a concurrent lease cannot change it in between). When a lease
 * ends and was the last, the account is locked, its roles revoked and its connections killed. A session
 * cut because access was withdrawn also has its own backend connection killed at once.
 */
export class BackendAccounts {
  private readonly accounts = new Map<string, AccountState>();
  private readonly bySession = new Map<string, { key: string; lease: Lease }>();
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Start sweeps begun in this process (sweepsDone waits for them). */
  private readonly sweeps = new Set<Promise<void>>();
  /** Each target's driver, as its listener or a lease handed it (to lock what a dead worker left open). */
  private readonly drivers = new Map<string, AccountDriver>();
  /**
   * False in a gateway worker that is not the gateway's one sweeper (src/gateway/workers/worker.ts): its
   * sweep would see the accounts other workers lease as open without a lease here, and lock them.
   */
  private sweepAtStart = true;
  /**
   * gateway.workers > 1 (src/gateway/workers/worker.ts): whether a live session in another worker process
   * uses the account, and the database roles those sessions need. Asked under the account's server-side
   * lock before every role change: the account holds the union of every process's leases, and its last
   * session here leaves it open (narrowed to the others' roles) for that worker to lock after its own.
   * `lease` tells the primary of a lease made here, so that the other workers count its roles too.
   */
  leasedElsewhere?: (base: LeaseRequest['eventBase'], lease?: LeaseAnnouncement) => Promise<ElsewhereLeases>;

  constructor(private readonly services: Pick<GatewayServices, 'events' | 'log' | 'sessions'>) {}

  /**
   * Provision the session's account and run `login` with its credential. Throws ProvisioningError (after
   * recording db.user.provisioning_failed) when the account cannot be prepared; errors of `login` pass through.
   */
  async lease<T>(req: LeaseRequest, login: (cred: AccountCredential) => Promise<T>): Promise<{ value: T; lease: Lease }> {
    const cfg = req.target.user_provisioning as UserProvisioning;
    const account = accountName(cfg.name_pattern, req.user, req.driver.maxNameLength);
    const key = `${req.target.protocol}/${req.target.name}/${account}`;
    let st = this.accounts.get(key);
    if (!st) this.accounts.set(key, (st = { account, leases: new Map(), queue: Promise.resolve(), base: req.eventBase, driver: req.driver }));
    const state = st;
    const roles = databaseRoles(cfg.roles_map, req.roles);
    this.drivers.set(targetKey(req.target), req.driver);
    return this.serial(state, () => this.exclusively(req.driver, state.account, { step: 'open' }, req.eventBase, async () => {
      const password = sessionPassword();
      // One account per engineer: while sessions overlap (in any worker process) it holds the union of their roles.
      const elsewhere = await this.askElsewhere(req.eventBase, { account, roles });
      const union = unionOf([...[...state.leases.values()].map((l) => l.roles), roles, elsewhere.roles]);
      let opened: Awaited<ReturnType<AccountDriver['open']>>;
      try {
        opened = await req.driver.open(account, union, password);
      } catch (e) {
        const why = (e as Error).message;
        this.services.log.warn({ err: why, account, target: req.target.name }, 'backend account provisioning failed');
        await this.emit('db.user.provisioning_failed', 'failure', req.eventBase, { account, step: 'open', error: why });
        throw new ProvisioningError(`could not prepare your database account: ${why}`, { cause: e });
      }
      const lease: Lease = { account, roles };
      state.leases.set(req.sessionId, lease);
      state.base = req.eventBase;
      this.bySession.set(req.sessionId, { key, lease });
      try {
        await this.emit('db.user.provisioned', 'success', req.eventBase, { account, created: opened.created, sessions: state.leases.size });
        await this.emit('db.user.granted', 'success', req.eventBase, { account, roles: union, session_roles: roles, newly_granted: opened.granted, vigil_roles: [...req.roles] });
        if (opened.revoked.length > 0) await this.emit('db.user.revoked', 'success', req.eventBase, { account, roles: opened.revoked, reason: 'not_mapped' });
        return { value: await login({ user: account, password }), lease };
      } catch (e) {
        // Logged in or not, this session will not use the account: give the lease back (locks if last).
        this.bySession.delete(req.sessionId);
        state.leases.delete(req.sessionId);
        if (state.leases.size === 0) await this.reconcileNow(state, 'login_failed', state.base);
        throw e;
      }
    })).then((r) => {
      // Cut while it was being provisioned: the registry's end came before the lease existed.
      const handle = this.services.sessions.get(req.sessionId);
      if (!handle || handle.endReason) this.release(req.sessionId, handle?.endReason ?? 'client_closed');
      return r;
    });
  }

  /** The session ended (or is being cut): give its lease back. Idempotent. */
  release(sessionId: string, reason: EndReason): void {
    const held = this.bySession.get(sessionId);
    if (!held) return;
    this.bySession.delete(sessionId);
    const state = this.accounts.get(held.key)!;
    state.leases.delete(sessionId);
    // Access withdrawn: this session's backend connection goes now, not when the server notices (the
    // account may stay open for other sessions).
    const id = WITHDRAWN.has(reason) ? held.lease.backendId : undefined;
    this.track(
      this.serial(state, () =>
        this.exclusively(state.driver, state.account, { step: state.leases.size === 0 ? 'lock' : 'sync', reason }, state.base, async () => {
          const locked = await this.reconcileNow(state, reason, state.base);
          // Locked: its connections were all killed with it.
          if (id === undefined || locked) return;
          const killed = await state.driver.kill(state.account, id).catch(() => false);
          await this.emit('db.user.locked', 'success', state.base, { account: state.account, reason, locked: false, killed_connections: killed ? 1 : 0, backend_id: id });
        }),
      ).catch(() => {}),
    );
  }

  /**
   * A gateway worker died (SIGKILL, killed as hung) with sessions that leased `account`: it could not lock
   * it. Unless a live session (here or in another worker) still leases it, lock it now if it is open; else
   * narrow it to the roles those sessions need (the dead worker's sessions may have needed more). Recorded
   * like a last session's end, with `reason` and `details` (the dead worker).
   */
  lockOrphaned(target: { name: string; protocol: string }, account: string, reason: string, base: LeaseRequest['eventBase'], details: Record<string, unknown> = {}): Promise<void> {
    const driver = this.drivers.get(targetKey(target));
    if (!driver) {
      // The target is gone from the configuration (or this process never listened for it): nothing here can reach it.
      this.services.log.error({ account, target: target.name }, 'could not lock a backend account a dead gateway worker left open: no driver for its target here');
      return this.emit('db.user.provisioning_failed', 'failure', base, { account, step: 'lock', reason, error: `no account driver for target ${target.name} in this process`, ...details });
    }
    const key = `${target.protocol}/${target.name}/${account}`;
    let st = this.accounts.get(key);
    if (!st) this.accounts.set(key, (st = { account, leases: new Map(), queue: Promise.resolve(), base, driver }));
    const state = st;
    const run = this.serial(state, () =>
      this.exclusively(driver, account, { step: 'lock', reason }, base, () => this.reconcileNow(state, reason, base, { onlyIfOpen: true, details })),
    ).then(() => {}, () => {});
    this.track(run);
    return run;
  }

  /**
   * Lock every account of `target` that is open without a live lease: at gateway start these are what a
   * gateway that died mid-session left behind (still able to log in, still holding their roles, maybe
   * still connected). Each is locked like a last session's end, with reason `gateway_start`.
   */
  sweep(target: TargetConfig, driver: AccountDriver): Promise<void> {
    this.drivers.set(targetKey(target), driver);
    if (!this.sweepAtStart) return Promise.resolve();
    const base = { actor: SYSTEM_ACTOR as never, source: LOCAL_SOURCE, target: { name: target.name, protocol: target.protocol } };
    const run = (async () => {
      let open: string[];
      try {
        open = await driver.listOpen();
      } catch (e) {
        const why = (e as Error).message;
        this.services.log.error({ err: why, target: target.name }, 'could not list backend accounts to lock at start');
        await this.emit('db.user.provisioning_failed', 'failure', base, { step: 'sweep', reason: 'gateway_start', error: why });
        return;
      }
      for (const account of open) {
        const key = `${target.protocol}/${target.name}/${account}`;
        let st = this.accounts.get(key);
        if (!st) this.accounts.set(key, (st = { account, leases: new Map(), queue: Promise.resolve(), base, driver }));
        const state = st;
        await this.serial(state, () => (state.leases.size === 0 ? this.lockNow(state, 'gateway_start') : Promise.resolve()));
      }
    })();
    this.track(run);
    this.sweeps.add(run);
    return run;
  }

  /**
   * This process's sweeps are not the start sweep: with gateway.workers > 1 one worker sweeps, once per
   * gateway start, before the others listen; the others (and every replacement of a dead worker) skip it.
   */
  skipStartSweeps(): void {
    this.sweepAtStart = false;
  }

  /** Resolves when every sweep begun so far in this process has finished (the others then listen). */
  async sweepsDone(): Promise<void> {
    await Promise.allSettled([...this.sweeps]);
  }

  /** Resolves when no account operation is running (gateway shutdown waits for the locks). */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /**
   * Make the account hold exactly what its live leases need, for a caller that holds the account's
   * server-side lock: the union of the roles of its sessions here and in every other worker process, or
   * locked when there are none. Asked under that lock: another process's session that leases the account
   * meanwhile told the primary before it took that lock, so it is seen here, and is never locked out
   * between its open and its login nor cut right after it, nor stripped of the roles it logged in for.
   * `onlyIfOpen`: lock only an account that can log in (a dead worker may have locked it already).
   */
  private async reconcileNow(state: AccountState, reason: string, base: LeaseRequest['eventBase'], opts: { onlyIfOpen?: boolean; details?: Record<string, unknown> } = {}): Promise<boolean> {
    const elsewhere = await this.askElsewhere(base);
    if (state.leases.size === 0 && !elsewhere.held) {
      if (opts.onlyIfOpen) {
        const open = await state.driver.listOpen().catch(() => [state.account]);
        if (!open.includes(state.account)) return true;
      }
      await this.lockNow(state, reason, base, opts.details);
      return true;
    }
    try {
      const r = await state.driver.sync(state.account, unionOf([...[...state.leases.values()].map((l) => l.roles), elsewhere.roles]));
      if (r.revoked.length > 0) await this.emit('db.user.revoked', 'success', base, { account: state.account, roles: r.revoked, reason, ...opts.details });
    } catch (e) {
      await this.emit('db.user.provisioning_failed', 'failure', base, { account: state.account, step: 'sync', reason, error: (e as Error).message, ...opts.details });
    }
    return false;
  }

  /** What other worker processes hold of the account; nothing without workers or without an answer (fail closed). */
  private async askElsewhere(base: LeaseRequest['eventBase'], lease?: LeaseAnnouncement): Promise<ElsewhereLeases> {
    if (!this.leasedElsewhere) return NOT_ELSEWHERE;
    return this.leasedElsewhere(base, lease).catch(() => NOT_ELSEWHERE);
  }

  /**
   * Run `op` under the account's server-side lock (AccountDriver.exclusive). Not getting the lock is a
   * provisioning failure of `what.step`, recorded; errors of `op` itself pass through.
   */
  private async exclusively<T>(driver: AccountDriver, account: string, what: { step: string; reason?: string }, base: LeaseRequest['eventBase'], op: () => Promise<T>): Promise<T> {
    let started = false;
    try {
      return await driver.exclusive(account, () => ((started = true), op()));
    } catch (e) {
      if (started) throw e;
      const why = (e as Error).message;
      this.services.log.warn({ err: why, account }, 'could not take the lock of a backend account');
      await this.emit('db.user.provisioning_failed', 'failure', base, { account, ...what, error: why });
      throw new ProvisioningError(`could not prepare your database account: ${why}`, { cause: e });
    }
  }

  private async lockNow(state: AccountState, reason: string, base = state.base, details: Record<string, unknown> = {}): Promise<void> {
    try {
      const r = await state.driver.close(state.account);
      if (r.revoked.length > 0) await this.emit('db.user.revoked', 'success', base, { account: state.account, roles: r.revoked, reason, ...details });
      await this.emit('db.user.locked', 'success', base, { account: state.account, reason, locked: true, killed_connections: r.killed, ...details });
    } catch (e) {
      const why = (e as Error).message;
      this.services.log.error({ err: why, account: state.account }, 'could not lock a backend account');
      await this.emit('db.user.provisioning_failed', 'failure', base, { account: state.account, step: 'lock', reason, error: why, ...details });
    }
  }

  private serial<T>(state: AccountState, op: () => Promise<T>): Promise<T> {
    const run = state.queue.then(op, op);
    state.queue = run.catch(() => {});
    return run;
  }

  private track(p: Promise<unknown>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private async emit(type: 'db.user.provisioned' | 'db.user.granted' | 'db.user.revoked' | 'db.user.locked' | 'db.user.provisioning_failed', outcome: 'success' | 'failure', base: LeaseRequest['eventBase'], details: Record<string, unknown>): Promise<void> {
    await this.services.events.emit({ type, outcome, ...base, details });
  }
}

const NOT_ELSEWHERE: ElsewhereLeases = { held: false, roles: [] };

function targetKey(target: { name: string; protocol: string }): string {
  return `${target.protocol}/${target.name}`;
}

function unionOf(lists: readonly (readonly string[])[]): string[] {
  return [...new Set(lists.flat())].sort();
}

const byRegistry = new WeakMap<object, BackendAccounts>();

/**
 * The gateway's one BackendAccounts, created on first use and wired to the session registry: a session
 * ending for any reason (closed, cut on revocation, lock, grant or certificate expiry, shutdown) gives its
 * lease back at once.
 */
export function backendAccounts(services: Pick<GatewayServices, 'events' | 'log' | 'sessions'>): BackendAccounts {
  let a = byRegistry.get(services.sessions);
  if (!a) {
    const created = new BackendAccounts(services);
    services.sessions.onEnd((id, reason) => created.release(id, reason));
    byRegistry.set(services.sessions, (a = created));
  }
  return a;
}

/** Wait for account operations in flight, if any account was ever provisioned (gateway shutdown). */
export function settleBackendAccounts(services: Pick<GatewayServices, 'sessions'>): Promise<void> {
  return byRegistry.get(services.sessions)?.settle() ?? Promise.resolve();
}
