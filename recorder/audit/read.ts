import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { isCheckpointLine, parseRecordLine, parseSegmentName } from './record.ts';
import { listSegments, readSegmentMeta, splitSegment } from './segments.ts';

export interface AuditRecord {
  seq: number;
  hash: string;
  event: AuditEvent;
}

export interface AuditQuery {
  user?: string;
  /** Target name. */
  target?: string;
  /** Type prefix: `ssh.` or `session.start`. */
  type?: string;
  session?: string;
  /** Inclusive bounds on the event time (RFC 3339 UTC, as written by createEvent). */
  since?: Date;
  until?: Date;
  /** Keep only the newest N matches (still returned oldest first). */
  limit?: number;
  /** Leave out `audit.checkpoint` records (chain plumbing) unless `type` asks for them. */
  hideCheckpoints?: boolean;
}

export interface SearchResult {
  records: AuditRecord[];
  /** Segments read, and segments skipped by their time range without being opened. */
  segmentsScanned: number;
  segmentsSkipped: number;
}

export function iso(d: Date | undefined): string | undefined {
  return d ? d.toISOString().replace(/Z$/, '000Z') : undefined; // same 6-digit form as event times
}

/**
 * An inclusive upper bound (a query's `until`) as events write times: it covers its whole millisecond
 * (a Date has no finer unit), so `until` 23:59:59.999 reaches an event at 23:59:59.999400.
 */
export function isoUntil(d: Date | undefined): string | undefined {
  return d ? d.toISOString().replace(/Z$/, '999Z') : undefined;
}

/** A time bound both as events write times (RFC 3339 UTC, microseconds: compares as a string) and as a Date (milliseconds, floored). */
export interface TimeBound {
  time: string;
  date: Date;
}

/** Microseconds since the epoch in the 6-digit form event times have. */
export function eventTimeOfMicros(us: number): string {
  const ms = Math.floor(us / 1000);
  return new Date(ms).toISOString().replace(/Z$/, `${String(us - ms * 1000).padStart(3, '0')}Z`);
}

const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?([Zz]|[+-]\d{2}:?\d{2})?$/;

/**
 * An ISO time given as a range bound (`--since`, `--until`), read at the precision it is written in.
 * An inclusive upper bound covers the whole of its last unit: `--until 2026-11-30T23:59:59Z` reaches
 * 23:59:59.999999 and `--until 2026-11-30` the whole UTC day, so a period ending there and the next one
 * starting at 00:00:00 leave no event in neither (event times have microseconds). A time of day needs a
 * zone (`Z` or `+02:00`): without one it would be read in whatever zone the host is set to, and the same
 * command would select other events on another machine. A bare date is a UTC day.
 * Returns undefined when `text` does not start like a date (the caller may read a duration); throws an
 * Error saying what is wrong with one that does.
 */
export function parseIsoBound(text: string, edge: 'since' | 'until'): TimeBound | undefined {
  const s = text.trim();
  if (!/^\d{4}-\d\d-\d\d/.test(s)) return undefined;
  const m = ISO_TIME.exec(s);
  if (!m) throw new Error(`expected an ISO time like 2026-01-31T12:00:00Z or a date like 2026-01-31, got ${JSON.stringify(text)}`);
  const [, y, mo, d, h, mi, sec, frac, zone] = m;
  if (h !== undefined && zone === undefined) {
    throw new Error(`${JSON.stringify(text)} has no time zone; add Z for UTC (or an offset like +02:00): a time without one would depend on the zone this host is set to`);
  }
  const fields = [Number(y), Number(mo) - 1, Number(d), Number(h ?? 0), Number(mi ?? 0), Number(sec ?? 0)] as const;
  const utc = Date.UTC(...fields);
  const back = new Date(utc);
  // Date.UTC rolls 2026-02-30 over into March: a date that does not exist is refused, not moved.
  if (back.getUTCFullYear() !== fields[0] || back.getUTCMonth() !== fields[1] || back.getUTCDate() !== fields[2] || back.getUTCHours() !== fields[3] || back.getUTCMinutes() !== fields[4] || back.getUTCSeconds() !== fields[5]) {
    throw new Error(`${JSON.stringify(text)} is not a valid time`);
  }
  let offsetMin = 0;
  if (zone && !/^[Zz]$/.test(zone)) {
    const z = /^([+-])(\d{2}):?(\d{2})$/.exec(zone)!;
    offsetMin = (z[1] === '-' ? -1 : 1) * (Number(z[2]) * 60 + Number(z[3]));
  }
  const digits = frac ?? '';
  const micros = Number(digits.padEnd(6, '0').slice(0, 6));
  // Finer than a microsecond (more than six digits): the bound still has to hold every event at or within it.
  const finer = /[1-9]/.test(digits.slice(6));
  const start = (utc - offsetMin * 60_000) * 1000 + micros + (edge === 'since' && finer ? 1 : 0);
  const unit = frac !== undefined ? 10 ** Math.max(0, 6 - digits.length) : sec !== undefined ? 1e6 : h !== undefined ? 60e6 : 86_400e6;
  const us = edge === 'since' ? start : start + unit - 1;
  return { time: eventTimeOfMicros(us), date: new Date(Math.floor(us / 1000)) };
}

