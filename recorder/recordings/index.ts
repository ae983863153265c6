import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { isUtf8 } from 'node:buffer';
import { setTimeout as sleep } from 'node:timers/promises';
import { escapeJsonUtf8, maxEscapedLength } from './json-string.ts';
import crypto from 'node:crypto';
import type { AsciicastHeader, AsciicastOptions, AsciicastWriter, BinarySummary, LiveCast, RecordingSource, RecordingStore, RemoteRecordings, WrittenRecording } from '../types.ts';
import { LiveRecordings } from './live.ts';
import type { RemoteUpload, S3Recordings } from './s3.ts';

export interface RecordingStoreOptions {
  /** Output queued but not yet written beyond this is a failure (disk far slower than the session):
   *  reported through onError so the session is ended rather than buffering without bound. */
  maxQueuedBytes?: number;
  /** onDrained subscribers are called once the queue has fallen to this many bytes (default 1 MiB): low
   *  enough that a paused session resumes before the writer runs dry, so disk and session overlap. */
  drainedBelowBytes?: number;
  /** Most output bytes serialised into one write (default 1 MiB), so the queue shrinks step by step. */
  writeBatchBytes?: number;
  /** Output events closer together than this are merged into one (seconds; default 0.01). */
  coalesceSeconds?: number;
  /** A backlog smaller than SMALL_WRITE waits this long (ms; default 10) for more events before it is
   *  written, unless someone waits for the drain or the recording is closing. */
  smallWriteDelayMs?: number;
  /** Object storage the recordings are uploaded to while they are written (recording.storage kind s3);
   *  the local file is the first copy and the source of the upload. */
  remote?: S3Recordings;
}

/** Serialised bytes below which a write is worth delaying: a relay delivers 32 KiB chunks, and every one
 *  (a NUL-run event is ~40 bytes) would otherwise cost a write syscall and a thread-pool round trip. */
const SMALL_WRITE = 64 * 1024;

/** Session ids are ULIDs; anything else is mapped to a safe directory name rather than refused, so
 *  opening a recording never throws and never escapes the store. */
function dirName(sessionId: string): string {
  const s = sessionId.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 128);
  return s || '_';
}

/**
 * Recordings live at `<dir>/<session id>/ch<channel>.cast`, asciicast v2: a JSON header line, then one
 * `[seconds, code, data]` line per event (`o` output, `i` input — only when the caller records input —
 * and `r` resize "WxH").
 */
export function openRecordingStore(dir: string, opts: RecordingStoreOptions = {}): RecordingStore {
  const idOf = (sessionId: string, channel: number) => `${dirName(sessionId)}/ch${Number.isInteger(channel) && channel >= 0 ? channel : 0}.cast`;
  const live = new LiveRecordings<CastWriter>();
  const pathOf = (id: string): string => {
    const p = path.resolve(dir, id);
    if (!p.startsWith(path.resolve(dir) + path.sep) || !/^[A-Za-z0-9_-]+\/ch\d+\.cast$/.test(id)) throw new TypeError(`invalid recording id: ${id}`);
    return p;
  };
  return {
    openAsciicast(sessionId, channel, header, options) {
      const id = idOf(sessionId, channel);
      const file = path.join(dir, id);
      const w = new CastWriter(id, file, header, opts, options, channel, opts.remote?.begin(id, file, sessionId, channel));
      live.opened(sessionId, w, (done) => w.onFinished(done));
      return w;
    },
    watch(sessionId, onCast) {
      return live.watch(sessionId, onCast);
    },
    async list(sessionId) {
      const sub = dirName(sessionId);
      let names: string[];
      try {
        names = await fsp.readdir(path.join(dir, sub));
      } catch {
        names = [];
      }
      // Stored in object storage: the local copy is removed once the upload is complete.
      // (Object storage unreachable: what is here locally is still listed; with nothing local, the error.)
      if (opts.remote) {
        const remote = await opts.remote.list(sub).catch((e: Error) => {
          if (names.length === 0) throw e;
          return [];
        });
        for (const id of remote) names.push(id.slice(sub.length + 1));
      }
      return [...new Set(names)]
        .map((n) => /^ch(\d+)\.cast$/.exec(n))
        .filter((m): m is RegExpExecArray => m !== null)
        .sort((a, b) => Number(a[1]) - Number(b[1]))
        .map((m) => `${sub}/${m[0]}`);
    },
    async open(id) {
      const file = pathOf(id);
      const local = await fsp.stat(file).then((st) => (st.isFile() ? st.size : undefined), () => undefined);
      if (local !== undefined) return localSource(id, file, local);
      return opts.remote?.open(id);
    },
    close: (graceMs) => opts.remote?.close(graceMs) ?? Promise.resolve(),
    resumeUploads: () => opts.remote?.resume(dir) ?? Promise.resolve(0),
    salvageLostUploads: () => opts.remote?.startSalvage(),
    remote: opts.remote && remoteForRetention(opts.remote),
    pathOf,
  };
}

