import crypto from 'node:crypto';
import fs from 'node:fs';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import xterm from '@xterm/headless';
import type { IBuffer, IMarker, Terminal } from '@xterm/headless';
import { NUL_RUN_CODES } from './index.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { escapeTerminal } from '../audit/format.ts';
import { VigilError } from '../../src/errors.ts';
import { TerminalSafeFilter } from './terminal-safe.ts';

/** A text event (`o`, `i`, `r`, …) or a run of NUL bytes (vigil extension: the data is the count). */
export type AsciicastEvent = [number, string, string] | [number, (typeof NUL_RUN_CODES)['o' | 'i'], number];

export interface Asciicast {
  header: { version: number; width: number; height: number; timestamp?: number; title?: string; command?: string; env?: Record<string, string> };
  events: AsciicastEvent[];
}

/** A recording whose bytes cannot be trusted: a damaged line, or not the bytes its upload logged. */
export class RecordingIntegrityError extends VigilError {
  constructor(message: string) {
    super('VIGIL_RECORDING_DAMAGED', message);
  }
}

/** What reading a recording to its end established (filled in once its events have all been read). */
export interface RecordingDigest {
  sha256: string;
  bytes: number;
  /** The last line had no newline and was not a whole event: cut short while it was being written. */
  partialLastLine: boolean;
}

/** A recording read as it streams in (object storage, a long cast): events are parsed line by line. */
export interface StreamedAsciicast {
  header: Asciicast['header'];
  events: AsyncIterable<AsciicastEvent>;
  /** Set once `events` has been read to its end (SHA-256 of every byte read, for `recording.stored`). */
  digest?: RecordingDigest;
}

const isNulRun = (code: string): code is (typeof NUL_RUN_CODES)['o' | 'i'] => code === NUL_RUN_CODES.o || code === NUL_RUN_CODES.i;

/** Everything recorded on one stream (`o` output or `i` input) as text, NUL runs expanded. */
export function streamText(cast: Asciicast, stream: 'o' | 'i'): string {
  let text = '';
  for (const [, code, data] of cast.events) {
    if (code === stream) text += data;
    else if (code === NUL_RUN_CODES[stream]) text += '\0'.repeat(data as number);
  }
  return text;
}

function parseHeader(line: string): Asciicast['header'] {
  let header: Asciicast['header'];
  try {
    header = JSON.parse(line) as Asciicast['header'];
  } catch (e) {
    throw new RecordingIntegrityError(`line 1 (the header) is damaged: ${(e as Error).message}`);
  }
  if (header?.version !== 2) throw new Error(`unsupported asciicast version ${header?.version}`);
  return header;
}

/**
 * One event line: the event, `undefined` for a well-formed event this player has no use for (vigil.binary
 * summaries, future extensions), or the reason the line is not an event.
 */
function parseEventLine(line: string): AsciicastEvent | undefined | { damaged: string } {
  let e: unknown;
  try {
    e = JSON.parse(line);
  } catch (err) {
    return { damaged: line ? `not JSON (${(err as Error).message})` : 'empty line' };
  }
  if (!Array.isArray(e) || e.length < 3 || typeof e[0] !== 'number' || !Number.isFinite(e[0]) || typeof e[1] !== 'string') {
    return { damaged: 'not an asciicast event ([time, code, data])' };
  }
  if (typeof e[2] === 'string') return e as [number, string, string];
  if (isNulRun(e[1])) {
    if (Number.isSafeInteger(e[2]) && e[2] >= 0) return e as AsciicastEvent;
    return { damaged: `a NUL run with a count that is not a whole number (${JSON.stringify(e[2])})` };
  }
  if (e[1] === 'o' || e[1] === 'i' || e[1] === 'r') return { damaged: `a "${e[1]}" event whose data is not text` };
  return undefined;
}

/**
 * The event on line `lineNo`, or undefined for one to skip. A damaged line is an error, except the last
 * line when it lacks its newline: a recording still being written (or cut short by a crash) ends that way.
 */
