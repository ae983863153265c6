/**
 * Counts unauthenticated connections per source address so that one address cannot take the whole
 * `gateway.max_unauthenticated` allowance of a listener (config `pre_auth.max_per_source`).
 */
export class SourceLimiter {
  private readonly counts = new Map<string, number>();

  /** `max` is read at each connection when a function (the running config: a reload may change it). */
  constructor(private readonly max: number | (() => number)) {}

  /** Count a connection from `ip`; returns its release (idempotent), or undefined when `ip` is at the limit. */
  acquire(ip: string): (() => void) | undefined {
    const n = this.counts.get(ip) ?? 0;
    if (n >= (typeof this.max === 'function' ? this.max() : this.max)) return undefined;
    this.counts.set(ip, n + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const left = (this.counts.get(ip) ?? 1) - 1;
      if (left <= 0) this.counts.delete(ip);
      else this.counts.set(ip, left);
    };
  }

  /** Addresses currently counted (for tests and diagnostics). */
  get sources(): number {
    return this.counts.size;
  }
}
