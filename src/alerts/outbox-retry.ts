import type { Logger } from 'pino';

/** One write to the outbox (a firing with its notifications, or one resolve notification). */
export interface OutboxWrite {
  /** What identifies it in the logs (alert id, rule, notifier). */
  what: Record<string, unknown>;
  write(): Promise<void>;
}

export interface OutboxRetryOptions {
  /** Writes kept in memory while the store refuses them; past it the oldest is dropped, with an error logged. */
  max?: number;
  initialMs?: number;
  maxMs?: number;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/**
 * Writes to the outbox that survive a store that is away or busy for a while. `alert.fired` is already in
 * the audit log when its notifications are queued: a failed write must not lose the notification, so it
 * waits here (in order, bounded) and is retried with backoff until the store takes it. Every failure is
 * logged; so is a write given up (queue full, or still pending at stop).
 */
export class OutboxRetry {
  private readonly pending: OutboxWrite[] = [];
  private readonly max: number;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private draining: Promise<void> | undefined;
  private closed = false;
  /** Writes given up since start (metrics). */
  dropped = 0;

  constructor(private readonly log: Logger, private readonly onWritten: () => void, o: OutboxRetryOptions = {}) {
    this.max = o.max ?? 10_000;
    this.initialMs = o.initialMs ?? 100;
    this.maxMs = o.maxMs ?? 30_000;
  }

  /** Writes waiting for the store. */
  get depth(): number {
    return this.pending.length;
  }

  /** Write now; when the store refuses, keep it for a retry (never throws). Behind earlier waiting writes, in order. */
  async submit(w: OutboxWrite): Promise<void> {
    if (this.closed) {
      this.dropped++;
      this.log.error(w.what, 'alerts: stopped before the outbox took this notification; it is not sent (alert.fired stays in the audit log)');
      return;
    }
    if (this.pending.length === 0 && !this.draining) {
      try {
        await w.write();
        this.onWritten();
        return;
      } catch (e) {
        this.log.error({ ...w.what, err: message(e) }, 'alerts: could not queue a notification in the outbox; kept in memory, will retry');
      }
    } else {
      this.log.warn({ ...w.what, waiting: this.pending.length }, 'alerts: outbox writes are waiting for the store; this one waits behind them');
    }
    this.keep(w);
  }

  private keep(w: OutboxWrite): void {
    this.pending.push(w);
    while (this.pending.length > this.max) {
      const lost = this.pending.shift()!;
      this.dropped++;
      this.log.error({ ...lost.what, max: this.max }, 'alerts: too many outbox writes waiting for the store; this notification is dropped (alert.fired stays in the audit log)');
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.draining || this.closed || this.pending.length === 0) return;
    const base = Math.min(this.maxMs, this.initialMs * 2 ** Math.max(0, this.failures - 1));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.draining = this.drain().finally(() => {
        this.draining = undefined;
        this.schedule();
      });
    }, this.failures === 0 ? this.initialMs : Math.round(base + base * 0.5 * Math.random()));
    this.timer.unref();
  }

  /** Write the waiting ones in order; stop at the first refusal (the store is still away) and back off. */
  private async drain(): Promise<void> {
    let written = 0;
    while (this.pending.length) {
      const w = this.pending[0]!;
      try {
        await w.write();
      } catch (e) {
        this.failures++;
        // The first failure was logged at submit; then every 10th, so an outage does not flood the log.
        if (this.failures % 10 === 1) this.log.warn({ ...w.what, attempts: this.failures, waiting: this.pending.length, err: message(e) }, 'alerts: the outbox still refuses writes; will retry');
        return;
      }
      this.pending.shift();
      written++;
      this.onWritten();
    }
    if (written) this.log.info({ written, after_failures: this.failures }, 'alerts: the outbox takes writes again; waiting notifications queued');
    this.failures = 0;
  }

  /** Stop retrying: one last attempt for what waits, then anything left is logged as lost. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.draining;
    if (this.pending.length) await this.drain();
    for (const lost of this.pending.splice(0)) {
      this.dropped++;
      this.log.error(lost.what, 'alerts: stopped before the outbox took this notification; it is not sent (alert.fired stays in the audit log)');
    }
  }
}
