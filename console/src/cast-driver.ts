import { CastStream, castEndHint, dataOf } from './cast-stream.ts';

/**
 * The playback driver for the vendored asciinema-player over a CastStream (cast-stream.ts): playback
 * starts as soon as the header and the first events are in; playing past what has arrived holds the clock
 * at the last event ("loading") and goes on when more comes; a seek beyond it waits for the stream to get
 * there. Backward seeks replay from the start, as the player's own driver does; the stream holds only a
 * bounded window ahead of the play position (played events are released), so a backward seek reads the
 * recording again from its start.
 *
 * The player accepts a function as its source (a driver factory); its types do not say so, hence the cast
 * at the call site.
 */

interface Callbacks {
  dispatch(name: string, data?: unknown): void;
  logger: { debug(...a: unknown[]): void; warn(...a: unknown[]): void };
}

interface DriverOptions {
  speed?: number;
  idleTimeLimit?: number;
}

type SeekTarget = number | string | { marker: unknown };

/** Output events closer together than this are fed to the terminal as one batch. */
const BATCH_MS = 1000 / 60;
/** How many recent output times are kept for stepping back (the events themselves are released). */
const STEP_BACK_MEMORY = 64;
/** A stall shorter than this shows no loader (avoids flicker while chunks arrive). */
const LOADER_DELAY_MS = 300;

/** A driver factory for `AsciinemaPlayer.create(...)`. */
export function streamingCast(url: string, fetchOpts: RequestInit = {}) {
  return (cb: Callbacks, opts: DriverOptions) => castDriver(url, fetchOpts, cb, opts);
}