function remoteForRetention(s3: S3Recordings): RemoteRecordings {
  return {
    location: `s3://${s3.opts.bucket}/${s3.opts.prefix}`,
    sessionsOlderThan: (cutoffMs) => s3.sessionsOlderThan(cutoffMs),
    deleteSessions: (sessions) => s3.deleteSessions(sessions),
  };
}

function localSource(id: string, file: string, size: number): RecordingSource {
  return {
    id,
    size,
    where: { kind: 'local', path: file },
    read: (start = 0, end = size - 1) => fs.createReadStream(file, { start, end: Math.max(start, end), highWaterMark: 64 * 1024 }),
  };
}

/**
 * A run of at least this many NUL bytes in output (or recorded input) is written as one extension event
 * holding the count instead of `\u0000` six bytes apiece. Shorter runs stay inline in `o`/`i` text.
 */
export const NUL_RUN_MIN = 64;
/** Extension event codes for runs of NUL bytes (asciicast v2 lets players ignore codes they do not know;
 *  terminals ignore NUL, so stock players show exactly the same screen). Data: the number of bytes. */
export const NUL_RUN_CODES = { o: 'vigil.nul.o', i: 'vigil.nul.i' } as const;

/** Extension event codes closing a stream recorded as `binary: 'summary'`; data: {offset, bytes, sha256}. */
export const BINARY_CODES = { o: 'vigil.binary.o', i: 'vigil.binary.i' } as const;

type Code = 'o' | 'i' | 'r' | (typeof NUL_RUN_CODES)['o' | 'i'] | (typeof BINARY_CODES)['o' | 'i'];

/** U+FFFD as UTF-8: text may contain it legitimately; the decoder also emits it for invalid bytes. */
const REPLACEMENT = Buffer.from('\ufffd');

/** One stream's bytes since it stopped being text: counted and hashed, not written. */
interface BinaryTail {
  offset: number;
  bytes: number;
  hash: crypto.Hash;
  summary?: BinarySummary;
}

/** Room for an event's framing: `[123456.123456, "vigil.nul.o", "` … `"]\n`. */
const EVENT_FRAME = 40;

/**
 * One asciicast event waiting to be written. Its data is a list of parts, in order: well-formed UTF-8
 * bytes (escaped into JSON when written) or text already escaped as a JSON string body; a NUL-run event
 * has no parts and its data is `bytes`. `bytes` counts what the caller handed in (raw bytes); `bound` is
 * the most bytes the escaped parts (or `raw`, JSON written as is) can take.
 */
type Pending = { t: number; code: Code; parts: (Buffer | string)[]; bytes: number; bound: number; raw?: string };

/** Zeros to compare chunks against natively (runs of NUL are found without a byte-by-byte JS loop). */
const ZEROS = Buffer.alloc(16 * 1024);

