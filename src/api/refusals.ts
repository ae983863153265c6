/**
 * How many refused, unauthenticated API calls are recorded one by one. Each refused call is an audit
 * event, and a caller without a certificate costs the gateway nothing to be — so without a budget anyone
 * who can reach the port could fill the audit log (and its disk) at will. Per source address, the first
 * `perMinute` refusals of a minute are recorded individually; the rest are answered 429 and counted, and
 * one summary per source and minute records how many there were. Nothing goes unrecorded; the log just
 * stops growing with the attacker's request rate.
 */
export interface RefusalSummary {
  ip: string;
  suppressed: number;
  /** Start of the minute in which they were suppressed. */
  since: Date;
}

interface Window {
  start: number;
  count: number;
  suppressed: number;
}

const WINDOW_MS = 60_000;
/** Distinct sources tracked at once; beyond, new sources share one bucket (a spoofing flood stays bounded). */
const MAX_SOURCES = 10_000;
export const OVERFLOW_SOURCE = '(other sources)';

export class RefusalBudget {
  private readonly windows = new Map<string, Window>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly perMinute: number,
    private readonly onSummary: (s: RefusalSummary) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.timer = setInterval(() => this.sweep(false), WINDOW_MS / 4);
    this.timer.unref();
  }

  /** True: record this refusal on its own. False: it was counted for the summary (answer 429). */
  take(ip: string): boolean {
    const t = this.now();
    let key = ip;
    if (!this.windows.has(key) && this.windows.size >= MAX_SOURCES) key = OVERFLOW_SOURCE;
    let w = this.windows.get(key);
    if (w && t - w.start >= WINDOW_MS) {
      this.summarise(key, w);
      w = undefined;
    }
    if (!w) {
      w = { start: t, count: 0, suppressed: 0 };
      this.windows.set(key, w);
    }
    if (w.count < this.perMinute) {
      w.count++;
      return true;
    }
    w.suppressed++;
    return false;
  }

  /** Seconds until `ip` may be recorded individually again (for Retry-After). */
  retryAfter(ip: string): number {
    const w = this.windows.get(ip) ?? this.windows.get(OVERFLOW_SOURCE);
    if (!w) return 0;
    return Math.max(1, Math.ceil((w.start + WINDOW_MS - this.now()) / 1000));
  }

  /** Summarise finished windows (all of them when `all`) and forget them. */
  sweep(all: boolean): void {
    const t = this.now();
    for (const [key, w] of this.windows) {
      if (all || t - w.start >= WINDOW_MS) {
        this.summarise(key, w);
        this.windows.delete(key);
      }
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.sweep(true);
  }

  private summarise(ip: string, w: Window): void {
    if (w.suppressed > 0) this.onSummary({ ip, suppressed: w.suppressed, since: new Date(w.start) });
  }
}
