/**
 * A sliding window of event times for one group key. Times are integer microseconds (the envelope's
 * precision), so edges are exact: the count is the number of events with time in (latest - window, latest],
 * latest being the latest time added. An event exactly `window` older than the latest one has left the window.
 * With gateway.workers, events reach the primary over IPC and can arrive out of time order: they are kept
 * sorted by time (a late event is inserted in its place), so eviction from the oldest end stays exact.
 */
export class SlidingWindow {
  private times: number[] = [];
  private ids: string[] = [];
  private head = 0;
  /** The latest time ever added, kept across clear(): a late event from before its window never counts. */
  private latestUs = -Infinity;

  constructor(private readonly windowUs: number) {}

  /** Add an event at `timeUs` and return the count in (latest - window, latest]. */
  add(timeUs: number, id: string): number {
    if (timeUs > this.latestUs) this.latestUs = timeUs;
    else if (timeUs <= this.latestUs - this.windowUs) return this.size; // arrived after its window had passed
    const end = this.times.length;
    if (end === this.head || timeUs >= this.times[end - 1]!) {
      this.times.push(timeUs);
      this.ids.push(id);
    } else {
      // Late: after the events of the same time (arrival order among equals), usually a few places back.
      let lo = this.head;
      let hi = end - 1;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.times[mid]! <= timeUs) lo = mid + 1;
        else hi = mid;
      }
      this.times.splice(lo, 0, timeUs);
      this.ids.splice(lo, 0, id);
    }
    this.evict();
    return this.size;
  }

  /** Drop events at or before `latest - window` (the oldest first: times are sorted). */
  private evict(): void {
    const edge = this.latestUs - this.windowUs;
    while (this.head < this.times.length && this.times[this.head]! <= edge) this.head++;
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

  /** Forget the events (after a firing: the next one needs `threshold` new events); the latest time stays. */
  clear(): void {
    this.times = [];
    this.ids = [];
    this.head = 0;
  }

  /** Time of the newest event in the window, or undefined when empty. */
  get newest(): number | undefined {
    return this.size ? this.times[this.times.length - 1] : undefined;
  }

  /** The latest time ever added (also after clear()), or undefined before the first event. */
  get latest(): number | undefined {
    return this.latestUs === -Infinity ? undefined : this.latestUs;
  }
}

/** The envelope time (`2026-12-06T04:52:50.123456Z`) as integer microseconds since the epoch. */
export function eventTimeUs(time: string): number {
  const ms = Date.parse(time.slice(0, 23) + 'Z');
  const micros = Number(time.slice(23, 26)) || 0;
  return ms * 1000 + micros;
}
