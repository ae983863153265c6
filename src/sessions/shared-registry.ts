import type { Logger } from 'pino';
import { StoreUnavailableError } from '../errors.ts';
import type { LiveSessionStore, PublishedSession } from '../store/types.ts';
import { sessionView } from './view.ts';
import type { LiveSession, SessionRegistry } from './registry.ts';

/**
 * The live sessions of every replica on a shared (PostgreSQL) store. Each replica publishes its own
 * sessions (opened, closed, their counts) with a lease it renews every heartbeat, so any replica lists all
 * of them and a replica that died stops being listed once its lease runs out. A kill asked through another
 * replica is marked on the session's row and announced; the holder ends the session through its registry,
 * as a local kill would. Publishing happens off the hot path: opening or closing a session (adopted from a
 * cluster worker too) only schedules it, and a failed publish is logged and retried on the next heartbeat.
 * After a gap longer than the lease (store unreachable, event loop stalled) every session is published
 * again, since other replicas may have swept them as a dead replica's.
 */

export interface SharedSessionsOptions {
  registry: SessionRegistry;
  store: LiveSessionStore;
  /** This replica's id (DATA/replica-id). */
  replica: string;
  log: Logger;
  /** How often the lease is renewed and the published sessions brought up to date. */
  heartbeatMs?: number;
  /** How long a replica's sessions stay listed without a heartbeat (a few heartbeats). */
  leaseMs?: number;
}

/** A session in a listing: its API view and the replica holding it. */
export type ListedSession = ReturnType<typeof sessionView> & { replica: string };

/** How long a listing or a kill waits for the database before answering without it. */
const STORE_WAIT_MS = 3_000;
/** Replicas whose lease ended this many leases ago are removed with their sessions. */
const SWEEP_AFTER_LEASES = 10;
const SWEEP_EVERY_HEARTBEATS = 12;
const WARN_EVERY_MS = 30_000;

export class SharedSessions {
  readonly replica: string;
  private readonly heartbeatMs: number;
  private readonly leaseMs: number;
  /** What the store holds of this replica's sessions: id → the published view (JSON). */
  private published = new Map<string, string>();
  private timer?: NodeJS.Timeout;
  private flushing?: Promise<void>;
  private pending = false;
  private stopped = false;
  private beats = 0;
  private warnedAt = 0;
  /** When the newest publish that landed was started (this process's clock). */
  private lastPublishedFrom?: number;

  private constructor(private readonly opts: SharedSessionsOptions) {
    this.replica = opts.replica;
    this.heartbeatMs = opts.heartbeatMs ?? 5_000;
    this.leaseMs = opts.leaseMs ?? 3 * this.heartbeatMs;
  }

  /** Start publishing `registry`'s sessions; first forget what an earlier run of this replica left (a crash). */
  static async start(opts: SharedSessionsOptions): Promise<SharedSessions> {
    const shared = new SharedSessions(opts);
    await opts.store.forget(opts.replica).catch((e) => shared.warn(e, 'could not remove the live sessions an earlier run of this replica left in the state store'));
    opts.registry.observe({ opened: () => shared.soon(), closed: () => shared.soon() });
    opts.store.onKillRequested((replica) => {
      if (replica === shared.replica) shared.soon();
    });
    shared.timer = setInterval(() => shared.soon(), shared.heartbeatMs);
    shared.timer.unref();
    shared.soon();
    return shared;
  }

  /** Publish as soon as the one under way (if any) is done; requests meanwhile make one more round. */
  private soon(): void {
    if (this.stopped) return;
    if (this.flushing) {
      this.pending = true;
      return;
    }
    this.flushing = this.flush().finally(() => {
      this.flushing = undefined;
      if (this.pending) {
        this.pending = false;
        this.soon();
      }
    });
  }

