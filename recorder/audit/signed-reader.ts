import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { VigilError } from '../../src/errors.ts';
import { isCheckpointLine, parseRecordLine, parseSegmentName, type ParsedRecord, type SignedHead } from './record.ts';
import { listSegments } from './segments.ts';
import { ANCHOR_FILE, checkAnchor, readAnchorFile, type Anchor } from './anchor.ts';
import { HEAD_FILE } from './writer.ts';

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

/** Records a retention purge removed before the reader reached them: `from`..`through` (anchor.json's seq). */
export interface PurgedGap {
  from: number;
  through: number;
}

const CHUNK = 1024 * 1024;

/**
 * Reads a data dir's chain forward from a given record, handing out only *signed* records: those up to
 * and including the newest checkpoint read. Records after it wait for the next checkpoint (at most
 * `audit.checkpoint_interval`), so what leaves this reader is never a record a crash or an outage could
 * still cut back, and the shared index always ends on a signature. Reads only committed, complete lines
 * of the segment files — never the writer's memory — so it costs the append path nothing; and never past
 * the signed head in head.json, which the writer replaces only once that checkpoint is durable: a line in
 * the file is not yet durable (a failed write leaves its bytes there until the writer cuts them back and
 * reuses their seqs).
 *
 * Segments a retention purge removed before the reader got to them are stepped over when anchor.json
 * vouches for the cut (the first kept record links to its checkpoint): `readSigned` then reports the gap
 * (`purged`), and the caller drops what it holds below the cut as the purge did locally. A segment gone
 * without such an anchor is a chain that diverged.
 */
export class SignedRecordReader {
  private pos?: ReaderPosition;
  /** A purge gap `seek` stepped over, reported by the next `readSigned` until `advance` moves past it. */
  private gap?: PurgedGap;
  private readonly key: crypto.KeyObject;

  /** `publicKeyPem`: the log's key, to check anchor.json's signature before trusting a cut. */
  constructor(
    readonly auditDir: string,
    publicKeyPem: string,
  ) {
    this.key = crypto.createPublicKey(publicKeyPem);
  }

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
    this.gap = undefined;
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
      // Purged past it by retention before it was indexed: go on from the anchor (the records in between
      // are gone by policy); the caller hears of the gap with the next records.
      const anchor = this.anchorPast(seq);
      if (anchor) {
        this.pos = this.afterAnchor(anchor);
        this.gap = { from: seq + 1, through: anchor.seq };
        return;
      }
      throw new ChainDivergedError(seq, `the chain no longer holds record ${seq}, and no ${ANCHOR_FILE} says a retention purge removed it (removed by hand, or another chain)`);
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
   * The next signed records after the position, oldest first, and the position after the last of them:
   * about `max` of them (more only to reach a checkpoint), and no more than `maxBytes` of their lines —
   * unless the records up to the first checkpoint alone are more (a record larger than that, or a log
   * written with sparse checkpoints): those come out by themselves. The position moves only by `advance`.
   */
  readSigned(max: number, maxBytes = Infinity): { records: ParsedRecord[]; end: ReaderPosition | undefined; purged?: PurgedGap } {
    if (!this.pos) {
      const first = listSegments(this.auditDir)[0];
      if (!first) return { records: [], end: undefined };
      this.pos = { segment: first, offset: 0, seq: 0, hash: '' };
    }
    // Records past the durable signed head may still be cut back and their seqs reused: not one of them.
    const limit = durableSignedSeq(this.auditDir);
    const c = { ...this.pos };
    const records: ParsedRecord[] = [];
    let pending: ParsedRecord[] = [];
    let signedEnd: ReaderPosition | undefined;
    let bytes = 0;
    let purged = this.gap;
    const result = () => ({ records, end: signedEnd, ...(purged ? { purged } : {}) });
    reading: for (;;) {
      if (c.seq >= limit) break;
      const lines = readLines(path.join(this.auditDir, c.segment), c.offset);
      if (lines === undefined) {
        // Read to its seal, then purged: nothing of it is missing, the chain goes on where the seal says.
        if (c.next) {
          Object.assign(c, { segment: c.next, offset: 0, next: undefined });
          continue;
        }
        // The segment is gone. Signed records read before that still go out; the next call steps on.
        if (records.length > 0) break;
        const anchor = this.anchorPast(c.seq);
        if (anchor) {
          // Unsigned records read from it are inside the gap too: the gap starts after what was handed out.
          purged = { from: purged?.from ?? this.pos.seq + 1, through: anchor.seq };
          Object.assign(c, this.afterAnchor(anchor), { next: undefined });
          pending = [];
          bytes = 0;
          continue;
        }
        if (c.offset > 0 || listSegments(this.auditDir).some((n) => n > c.segment)) {
          throw new ChainDivergedError(c.seq + 1, `${c.segment} is gone (at seq ${c.seq + 1}) and no ${ANCHOR_FILE} says a retention purge removed it; run \`vigil audit verify\``);
        }
        break; // the segment a seal named, not created yet
      }
      if (lines.length === 0) {
        if (!c.next) break;
        c.segment = c.next;
        c.offset = 0;
        c.next = undefined;
        continue;
      }
      for (const { line, bytes: lineBytes } of lines) {
        if (c.seq >= limit) break reading;
        const rec = parseRecordLine(line);
        if (typeof rec === 'string') throw new ChainDivergedError(c.seq + 1, `${c.segment} at byte ${c.offset}: ${rec}; run \`vigil audit verify\``);
        if (rec.seq > limit) break reading;
        if (c.seq > 0 && (rec.seq !== c.seq + 1 || rec.prev !== c.hash)) {
          throw new ChainDivergedError(c.seq + 1, `${c.segment} at byte ${c.offset}: record ${rec.seq} does not continue record ${c.seq}; run \`vigil audit verify\``);
        }
        // Past the budget with signed records in hand: they go now, and the rest waits for the next call.
        if (records.length > 0 && bytes + lineBytes > maxBytes) return result();
        c.offset += lineBytes;
        bytes += lineBytes;
        c.seq = rec.seq;
        c.hash = rec.hash;
        pending.push(rec);
        if (isCheckpointLine(line)) {
          c.next = nextSegmentOf(line);
          records.push(...pending);
          pending = [];
          signedEnd = { ...c };
          if (records.length >= max) return result();
        }
      }
    }
    return result();
  }