function eventOfLine(line: string, lineNo: number, complete: boolean, digest?: { partialLastLine: boolean }): AsciicastEvent | undefined {
  const e = parseEventLine(line);
  if (!e || !('damaged' in e)) return e;
  if (!complete) {
    if (digest) digest.partialLastLine = true;
    return undefined;
  }
  throw new RecordingIntegrityError(`line ${lineNo} is damaged: ${e.damaged}`);
}

/** Parse an asciicast v2 file. A damaged event line is an error, except a partial last line (see eventOfLine). */
export function parseAsciicast(text: string): Asciicast {
  const lines = text.split('\n');
  const header = parseHeader(lines[0]);
  const events: Asciicast['events'] = [];
  // The text after the last newline is a line still being written ('' when the file ends with a newline).
  const last = lines.length - 1;
  for (let i = 1; i < lines.length; i++) {
    if (i === last && lines[i] === '') break;
    const e = eventOfLine(lines[i], i + 1, i < last);
    if (e) events.push(e);
  }
  return { header, events };
}

/** The lines of a byte stream, each whole (UTF-8 decoded), hashing every byte on the way. */
async function* linesOf(input: Readable, hash: crypto.Hash, counted: { bytes: number }): AsyncGenerator<{ text: string; complete: boolean }> {
  let pending: Buffer[] = [];
  for await (const chunk of input as AsyncIterable<Buffer | string>) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    hash.update(buf);
    counted.bytes += buf.length;
    let from = 0;
    for (let nl = buf.indexOf(0x0a); nl !== -1; nl = buf.indexOf(0x0a, from)) {
      pending.push(buf.subarray(from, nl));
      yield { text: Buffer.concat(pending).toString('utf8'), complete: true };
      pending = [];
      from = nl + 1;
    }
    if (from < buf.length) pending.push(buf.subarray(from));
  }
  if (pending.length) yield { text: Buffer.concat(pending).toString('utf8'), complete: false };
}

/**
 * Read an asciicast from a stream (a local file or object storage, wherever it lives): the header at once,
 * the events as they are iterated, so a player holds one line at a time, not the whole recording. Every
 * byte is hashed on the way: once the events are read to the end, `digest` holds the SHA-256 to compare
 * with the one `recording.stored` logged. A damaged line throws RecordingIntegrityError naming it.
 */
export async function streamAsciicast(input: Readable): Promise<StreamedAsciicast> {
  const hash = crypto.createHash('sha256');
  const counted = { bytes: 0 };
  const lines = linesOf(input, hash, counted);
  const first = await lines.next();
  if (first.done) {
    input.destroy();
    throw new RecordingIntegrityError('empty recording');
  }
  let header: Asciicast['header'];
  try {
    header = parseHeader(first.value.text);
  } catch (e) {
    input.destroy();
    throw e;
  }
  const cast: StreamedAsciicast = { header, events: events() };
  async function* events(): AsyncGenerator<AsciicastEvent> {
    const partial = { partialLastLine: false };
    try {
      let lineNo = 1;
      for (let r = await lines.next(); !r.done; r = await lines.next()) {
        const e = eventOfLine(r.value.text, ++lineNo, r.value.complete, partial);
        if (e) yield e;
      }
      cast.digest = { sha256: hash.digest('hex'), bytes: counted.bytes, partialLastLine: partial.partialLastLine };
    } finally {
      input.destroy();
    }
  }
  return cast;
}

export function readAsciicast(file: string): Asciicast {
  return parseAsciicast(fs.readFileSync(file, 'utf8'));
}

export interface PlayOptions {
  /** Playback speed factor (2 = twice as fast). */
  speed?: number;
  /** Cap on any pause between events, in seconds. */
  idleLimit?: number;
  signal?: AbortSignal;
  /**
   * The recorded bytes exactly as they were sent, escape sequences and all. Without it, output passes the
   * terminal-safe filter (terminal-safe.ts): a recorded session must not be able to drive the player's
   * terminal (clipboard writes, titles, queries whose answers would be typed into the player's input).
   */
  raw?: boolean;
}

/**
 * Play the output of a recording to `out` with its original timing (scaled by speed, idle capped), made
 * terminal-safe unless `raw`; what the output left set (alternate screen, hidden cursor) is undone at the end.
 */