/** End (exclusive) of the run of NUL bytes starting at `at`. */
function nulRunEnd(buf: Buffer, at: number): number {
  let j = at;
  while (j < buf.length) {
    const len = Math.min(ZEROS.length, buf.length - j);
    if (buf.compare(ZEROS, 0, len, j, j + len) === 0) {
      j += len;
      continue;
    }
    while (buf[j] === 0) j++;
    return j;
  }
  return j;
}

/** The first run of at least NUL_RUN_MIN NUL bytes at or after `from`, written into `run`; false if none. */
function findNulRun(buf: Buffer, from: number, run: { start: number; end: number }): boolean {
  let i = buf.indexOf(0, from);
  while (i !== -1 && buf.length - i >= NUL_RUN_MIN) {
    // Cheap rejection of short runs (a NUL in text) before measuring the run.
    if (buf[i + NUL_RUN_MIN - 1] !== 0) {
      i = buf.indexOf(0, i + 1);
      continue;
    }
    const end = nulRunEnd(buf, i);
    if (end - i >= NUL_RUN_MIN) {
      run.start = i;
      run.end = end;
      return true;
    }
    i = buf.indexOf(0, end);
  }
  return false;
}

/**
 * StringDecoder's own fields (Node's JS and native decoders both expose them): a multibyte character split
 * across chunks has its first `lastTotal - lastNeed` bytes in `lastChar`, and `lastNeed` bytes to come.
 */
interface DecoderState {
  lastChar?: Buffer;
  lastNeed?: number;
  lastTotal?: number;
}

/** Bytes the decoder still needs to finish a character split across chunks (0 at a character boundary). */
function splitBytes(d: StringDecoder): number {
  return (d as unknown as DecoderState).lastNeed ?? 1;
}

/** How many literal U+FFFD (EF BF BD) the decoder will find in `data`, counting one begun in the bytes it holds. */
function replacementsIn(decoder: StringDecoder, data: Buffer): number {
  const { lastChar, lastNeed, lastTotal } = decoder as unknown as DecoderState;
  let n = 0;
  // A chunk shorter than what the held character still needs does not finish it (the decoder keeps
  // holding it, and it is counted with the chunk that does); comparing past its end would throw.
  if (lastChar && lastNeed && lastTotal === REPLACEMENT.length && data.length >= lastNeed) {
    const held = lastTotal - lastNeed;
    if (lastChar.compare(REPLACEMENT, 0, held, 0, held) === 0 && data.compare(REPLACEMENT, held, lastTotal, 0, lastNeed) === 0) n = 1;
  }
  for (let at = data.indexOf(REPLACEMENT); at !== -1; at = data.indexOf(REPLACEMENT, at + REPLACEMENT.length)) n++;
  return n;
}

/** Whether `text` holds more than `limit` U+FFFD (stops counting there: binary output holds thousands). */
function moreReplacementsThan(text: string, limit: number): boolean {
  let n = 0;
  for (let at = text.indexOf('\ufffd'); at !== -1; at = text.indexOf('\ufffd', at + 1)) if (++n > limit) return true;
  return false;
}

/** Bytes that are well-formed UTF-8 on their own, with no character of an earlier chunk pending. */
function wholeUtf8(decoder: StringDecoder, data: Buffer | string): boolean {
  return typeof data !== 'string' && splitBytes(decoder) === 0 && isUtf8(data);
}

/** JSON string body of `text` (JSON.stringify without the quotes). */
function jsonBody(text: string): string {
  return JSON.stringify(text).slice(1, -1);
}

