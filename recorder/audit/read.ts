import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { parseRecordLine } from './record.ts';
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

export function matcher(q: AuditQuery): (line: string, e: AuditEvent) => boolean {
  const since = iso(q.since);
  const until = iso(q.until);
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

/**
 * Search the audit log. With a time range, sealed segments whose recorded time span (their `.meta`
 * sidecar) lies outside it are skipped without being opened; the open segment is always read.
 */
export async function searchAuditLog(dir: string, q: AuditQuery = {}): Promise<SearchResult> {
  const match = matcher(q);
  const pre = prefilters(q);
  const filter = pre.length ? (line: string) => pre.every((p) => line.includes(p)) : undefined;
  const since = iso(q.since);
  const until = iso(q.until);
  const out: AuditRecord[] = [];
  let scanned = 0;
  let skipped = 0;
  for (const segment of listSegments(dir)) {
    if (since || until) {
      const meta = readSegmentMeta(dir, segment);
      if (meta && ((since && meta.max_time < since) || (until && meta.min_time > until))) {
        skipped++;
        continue;
      }
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
