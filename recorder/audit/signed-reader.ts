import fs from 'node:fs';
import path from 'node:path';
import { VigilError } from '../../src/errors.ts';
import { isCheckpointLine, parseRecordLine, parseSegmentName, type ParsedRecord } from './record.ts';
import { listSegments } from './segments.ts';

/** The chain on disk does not continue the record the shared index holds (rewritten, cut back, restored). */
export class ChainDivergedError extends VigilError {
  constructor(
    readonly seq: number,
    message: string,
  ) {
    super('VIGIL_AUDIT_CHAIN_DIVERGED', message);
  }
}

/** Where the reader stands: just after record `seq` (hash `hash`), at byte `offset` of `segment`. */
export interface ReaderPosition {
  segment: string;
  offset: number;
  seq: number;
  hash: string;
  /** Set once the segment's seal was read: the segment the chain continues in. */
  next?: string;
}

const CHUNK = 1024 * 1024;

/**
 * Reads a data dir's chain forward from a given record, handing out only *signed* records: those up to
 * and including the newest checkpoint read. Records after it wait for the next checkpoint (at most
 * `audit.checkpoint_interval`), so what leaves this reader is never a record a crash or an outage could
 * still cut back, and the shared index always ends on a signature. Reads only committed, complete lines
 * of the segment files — never the writer's memory — so it costs the append path nothing.
 */
export class SignedRecordReader {
  private pos?: ReaderPosition;

  constructor(readonly auditDir: string) {}

  get position(): ReaderPosition | undefined {
    return this.pos && { ...this.pos };
  }

  /**
   * Stand after record `seq` whose hash must be `hash` (seq 0: before the first record on disk). Throws
   * ChainDivergedError when the chain holds another record there, or no longer reaches it.
   */
  seek(seq: number, hash: string): void {
    const segs = listSegments(this.auditDir);
    this.pos = undefined;
    if (seq === 0) {
      if (segs.length) this.pos = { segment: segs[0], offset: 0, seq: 0, hash: '' };
      return;
    }
    const holding = segs.filter((n) => parseSegmentName(n)!.firstSeq <= seq).at(-1);
    if (!holding) {
      // Purged up to and including it: the first kept segment must continue it exactly.
      const first = segs[0];
      if (first && parseSegmentName(first)!.firstSeq === seq + 1) {
        const rec = this.firstRecord(first);
        if (rec && rec.prev === hash) {
          this.pos = { segment: first, offset: 0, seq, hash };
          return;
        }
      }
      throw new ChainDivergedError(seq, `the chain no longer holds record ${seq} (purged before it was indexed, or another chain)`);
    }
    const buf = fs.readFileSync(path.join(this.auditDir, holding));
    const tag = `{"seq":${seq},`;
    for (let at = 0; ; ) {
      const nl = buf.indexOf(0x0a, at);
      if (nl < 0) break;
      if (buf.toString('latin1', at, at + tag.length) === tag) {
        const line = buf.toString('utf8', at, nl);
        const rec = parseRecordLine(line);
        if (typeof rec !== 'string' && rec.seq === seq) {
          if (rec.hash !== hash) throw new ChainDivergedError(seq, `record ${seq} of the chain has hash ${rec.hash.slice(0, 16)}…, the index holds ${hash.slice(0, 16)}…`);
          this.pos = { segment: holding, offset: nl + 1, seq, hash, next: nextSegmentOf(line) };
          return;
        }
      }
      at = nl + 1;
    }
    throw new ChainDivergedError(seq, `the chain does not reach record ${seq} any more (cut back)`);
  }

  private firstRecord(segment: string): ParsedRecord | undefined {
    const fd = fs.openSync(path.join(this.auditDir, segment), 'r');
    try {
      const buf = Buffer.alloc(64 * 1024);
      const n = fs.readSync(fd, buf, 0, buf.length, 0);
      const nl = buf.indexOf(0x0a);
      if (nl < 0 || nl >= n) return undefined;
      const rec = parseRecordLine(buf.toString('utf8', 0, nl));
      return typeof rec === 'string' ? undefined : rec;
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * The next signed records after the position, about `max` of them (more only to reach a checkpoint),
   * oldest first, and the position after the last of them. The position itself moves only by `advance`.
   */
  readSigned(max: number): { records: ParsedRecord[]; end: ReaderPosition | undefined } {
    if (!this.pos) {
      const first = listSegments(this.auditDir)[0];
      if (!first) return { records: [], end: undefined };
      this.pos = { segment: first, offset: 0, seq: 0, hash: '' };
    }
    const c = { ...this.pos };
    const records: ParsedRecord[] = [];
    let pending: ParsedRecord[] = [];
    let signedEnd: ReaderPosition | undefined;
    for (;;) {
      const lines = readLines(path.join(this.auditDir, c.segment), c.offset);
      if (lines.length === 0) {
        if (!c.next) break;
        c.segment = c.next;
        c.offset = 0;
        c.next = undefined;
        continue;
      }
      for (const { line, bytes } of lines) {
        const rec = parseRecordLine(line);
        if (typeof rec === 'string') throw new ChainDivergedError(c.seq + 1, `${c.segment} at byte ${c.offset}: ${rec}; run \`vigil audit verify\``);
        if (c.seq > 0 && (rec.seq !== c.seq + 1 || rec.prev !== c.hash)) {
          throw new ChainDivergedError(c.seq + 1, `${c.segment} at byte ${c.offset}: record ${rec.seq} does not continue record ${c.seq}; run \`vigil audit verify\``);
        }
        c.offset += bytes;
        c.seq = rec.seq;
        c.hash = rec.hash;
        pending.push(rec);
        if (isCheckpointLine(line)) {
          c.next = nextSegmentOf(line);
          records.push(...pending);
          pending = [];
          signedEnd = { ...c };
          if (records.length >= max) return { records, end: signedEnd };
        }
      }
    }
    return { records, end: signedEnd };
  }

  advance(to: ReaderPosition): void {
    this.pos = { ...to };
  }
}

function nextSegmentOf(line: string): string | undefined {
  if (!isCheckpointLine(line)) return undefined;
  const rec = parseRecordLine(line);
  if (typeof rec === 'string') return undefined;
  const next = (JSON.parse(rec.eventJson) as { details?: { next_segment?: unknown } }).details?.next_segment;
  return typeof next === 'string' ? next : undefined;
}

/** Complete lines of a file from `offset`, about CHUNK bytes of them (at least one when there is one). */
function readLines(file: string, offset: number): { line: string; bytes: number }[] {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size <= offset) return [];
    let buf = Buffer.allocUnsafe(Math.min(CHUNK, size - offset));
    let read = fs.readSync(fd, buf, 0, buf.length, offset);
    while (buf.lastIndexOf(0x0a, read - 1) < 0 && offset + read < size) {
      const more = Buffer.allocUnsafe(Math.min(buf.length * 2, size - offset));
      buf.copy(more, 0, 0, read);
      buf = more;
      read += fs.readSync(fd, buf, read, buf.length - read, offset + read);
    }
    const out: { line: string; bytes: number }[] = [];
    let at = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, at);
      if (nl < 0 || nl >= read) break;
      out.push({ line: buf.toString('utf8', at, nl), bytes: nl - at + 1 });
      at = nl + 1;
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}