class CastWriter implements AsciicastWriter, LiveCast {
  private readonly start = performance.now();
  private readonly out = new StringDecoder('utf8');
  private readonly in = new StringDecoder('utf8');
  /** Serialised lines (the header) waiting for the first write. */
  private pending: string[] = [];
  private queue: Pending[] = [];
  /** Bytes accepted but not yet written (queued or in the write in flight), as the caller counts them. */
  private queued = 0;
  private drainedCbs: (() => void)[] = [];
  private writing?: Promise<void>;
  private handle?: Promise<fsp.FileHandle>;
  private error?: Error;
  private errorCbs: ((e: Error) => void)[] = [];
  private closed = false;
  private readonly maxQueued: number;
  private readonly drainedBelow: number;
  private readonly batchBytes: number;
  private readonly coalesce: number;
  private readonly smallWriteDelay: number;
  /** Upper bound of the serialised size of what is queued (event framing included). */
  private queuedBound = 0;
  /** Bytes seen per stream, and the binary tail of a stream recorded as `summary`. */
  private readonly seen = { o: 0, i: 0 };
  private readonly binary: { o?: BinaryTail; i?: BinaryTail } = {};
  private readonly summariseBinary: boolean;
  /** File bytes written so far (whole lines only: advanced when a write completes). */
  private written = 0;
  /** SHA-256 and count of every byte that reached the file, a short write's part included (recording.closed). */
  private readonly fileHash = crypto.createHash('sha256');
  private fileBytes = 0;
  private digest?: WrittenRecording;
  /** Live followers (watch): each hears of every write as it lands, then `null` once the file is closed. */
  private readonly tails = new Set<(lines: Buffer | null) => void>();
  private finished = false;
  private finishedCbs: (() => void)[] = [];
  private readonly headerLine: string;

  constructor(
    readonly id: string,
    private readonly file: string,
    header: AsciicastHeader,
    opts: RecordingStoreOptions,
    options: AsciicastOptions = {},
    readonly channel = 0,
    /** Upload to object storage, told of every write as it lands and of the end. */
    private readonly upload?: RemoteUpload,
  ) {
    this.summariseBinary = options.binary === 'summary';
    this.maxQueued = opts.maxQueuedBytes ?? 64 * 1024 * 1024;
    this.drainedBelow = opts.drainedBelowBytes ?? 1024 * 1024;
    this.batchBytes = opts.writeBatchBytes ?? 1024 * 1024;
    this.coalesce = opts.coalesceSeconds ?? 0.01;
    this.smallWriteDelay = opts.smallWriteDelayMs ?? 10;
    const h: Record<string, unknown> = {
      version: 2,
      width: header.width,
      height: header.height,
      timestamp: Math.floor(header.timestamp),
      env: { TERM: header.term ?? 'xterm-256color' },
    };
    if (header.title !== undefined) h.title = header.title;
    if (header.command !== undefined) h.command = header.command;
    this.handle = (async () => {
      await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      return fsp.open(file, 'w', 0o600);
    })();
    this.handle.catch((e) => this.fail(e));
    this.headerLine = JSON.stringify(h) + '\n';
    this.pending.push(this.headerLine);
    this.kick();
  }

  private now(): number {
    return (performance.now() - this.start) / 1000;
  }

  private enqueue(code: Code, part: Buffer | string, bytes: number): void {
    if (this.error || this.closed || part.length === 0) return;
    const t = this.now();
    const bound = typeof part === 'string' ? part.length * 3 : maxEscapedLength(part.length);
    const last = this.queue[this.queue.length - 1];
    if (last && last.code === code && code !== 'r' && t - last.t < this.coalesce && last.bytes < 65536) {
      last.parts.push(part);
      last.bytes += bytes;
      last.bound += bound;
      this.queuedBound += bound;
    } else {
      this.queue.push({ t, code, parts: [part], bytes, bound });
      this.queuedBound += bound + EVENT_FRAME;
    }
    this.accepted(bytes);
  }

  /** A run of `count` NUL bytes: one event with the count (merged with a NUL run just before it). */
  private enqueueNulRun(code: Code, count: number): void {
    const t = this.now();
    const last = this.queue[this.queue.length - 1];
    if (last && last.code === code && t - last.t < this.coalesce) last.bytes += count;
    else {
      this.queue.push({ t, code, parts: [], bytes: count, bound: 64 });
      this.queuedBound += 64 + EVENT_FRAME;
    }
    this.accepted(count);
  }