export async function playAsciicast(cast: Asciicast | StreamedAsciicast, out: NodeJS.WritableStream, opts: PlayOptions = {}): Promise<void> {
  const speed = opts.speed && opts.speed > 0 ? opts.speed : 1;
  const idle = opts.idleLimit && opts.idleLimit > 0 ? opts.idleLimit : Infinity;
  let prev = 0;
  const filter = opts.raw ? undefined : new TerminalSafeFilter();
  const write = async (chunk: string | Buffer) => {
    if (chunk.length && !out.write(chunk)) await new Promise((r) => out.once('drain', r));
  };
  try {
    await playEvents();
  } finally {
    if (filter) await write(filter.end());
  }
  async function playEvents(): Promise<void> {
    for await (const [t, code, data] of cast.events) {
      if (opts.signal?.aborted) return;
      const wait = Math.min(Math.max(0, t - prev), idle) / speed;
      prev = t;
      if (wait > 0.001) await sleep(wait * 1000, undefined, { signal: opts.signal }).catch(() => {});
      // Interrupted during the pause: what was due after it is not played any more.
      if (opts.signal?.aborted) return;
      if (code === 'o') {
        await write(filter ? filter.write(data as string) : (data as string));
      } else if (code === NUL_RUN_CODES.o && !filter) {
        // The bytes as they were sent (a terminal ignores NUL), in bounded slices.
        for (let left = data as number; left > 0 && !opts.signal?.aborted; left -= NUL_SLICE.length) {
          await write(left >= NUL_SLICE.length ? NUL_SLICE : NUL_SLICE.subarray(0, left));
        }
      }
    }
  }
}

const NUL_SLICE = Buffer.alloc(64 * 1024);
/** A recording's terminal size is replayed at most this large (the gateway records no larger: proxies/ssh MAX_TERMINAL_*). */
const MAX_REPLAY_COLS = 1000;
const MAX_REPLAY_ROWS = 500;

/**
 * The text of the recording as `--print` shows it (rendered by a headless terminal), trailing blank lines
 * removed: the scrollback and the final screen, and before them everything the session erased on the way,
 * each followed by a `[vigil: …]` line saying what happened when: the screen cleared (ED 2), the scrollback
 * cleared (ED 3), a full reset (RIS), and the last screen of each full-screen program (alternate screen),
 * in place where the program ran. Lines overwritten in place (cursor up, erase line) show as they ended.
 */
export async function renderFinalText(cast: Asciicast | StreamedAsciicast): Promise<string> {
  const term = new xterm.Terminal({ cols: Math.min(cast.header.width || 80, MAX_REPLAY_COLS), rows: Math.min(cast.header.height || 24, MAX_REPLAY_ROWS), scrollback: 100_000, allowProposedApi: true });
  try {
    const history = new ScreenHistory(term);
    for await (const [t, code, data] of cast.events) {
      history.now = t;
      // NUL runs are skipped: a terminal ignores NUL.
      if (code === 'o') await new Promise<void>((r) => term.write(data as string, r));
      else if (code === 'r') {
        const m = /^(\d+)x(\d+)$/.exec(data as string);
        if (m) term.resize(Math.min(Math.max(1, Number(m[1])), MAX_REPLAY_COLS), Math.min(Math.max(1, Number(m[2])), MAX_REPLAY_ROWS));
      }
    }
    return directionControlsShown(history.finish());
  } finally {
    term.dispose();
  }
}

/**
 * The session's terminal drew every character left to right, but the auditor reads --print in a viewer that
 * may obey bidi controls (a bidi-aware terminal, an editor, a browser): an override or isolate would show
 * the commands reordered from what ran, a line or paragraph separator would break a line. Shown as \uXXXX.
 */
