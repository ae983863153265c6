/**
 * A sliding window of event times for one group key. Times are integer microseconds (the envelope's
 * precision), so edges are exact: the count at time t is the number of events with time in (t - window, t].
 * An event exactly `window` older than the newest one has left the window.
 */
export class SlidingWindow {
  private times: number[] = [];
  private ids: string[] = [];
  private head = 0;

  constructor(private readonly windowUs: number) {}

  /** Add an event at `timeUs` and return the count in (timeUs - window, timeUs]. */
  add(timeUs: number, id: string): number {
    this.times.push(timeUs);
    this.ids.push(id);
    this.evict(timeUs);
    return this.times.length - this.head;
  }

  /** Drop events at or before `nowUs - window`. */
  evict(nowUs: number): void {
    const edge = nowUs - this.windowUs;
    while (this.head < this.times.length && this.times[this.head] <= edge) this.head++;
    // Compact now and then so memory follows the live count, not the total seen.
    if (this.head > 64 && this.head * 2 > this.times.length) {
      this.times = this.times.slice(this.head);
      this.ids = this.ids.slice(this.head);
      this.head = 0;
    }
  }

  /** Ids of the events in the window, oldest first. */
  eventIds(): string[] {
    return this.ids.slice(this.head);
  }

  get size(): number {
    return this.times.length - this.head;
  }

  /** Forget everything (after a firing: the next one needs `threshold` new events). */
  clear(): void {
    this.times = [];
    this.ids = [];
    this.head = 0;
  }

  /** Time of the newest event, or undefined when empty. */
  get newest(): number | undefined {
    return this.size ? this.times[this.times.length - 1] : undefined;
  }
}

/** The envelope time (`2026-12-06T04:52:50.123456Z`) as integer microseconds since the epoch. */
export function eventTimeUs(time: string): number {
  const ms = Date.parse(time.slice(0, 23) + 'Z');
  const micros = Number(time.slice(23, 26)) || 0;
  return ms * 1000 + micros;
}