  private accepted(bytes: number): void {
    this.queued += bytes;
    // Last resort: a caller that ignores queuedBytes/onDrained must not make the gateway buffer without bound.
    if (this.queued > this.maxQueued) {
      this.fail(new Error(`recording ${this.id} fell more than ${this.maxQueued} bytes behind the session`));
      return;
    }
    this.kick();
  }

  /**
   * Well-formed UTF-8 at a character boundary is kept as bytes (a copy: the caller may reuse its buffer)
   * and escaped in one pass when written; anything else (a character split across chunks, invalid bytes)
   * goes through the decoder, which carries split characters over and maps invalid bytes to U+FFFD.
   * Either way the file holds exactly JSON.stringify of the decoded text.
   */
  private part(decoder: StringDecoder, data: Buffer | string, wellFormed = wholeUtf8(decoder, data)): Buffer | string {
    if (typeof data === 'string') return jsonBody(data);
    if (wellFormed) return Buffer.from(data);
    return jsonBody(decoder.write(data));
  }

  output(data: Buffer | string): void {
    this.record('o', this.out, data);
  }

  input(data: Buffer | string): void {
    this.record('i', this.in, data);
  }

  private readonly run = { start: 0, end: 0 };

  /**
   * Text goes into `o`/`i` events; runs of NUL bytes (binary output, `head -c N /dev/zero`, sparse
   * files) into NUL-run events, so they cost a few bytes per run instead of 6 per byte. A character the
   * decoder still holds when a run starts is flushed first (as U+FFFD, exactly as the decoder would emit
   * it on meeting the NUL), so text plus runs is still exactly the decoded output.
   */
  private record(code: 'o' | 'i', decoder: StringDecoder, data: Buffer | string): void {
    if (this.error || this.closed) return;
    const offset = this.seen[code];
    this.seen[code] += data.length;
    const tail = this.binary[code];
    if (tail) {
      tail.hash.update(data);
      tail.bytes += data.length;
      return;
    }
    // Checked once per chunk here and handed on (the common case: a whole chunk of text).
    const wellFormed = wholeUtf8(decoder, data);
    if (this.summariseBinary && typeof data !== 'string' && !wellFormed) {
      // notText() has queued the chunk as text when it is text after all.
      if (this.notText(decoder, data)) this.startBinary(code, decoder, data, offset);
      return;
    }
    const run = this.run;
    if (typeof data === 'string' || !findNulRun(data, 0, run)) {
      this.enqueue(code, this.part(decoder, data, wellFormed), data.length);
      return;
    }
    let from = 0;
    do {
      if (run.start > from) {
        const text = data.subarray(from, run.start);
        this.enqueue(code, this.part(decoder, text), text.length);
      }
      if (splitBytes(decoder) !== 0) {
        const rest = decoder.end();
        if (rest) this.enqueue(code, jsonBody(rest), 0);
      }
      if (this.error) return;
      this.enqueueNulRun(NUL_RUN_CODES[code], run.end - run.start);
      from = run.end;
    } while (!this.error && findNulRun(data, from, run));
    if (from < data.length) {
      const text = data.subarray(from);
      this.enqueue(code, this.part(decoder, text), text.length);
    }
  }

  /**
   * Whether a chunk that failed the fast UTF-8 check holds bytes that are not text. Decoding a copy of the
   * decoder's state would be exact but costly; instead the chunk is decoded for real and, when it is text
   * after all (a character split across chunks), its text is queued here as it would have been.
   */
  private notText(decoder: StringDecoder, data: Buffer): boolean {
    const literal = replacementsIn(decoder, data);
    const text = decoder.write(data);
    // Every U+FFFD beyond the ones written as such stands for bytes that are not UTF-8. (A mere "any U+FFFD
    // but no literal one" test let random output through whenever it happened to hold EF BF BD.)
    if (moreReplacementsThan(text, literal)) return true;
    // Text after all (NUL runs in it stay inline here: correct, only less compact — and rare).
    this.enqueue(decoder === this.out ? 'o' : 'i', jsonBody(text), data.length);
    return false;
  }