const DIRECTION_CONTROLS = /[\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
function directionControlsShown(text: string): string {
  return text.replace(DIRECTION_CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

type Marker = IMarker | undefined;
const ALT_SCREEN_MODES = new Set([47, 1047, 1049]);

/**
 * Text the terminal is about to lose, kept as it goes: the parser calls these handlers before it acts on
 * the sequence, so the buffer still holds what the sequence erases. Normal-buffer lines already kept are
 * behind `printedUpTo`, so nothing is printed twice.
 */
class ScreenHistory {
  now = 0;
  private readonly pieces: string[] = [];
  /** The last normal-buffer line already kept (undefined: none). On a line that stays: erased lines lose their markers. */
  private printedUpTo: Marker;
  /** Where the running full-screen program was started, and the last screens of those that ended. */
  private altStart: Marker;
  private altAfterLine = false;
  private altScreens: { at: Marker; after: boolean; text: string[] }[] = [];

  constructor(private readonly term: Terminal) {
    const parser = term.parser;
    const modes = (params: (number | number[])[]) => params.some((p) => typeof p === 'number' && ALT_SCREEN_MODES.has(p));
    parser.registerCsiHandler({ prefix: '?', final: 'h' }, (params) => {
      if (modes(params) && this.isNormal()) {
        // The program's screen goes after the cursor line, or before it when the line is still empty.
        this.altStart = term.registerMarker(0);
        this.altAfterLine = term.buffer.normal.cursorX > 0;
      }
      return false;
    });
    parser.registerCsiHandler({ prefix: '?', final: 'l' }, (params) => {
      if (modes(params)) this.leaveAlternate('closed');
      return false;
    });
    parser.registerCsiHandler({ final: 'J' }, (params) => {
      const mode = params[0] ?? 0;
      if (this.isNormal() && mode === 2 && this.screenHasText()) this.keep(this.normalLines(this.firstUnprinted(), Infinity), 'screen cleared', 'screen');
      if (this.isNormal() && mode === 3) this.keep(this.normalLines(this.firstUnprinted(), this.term.buffer.normal.baseY), 'scrollback cleared', 'scrollback');
      return false;
    });
    parser.registerEscHandler({ final: 'c' }, () => {
      this.leaveAlternate('ended by a terminal reset');
      this.keep(this.normalLines(this.firstUnprinted(), Infinity), 'terminal reset (RIS)', 'all');
      return false;
    });
  }

  /** Everything kept, then the final screen (a session ending in a full-screen program: its screen last). */
  finish(): string {
    this.leaveAlternate('still open when the recording ended');
    const rest = this.normalLines(this.firstUnprinted(), Infinity);
    while (rest.length && rest[rest.length - 1] === '') rest.pop();
    return [...this.pieces, ...rest].join('\n');
  }

  private screenHasText(): boolean {
    const buf = this.term.buffer.normal;
    return bufferLines(buf, buf.baseY, buf.length).some((l) => l !== '');
  }

  private isNormal(): boolean {
    return this.term.buffer.active.type === 'normal';
  }

  private at(): string {
    return `${this.now.toFixed(1)} s`;
  }

  private firstUnprinted(): number {
    return this.printedUpTo && !this.printedUpTo.isDisposed ? this.printedUpTo.line + 1 : 0;
  }

  /** The full-screen program's last screen, to be shown where it was started. */
  private leaveAlternate(how: string): void {
    if (this.isNormal()) return;
    const buf = this.term.buffer.alternate;
    const screen = bufferLines(buf, 0, buf.length);
    while (screen.length && screen[screen.length - 1] === '') screen.pop();
    this.altScreens.push({
      at: this.altStart,
      after: this.altAfterLine,
      text: [`[vigil: full-screen program (alternate screen) ${how} at ${this.at()}; its last screen:]`, ...screen, `[vigil: end of the full-screen program's screen]`],
    });
    this.altStart = undefined;
  }

  /** Normal-buffer lines from..to, with the screens of the full-screen programs that ran among them. */
  private normalLines(from: number, to: number): string[] {
    const buf = this.term.buffer.normal;
    const end = Math.min(to, buf.length);
    const out: string[] = [];
    let at = from;
    const lineOf = (s: (typeof this.altScreens)[number]) => (s.at && !s.at.isDisposed ? s.at.line + (s.after ? 1 : 0) : at);
    const placed = this.altScreens.filter((s) => lineOf(s) <= end);
    for (const s of placed) {
      const line = Math.max(at, Math.min(end, lineOf(s)));
      out.push(...bufferLines(buf, at, line), ...s.text);
      s.at?.dispose();
      at = line;
    }
    this.altScreens = this.altScreens.filter((s) => !placed.includes(s));
    out.push(...bufferLines(buf, at, end));
    return out;
  }

  /** Keep `lines` (about to be erased by `what`) with a line saying so; nothing when they are all blank. */
  private keep(lines: string[], what: string, erased: 'screen' | 'scrollback' | 'all'): void {
    while (lines.length && lines[lines.length - 1] === '') lines.pop();
    if (lines.length) this.pieces.push(...lines, `[vigil: ${what} at ${this.at()}]`);
    this.printedUpTo?.dispose();
    const buf = this.term.buffer.normal;
    // What stays in the buffer after the sequence acts: the scrollback after ED 2 (already kept), the screen
    // after ED 3 (not kept: it may change yet), nothing after a reset.
    this.printedUpTo = erased === 'screen' && buf.baseY > 0 ? this.term.registerMarker(-buf.cursorY - 1) : undefined;
  }
}

function bufferLines(buf: IBuffer, from: number, to: number): string[] {
  const lines: string[] = [];
  for (let i = from; i < to; i++) lines.push((buf.getLine(i)?.translateToString(true) ?? '').trimEnd());
  return lines;
}

// ---------------------------------------------------------------------------------------------------------
// Database sessions: the statement transcript, rebuilt from the session's audit events (a database session
// has no terminal recording; its db.query events are the record of what ran).

/** Protocols whose sessions replay as a statement transcript. */
export const TRANSCRIPT_PROTOCOLS: ReadonlySet<string> = new Set(['postgres', 'mysql']);

export interface TranscriptSession {
  session_id: string;
  user: string;
  roles: string[];
  target: string;
  protocol: string;
  host?: string;
  login?: string;
  database?: string;
  source: string;
  started?: string;
  ended?: string;
  end_reason?: string;
  end_outcome?: string;
  duration_ms?: number;
}

export interface TranscriptEntry {
  kind: 'statement' | 'running' | 'cancel';
  /** When the statement began (its record's time less its duration) and when it was recorded. */
  start: string;
  time: string;
  /** Seconds from the session start to `start`. */
  offset_s?: number;
  database?: string;
  sql: string;
  params?: unknown[];
  /** Postgres: simple / extended / function_call; MySQL: the command (COM_QUERY, COM_STMT_EXECUTE, …). */
  protocol?: string;
  statement?: string;
  command?: string;
  outcome: 'success' | 'failure' | 'unknown';
  duration_ms?: number;
  rows_returned?: number;
  rows_affected?: number;
  error?: { message: string; sqlstate?: string; code?: number };
  /** Anything else the record carries (copy, suspended, reason, not_executed, …). */
  extra?: Record<string, unknown>;
}

export interface Transcript {
  session: TranscriptSession;
  entries: TranscriptEntry[];
}

const KNOWN_QUERY_DETAILS = new Set([
  'sql', 'query', 'params', 'protocol', 'statement', 'statement_id', 'command', 'duration_ms', 'rows_returned', 'rows_affected', 'error', 'sqlstate', 'database',
]);

function errorOf(d: Record<string, unknown>): TranscriptEntry['error'] {
  const e = d.error;
  if (e && typeof e === 'object') {
    const o = e as { message?: unknown; sqlstate?: unknown; code?: unknown };
    return { message: String(o.message ?? ''), ...(typeof o.sqlstate === 'string' ? { sqlstate: o.sqlstate } : {}), ...(typeof o.code === 'number' ? { code: o.code } : {}) };
  }
  if (typeof e === 'string') return { message: e, ...(typeof d.sqlstate === 'string' ? { sqlstate: d.sqlstate } : {}) };
  return undefined;
}

/** The transcript of one database session from its audit events (any order; sorted by time here). */
export function buildTranscript(sessionId: string, events: readonly AuditEvent[]): Transcript | undefined {
  const mine = events.filter((e) => e.session_id === sessionId).sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
  // The session.start record names the session's target as admitted (login, database); else the first.
  const first = mine.find((e) => e.type === 'session.start') ?? mine[0];
  if (!first || !TRANSCRIPT_PROTOCOLS.has(first.target?.protocol)) return undefined;
  const session: TranscriptSession = {
    session_id: sessionId,
    user: first.actor.user,
    roles: first.actor.roles ?? [],
    target: first.target.name,
    protocol: first.target.protocol,
    ...(first.target.host ? { host: first.target.host } : {}),
    ...(first.target.login ? { login: first.target.login } : {}),
    ...(first.target.database ? { database: first.target.database } : {}),
    source: first.source.port ? `${first.source.ip}:${first.source.port}` : first.source.ip,
  };
  const entries: TranscriptEntry[] = [];
  for (const e of mine) {
    const d = e.details ?? {};
    if (e.type === 'session.start') session.started = e.time;
    else if (e.type === 'session.end') {
      session.ended = e.time;
      session.end_outcome = e.outcome;
      if (typeof d.reason === 'string') session.end_reason = d.reason;
      if (typeof d.duration_ms === 'number') session.duration_ms = d.duration_ms;
    } else if (e.type === 'db.query' || e.type === 'db.query.start' || e.type === 'db.cancel') {
      const sql = typeof d.sql === 'string' ? d.sql : typeof d.query === 'string' ? d.query : '';
      const extra: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(d)) if (!KNOWN_QUERY_DETAILS.has(k) && v !== undefined) extra[k] = v;
      const entry: TranscriptEntry = {
        kind: e.type === 'db.query' ? 'statement' : e.type === 'db.cancel' ? 'cancel' : 'running',
        start: e.time,
        time: e.time,
        sql,
        outcome: e.outcome,
      };
      if (e.type === 'db.query' && typeof d.duration_ms === 'number') entry.start = microsBefore(e.time, d.duration_ms);
      if (e.target?.database) entry.database = e.target.database;
      if (Array.isArray(d.params)) entry.params = d.params;
      if (typeof d.protocol === 'string') entry.protocol = d.protocol;
      if (typeof d.statement === 'string') entry.statement = d.statement;
      else if (typeof d.statement_id === 'number') entry.statement = String(d.statement_id);
      if (typeof d.command === 'string') entry.command = d.command;
      if (typeof d.duration_ms === 'number') entry.duration_ms = d.duration_ms;
      if (typeof d.rows_returned === 'number') entry.rows_returned = d.rows_returned;
      if (typeof d.rows_affected === 'number') entry.rows_affected = d.rows_affected;
      const err = errorOf(d);
      if (err) entry.error = err;
      if (Object.keys(extra).length) entry.extra = extra;
      entries.push(entry);
    }
  }
  const origin = session.started ?? mine[0].time;
  for (const x of entries) x.offset_s = Math.round((Date.parse(x.start) - Date.parse(origin)) * 1000) / 1e6;
  // Statements in the order they began (records are written as they end; a long one ends after later ones).
  entries.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  return { session, entries };
}

/** The RFC 3339 µs time `ms` milliseconds before `time` (also RFC 3339 with µs). */
function microsBefore(time: string, ms: number): string {
  const micros = BigInt(Date.parse(time)) * 1000n + BigInt(Number(time.slice(23, 26)) || 0) - BigInt(Math.round(ms * 1000));
  const wholeMs = Number(micros / 1000n);
  const rest = Number(micros % 1000n);
  return new Date(wholeMs).toISOString().slice(0, 23) + String(rest).padStart(3, '0') + 'Z';
}

/** Terminal-safe text that keeps tabs (indentation in SQL) as they are. */
function safe(text: string): string {
  return text.split('\t').map(escapeTerminal).join('\t');
}

function literal(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'string') return `'${v.replaceAll("'", "''")}'`;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v);
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function ms(n: number): string {
  return n >= 1000 ? `${(n / 1000).toFixed(3)} s` : `${n.toFixed(3)} ms`;
}

/**
 * The transcript as a psql/mysql client log would read: a prompt with the database, the statement as sent
 * (multi-line statements keep their lines), its parameters, then the outcome with rows and time, prefixed
 * by the wall-clock start and the offset from the session start. Every line is terminal-safe.
 */
export function formatTranscript(t: Transcript): string {
  const s = t.session;
  const out: string[] = [];
  const head = `-- ${s.protocol} session ${s.session_id}: ${s.user}${s.roles.length ? ` (${s.roles.join(',')})` : ''} -> ${s.target}` +
    `${s.host ? ` (${s.host}` : ' ('}${s.login ? `${s.host ? ', ' : ''}login ${s.login}` : ''}${s.database ? `, database ${s.database}` : ''}) from ${s.source}`;
  out.push(safe(head.replace(' ()', '')));
  out.push(`-- started ${s.started ?? '(no session.start record)'}`);
  const prompt = s.protocol === 'mysql' ? (db: string | undefined) => `mysql [${db ?? '(none)'}]> ` : (db: string | undefined) => `${db ?? s.target}=> `;
  for (const x of t.entries) {
    const stamp = `[${x.start.slice(11, 26)} +${(x.offset_s ?? 0).toFixed(3)}s] `;
    if (x.kind === 'cancel') {
      out.push(safe(`${stamp}-- cancel request${x.sql ? ` (${x.sql})` : ''}: ${x.outcome === 'success' ? 'forwarded' : `refused${x.extra?.reason ? ` (${String(x.extra.reason)})` : ''}`}`));
      continue;
    }
    const lines = (x.sql || `(${x.command ?? 'no statement text'})`).split('\n');
    const sqlLines = lines.map((l, i) => (i === 0 ? `${stamp}${prompt(x.database)}${l}` : `${' '.repeat(stamp.length)}${' '.repeat(prompt(x.database).length - 3)}-> ${l}`));
    if (!/;\s*$/.test(lines[lines.length - 1]) && x.sql) sqlLines[sqlLines.length - 1] += ';';
    out.push(...sqlLines.map(safe));
    const indent = ' '.repeat(stamp.length);
    if (x.statement) out.push(safe(`${indent}-- prepared statement ${x.statement}${x.protocol ? ` (${x.protocol})` : ''}`));
    if (x.params?.length) out.push(safe(`${indent}-- parameters: ${x.params.map((p, i) => `$${i + 1} = ${literal(p)}`).join(', ')}`));
    if (x.kind === 'running') {
      out.push(`${indent}-- still running (recorded ${x.time})`);
      continue;
    }
    let result: string;
    if (x.outcome === 'failure') {
      const e = x.error;
      result = `ERROR${e?.code !== undefined ? ` ${e.code}` : ''}${e?.sqlstate ? ` (${e.sqlstate})` : ''}: ${e?.message ?? 'failed'}`;
    } else if (x.outcome === 'unknown') {
      result = 'outcome unknown (the session ended while it ran)';
    } else if (s.protocol === 'mysql') {
      // As the mysql client reports it; the protocol command is named unless it is a plain COM_QUERY.
      const rows = x.rows_returned !== undefined ? `${plural(x.rows_returned, 'row')} in set` : x.rows_affected !== undefined ? `Query OK, ${plural(x.rows_affected, 'row')} affected` : 'OK';
      result = x.command && x.command !== 'COM_QUERY' && x.sql ? `${x.command}: ${rows}` : rows;
    } else {
      const parts: string[] = [x.command ?? 'OK'];
      if (x.rows_returned !== undefined && (x.rows_returned > 0 || x.rows_affected === undefined)) parts.push(plural(x.rows_returned, 'row'));
      if (x.rows_affected !== undefined) parts.push(`${plural(x.rows_affected, 'row')} affected`);
      result = parts.join(', ');
    }
    const extras = x.extra ? Object.entries(x.extra).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`) : [];
    out.push(safe(`${indent}-- ${result}${x.duration_ms !== undefined ? ` (${ms(x.duration_ms)})` : ''}${extras.length ? `  [${extras.join(' ')}]` : ''}`));
  }
  const statements = t.entries.filter((x) => x.kind === 'statement');
  const failed = statements.filter((x) => x.outcome === 'failure').length;
  if (s.ended) {
    out.push(safe(`-- ended ${s.ended}${s.end_reason ? `: ${s.end_reason}` : ''}${s.duration_ms !== undefined ? `, after ${ms(s.duration_ms)}` : ''}; ${plural(statements.length, 'statement')}, ${failed} failed`));
  } else {
    out.push(`-- no session.end record yet (live, or the gateway stopped first); ${plural(statements.length, 'statement')}, ${failed} failed`);
  }
  return out.join('\n') + '\n';
}
