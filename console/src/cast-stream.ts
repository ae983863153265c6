/**
 * A recording (asciicast v2/v3) read from its HTTP response as the chunks arrive (fetch + ReadableStream),
 * for the streaming replay driver (cast-driver.ts): the player's own "recording" driver downloads and parses
 * everything first, so a 1-hour cast of tens of MB would wait for all of it before the first frame.
 * The idle-time limit is applied while parsing (it depends only on what came before). The duration comes
 * from the file's last line (one small Range request for the tail, castEndHint).
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
