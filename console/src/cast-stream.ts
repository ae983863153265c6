/**
 * A recording (asciicast v2/v3) read from its HTTP response as the chunks arrive (fetch + ReadableStream),
 * for the streaming replay driver (cast-driver.ts): the player's own "recording" driver downloads and parses
 * everything first, so a 1-hour cast of tens of MB would wait for all of it before the first frame.
 * The idle-time limit is applied while parsing (it depends only on what came before). The duration comes
 * from the file's last line (one small Range request for the tail, castEndHint); with an idle limit (or a v3
 * file, whose times are relative) that line does not tell it, and a second reading that holds no event
 * follows the times to the end.
 */

/**
 * [time in ms (idle limit applied), code, the line as it came]. Only time and code are read on arrival;
 * the data is parsed when the event is played (`dataOf`), so that loading a long recording costs little
 * of the page's time while it plays.
 */
export type CastEvent = [number, string, string];

/** `[12.5, "o", ...`: time and code from the start of an event line without parsing the rest. */
const EVENT_HEAD = /^\[\s*(-?[0-9][0-9.eE+-]*)\s*,\s*"([a-z])"/;

export function dataOf(e: CastEvent): string {
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

export interface Size {
  cols: number;
  rows: number;
}

/** How long the tail request reads to find the last event's time. */
const TAIL_BYTES = 64 * 1024;
/**
 * How much is read ahead of the play position (characters of event lines, and events): the stream waits
 * for playback to use what it holds before reading on, so memory does not grow with the recording.
 */
const WINDOW_CHARS = 8 * 1024 * 1024;
const WINDOW_EVENTS = 64 * 1024;
/** A line longer than this cannot be an event the page should hold: the replay stops with an error. */
export const MAX_LINE_CHARS = 8 * 1024 * 1024;

/**
 * Parses an asciicast v2/v3 stream line by line as it arrives. Events are numbered from 0 in file order;
 * only a bounded window of them is held: from the first one not yet `release`d up to what has been read
 * ahead. Going back to a released event means reading again from the start (`restart`), as a terminal's
 * state at any time is built from all the output before it.
 */
export class CastStream {
  size?: Size;
  /** The current reading reached the end of the recording. */
  done = false;
  /** The last event's time (ms, idle limit applied), once a reading has reached the end. */
  endTime?: number;
  error?: Error;
  bytes = 0;
  /** Held events from held[head] on; those before head are released and dropped at the next compaction. */
  private held: CastEvent[] = [];
  private head = 0;
  /** The number of the event at held[head]. */
  private first = 0;
  private headerSeen = false;
  private heldChars = 0;
  /** The asciicast version, from the header. */
  version = 2;
  private rawPrev = 0;
  private shift = 0;
  private last = 0;
  private listeners = new Set<() => void>();
  private abort = new AbortController();
  /** Wakes the reader waiting for playback to release events. */
  private wake?: () => void;

  constructor(
    private readonly url: string,
    private readonly fetchOpts: RequestInit,
    readonly idleLimitMs: number,
    /** false: only follow the times (for the exact end with the idle limit applied), holding no event. */
    private readonly holdEvents = true,
  ) {}

  /** The time (ms) up to which every event has been read. */
  get loadedUntil(): number {
    return this.done ? Infinity : this.last;
  }

  get lastTime(): number {
    return this.last;
  }

  /** Event number `i`, or undefined when it has not arrived yet or was released. */
  event(i: number): CastEvent | undefined {
    return i >= this.first ? this.held[this.head + i - this.first] : undefined;
  }

  /** Events numbered below `next` have been played: drop them, and read on if the window was full. */
  release(next: number): void {
    const n = Math.min(next - this.first, this.held.length - this.head);
    if (n <= 0) return;
    for (let i = this.head; i < this.head + n; i++) this.heldChars -= this.held[i][2].length;
    this.head += n;
    this.first += n;
    // Compact once most of the array is released: each event is copied a bounded number of times.
    if (this.head > 1024 && this.head * 2 > this.held.length) {
      this.held = this.held.slice(this.head);
      this.head = 0;
    }
    this.wake?.();
  }

  /** Whether events before `i` have been released (so going back there needs `restart`). */
  released(i: number): boolean {
    return i < this.first;
  }

  /** Read the recording again from its start (numbering from 0 again). */
  restart(): void {
    this.abort.abort();
    this.abort = new AbortController();
    this.wake?.();
    Object.assign(this, { held: [], head: 0, first: 0, heldChars: 0, headerSeen: false, rawPrev: 0, shift: 0, last: 0, done: false, error: undefined });
    this.start();
  }

  start(): void {
    const signal = this.abort.signal;
    void this.run(signal).catch((e: Error) => {
      if (signal.aborted) return;
      this.error = e;
      this.notify();
    });
  }

  stop(): void {
    this.abort.abort();
    this.wake?.();
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

  private get full(): boolean {
    return this.heldChars >= WINDOW_CHARS || this.held.length - this.head >= WINDOW_EVENTS;
  }

  private async run(signal: AbortSignal): Promise<void> {
    const res = await fetch(this.url, { ...this.fetchOpts, signal });
    if (!res.ok || !res.body) throw new Error(`failed fetching recording from ${this.url}: ${res.status} ${res.statusText}`);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let rest = '';
    let slice = performance.now();
    for (;;) {
      // Hold the reading (and, through the connection's flow control, the server) until playback catches up.
      while (this.full && !signal.aborted) await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
      if (signal.aborted) return void reader.cancel().catch(() => {});
      const { value, done } = await reader.read();
      if (signal.aborted) return;
      if (done) break;
      this.bytes += value.length;
      rest += value;
      let from = 0;
      for (let nl = rest.indexOf('\n'); nl >= 0; nl = rest.indexOf('\n', from)) {
        this.line(rest.slice(from, nl));
        from = nl + 1;
      }
      rest = rest.slice(from);
      if (rest.length > MAX_LINE_CHARS) {
        void reader.cancel().catch(() => {});
        throw new Error(`the recording has a line longer than ${MAX_LINE_CHARS / 1024 / 1024} MiB (at about byte ${this.bytes - rest.length}): it cannot be replayed here; use \`vigil replay\``);
      }
      this.notify();
      // Chunks already received resolve read() at once: without this the loop would keep the page busy
      // until the whole file is in, and the first frame would wait for it.
      if (performance.now() - slice > PARSE_SLICE_MS) {
        await yieldToPage();
        slice = performance.now();
      }
    }
    if (signal.aborted) return;
    if (rest.trim()) this.line(rest);
    if (!this.headerSeen) throw new Error('the recording has no asciicast header');
    this.done = true;
    this.endTime = this.last;
    this.notify();
  }

  private line(text: string): void {
    if (!text.trim()) return;
    if (!this.headerSeen) {
      const v = JSON.parse(text) as unknown;
      const h = v as { version?: number; width?: number; height?: number; term?: { cols?: number; rows?: number } };
      this.version = h.version ?? 2;
      const cols = this.version >= 3 ? h.term?.cols : h.width;
      const rows = this.version >= 3 ? h.term?.rows : h.height;
      if (!Array.isArray(v) && Number.isInteger(cols) && Number.isInteger(rows)) this.size = { cols: cols!, rows: rows! };
      else throw new Error('the recording does not start with an asciicast header');
      this.headerSeen = true;
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
    if (!this.holdEvents) return;
    this.held.push([t, m[2], text]);
    this.heldChars += text.length;
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