export function matcher(q: AuditQuery): (line: string, e: AuditEvent) => boolean {
  const since = iso(q.since);
  const until = isoUntil(q.until);
  return (_line, e) =>
    (q.user === undefined || e.actor?.user === q.user) &&
    (q.target === undefined || e.target?.name === q.target) &&
    (q.type === undefined || (typeof e.type === 'string' && e.type.startsWith(q.type))) &&
    (!q.hideCheckpoints || q.type !== undefined || e.type !== 'audit.checkpoint') &&
    (q.session === undefined || e.session_id === q.session) &&
    (since === undefined || e.time >= since) &&
    (until === undefined || e.time <= until);
}

// Cheap substring pre-filters so most non-matching lines are never JSON-parsed.
export function prefilters(q: AuditQuery): string[] {
  const f: string[] = [];
  if (q.user !== undefined) f.push(`"user":${JSON.stringify(q.user)}`);
  if (q.session !== undefined) f.push(`"session_id":${JSON.stringify(q.session)}`);
  if (q.target !== undefined) f.push(`"name":${JSON.stringify(q.target)}`);
  if (q.type !== undefined) f.push(`"type":${JSON.stringify(q.type).slice(0, -1)}`);
  return f;
}

/**
 * Records of one segment's text, in order; a partially written last line is ignored. A line that is not
 * a record (its frame or its event JSON damaged) is skipped like a malformed frame: reading shows what
 * can be read, and `vigil audit verify` is what reports the damage.
 */
export function* recordsOf(text: string, filter?: (line: string) => boolean): Generator<AuditRecord & { line: string }> {
  for (const line of splitSegment(text).lines) {
    if (filter && !filter(line)) continue;
    const rec = parseRecordLine(line);
    if (typeof rec === 'string') continue;
    const event = parseEvent(rec.eventJson);
    if (!event) continue;
    yield { seq: rec.seq, hash: rec.hash, event, line };
  }
}

function parseEvent(json: string): AuditEvent | undefined {
  try {
    const e: unknown = JSON.parse(json);
    return e !== null && typeof e === 'object' && !Array.isArray(e) ? (e as AuditEvent) : undefined;
  } catch {
    return undefined;
  }
}

/** Bytes read at each end of a segment to check its `.meta` against its first and last record. */
const META_PROBE_BYTES = 64 * 1024;

/**
 * Whether a sealed segment may be left unread for the time range [since, until] (event-time strings, as
 * iso()/isoUntil() give) because its `.meta` sidecar puts all its events outside it. Nothing signs the
 * sidecar: `vigil audit verify` recomputes it from the records and reports one that disagrees. A reader
 * cannot afford that, so it trusts a sidecar only as far as two small reads can check it — the segment is
 * not the newest, the next one starts right after the sidecar's last_seq, the segment's first and last
 * records are its first_seq and last_seq, the last is the sealing checkpoint, and both records' times lie
 * within its span — and otherwise reads the segment. Cheap because only segments about to be skipped are
 * checked. A sidecar rewritten with care to narrow the span within those bounds can still mislead a reader;
 * verify is what catches that.
 */
export function sealedOutsideRange(dir: string, segment: string, next: string | undefined, since: string | undefined, until: string | undefined): boolean {
  if (next === undefined || (since === undefined && until === undefined)) return false;
  const meta = readSegmentMeta(dir, segment);
  if (!meta || !((since !== undefined && meta.max_time < since) || (until !== undefined && meta.min_time > until))) return false;
  if (meta.min_time > meta.max_time) return false;
  if (meta.first_seq !== parseSegmentName(segment)?.firstSeq || meta.last_seq + 1 !== parseSegmentName(next)?.firstSeq) return false;
  const ends = endRecords(path.join(dir, segment));
  if (!ends) return false;
  const [first, last] = ends;
  const within = (t: unknown) => typeof t === 'string' && t >= meta.min_time && t <= meta.max_time;
  return first.seq === meta.first_seq && last.seq === meta.last_seq && isCheckpointLine(last.line) && within(first.event.time) && within(last.event.time);
}

