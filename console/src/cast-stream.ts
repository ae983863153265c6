/**
 * A streaming playback driver for the vendored asciinema-player: the recording's events are parsed from
 * the HTTP response as its chunks arrive (fetch + ReadableStream), and playback starts as soon as the
 * header and the first events are in, instead of after the whole file (the player's own "recording"
 * driver downloads and parses everything first: a 1-hour cast of tens of MB would wait for all of it).
 *
 * Playing past what has arrived pauses the clock at the last event ("loading") and resumes when more
 * comes; a seek beyond it waits for the stream to get there. Backward seeks replay from the start, as the
 * stock driver does. The idle-time limit is applied while parsing (it depends only on what came before).
 * The duration comes from the file's last line (one small Range request for the tail), and is corrected
 * when the stream ends (idle skip can only shorten it).
 *
 * The player accepts a function as its source (a driver factory); its types do not say so, hence the cast
 * at the call site.
 */

/**
 * [time in ms (idle limit applied), code, the line as it came]. Only time and code are read on arrival;
 * the data is parsed when the event is played (`dataOf`), so that loading a long recording costs little
 * of the page's time while it plays.
 */
type CastEvent = [number, string, string];

/** `[12.5, "o", ...`: time and code from the start of an event line without parsing the rest. */
const EVENT_HEAD = /^\[\s*(-?[0-9][0-9.eE+-]*)\s*,\s*"([a-z])"/;

function dataOf(e: CastEvent): string {
  try {
    const v = JSON.parse(e[2]) as unknown[];
    return typeof v[2] === 'string' ? v[2] : JSON.stringify(v[2]);
  } catch {
    return ''; // a damaged line shows nothing rather than stopping the replay
  }
}

/**
 * Let playback timers, input and rendering go first: a background-priority task where the browser has
 * the Prioritized Task Scheduling API (Chromium), else a timer (queued behind the playback's own).
 */
function yieldToPage(): Promise<void> {
  const scheduler = (globalThis as { scheduler?: { postTask?(fn: () => void, o: { priority: string }): Promise<void> } }).scheduler;
  if (scheduler?.postTask) return scheduler.postTask(() => {}, { priority: 'background' });
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Parse at most this long before letting the page play and render. */
const PARSE_SLICE_MS = 8;

interface Size {
  cols: number;
  rows: number;
}

interface Callbacks {
  dispatch(name: string, data?: unknown): void;
  logger: { debug(...a: unknown[]): void; warn(...a: unknown[]): void };
}

interface DriverOptions {
  speed?: number;
  idleTimeLimit?: number;
}

type SeekTarget = number | string | { marker: unknown };

/** How long the tail request reads to find the last event's time. */
const TAIL_BYTES = 64 * 1024;
/** Output events closer together than this are fed to the terminal as one batch. */
const BATCH_MS = 1000 / 60;
/** A stall shorter than this shows no loader (avoids flicker while chunks arrive). */
const LOADER_DELAY_MS = 300;

/** Parses an asciicast v2/v3 stream line by line as it arrives; `until(t)` waits for the stream to reach t. */
export class CastStream {
  size?: Size;
  readonly events: CastEvent[] = [];
  done = false;
  error?: Error;
  bytes = 0;
  private version = 2;
  private rawPrev = 0;
  private shift = 0;
  private last = 0;
  private listeners = new Set<() => void>();
  private readonly abort = new AbortController();

  constructor(
    private readonly url: string,
    private readonly fetchOpts: RequestInit,
    private readonly idleLimitMs: number,
  ) {}

  /** The time (ms) up to which every event is known. */
  get loadedUntil(): number {
    return this.done ? Infinity : this.last;
  }

  get lastTime(): number {
    return this.last;
  }

  start(): void {
    void this.run().catch((e: Error) => {
      if (this.abort.signal.aborted) return;
      this.error = e;
      this.notify();
    });
  }

  stop(): void {
    this.abort.abort();
    this.listeners.clear();
  }

  /** Called whenever something arrived (or the stream ended or failed). */
  onProgress(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Resolves once `test()` holds, the stream ended or failed (then rejects). */
  waitUntil(test: () => boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.error) return off(), reject(this.error);
        if (test() || this.done) return off(), resolve();
      };
      const off = this.onProgress(check);
      check();
    });
  }

  private notify(): void {
    for (const fn of [...this.listeners]) fn();
  }

  private async run(): Promise<void> {
    const res = await fetch(this.url, { ...this.fetchOpts, signal: this.abort.signal });
    if (!res.ok || !res.body) throw new Error(`failed fetching recording from ${this.url}: ${res.status} ${res.statusText}`);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let rest = '';
    let slice = performance.now();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      this.bytes += value.length;
      rest += value;
      let from = 0;
      for (let nl = rest.indexOf('\n'); nl >= 0; nl = rest.indexOf('\n', from)) {
        this.line(rest.slice(from, nl));
        from = nl + 1;
      }
      rest = rest.slice(from);
      this.notify();
      // Chunks already received resolve read() at once: without this the loop would keep the page busy
      // until the whole file is in, and the first frame would wait for it.
      if (performance.now() - slice > PARSE_SLICE_MS) {
        await yieldToPage();
        slice = performance.now();
      }
    }
    if (rest.trim()) this.line(rest);
    if (!this.size) throw new Error('the recording has no asciicast header');
    this.done = true;
    this.notify();
  }

  private line(text: string): void {
    if (!text.trim()) return;
    if (!this.size) {
      const v = JSON.parse(text) as unknown;
      const h = v as { version?: number; width?: number; height?: number; term?: { cols?: number; rows?: number } };
      this.version = h.version ?? 2;
      const cols = this.version >= 3 ? h.term?.cols : h.width;
      const rows = this.version >= 3 ? h.term?.rows : h.height;
      if (!Array.isArray(v) && Number.isInteger(cols) && Number.isInteger(rows)) this.size = { cols: cols!, rows: rows! };
      else throw new Error('the recording does not start with an asciicast header');
      return;
    }
    const m = EVENT_HEAD.exec(text);
    if (!m) return;
    const time = Number(m[1]);
    if (!Number.isFinite(time)) return;
    // v2: time since the start; v3: time since the previous event.
    const raw = this.version >= 3 ? this.rawPrev + time : time;
    const gap = raw - this.rawPrev;
    this.rawPrev = raw;
    if (gap * 1000 > this.idleLimitMs) this.shift += gap * 1000 - this.idleLimitMs;
    const t = Math.max(this.last, raw * 1000 - this.shift);
    this.last = t;
    this.events.push([t, m[2], text]);
  }
}

