import fs from 'node:fs';
import path from 'node:path';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { iso, isoUntil, matcher, prefilters, sealedOutsideRange, type AuditQuery } from '../audit/read.ts';
import { parseRecordLine, recordHash } from '../audit/record.ts';
import { listSegments } from '../audit/segments.ts';

/** One matching record: the event's bytes exactly as stored (canonical JSON) and the parsed event. */
export interface StreamedRecord {
  seq: number;
  hash: string;
  eventJson: string;
  event: AuditEvent;
}

export interface StreamProgress {
  /** Bytes of segment files read so far, and the total of the segments to read (as of the start). */
  bytesRead: number;
  bytesTotal: number;
  matched: number;
}

export interface StreamOptions {
  /** Called after each chunk read (at most once per chunk, so a caller can throttle cheaply). */
  onProgress?: (p: StreamProgress) => void;
  /** Read size (default 1 MiB): the memory the reader holds besides one record. */
  chunkBytes?: number;
  /**
   * A record the query would consider that is left out: its line is damaged, or its bytes do not match its
   * hash (altered in the file). Evidence never carries such a record as if it were the log's; the caller
   * says how many were left out.
   */
  onLeftOut?: (seq: number | undefined, why: string) => void;
}

/**
 * Matching records of the audit log, oldest first, read segment by segment in fixed-size chunks: memory
 * stays flat whatever the size of the log (a line is held only until its record is consumed). The same
 * query semantics as `searchAuditLog` (substring pre-filters, then the parsed-event match); sealed segments
 * outside a time range are skipped by their `.meta` when it passes sealedOutsideRange's checks. Each
 * segment is read up to its size when reached: a live writer's later lines (and a torn last line without
 * its newline) are not part of this export. A damaged or altered record is left out and reported (onLeftOut).
 */
export async function* streamAuditRecords(dir: string, q: AuditQuery = {}, opts: StreamOptions = {}): AsyncGenerator<StreamedRecord> {
  const match = matcher(q);
  const pre = prefilters(q);
  const since = iso(q.since);
  const until = isoUntil(q.until);
  const segments: { file: string; size: number }[] = [];
  const names = listSegments(dir);
  for (let i = 0; i < names.length; i++) {
    const segment = names[i];
    if (sealedOutsideRange(dir, segment, names[i + 1], since, until)) continue;
    const file = path.join(dir, segment);
    segments.push({ file, size: fs.statSync(file).size });
  }
  const progress: StreamProgress = { bytesRead: 0, bytesTotal: segments.reduce((n, s) => n + s.size, 0), matched: 0 };
  const chunkBytes = opts.chunkBytes ?? 1024 * 1024;
  for (const { file, size } of segments) {
    if (size === 0) continue;
    // Lines are cut on the byte 0x0a (never inside a UTF-8 sequence), then decoded whole.
    let carry: Buffer | undefined;
    const stream = fs.createReadStream(file, { start: 0, end: size - 1, highWaterMark: chunkBytes });
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      progress.bytesRead += chunk.length;
      let start = 0;
      for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
        const piece = chunk.subarray(start, nl);
        const bytes: Buffer = carry ? Buffer.concat([carry, piece]) : piece;
        carry = undefined;
        start = nl + 1;
        const line = bytes.toString('utf8');
        if (pre.length && !pre.every((p) => line.includes(p))) continue;
        const rec = parseRecordLine(line);
        if (typeof rec === 'string') {
          opts.onLeftOut?.(undefined, `${path.basename(file)}: ${rec}`);
          continue;
        }
        let event: AuditEvent;
        try {
          event = JSON.parse(rec.eventJson) as AuditEvent;
        } catch {
          opts.onLeftOut?.(rec.seq, 'its event is not valid JSON');
          continue;
        }
        if (!match(line, event)) continue;
        if (recordHash(rec.seq, rec.prev, rec.eventJson) !== rec.hash) {
          opts.onLeftOut?.(rec.seq, 'its bytes do not match its hash');
          continue;
        }
        progress.matched++;
        yield { seq: rec.seq, hash: rec.hash, eventJson: rec.eventJson, event };
      }
      if (start < chunk.length) carry = carry ? Buffer.concat([carry, chunk.subarray(start)]) : Buffer.from(chunk.subarray(start));
      opts.onProgress?.(progress);
    }
  }
}
