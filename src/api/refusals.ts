import { RefusalBudget as SourceBudget, OVERFLOW_SOURCE } from '../sessions/refusal-budget.ts';

export { OVERFLOW_SOURCE };

/**
 * How many refused, unauthenticated API calls are recorded one by one. Each refused call is an audit
 * event, and a caller without a certificate costs the gateway nothing to be — so without a budget anyone
 * who can reach the port could fill the audit log (and its disk) at will. Per source address, the first
 * `perMinute` refusals of a minute are recorded individually; the rest are answered 429 and counted, and
 * one summary per source and minute records how many there were. The listeners' budget
 * (src/sessions/refusal-budget.ts) does the counting; this is the API's per-minute view of it.
 */
export interface RefusalSummary {
  ip: string;
  suppressed: number;
  /** Start of the minute in which they were suppressed. */
  since: Date;
}

const WINDOW_MS = 60_000;

export class RefusalBudget {
  private readonly budget: SourceBudget;

  constructor(perMinute: number, onSummary: (s: RefusalSummary) => void, now: () => number = Date.now, allow: string[] = []) {
    this.budget = new SourceBudget({ perWindow: perMinute, windowMs: WINDOW_MS, allow }, (s) => onSummary({ ip: s.ip, suppressed: s.suppressed, since: s.windowStart }), now);
  }

  /** True: record this refusal on its own. False: it was counted for the summary (answer 429). */
  take(ip: string): boolean {
    return this.budget.take('api', ip, 'refused');
  }

  /** Seconds until `ip` may be recorded individually again (for Retry-After). */
  retryAfter(ip: string): number {
    return this.budget.retryAfter('api', ip);
  }

  /** Summarise finished windows (all of them when `all`) and forget them. */
  sweep(all: boolean): void {
    this.budget.sweep(all);
  }

  close(): void {
    this.budget.close();
  }
}
