import type { Logger } from 'pino';
import type { LiveCast, RecordingStore } from '../../../recorder/types.ts';
import type { RelayMessage, WatchRequest } from './messages.ts';

/**
 * Past this many bytes of relayed lines not yet written to the IPC channel (the primary is not reading
 * fast enough), the relay of that watch stops: the worker never holds more for a watcher, and the
 * session never waits for one. The watcher is told to reconnect (from=now).
 */
export const MAX_RELAY_QUEUED = 2 * 1024 * 1024;
/**
 * A recording followed from the start is read back in chunks (recorder CATCH_UP_CHUNK), the next once the
 * channel holds less than this for the watch: well below MAX_RELAY_QUEUED, so catching up never counts as
 * the primary falling behind, and the worker never holds more than about this much for a watcher.
 */
export const RELAY_CATCH_UP_QUEUED = 512 * 1024;
/**
 * Bytes of cast_data a watch may have at the primary not yet taken by its watcher (the primary grants them
 * back with cast_credit as the watcher's connection drains). A from-start catch-up reads its next chunk only
 * while it holds credit, so a watcher slower than the IPC channel paces the worker as it would a local
 * follow, instead of being cut off when the primary's buffer for it fills: the watcher's connection holds at
 * most about its own limit (watch.ts CATCH_UP_BUFFERED) plus this plus one chunk, well under MAX_BUFFERED.
 */
export const RELAY_CATCH_UP_CREDIT = 1024 * 1024;

/** Sends a message to the primary; `done` runs once it is written to the channel (or failed). */
export type RelaySend = (m: RelayMessage, done?: () => void) => void;

interface Relay {
  sessionId: string;
  stopWatch: (() => void) | undefined;
  /** Recordings announced to the primary and not yet followed or ended. */
  casts: Map<number, LiveCast>;
  /** Recordings followed now: how to stop each. */
  follows: Map<number, () => void>;
  /** Bytes of cast_data handed to the channel and not yet written. */
  queued: number;
  /**
   * cast_data bytes the primary may still take before it grants more (cast_credit). Live writes spend it
   * too (they are not paced, and may take it below 0), so it counts everything the watcher has yet to take.
   */
  credit: number;
  /** Catch-ups waiting until `queued` is at most RELAY_CATCH_UP_QUEUED and `credit` is above 0. */
  waiting: (() => void)[];
}

/**
 * A cluster worker's side of live watch (gateway.workers > 1): the primary serves the watcher, but the
 * session's recordings are written here. While (and only while) the primary asks, the lines of the
 * session's recordings go to it as they land, through the same LiveCast interface a local watch uses, so
 * the watcher sees the recording itself. Nothing is relayed for sessions nobody watches.
 */
export class CastRelay {
  private readonly relays = new Map<number, Relay>();

  constructor(
    private readonly recordings: () => RecordingStore | undefined,
    private readonly send: RelaySend,
    private readonly log: Logger,
  ) {}

  /** Handles a watch request of the primary. */
  receive(m: WatchRequest): void {
    switch (m.vigil) {
      case 'watch':
        return this.watch(m.w, m.id);
      case 'follow':
        return this.follow(m.w, m.channel, m.from_start);
      case 'unfollow': {
        const r = this.relays.get(m.w);
        const stop = r?.follows.get(m.channel);
        r?.follows.delete(m.channel);
        stop?.();
        // A catch-up of this follow waiting for credit the primary will now never grant must not stay
        // parked (with its recording open): woken after its stop, it sees that and ends. Others just wait again.
        if (r) for (const go of r.waiting.splice(0)) go();
        return;
      }
      case 'cast_credit': {
        const r = this.relays.get(m.w);
        if (!r) return;
        r.credit += m.bytes;
        return this.wake(r);
      }
      case 'unwatch':
        return this.stop(m.w, 'the watcher left');
    }
  }

  /** Watches now relayed (for tests and logs). */
  get size(): number {
    return this.relays.size;
  }

  private watch(w: number, sessionId: string): void {
    if (this.relays.has(w)) return;
    const store = this.recordings();
    const r: Relay = { sessionId, stopWatch: undefined, casts: new Map(), follows: new Map(), queued: 0, credit: RELAY_CATCH_UP_CREDIT, waiting: [] };
    this.relays.set(w, r);
    this.log.info({ session: sessionId, watch: w }, 'live watch: relaying the session\'s recordings to the primary');
    // Called at once for each recording being written, then for each one opened later.
    const stop = store?.watch?.(sessionId, (cast) => {
      if (this.relays.get(w) !== r) return;
      r.casts.set(cast.channel, cast);
      this.send({ vigil: 'cast_open', w, channel: cast.channel, rid: cast.id });
    });
    if (this.relays.get(w) === r) r.stopWatch = stop;
    else stop?.();
  }

  private follow(w: number, channel: number, fromStart: boolean): void {
    const r = this.relays.get(w);
    if (!r) return;
    if (r.follows.has(channel)) return;
    const cast = r.casts.get(channel);
    r.casts.delete(channel);
    if (!cast) return void this.send({ vigil: 'cast_end', w, channel });
    let ended = false;
    const stop = cast.follow(
      fromStart,
      (lines) => this.ship(w, r, channel, lines),
      () => {
        ended = true;
        if (this.relays.get(w) !== r) return;
        r.follows.delete(channel);
        this.send({ vigil: 'cast_end', w, channel });
      },
    );
    if (!ended) r.follows.set(channel, stop);
  }

  /**
   * Lines of a recording to the primary, unless too much is waiting for the channel already. Returns, when
   * the channel holds more than RELAY_CATCH_UP_QUEUED or the watch has no credit left, a promise of when
   * that is no longer so: the pace of a from-start catch-up (live writes do not wait; they are bounded by
   * MAX_RELAY_QUEUED here and by the watcher's cut-off at the primary).
   */
  private ship(w: number, r: Relay, channel: number, lines: Buffer): Promise<void> | undefined {
    if (this.relays.get(w) !== r) return;
    // Checked before, not after, adding: one write of the recording still goes whole (at most the writer's batch).
    if (r.queued > MAX_RELAY_QUEUED) {
      this.stop(w, 'the primary fell behind');
      this.send({ vigil: 'watch_dropped', w });
      return;
    }
    const text = lines.toString('utf8');
    // Counted as the primary counts what it grants back: the bytes of the text as it travels.
    const size = Buffer.byteLength(text);
    r.queued += size;
    r.credit -= size;
    this.send({ vigil: 'cast_data', w, channel, lines: text }, () => {
      r.queued -= size;
      this.wake(r);
    });
    if (this.mayGoOn(r)) return;
    return new Promise<void>((resolve) => r.waiting.push(resolve));
  }

  private mayGoOn(r: Relay): boolean {
    return r.queued <= RELAY_CATCH_UP_QUEUED && r.credit > 0;
  }

  private wake(r: Relay): void {
    if (this.mayGoOn(r)) for (const go of r.waiting.splice(0)) go();
  }

  private stop(w: number, why: string): void {
    const r = this.relays.get(w);
    if (!r) return;
    this.relays.delete(w);
    for (const go of r.waiting.splice(0)) go();
    r.stopWatch?.();
    for (const stop of r.follows.values()) stop();
    r.follows.clear();
    r.casts.clear();
    this.log.info({ session: r.sessionId, watch: w, why }, 'live watch: relay stopped');
  }

  /** The primary is gone or the worker drains: nothing more is relayed. */
  stopAll(): void {
    for (const w of [...this.relays.keys()]) this.stop(w, 'worker stopping');
  }
}