/** The first and last record of a segment that ends with a whole line; undefined when either is unreadable or longer than the probe. */
function endRecords(file: string): [AuditRecord & { line: string }, AuditRecord & { line: string }] | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const size = fs.fstatSync(fd).size;
    const span = Math.min(size, META_PROBE_BYTES);
    const head = Buffer.allocUnsafe(span);
    const tail = Buffer.allocUnsafe(span);
    if (fs.readSync(fd, head, 0, span, 0) !== span || fs.readSync(fd, tail, 0, span, size - span) !== span) return undefined;
    const firstEnd = head.indexOf(0x0a);
    if (firstEnd < 0 || tail[span - 1] !== 0x0a) return undefined;
    const lastStart = tail.lastIndexOf(0x0a, span - 2) + 1;
    // The last line must start inside the probe: a line cut at the probe's start is not a record.
    if (lastStart === 0 && span < size) return undefined;
    const [first] = recordsOf(head.toString('utf8', 0, firstEnd + 1));
    const [last] = recordsOf(tail.toString('utf8', lastStart, span));
    return first && last ? [first, last] : undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Search the audit log. With a time range, sealed segments whose recorded time span (their `.meta`
 * sidecar, when it passes sealedOutsideRange's checks) lies outside it are skipped without being read
 * through; the open segment is always read.
 */
export async function searchAuditLog(dir: string, q: AuditQuery = {}): Promise<SearchResult> {
  const match = matcher(q);
  const pre = prefilters(q);
  const filter = pre.length ? (line: string) => pre.every((p) => line.includes(p)) : undefined;
  const since = iso(q.since);
  const until = isoUntil(q.until);
  const out: AuditRecord[] = [];
  let scanned = 0;
  let skipped = 0;
  const segments = listSegments(dir);
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i];
    if (sealedOutsideRange(dir, segment, segments[i + 1], since, until)) {
      skipped++;
      continue;
    }
    scanned++;
    const text = await fsp.readFile(path.join(dir, segment), 'utf8');
    for (const r of recordsOf(text, filter)) {
      if (!match(r.line, r.event)) continue;
      out.push({ seq: r.seq, hash: r.hash, event: r.event });
      if (q.limit && out.length > q.limit * 2) out.splice(0, out.length - q.limit);
    }
  }
  if (q.limit && out.length > q.limit) out.splice(0, out.length - q.limit);
  return { records: out, segmentsScanned: scanned, segmentsSkipped: skipped };
}

export interface TailOptions {
  /** How many of the newest records to start with (default 20). */
  lines?: number;
  /** Keep waiting for new records. */
  follow?: boolean;
  /** Poll interval while following (default 200 ms). */
  pollMs?: number;
  signal?: AbortSignal;
}

/** The newest records, then (with follow) every new record as the writer makes it durable. */
export async function* tailAuditLog(dir: string, opts: TailOptions = {}): AsyncGenerator<AuditRecord> {
  const want = opts.lines ?? 20;
  const segments = listSegments(dir);
  // Walk back from the newest segment until we have enough records.
  const start: AuditRecord[] = [];
  for (let i = segments.length - 1; i >= 0 && start.length < want; i--) {
    const recs = [...recordsOf(fs.readFileSync(path.join(dir, segments[i]), 'utf8'))].map(({ seq, hash, event }) => ({ seq, hash, event }));
    start.unshift(...recs);
  }
  let lastSeq = 0;
  for (const r of start.slice(Math.max(0, start.length - want))) {
    yield r;
  }
  lastSeq = start.length ? start[start.length - 1].seq : 0;
  if (!opts.follow) return;
  // Follow the newest segment from where we are. A segment is left only after its sealing checkpoint has
  // been read: the writer creates the next segment before it writes the seal, so the next one can appear
  // while the current one still has records to come.
  let current = segments[segments.length - 1];
  let offset = current ? fs.statSync(path.join(dir, current)).size : 0;
  let partial = '';
  let decoder = new StringDecoder('utf8');
  while (!opts.signal?.aborted) {
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 200));
    if (!current) {
      current = listSegments(dir)[0];
      if (!current) continue;
    }
    for (;;) {
      const file = path.join(dir, current);
      let size: number;
      try {
        size = fs.statSync(file).size;
      } catch {
        break;
      }
      let next: string | undefined;
      if (size > offset) {
        const fd = fs.openSync(file, 'r');
        const buf = Buffer.alloc(size - offset);
        fs.readSync(fd, buf, 0, buf.length, offset);
        fs.closeSync(fd);
        offset = size;
        const text = partial + decoder.write(buf);
        const end = text.lastIndexOf('\n');
        partial = text.slice(end + 1);
        for (const r of recordsOf(text.slice(0, end + 1))) {
          if (r.event.type === 'audit.checkpoint' && typeof r.event.details?.next_segment === 'string') next = r.event.details.next_segment;
          if (r.seq <= lastSeq) continue;
          lastSeq = r.seq;
          yield { seq: r.seq, hash: r.hash, event: r.event };
        }
      }
      if (!next) break;
      current = next;
      offset = 0;
      partial = '';
      decoder = new StringDecoder('utf8');
    }
  }
}