/** The time (ms) of the recording's last event, from its tail; undefined when it cannot be told. */
export async function castEndHint(url: string, fetchOpts: RequestInit): Promise<number | undefined> {
  try {
    const res = await fetch(url, { ...fetchOpts, headers: { ...(fetchOpts.headers as Record<string, string> | undefined), range: `bytes=-${TAIL_BYTES}` } });
    if (res.status !== 206) return undefined;
    const lines = (await res.text()).split('\n');
    for (let i = lines.length - 1; i >= 1; i--) {
      try {
        const v = JSON.parse(lines[i]) as unknown;
        if (Array.isArray(v) && typeof v[0] === 'number') return v[0] * 1000;
      } catch {
        // a partial first line or garbage: look further up
      }
    }
  } catch {
    // no hint: the duration grows as the stream arrives
  }
  return undefined;
}

/** A driver factory for `AsciinemaPlayer.create(...)`. */
export function streamingCast(url: string, fetchOpts: RequestInit = {}) {
  return (cb: Callbacks, opts: DriverOptions) => castDriver(url, fetchOpts, cb, opts);
}

function castDriver(url: string, fetchOpts: RequestInit, { dispatch }: Callbacks, opts: DriverOptions) {
  const speed = opts.speed ?? 1;
  const stream = new CastStream(url, fetchOpts, opts.idleTimeLimit !== undefined ? opts.idleTimeLimit * 1000 : Infinity);
  let hint: number | undefined;
  let hinted: Promise<void> = Promise.resolve();
  let started = false;
  /** The user wants playback (it may still be stalled waiting for data). */
  let wantPlay = false;
  /** The clock runs: position = (now - base) * speed. */
  let running = false;
  let base = 0;
  let pausedAt = 0;
  let next = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let loaderTimer: ReturnType<typeof setTimeout> | undefined;
  let ended = false;
  /** A seek is waiting for the stream: it decides where playback goes on, not the arrival of data. */
  let seeking = false;
  let shownDuration: number | undefined;

  const position = () => (running ? (performance.now() - base) * speed : pausedAt);
  const duration = () => (stream.done ? stream.lastTime : Math.max(hint ?? 0, stream.lastTime));
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
    for (let e = stream.events[next]; e && e[0] <= t; e = stream.events[++next]) {
      if (e[1] === 'o') {
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
  }

  function resetTerminal() {
    dispatch('output', '\x1bc');
    dispatch('reset', { size: stream.size, init: '', theme: null });
    next = 0;
  }

  function schedule() {
    clearTimeout(timer);
    if (!running) return;
    const e = stream.events[next];
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
    if (wantPlay && !running && stream.events[next]) {
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
    for (let i = next; stream.events[i]; i++) if (stream.events[i][1] === 'o' && --left === 0) return true;
    return false;
  }

  /** Move to `target` (ms): forward by applying events, backward by replaying from the start. */
  function positionAt(target: number) {
    if (target < pausedAt || (next > 0 && stream.events[next - 1][0] > target)) resetTerminal();
    applyUntil(target);
    pausedAt = target;
  }

  return {
    async init() {
      await begin();
    },
    async play() {
      await begin();
      if (wantPlay) return true;
      if (ended || (stream.done && !stream.events[next])) {
        ended = false;
        resetTerminal();
        pausedAt = 0;
      }
      wantPlay = true;
      dispatch('play');
      if (stream.events[next] || stream.done) {
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
      // Percentages and ±10% are of the whole recording: know its length first.
      if (typeof where === 'string') await hinted;
      let target = resolveSeek(where);
      if (target === undefined) return false;
      target = Math.max(0, target);
      if (running) stopClock();
      let waited = false;
      if (target > stream.loadedUntil) {
        // Beyond what has arrived: wait for the stream to get there.
        waited = true;
        seeking = true;
        dispatch('loading');
        try {
          await stream.waitUntil(() => stream.lastTime >= target!);
        } finally {
          seeking = false;
        }
      }
      target = Math.min(target, stream.done ? stream.lastTime : target);
      ended = false;
      positionAt(target);
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
        let i = next - 1;
        let left = -n + 1;
        while (i > 0 && (stream.events[i][1] !== 'o' || --left > 0)) i--;
        const t = i > 0 ? stream.events[i][0] : 0;
        resetTerminal();
        applyUntil(t);
        pausedAt = t;
      } else {
        await stream.waitUntil(() => outputsAhead(n));
        let left = n;
        let i = next;
        for (; stream.events[i]; i++) if (stream.events[i][1] === 'o' && --left === 0) break;
        const t = stream.events[i]?.[0] ?? stream.lastTime;
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
    },
    getTiming: timing,
    getDuration: () => duration() / 1000,
  };
}
