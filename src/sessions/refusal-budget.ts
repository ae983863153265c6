import { parseCidr, ipInBlocks, type CidrBlock } from '../identity/cidr.ts';

/**
 * Per-source budget for unauthenticated refusals on every listener. A refusal before authentication
 * costs the caller nothing, so recording each one lets anyone who can reach a port fill the audit disk
 * and drown the log. Per protocol and source address, the first `perWindow` refusals of a window are
 * recorded one by one; the rest are counted, and when the window closes (or at shutdown) one
 * `auth.failure.summary` says how many there were, why, and when the first and last came. Nothing is
 * lost, the log just stops growing with the attacker's rate.
 *
 * Only failures are counted: a success never consumes budget, so engineers behind one NAT with an
 * attacker are still admitted (and their own refusals summarised, not dropped). Sources in the allow-list
 * (health checkers, load balancers) are always recorded individually and never summarised.
 * There is deliberately no ban at connect: refusing by address would lock out those same engineers.
 */
export interface RefusalSummary {
  protocol: string;
  ip: string;
  /** Refusals counted but not written one by one. */
  suppressed: number;
  /** Refusals written one by one in the same window (the budget, at most). */
  recorded: number;
  /** Suppressed refusals by reason. */
  reasons: Record<string, number>;
  windowStart: Date;
  first: Date;
  last: Date;
}

export interface RefusalBudgetOptions {
  perWindow: number;
  windowMs: number;
  /** CIDRs never summarised. */
  allow: string[];
  /** Distinct (protocol, source) windows tracked at once; beyond, new sources share one bucket. */
  maxSources?: number;
}

interface Window {
  protocol: string;
  ip: string;
  start: number;
  recorded: number;
  suppressed: number;
  reasons: Record<string, number>;
  first: number;
  last: number;
}

export const OVERFLOW_SOURCE = '(other sources)';

/** Totals per protocol, for /metrics. */
export interface RefusalCounts {
  recorded: number;
  suppressed: number;
  allowListed: number;
  summaries: number;
}

export class RefusalBudget {
  private readonly windows = new Map<string, Window>();
  private readonly allow: CidrBlock[];
  private readonly totals = new Map<string, RefusalCounts>();
  private readonly timer: NodeJS.Timeout;
  private readonly maxSources: number;

  constructor(
    readonly options: RefusalBudgetOptions,
    private readonly onSummary: (s: RefusalSummary) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.allow = options.allow.map((c) => {
      const b = parseCidr(c);
      if (!b) throw new Error(`budgets.allow: "${c}" is not an address or CIDR block`);
      return b;
    });
    this.maxSources = options.maxSources ?? 10_000;
    this.timer = setInterval(() => this.sweep(false), Math.max(250, Math.floor(options.windowMs / 4)));
    this.timer.unref();
  }

  /** True: record this refusal on its own. False: it was counted for the source's summary. */
  take(protocol: string, ip: string, reason: string): boolean {
    const counts = this.countsFor(protocol);
    if (this.allow.length > 0 && ipInBlocks(ip, this.allow)) {
      counts.allowListed++;
      return true;
    }
    const t = this.now();
    let key = `${protocol} ${ip}`;
    if (!this.windows.has(key) && this.windows.size >= this.maxSources) {
      key = `${protocol} ${OVERFLOW_SOURCE}`;
      ip = OVERFLOW_SOURCE;
    }
    let w = this.windows.get(key);
    if (w && t - w.start >= this.options.windowMs) {
      this.summarise(w);
      w = undefined;
    }
    if (!w) {
      w = { protocol, ip, start: t, recorded: 0, suppressed: 0, reasons: {}, first: 0, last: 0 };
      this.windows.set(key, w);
    }
    if (w.recorded < this.options.perWindow) {
      w.recorded++;
      counts.recorded++;
      return true;
    }
    if (w.suppressed === 0) w.first = t;
    w.last = t;
    w.suppressed++;
    w.reasons[reason] = (w.reasons[reason] ?? 0) + 1;
    counts.suppressed++;
    return false;
  }

  /** Seconds until `ip` may be recorded one by one again (for Retry-After); 0 when it has no window. */
  retryAfter(protocol: string, ip: string): number {
    const w = this.windows.get(`${protocol} ${ip}`) ?? this.windows.get(`${protocol} ${OVERFLOW_SOURCE}`);
    if (!w) return 0;
    return Math.max(1, Math.ceil((w.start + this.options.windowMs - this.now()) / 1000));
  }

  /** Sources currently over budget (per protocol), for /metrics. */
  overBudget(): Map<string, number> {
    const out = new Map<string, number>();
    for (const w of this.windows.values()) if (w.suppressed > 0) out.set(w.protocol, (out.get(w.protocol) ?? 0) + 1);
    return out;
  }

  counts(): Map<string, RefusalCounts> {
    return this.totals;
  }

  /** Summarise finished windows (all of them when `all`) and forget them. */
  sweep(all: boolean): void {
    const t = this.now();
    for (const [key, w] of this.windows) {
      if (all || t - w.start >= this.options.windowMs) {
        this.windows.delete(key);
        this.summarise(w);
      }
    }
  }

  /** Stop the timer and summarise every open window (at shutdown: nothing counted is lost). */
  close(): void {
    clearInterval(this.timer);
    this.sweep(true);
  }

  private countsFor(protocol: string): RefusalCounts {
    let c = this.totals.get(protocol);
    if (!c) this.totals.set(protocol, (c = { recorded: 0, suppressed: 0, allowListed: 0, summaries: 0 }));
    return c;
  }

  private summarise(w: Window): void {
    if (w.suppressed === 0) return;
    this.countsFor(w.protocol).summaries++;
    this.onSummary({
      protocol: w.protocol,
      ip: w.ip,
      suppressed: w.suppressed,
      recorded: w.recorded,
      reasons: w.reasons,
      windowStart: new Date(w.start),
      first: new Date(w.first),
      last: new Date(w.last),
    });
  }
}

/** The gateway's budget, writing `auth.failure.summary` events; `close()` resolves once they are written. */
export interface GatewayRefusalBudget {
  budget: RefusalBudget;
  close(): Promise<void>;
}

export function refusalBudgetFor(
  config: { refusals_per_window: number; window: number; allow: string[] },
  events: { emit(input: import('../events/envelope.ts').EventInput): Promise<unknown> },
  log: { error(obj: object, msg: string): void },
): GatewayRefusalBudget {
  const pending = new Set<Promise<unknown>>();
  const budget = new RefusalBudget({ perWindow: config.refusals_per_window, windowMs: config.window, allow: config.allow }, (s) => {
    const p = events
      .emit({
        type: 'auth.failure.summary',
        outcome: 'failure',
        actor: { user: 'unknown', roles: [] },
        source: { ip: s.ip },
        target: { name: '(none)', protocol: s.protocol },
        details: {
          first: s.first.toISOString(),
          last: s.last.toISOString(),
          reasons: s.reasons,
          recorded: s.recorded,
          suppressed: s.suppressed,
          window_seconds: config.window / 1000,
          window_start: s.windowStart.toISOString(),
        },
      })
      .catch((e) => log.error({ err: (e as Error).message }, 'could not record an auth.failure.summary'))
      .finally(() => pending.delete(p));
    pending.add(p);
  });
  return {
    budget,
    async close() {
      budget.close();
      await Promise.all([...pending]);
    },
  };
}