  /** From this chunk on, `code` is counted and hashed only; a visible note says so in the recording. */
  private startBinary(code: 'o' | 'i', decoder: StringDecoder, data: Buffer, offset: number): void {
    const hash = crypto.createHash('sha256').update(data);
    this.binary[code] = { offset, bytes: data.length, hash };
    decoder.end();
    const note = `\r\n[vigil: non-text ${code === 'o' ? 'output' : 'input'} from byte ${offset} on is recorded as its size and SHA-256 only]\r\n`;
    this.enqueue(code, jsonBody(note), 0);
  }

  binarySummary(stream: 'o' | 'i'): BinarySummary | undefined {
    const tail = this.binary[stream];
    if (!tail) return undefined;
    // Final once the stream is over (the channel closed); before close a copy keeps the hash open.
    return tail.summary ?? { offset: tail.offset, bytes: tail.bytes, sha256: tail.hash.copy().digest('hex') };
  }

  /** At close: the summary as an extension event, and a visible line for players. */
  private closeBinary(code: 'o' | 'i'): void {
    const tail = this.binary[code];
    if (!tail) return;
    const summary = { offset: tail.offset, bytes: tail.bytes, sha256: tail.hash.digest('hex') };
    tail.summary = summary;
    this.enqueue(code, jsonBody(`[vigil: ${summary.bytes} bytes of non-text ${code === 'o' ? 'output' : 'input'}, SHA-256 ${summary.sha256}]\r\n`), 0);
    // bound: room for the summary JSON (two integers and 64 hex digits).
    this.queue.push({ t: this.now(), code: BINARY_CODES[code], parts: [], bytes: 0, bound: 200, raw: JSON.stringify(summary) });
    this.queuedBound += 200 + EVENT_FRAME;
    this.kick();
  }

  resize(width: number, height: number): void {
    const r = `${width}x${height}`;
    this.enqueue('r', jsonBody(r), r.length);
  }

  get queuedBytes(): number {
    return this.queued;
  }

  /** `cb` runs once, as soon as the queue is at or below the low-water mark (or the recording failed). */
  onDrained(cb: () => void): void {
    if (this.queued <= this.drainedBelow || this.error) setImmediate(cb);
    else this.drainedCbs.push(cb);
  }

  private notifyDrained(): void {
    const cbs = this.drainedCbs;
    this.drainedCbs = [];
    for (const cb of cbs) {
      try {
        cb();
      } catch {
        // a subscriber's bug must not break the recording
      }
    }
  }

  /** Each subscriber hears about the (first) failure exactly once, even when it subscribes late. */
  onError(cb: (err: Error) => void): void {
    if (this.error) cb(this.error);
    else this.errorCbs.push(cb);
  }

  private fail(e: Error): void {
    if (this.error) return;
    this.error = e;
    this.queue = [];
    this.pending = [];
    this.queued = 0;
    this.queuedBound = 0;
    // Nothing more will be written: release anyone waiting for the backlog (the session is ended via onError).
    this.notifyDrained();
    const cbs = this.errorCbs;
    this.errorCbs = [];
    for (const cb of cbs) {
      try {
        cb(e);
      } catch {
        // a subscriber's bug must not break the session's writes
      }
    }
  }

