import type { Logger } from 'pino';
import type { NotifierConfig } from '../alerts/config.ts';
import type { Notification } from './format.ts';
import type { AccessNotification } from './access-format.ts';
import { deliver } from './transport.ts';
import type { Outbox, OutboxItem } from './outbox.ts';

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

/**
 * Sends what the outbox holds. One delivery in flight per notifier (their order is kept; a slow receiver
 * delays only its own notifications). Anything pending at start — left by a previous run — is sent first.
 */
export class Dispatcher {
  private readonly byName: Map<string, NotifierConfig>;
  private readonly busy = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly inFlight = new Set<Promise<void>>();
  readonly stats = new Map<string, NotifierStats>();

  constructor(notifiers: NotifierConfig[], private readonly outbox: Outbox, private readonly log: Logger) {
    this.byName = new Map(notifiers.map((n) => [n.name, n]));
    for (const n of notifiers) this.stats.set(n.name, { delivered: 0, failures: 0, dead: 0 });
  }

  start(): void {
    this.kick();
  }

  /** Look for due work now (after an enqueue, a delivery, or when a retry timer fires). */
  kick(): void {
    if (this.closed) return;
    const now = Date.now();
    for (const name of this.byName.keys()) {
      if (this.busy.has(name)) continue;
      const item = this.outbox.due(name, now);
      if (item) this.send(name, item);
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const next = this.outbox.nextDue();
    if (next === undefined || this.closed) return;
    this.timer = setTimeout(() => this.kick(), Math.max(10, next - Date.now()));
  }

  private send(name: string, item: OutboxItem): void {
    const cfg = this.byName.get(name)!;
    const stats = this.stats.get(name)!;
    this.busy.add(name);
    const p = deliver(cfg, item.payload as Notification | AccessNotification).then(
      () => {
        this.outbox.delivered(item.id);
        stats.delivered++;
      },
      (e: Error) => {
        stats.failures++;
        const attempts = item.attempts + 1;
        const dead = attempts >= cfg.max_attempts;
        if (dead) stats.dead++;
        this.outbox.failed(item, e.message, Date.now() + backoffMs(cfg, attempts), dead);
        this.log.warn({ notifier: name, attempts, dead, err: e.message }, dead ? 'notification moved to dead letters' : 'notification delivery failed; will retry');
      },
    ).finally(() => {
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
    // Deliveries under way finish (bounded by their timeout); nothing pending is lost — it stays in the outbox.
    await Promise.allSettled([...this.inFlight]);
  }
}