function castDriver(url: string, fetchOpts: RequestInit, { dispatch }: Callbacks, opts: DriverOptions) {
  const speed = opts.speed ?? 1;
  const stream = new CastStream(url, fetchOpts, opts.idleTimeLimit !== undefined ? opts.idleTimeLimit * 1000 : Infinity);
  let hint: number | undefined;
  /** Follows the times to the end when the tail's last time is not the duration (idle limit, v3). */
  let timeline: CastStream | undefined;
  let hinted: Promise<void> = Promise.resolve();
  let started = false;
  /** The user wants playback (it may still be stalled waiting for data). */
  let wantPlay = false;
  /** The clock runs: position = (now - base) * speed. */
  let running = false;
  let base = 0;
  let pausedAt = 0;
  let next = 0;
  /** The time of the last event applied (-1: none since the terminal was reset). */
  let appliedUntil = -1;
  /** Times of the last output events applied, oldest first, for stepping back. */
  let recentOutputs: number[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let loaderTimer: ReturnType<typeof setTimeout> | undefined;
  let ended = false;
  /** A seek is waiting for the stream: it decides where playback goes on, not the arrival of data. */
  let seeking = false;
  let shownDuration: number | undefined;

  const position = () => (running ? (performance.now() - base) * speed : pausedAt);
  const duration = () => stream.endTime ?? timeline?.endTime ?? Math.max(hint ?? 0, stream.lastTime);
  const timing = () => ({ time: position() / 1000, rate: running ? speed : 0, sampledAt: performance.timeOrigin + performance.now() });
  const reportTiming = () => dispatch('timing', timing());

  function reportDuration() {
    const d = duration();
    if (d !== shownDuration) {
      shownDuration = d;
      dispatch('metadata', { duration: d / 1000, markers: [] });
    }
  }

  function startClock(at: number) {
    base = performance.now() - at / speed;
    running = true;
    reportTiming();
  }

  function stopClock(at = position()) {
    pausedAt = at;
    running = false;
    clearTimeout(timer);
    reportTiming();
  }

  /** Apply every loaded event up to `t` (inclusive), output batched. */
  function applyUntil(t: number) {
    let out: string[] = [];
    const flush = () => {
      if (out.length) dispatch('output', out);
      out = [];
    };
    let batchEnd = -1;
    for (let e = stream.event(next); e && e[0] <= t; e = stream.event(++next)) {
      appliedUntil = e[0];
      if (e[1] === 'o') {
        recentOutputs.push(e[0]);
        if (e[0] > batchEnd && out.length) flush();
        if (!out.length) batchEnd = e[0] + BATCH_MS;
        out.push(dataOf(e));
      } else if (e[1] === 'r') {
        flush();
        const [cols, rows] = dataOf(e).split('x').map((n) => Number.parseInt(n, 10));
        if (cols > 0 && rows > 0) dispatch('resize', { cols, rows });
      } else if (e[1] === 'i') {
        dispatch('input', { data: dataOf(e) });
      }
    }
    flush();
    if (recentOutputs.length > 2 * STEP_BACK_MEMORY) recentOutputs = recentOutputs.slice(-STEP_BACK_MEMORY);
    stream.release(next);
  }

  /** Apply every event up to `t`, reading on as the stream's window is used (a seek far ahead). */
  async function catchUp(t: number) {
    for (;;) {
      applyUntil(t);
      // Events at exactly t may still come: done once one after it has.
      if (stream.done || stream.lastTime > t) return applyUntil(t);
      await stream.waitUntil(() => stream.event(next) !== undefined);
    }
  }

  function resetTerminal() {
    dispatch('output', '\x1bc');
    dispatch('reset', { size: stream.size, init: '', theme: null });
    // Events from the start have been released: read them again.
    if (stream.released(0)) stream.restart();
    next = 0;
    appliedUntil = -1;
    recentOutputs = [];
  }

  function schedule() {
    clearTimeout(timer);
    if (!running) return;
    const e = stream.event(next);
    if (e) {
      timer = setTimeout(tick, Math.max(0, (e[0] - position()) / speed));
    } else if (stream.done) {
      finish();
    } else {
      // Played everything that has arrived: hold the clock here until more comes.
      stopClock(Math.max(position(), stream.lastTime));
      clearTimeout(loaderTimer);
      loaderTimer = setTimeout(() => wantPlay && !running && dispatch('loading'), LOADER_DELAY_MS);
    }
  }

  function tick() {
    applyUntil(position());
    schedule();
  }

  function finish() {
    stopClock(duration());
    wantPlay = false;
    ended = true;
    dispatch('ended');
  }

  stream.onProgress(() => {
    reportDuration();
    if (stream.error) {
      stopClock();
      dispatch('error', { message: stream.error.message });
      return;
    }
    if (seeking) return;
    // Resume a playback that was waiting for data.
    if (wantPlay && !running && stream.event(next)) {
      clearTimeout(loaderTimer);
      startClock(pausedAt);
      dispatch('playing');
      schedule();
    } else if (wantPlay && !running && stream.done) {
      finish();
    }
  });

  async function begin() {
    if (started) return;
    started = true;
    stream.start();
    hinted = castEndHint(url, fetchOpts).then((h) => {
      hint = h;
      reportDuration();
    });
    await stream.waitUntil(() => stream.size !== undefined);
    if (opts.idleTimeLimit !== undefined || stream.version >= 3) {
      timeline = new CastStream(url, fetchOpts, stream.idleLimitMs, false);
      timeline.onProgress(() => timeline?.done && reportDuration());
      timeline.start();
    }
    resetTerminal();
    reportDuration();
    reportTiming();
  }

  function resolveSeek(where: SeekTarget): number | undefined {
    const now = position();
    const d = duration();
    if (typeof where === 'number') return where * 1000;
    if (where === '<<') return now - 5000;
    if (where === '>>') return now + 5000;
    if (where === '<<<') return now - 0.1 * d;
    if (where === '>>>') return now + 0.1 * d;
    if (typeof where === 'string' && where.endsWith('%')) return (Number(where.slice(0, -1)) / 100) * d;
    return undefined; // markers: this driver has none
  }

  /** Whether `n` output events after the current one have arrived. */
  function outputsAhead(n: number): boolean {
    let left = n;
    for (let i = next, e = stream.event(i); e; e = stream.event(++i)) if (e[1] === 'o' && --left === 0) return true;
    return false;
  }

  return {
    async init() {
      await begin();
    },
    async play() {
      await begin();
      if (wantPlay) return true;
      if (ended || (stream.done && !stream.event(next))) {
        ended = false;
        resetTerminal();
        pausedAt = 0;
      }
      wantPlay = true;
      dispatch('play');
      if (stream.event(next) || stream.done) {
        startClock(pausedAt);
        dispatch('playing');
        schedule();
      } else {
        dispatch('loading');
      }
      return true;
    },
    pause() {
      if (!wantPlay) return true;
      wantPlay = false;
      clearTimeout(loaderTimer);
      if (running) stopClock();
      dispatch('pause');
      return true;
    },
    async seek(where: SeekTarget) {
      await begin();
      // Percentages and ±10% are of the whole recording: know its length first (its tail, or with the idle
      // limit the reading that follows the times to the end).
      if (typeof where === 'string') await (timeline ? timeline.waitUntil(() => false).catch(() => undefined) : hinted);
      let target = resolveSeek(where);
      if (target === undefined) return false;
      target = Math.max(0, target);
      if (running) stopClock();
      // Backward: replay from the start.
      if (target < pausedAt || appliedUntil > target) resetTerminal();
      let waited = false;
      if (!stream.done && stream.lastTime <= target) {
        // Beyond what has arrived: apply events as the stream gets there.
        waited = true;
        seeking = true;
        dispatch('loading');
        try {
          await catchUp(target);
        } finally {
          seeking = false;
        }
      }
      target = Math.min(target, stream.endTime ?? target);
      ended = false;
      applyUntil(target);
      pausedAt = target;
      reportTiming();
      dispatch('seeked');
      // Whether to go on playing is decided now: a pause while the seek waited holds.
      if (stream.done && target >= stream.lastTime) {
        finish();
      } else if (wantPlay) {
        startClock(pausedAt);
        dispatch('playing');
        schedule();
      } else if (waited) {
        // The player's view clears its loader only on play/playing: announce both, ending paused.
        dispatch('play');
        dispatch('pause');
      }
      return true;
    },
    async step(n = 1) {
      await begin();
      if (running) return;
      if (n < 0) {
        // The output -n steps back (the current one is the last applied).
        const i = recentOutputs.length - 1 + n;
        const t = i >= 0 ? recentOutputs[i] : 0;
        resetTerminal();
        seeking = true;
        try {
          await catchUp(t);
        } finally {
          seeking = false;
        }
        pausedAt = t;
      } else {
        await stream.waitUntil(() => outputsAhead(n));
        let left = n;
        let i = next;
        for (let e = stream.event(i); e; e = stream.event(++i)) if (e[1] === 'o' && --left === 0) break;
        const t = stream.event(i)?.[0] ?? stream.lastTime;
        applyUntil(t);
        pausedAt = t;
      }
      reportTiming();
    },
    stop() {
      clearTimeout(timer);
      clearTimeout(loaderTimer);
      running = false;
      wantPlay = false;
      stream.stop();
      timeline?.stop();
    },
    getTiming: timing,
    getDuration: () => duration() / 1000,
  };
}