  /** Serialise what is queued and write it in the background; one write at a time. */
  private kick(): void {
    if (this.writing || this.error) return;
    this.writing = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.drain());
  }

  private async drain(): Promise<void> {
    let scratch: Buffer | undefined;
    try {
      const h = await this.handle!;
      while (!this.error && (this.queue.length || this.pending.length)) {
        // A trickle of events (interactive output, or one NUL-run event per relayed chunk) is gathered
        // for a moment instead of costing a write each; nobody waits for it (event times are taken on
        // arrival, and the file is synced at close). While someone watches live, the watcher is waiting:
        // the trickle is written at once (more small writes, for watched sessions only).
        if (!this.closed && this.queuedBound < SMALL_WRITE && this.drainedCbs.length === 0 && this.tails.size === 0) {
          await sleep(this.smallWriteDelay);
          if (this.error) break;
        }
        // A bounded batch per write: the queue shrinks as the disk takes it, so onDrained fires while
        // the rest is still being written.
        let bytes = 0;
        let eventsBound = 0;
        let n = 0;
        for (; n < this.queue.length && bytes < this.batchBytes; n++) {
          bytes += this.queue[n].bytes;
          eventsBound += this.queue[n].bound + EVENT_FRAME;
        }
        this.queuedBound -= eventsBound;
        let bound = eventsBound;
        for (const line of this.pending) bound += line.length * 3;
        const batch = this.queue.slice(0, n);
        const lines = this.pending;
        this.queue = n === this.queue.length ? [] : this.queue.slice(n);
        this.pending = [];
        // Serialised straight into one buffer, no per-event strings for the data; the buffer is reused
        // while this drain runs (bulk output: no fresh multi-MiB allocation and page faults per batch).
        if (!scratch || scratch.length < bound) scratch = Buffer.allocUnsafeSlow(Math.max(bound, 64 * 1024));
        const buf = scratch;
        let o = 0;
        for (const line of lines) o += buf.write(line, o);
        for (const ev of batch) {
          if (ev.raw !== undefined) {
            o += buf.write(`[${ev.t.toFixed(6)}, "${ev.code}", ${ev.raw}]\n`, o);
            continue;
          }
          if (ev.parts.length === 0) {
            o += buf.write(`[${ev.t.toFixed(6)}, "${ev.code}", ${ev.bytes}]\n`, o, 'latin1');
            continue;
          }
          o += buf.write(`[${ev.t.toFixed(6)}, "${ev.code}", "`, o, 'latin1');
          for (const p of ev.parts) o = typeof p === 'string' ? o + buf.write(p, o) : escapeJsonUtf8(p, buf, o);
          o += buf.write('"]\n', o, 'latin1');
        }
        await this.writeHashed(h, buf.subarray(0, o));
        this.written += o;
        this.upload?.written(this.written);
        // Watchers get what just landed, copied (the scratch buffer is reused); nothing to do without them.
        if (this.tails.size) this.publish(Buffer.from(buf.subarray(0, o)));
        this.queued -= bytes;
        if (this.queued <= this.drainedBelow && this.drainedCbs.length) this.notifyDrained();
      }
    } catch (e) {
      this.fail(e as Error);
    } finally {
      this.writing = undefined;
    }
  }

  /** Write the whole buffer (a write may be short), hashing exactly what each write put in the file: after a
   *  failure the digest still describes what is on disk. */
  private async writeHashed(h: fsp.FileHandle, buf: Buffer): Promise<void> {
    let off = 0;
    while (off < buf.length) {
      const { bytesWritten } = await h.write(buf, off, buf.length - off);
      if (bytesWritten <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
      this.fileHash.update(buf.subarray(off, off + bytesWritten));
      this.fileBytes += bytesWritten;
      off += bytesWritten;
    }
  }

  /** Resolves once the file is closed, with the SHA-256 and size of what was written to it (a second call:
   *  the same, once the first has finished). */
  async close(): Promise<WrittenRecording> {
    if (this.closed) {
      await new Promise<void>((resolve) => this.onFinished(resolve));
      return this.digest!;
    }
    // Flush a multibyte character split at the very end (emitted as U+FFFD if incomplete).
    const restOut = this.out.end();
    const restIn = this.in.end();
    if (restOut) this.enqueue('o', jsonBody(restOut), 0);
    if (restIn) this.enqueue('i', jsonBody(restIn), 0);
    this.closeBinary('o');
    this.closeBinary('i');
    this.closed = true;
    while (this.writing) await this.writing;
    if (!this.error && (this.queue.length || this.pending.length)) {
      this.kick();
      while (this.writing) await this.writing;
    }
    try {
      const h = await this.handle!;
      if (!this.error) await h.sync();
      await h.close();
    } catch (e) {
      this.fail(e as Error);
    }
    this.digest = { sha256: this.fileHash.digest('hex'), bytes: this.fileBytes, ...(this.error ? { error: this.error } : {}) };
    // Whatever is on disk goes to object storage (after a local failure too: the session was ended, and
    // what was recorded up to then is evidence).
    this.upload?.finish(this.written);
    this.finish();
    return this.digest;
  }

  // ---- live followers (watch) -------------------------------------------------------------------------

  private publish(lines: Buffer | null): void {
    for (const t of this.tails) {
      try {
        t(lines);
      } catch {
        // A watcher's failure must never affect the recording.
      }
    }
  }

  /** The recording is complete: followers hear the end, and the store forgets it as live. */
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.publish(null);
    this.tails.clear();
    for (const cb of this.finishedCbs.splice(0)) cb();
  }

  onFinished(cb: () => void): void {
    if (this.finished) cb();
    else this.finishedCbs.push(cb);
  }

  follow(fromStart: boolean, onData: (lines: Buffer) => unknown, onEnd: () => void): () => void {
    let stopped = false;
    const end = () => {
      if (stopped) return;
      stopped = true;
      this.tails.delete(tail);
      onEnd();
    };
    // A watcher's failure ends its follow, never the recording (nor, through an unhandled error, the process).
    const deliver = (b: Buffer | null) => {
      if (stopped) return;
      if (b === null) return end();
      try {
        void Promise.resolve(onData(b)).catch(end);
      } catch {
        end();
      }
    };
    const tail = (b: Buffer | null) => deliver(b);
    const stop = () => {
      stopped = true;
      this.tails.delete(tail);
    };
    if (!fromStart) {
      if (this.finished) queueMicrotask(end);
      else {
        this.tails.add(tail);
        // From now: the header first (sizes, terminal type), unless it has not been written yet (then it
        // arrives with the first write).
        if (this.written > 0) queueMicrotask(() => deliver(Buffer.from(this.headerLine)));
      }
      return stop;
    }
    // From the start: what is on disk is read back in bounded chunks of whole lines, each after the watcher
    // took the one before (onData's promise), until the reader has caught up with `written`; only then does
    // it follow the writes as they land. `written` moves, and the writes are published, in one synchronous
    // step once a write has completed, so switching over loses and repeats nothing, and a watcher slower
    // than the session only reads further behind in the file: nothing is held in memory for it.
    void (async () => {
      let fh: fsp.FileHandle | undefined;
      try {
        let pos = 0;
        while (!stopped) {
          if (pos >= this.written) {
            if (this.finished) return end();
            this.tails.add(tail);
            return;
          }
          fh ??= await fsp.open(this.file, 'r');
          const lines = await readLines(fh, pos, this.written);
          if (stopped) return;
          if (lines.length === 0) throw new Error(`recording ${this.id}: no complete line at byte ${pos}`);
          pos += lines.length;
          await onData(lines);
        }
      } catch {
        end();
      } finally {
        await fh?.close().catch(() => {});
      }
    })();
    return stop;
  }
}

/** Bytes of recording a watcher following from the start is sent at a time (whole lines, so about this). */
export const CATCH_UP_CHUNK = 256 * 1024;

/**
 * The whole lines of `fh` from `pos` on, up to about CATCH_UP_CHUNK bytes and never past `limit` (a line
 * longer than the chunk is read whole). `limit` is where a completed write ended, so always a line's end.
 */
async function readLines(fh: fsp.FileHandle, pos: number, limit: number): Promise<Buffer> {
  let size = Math.min(CATCH_UP_CHUNK, limit - pos);
  for (;;) {
    const buf = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await fh.read(buf, got, size - got, pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    const lastNewline = got > 0 ? buf.lastIndexOf(0x0a, got - 1) : -1;
    if (lastNewline >= 0) return buf.subarray(0, lastNewline + 1);
    if (got < size || pos + size >= limit) return buf.subarray(0, got);
    size = Math.min(size * 2, limit - pos);
  }
}