  advance(to: ReaderPosition): void {
    this.pos = { ...to };
    this.gap = undefined;
  }

  /**
   * anchor.json, when it says the chain was cut past `seq` (its checkpoint is a later record) and the first
   * kept segment links to it. An anchor that does not check is no reason to skip anything: diverged.
   */
  private anchorPast(seq: number): Anchor | undefined {
    let file;
    try {
      file = readAnchorFile(this.auditDir);
    } catch (e) {
      throw new ChainDivergedError(seq + 1, `${ANCHOR_FILE}: ${(e as Error).message}`);
    }
    if (!file) return undefined;
    const anchor = checkAnchor(file, this.key);
    if (typeof anchor === 'string') throw new ChainDivergedError(seq + 1, `records after ${seq} were removed, and ${ANCHOR_FILE} does not vouch for it: ${anchor}`);
    if (anchor.seq <= seq) return undefined;
    const first = fs.existsSync(path.join(this.auditDir, anchor.nextSegment)) ? this.firstRecord(anchor.nextSegment) : undefined;
    if (!first || first.seq !== anchor.seq + 1 || first.prev !== anchor.hash) {
      throw new ChainDivergedError(anchor.seq + 1, `${ANCHOR_FILE} cuts the chain at seq ${anchor.seq}, but ${anchor.nextSegment} does not continue it`);
    }
    return anchor;
  }

  private afterAnchor(a: Anchor): ReaderPosition {
    return { segment: a.nextSegment, offset: 0, seq: a.seq, hash: a.hash };
  }
}

/**
 * The last record the writer has made durable and signed: the checkpoint after head.json's signed head
 * (head.json is replaced only once that checkpoint's write is durable). 0 without head.json: no checkpoint
 * of this log was ever durable.
 */
export function durableSignedSeq(auditDir: string): number {
  let text: string;
  try {
    text = fs.readFileSync(path.join(auditDir, HEAD_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw e;
  }
  const head = JSON.parse(text) as SignedHead;
  if (!Number.isSafeInteger(head.seq) || head.seq < 0) throw new Error(`${HEAD_FILE}: not a signed head`);
  return head.seq + 1;
}

function nextSegmentOf(line: string): string | undefined {
  if (!isCheckpointLine(line)) return undefined;
  const rec = parseRecordLine(line);
  if (typeof rec === 'string') return undefined;
  const next = (JSON.parse(rec.eventJson) as { details?: { next_segment?: unknown } }).details?.next_segment;
  return typeof next === 'string' ? next : undefined;
}

/**
 * Complete lines of a file from `offset`, about CHUNK bytes of them (at least one when there is one);
 * undefined when the file does not exist.
 */
function readLines(file: string, offset: number): { line: string; bytes: number }[] | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
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
