import fs from 'node:fs';
import readline from 'node:readline';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import xterm from '@xterm/headless';
import { NUL_RUN_CODES } from './index.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { escapeTerminal } from '../audit/format.ts';

/** A text event (`o`, `i`, `r`, …) or a run of NUL bytes (vigil extension: the data is the count). */
export type AsciicastEvent = [number, string, string] | [number, (typeof NUL_RUN_CODES)['o' | 'i'], number];

export interface Asciicast {
  header: { version: number; width: number; height: number; timestamp?: number; title?: string; command?: string; env?: Record<string, string> };
  events: AsciicastEvent[];
}

/** A recording read as it streams in (object storage, a long cast): events are parsed line by line. */
export interface StreamedAsciicast {
  header: Asciicast['header'];
  events: AsyncIterable<AsciicastEvent>;
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
  const header = JSON.parse(line) as Asciicast['header'];
  if (header.version !== 2) throw new Error(`unsupported asciicast version ${header.version}`);
  return header;
}

/** One event line, or undefined for a line that is not one (a crash may leave a partial last line). */
function parseEventLine(line: string): AsciicastEvent | undefined {
  if (!line) return undefined;
  try {
    const e = JSON.parse(line);
    if (!Array.isArray(e) || typeof e[0] !== 'number' || typeof e[1] !== 'string') return undefined;
    if (typeof e[2] === 'string') return e as [number, string, string];
    if (isNulRun(e[1]) && Number.isSafeInteger(e[2]) && e[2] >= 0) return e as AsciicastEvent;
  } catch {
    // partial line
  }
  return undefined;
}

/** Parse an asciicast v2 file. Malformed event lines are skipped (a crash may leave a partial last line). */
export function parseAsciicast(text: string): Asciicast {
  const lines = text.split('\n');
  const header = parseHeader(lines[0]);
  const events: Asciicast['events'] = [];
  for (const line of lines.slice(1)) {
    const e = parseEventLine(line);
    if (e) events.push(e);
  }
  return { header, events };
}

/**
 * Read an asciicast from a stream (a local file or object storage, wherever it lives): the header at once,
 * the events as they are iterated, so a player holds one line at a time, not the whole recording.
 */
export async function streamAsciicast(input: Readable): Promise<StreamedAsciicast> {
  const lines = readline.createInterface({ input, crlfDelay: Infinity })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.done) {
    input.destroy();
    throw new Error('empty recording');
  }
  const header = parseHeader(first.value);
  async function* events(): AsyncGenerator<AsciicastEvent> {
    try {
      for (let r = await lines.next(); !r.done; r = await lines.next()) {
        const e = parseEventLine(r.value);
        if (e) yield e;
      }
    } finally {
      input.destroy();
    }
  }
  return { header, events: events() };
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
}

/** Play the output of a recording to `out` with its original timing (scaled by speed, idle capped). */
export async function playAsciicast(cast: Asciicast | StreamedAsciicast, out: NodeJS.WritableStream, opts: PlayOptions = {}): Promise<void> {
  const speed = opts.speed && opts.speed > 0 ? opts.speed : 1;
  const idle = opts.idleLimit && opts.idleLimit > 0 ? opts.idleLimit : Infinity;
  let prev = 0;
  for await (const [t, code, data] of cast.events) {
    if (opts.signal?.aborted) return;
    const wait = Math.min(Math.max(0, t - prev), idle) / speed;
    prev = t;
    if (wait > 0.001) await sleep(wait * 1000, undefined, { signal: opts.signal }).catch(() => {});
    if (code === 'o') {
      if (!out.write(data as string)) await new Promise((r) => out.once('drain', r));
    } else if (code === NUL_RUN_CODES.o) {
      // The bytes as they were sent (a terminal ignores NUL), in bounded slices.
      for (let left = data as number; left > 0 && !opts.signal?.aborted; left -= NUL_SLICE.length) {
        if (!out.write(left >= NUL_SLICE.length ? NUL_SLICE : NUL_SLICE.subarray(0, left))) await new Promise((r) => out.once('drain', r));
      }
    }
  }
}

const NUL_SLICE = Buffer.alloc(64 * 1024);

/** The text on the screen at the end of the recording (rendered by a headless terminal), trailing blank
 *  lines removed. Scrollback is included so nothing printed is lost. */
export async function renderFinalText(cast: Asciicast | StreamedAsciicast): Promise<string> {
  const term = new xterm.Terminal({ cols: cast.header.width || 80, rows: cast.header.height || 24, scrollback: 100_000, allowProposedApi: true });
  try {
    for await (const [, code, data] of cast.events) {
      // NUL runs are skipped: a terminal ignores NUL.
      if (code === 'o') await new Promise<void>((r) => term.write(data as string, r));
      else if (code === 'r') {
        const m = /^(\d+)x(\d+)$/.exec(data as string);
        if (m) term.resize(Math.max(1, Number(m[1])), Math.max(1, Number(m[2])));
      }
    }
    const buf = term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < buf.length; i++) lines.push((buf.getLine(i)?.translateToString(true) ?? '').trimEnd());
    while (lines.length && lines[lines.length - 1] === '') lines.pop();
    return lines.join('\n');
  } finally {
    term.dispose();
  }
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