  private async flush(): Promise<void> {
    // Sessions adopted from cluster workers are in list() too: they are published like local ones.
    const current = new Map(this.opts.registry.list().map((s) => [s.id, JSON.stringify(sessionView(s))] as const));
    const upsert = [...current].filter(([id, view]) => this.published.get(id) !== view).map(([id, view]) => ({ id, view: JSON.parse(view) }));
    const remove = [...this.published.keys()].filter((id) => !current.has(id));
    const startedAt = Date.now();
    try {
      const kills = await this.opts.store.publish(this.replica, this.leaseMs, upsert, remove);
      // Longer than a lease since the last publish landed (the store was unreachable, the event loop stalled):
      // the lease may have run out and another replica swept this one's sessions, while they still live here.
      // Publish every one of them again next round, else an idle session (its view unchanged) stays unlisted,
      // and unkillable through other replicas, for as long as it lives.
      const lapsed = this.lastPublishedFrom !== undefined && Date.now() - this.lastPublishedFrom > this.leaseMs;
      this.lastPublishedFrom = startedAt;
      this.published = lapsed ? new Map([...current.keys()].map((id) => [id, ''])) : current;
      if (lapsed) this.pending = true;
      for (const k of kills) this.killHere(k.id, k.message);
      if (++this.beats % SWEEP_EVERY_HEARTBEATS === 0) await this.opts.store.sweep(SWEEP_AFTER_LEASES * this.leaseMs);
    } catch (e) {
      this.warn(e, 'could not publish the live sessions to the state store; retrying');
    }
  }

  /** A kill another replica asked for (and recorded as session.kill): ended the way a local kill ends it. */
  private killHere(id: string, message: string): void {
    const handle = this.opts.registry.get(id);
    if (!handle || handle.endReason) return;
    this.opts.log.info({ session: id }, 'ending a live session killed through another replica');
    handle.terminate('terminated', message);
  }

  private warn(e: unknown, msg: string): void {
    if (Date.now() - this.warnedAt < WARN_EVERY_MS) return;
    this.warnedAt = Date.now();
    this.opts.log.warn({ err: (e as Error).message }, msg);
  }

  /**
   * Every replica's live sessions: this replica's from its registry (current counts), the others' from the
   * store. Without the store: this replica's alone, with `partial` set.
   */
  async list(local: LiveSession[]): Promise<{ sessions: ListedSession[]; partial: boolean }> {
    const here = local.map((s) => ({ ...sessionView(s), replica: this.replica }));
    try {
      const all = await within(this.opts.store.list(), 'listing live sessions');
      const elsewhere = all.filter((p) => p.replica !== this.replica && !local.some((s) => s.id === p.id)).map(listed);
      return { sessions: [...here, ...elsewhere].sort((x, y) => x.started_at.localeCompare(y.started_at)), partial: false };
    } catch (e) {
      this.warn(e, 'listing only this replica\'s live sessions: the state store is unavailable');
      return { sessions: here, partial: true };
    }
  }

  /** A live session another replica holds (undefined when none does); StoreUnavailableError without the store. */
  find(id: string): Promise<ListedSession | undefined> {
    return within(this.opts.store.find(id), 'finding the live session').then((p) => (p && p.replica !== this.replica ? listed(p) : undefined));
  }

  /**
   * Ask the replica holding `id` to end it with `message`, and wait up to `settleMs` for it to be gone.
   * `held` false: no replica holds it (any more).
   */
  async kill(id: string, message: string, settleMs: number): Promise<{ held: boolean; ended: boolean }> {
    const held = await within(this.opts.store.requestKill(id, message), 'asking for the kill');
    if (!held) return { held: false, ended: true };
    const deadline = Date.now() + settleMs;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      const still = await this.opts.store.find(id).catch(() => 'unknown' as const);
      if (!still) return { held: true, ended: true };
    }
    return { held: true, ended: false };
  }

  /** Stop publishing; `forget` (a clean stop) removes this replica's sessions from the store at once. */
  async stop(opts: { forget?: boolean } = {}): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.flushing;
    if (opts.forget ?? true) await this.opts.store.forget(this.replica).catch((e) => this.warn(e, 'could not remove this replica\'s live sessions from the state store'));
  }
}

function listed(p: PublishedSession): ListedSession {
  return { ...(p.view as unknown as ReturnType<typeof sessionView>), replica: p.replica };
}

/** The store's answer, or StoreUnavailableError once STORE_WAIT_MS passed (a hung database must not hang the API). */
function within<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreUnavailableError(`state store did not answer in time (${what})`)), STORE_WAIT_MS);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
