import type { Logger } from 'pino';
import type { NotifierConfig } from '../alerts/config.ts';
import type { Notification } from './format.ts';
import type { AccessNotification } from './access-format.ts';
import { deliver } from './transport.ts';
import type { OutboxClaim, OutboxStore } from './outbox.ts';

export interface NotifierStats {
  delivered: number;
  failures: number;
  dead: number;
}

/** Delay before attempt `attempts + 1`: initial * 2^(attempts-1), capped, plus up to 50% jitter. */
export function backoffMs(cfg: Pick<NotifierConfig, 'backoff_initial' | 'backoff_max'>, attempts: number, random = Math.random): number {
  const base = Math.min(cfg.backoff_max, cfg.backoff_initial * 2 ** Math.max(0, attempts - 1));
  return Math.round(base + base * 0.5 * random());
}

/** With a shared outbox: how often to look for work other replicas queued or left behind. */
export const SHARED_POLL_MS = 1000;

/**
 * Sends what the outbox holds. One delivery in flight per notifier (their order is kept; a slow receiver
 * delays only its own notifications). Anything pending at start — left by a previous run — is sent first.
 * With a shared outbox (PostgreSQL) every replica runs one: a notifier's head goes out only from the
 * replica that claimed it, and each replica also looks every SHARED_POLL_MS for work queued elsewhere (a
 * replica that stopped or died with notifications pending, a head another replica held).
 */
export class Dispatcher {
  private readonly byName: Map<string, NotifierConfig>;
  private readonly busy = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  private closed = false;
  /** A pass over the notifiers is running; `again` asks for one more after it (kicks arriving meanwhile). */
  private passing: Promise<void> | undefined;
  private again = false;
  private readonly inFlight = new Set<Promise<void>>();
  readonly stats = new Map<string, NotifierStats>();
  /** Pending notifications per notifier, as of the last pass (for metrics, which are rendered synchronously). */
  depth: Record<string, number> = {};

  constructor(notifiers: NotifierConfig[], private readonly outbox: OutboxStore, private readonly log: Logger, private readonly pollMs = SHARED_POLL_MS) {
    this.byName = new Map(notifiers.map((n) => [n.name, n]));
    for (const n of notifiers) this.stats.set(n.name, { delivered: 0, failures: 0, dead: 0 });
  }

  start(): void {
    this.started = true;
    this.kick();
  }

  /** Look for due work now (after an enqueue, a delivery, or when a retry timer fires). */
  kick(): void {
    // Before start(), a replaced dispatcher may still be delivering the head of the same outbox.
    if (this.closed || !this.started) return;
    if (this.passing) {
      this.again = true;
      return;
    }
    this.passing = this.pass()
      .catch((e: Error) => {
        // The store is away (PostgreSQL): nothing is lost, look again later.
        this.log.warn({ err: e.message }, 'notifications: could not read the outbox; will retry');
        this.arm(this.pollMs);
      })
      .finally(() => {
        this.passing = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  private async pass(): Promise<void> {
    const now = Date.now();
    /** Notifiers whose head waits for a retry time (not in flight here, not held by another replica). */
    const waiting: string[] = [];
    for (const [name, cfg] of this.byName) {
      if (this.busy.has(name) || this.closed) continue;
      // Held for the delivery timeout plus a margin: past it, another replica may take the head over.
      const claim = await this.outbox.claim(name, cfg.timeout + 30_000, now);
      if (claim === 'held') continue; // another replica delivers it; the poll looks again
      if (claim) this.send(name, claim);
      else waiting.push(name);
    }
    this.depth = await this.outbox.depth();
    // A delivery in flight kicks when it ends: only heads waiting for a retry need the timer (notifiers
    // not configured here are left alone: their items stay for a replica, or a config, that has them).
    const next = await this.outbox.nextDue(waiting);
    let delay = next === undefined ? Infinity : Math.max(10, next - Date.now());
    if (this.outbox.shared) delay = Math.min(delay, this.pollMs);
    this.arm(delay);
  }

  private arm(delay: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.closed || !Number.isFinite(delay)) return;
    this.timer = setTimeout(() => this.kick(), delay);
  }

  private send(name: string, claim: OutboxClaim): void {
    const { item } = claim;
    const cfg = this.byName.get(name)!;
    const stats = this.stats.get(name)!;
    this.busy.add(name);
    const p = deliver(cfg, item.payload as Notification | AccessNotification)
      .then(
        async () => {
          stats.delivered++;
          await claim.delivered();
        },
        async (e: Error) => {
          stats.failures++;
          const attempts = item.attempts + 1;
          const dead = attempts >= cfg.max_attempts;
          if (dead) stats.dead++;
          this.log.warn({ notifier: name, attempts, dead, err: e.message }, dead ? 'notification moved to dead letters' : 'notification delivery failed; will retry');
          await claim.failed(e.message, Date.now() + backoffMs(cfg, attempts), dead);
        },
      )
      // The outcome could not be written (store away): the claim runs out and the item is sent again.
      .catch((e: Error) => this.log.warn({ notifier: name, err: e.message }, 'notifications: could not record a delivery outcome'))
      .finally(() => {
        this.busy.delete(name);
        this.inFlight.delete(p);
        this.kick();
      });
    this.inFlight.add(p);
  }

  /** Notifiers we know (names not configured any more stay in the outbox untouched). */
  has(name: string): boolean {
    return this.byName.has(name);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.passing;
    // Deliveries under way finish (bounded by their timeout); nothing pending is lost — it stays in the outbox.
    await Promise.allSettled([...this.inFlight]);
  }
}
