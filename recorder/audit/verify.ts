import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import {
  ZERO_HASH, isCheckpointLine, recordHash, parseRecordLine, parseSegmentName, verifyCheckpointSignature,
  metaName, type CheckpointDetails, type SignedHead,
} from './record.ts';
import { listSegments, splitSegment } from './segments.ts';
import { HEAD_FILE } from './writer.ts';
import { ANCHOR_FILE, readAnchorFile, checkAnchor } from './anchor.ts';
import { checkSearchIndex, type SearchIndexCheck } from './search-index.ts';

/** Canonical JSON puts `type` last in the envelope: an audit.purged record's line ends with this. */
const PURGED_TAIL = '"type":"audit.purged"}}';

export interface VerifyProblem {
  /** Segment file name ('' when the problem concerns the log as a whole). */
  segment: string;
  /** 1-based line within the segment (0 when not about a line). */
  line: number;
  /** Sequence number of the record concerned (expected seq when the record is missing). */
  seq: number;
  problem: string;
  /** Stable kind for scripts and tests. */
  kind:
    | 'malformed' | 'hash-mismatch' | 'broken-chain' | 'records-missing' | 'reordered' | 'segment-missing'
    | 'bad-checkpoint' | 'bad-anchor' | 'torn-tail' | 'uncovered-tail' | 'truncated' | 'empty-segment' | 'bad-head' | 'no-checkpoint'
    | 'bad-meta';
}

/**
 * What the verification proves, and `vigil audit verify`'s exit code for it:
 * - `complete` (0): intact, signed, and its last signed head is the newest head a witness holds — nothing
 *   was cut off or rolled back.
 * - `invalid` (1): tampered or damaged (first problem in `firstBad`), no valid checkpoint at all, or a
 *   witnessed head the log does not reach.
 * - `unwitnessed` (3): intact and signed up to `checkpointedSeq`, but completeness is not proven: no witness
 *   given, or the witness's newest head is older than the log's last checkpoint.
 * - `unsealed-tail` (4): intact up to the last valid checkpoint, followed by `tailRecords` records no
 *   checkpoint signs (and maybe a torn final line): what a crash leaves — or a forger; reopening the writer
 *   seals it. A tail whose records do not chain is `invalid`.
 */
export type VerifyStatus = 'complete' | 'invalid' | 'unwitnessed' | 'unsealed-tail';

export const VERIFY_EXIT_CODES: Record<VerifyStatus | 'usage' | 'unreadable', number> = {
  complete: 0,
  invalid: 1,
  usage: 2,
  unwitnessed: 3,
  'unsealed-tail': 4,
  unreadable: 5,
};

export interface VerifyResult {
  /** No tampering found and every record is signed by a checkpoint (status complete or unwitnessed). */
  ok: boolean;
  status: VerifyStatus;
  /** Records after the last valid checkpoint (status unsealed-tail). */
  tailRecords: number;
  /** Newest witnessed head found in the log. */
  witnessedSeq?: number;
  records: number;
  segments: number;
  /** Sequence number of the last record, and of the last checkpoint (everything up to it is signed). */
  lastSeq: number;
  checkpointedSeq: number;
  checkpoints: number;
  firstBad?: VerifyProblem;
  /**
   * The search index beside the log (index.sqlite), when there is one: whether rows are missing from what
   * it has indexed. Not part of `ok`/`status` (the index is a copy, never the record); the CLI reports an
   * incomplete index and exits 1, as it does for the shared index.
   */
  searchIndex?: SearchIndexCheck;
}

export interface VerifyOptions {
  /**
   * Signed heads saved outside this directory earlier (`vigil audit head`): the log must still contain each
   * one's record with that hash. head.json alone cannot catch a log cut back together with head.json itself
   * (both restored from an older copy); a head kept elsewhere can.
   */
  witnesses?: { head: SignedHead; source: string }[];
}

/**
 * Verify an audit directory offline with only the public key: every record's hash, the chain links,
 * sequence continuity within and across segments, every checkpoint signature, that segments sealed by a
 * checkpoint are followed by the segment it names, that the last signed checkpoint covers the tail, and
 * that the tail reaches the signed head in head.json and every witnessed head given; that each segment's
 * `.meta` sidecar (which readers skip segments by) says what its records say (`bad-meta`); and, apart from
 * the status, whether the search index lacks rows (`searchIndex`).
 *
 * A crash-torn final line (bytes after the last newline of the newest segment, or of the one before it
 * when a crash left that newest segment empty) is reported as
 * `torn-tail`, distinct from tampering: it was never acknowledged (appends resolve only after their whole
 * line is fsync'd). Reopening the writer sets it aside in quarantine/ and records that in a checkpoint,
 * after which the log verifies.
 */
export function verifyAuditLog(dir: string, publicKeyPem: string | Buffer, opts: VerifyOptions = {}): VerifyResult {
  const result = verifyChain(dir, publicKeyPem, opts);
  const searchIndex = checkSearchIndex(dir);
  return searchIndex ? { ...result, searchIndex } : result;
}

function verifyChain(dir: string, publicKeyPem: string | Buffer, opts: VerifyOptions): VerifyResult {
  const key = crypto.createPublicKey(publicKeyPem);
  let segments = listSegments(dir);
  // Whether a writer is running is never asked of writer.lock (anyone who can write the log can write a pid
  // there): an unsigned tail is reported as such, whoever might be about to sign it.
  const result: VerifyResult = { ok: true, status: 'unwitnessed', tailRecords: 0, records: 0, segments: segments.length, lastSeq: 0, checkpointedSeq: 0, checkpoints: 0 };
  const bad = (p: VerifyProblem): VerifyResult => ({ ...result, ok: false, status: 'invalid', firstBad: p });
  let tornAt: VerifyProblem | undefined;
  let badMeta: VerifyProblem | undefined;

  // Every signed head the log must reach: head.json, and any witnesses kept elsewhere.
  const heads: { head: SignedHead; source: string; seen?: string }[] = [];
  const headPath = path.join(dir, HEAD_FILE);
  if (fs.existsSync(headPath)) {
    try {
      const head = JSON.parse(fs.readFileSync(headPath, 'utf8')) as SignedHead;
      if (!verifyCheckpointSignature(key, head.seq, head.head, head.sig)) throw new Error('bad signature');
      heads.push({ head, source: HEAD_FILE });
    } catch (e) {
      return bad({ segment: HEAD_FILE, line: 0, seq: 0, kind: 'bad-head', problem: `${HEAD_FILE} is not a valid signed head (${(e as Error).message})` });
    }
  }
  for (const w of opts.witnesses ?? []) {
    if (!w.head || !Number.isInteger(w.head.seq) || typeof w.head.head !== 'string' || !verifyCheckpointSignature(key, w.head.seq, w.head.head, String(w.head.sig))) {
      return bad({ segment: '', line: 0, seq: 0, kind: 'bad-head', problem: `the witnessed head from ${w.source} is not signed by this log's key` });
    }
    heads.push({ ...w });
  }

  let expected = 1;
  let prev = ZERO_HASH;
  let pendingNext: string | undefined;
  let pendingNextFrom: { segment: string; seq: number } | undefined;
  // After a retention purge the chain starts at the signed checkpoint kept in anchor.json (see anchor.ts).
  let anchorFile;
  try {
    anchorFile = readAnchorFile(dir);
  } catch (e) {
    return bad({ segment: ANCHOR_FILE, line: 0, seq: 0, kind: 'bad-anchor', problem: `${ANCHOR_FILE} is not readable JSON (${(e as Error).message})` });
  }
  // The anchor must be vouched for by the chain: a purge records `audit.purged` (up to the anchor's seq)
  // before it removes anything. Without that, anyone able to write the directory could cut off the oldest
  // segments and present one of their sealing checkpoints as an anchor.
  let anchorSeq: number | undefined;
  let anchorVouched = false;
  if (anchorFile) {
    const anchor = checkAnchor(anchorFile, key);
    if (typeof anchor === 'string') return bad({ segment: ANCHOR_FILE, line: 0, seq: 0, kind: 'bad-anchor', problem: anchor });
    anchorSeq = anchor.seq;
    expected = anchor.seq + 1;
    prev = anchor.hash;
    pendingNext = anchor.nextSegment;
    pendingNextFrom = { segment: ANCHOR_FILE, seq: anchor.seq };
    // Segments older than the anchor are purged ones a crash left behind mid-purge: not part of the chain any more.
    const firstKept = parseSegmentName(anchor.nextSegment)?.firstSeq ?? expected;
    segments = segments.filter((n) => parseSegmentName(n)!.firstSeq >= firstKept);
    result.segments = segments.length;
    // Heads signed before the purge point name records that no longer exist; the anchor's signature stands in for them.
    for (let i = heads.length - 1; i >= 0; i--) if (heads[i].head.seq <= anchor.seq) heads.splice(i, 1);
  }
  const headSeqs = new Set(heads.map((h) => h.head.seq));
  for (let s = 0; s < segments.length; s++) {
    const segment = segments[s];
    const isLast = s === segments.length - 1;
    if (pendingNext && pendingNext !== segment) {
      return bad({ segment: pendingNext, line: 0, seq: expected, kind: 'segment-missing', problem: `segment ${pendingNext} is missing (named by the checkpoint sealing ${pendingNextFrom!.segment}); records from seq ${expected} on are absent` });
    }
    pendingNext = undefined;
    const text = fs.readFileSync(path.join(dir, segment), 'utf8');
    const { lines, torn } = splitSegment(text);
    if (lines.length === 0 && !torn) {
      if (isLast) continue;
      return bad({ segment, line: 0, seq: expected, kind: 'empty-segment', problem: `segment ${segment} is empty but is not the newest` });
    }
    const named = parseSegmentName(segment)!.firstSeq;
    const span = { minTime: '', maxTime: '', lastSeq: 0 };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const at = { segment, line: i + 1 };
      if (pendingNext) {
        return bad({ ...at, seq: expected, kind: 'malformed', problem: `record after the checkpoint that sealed the segment` });
      }
      const rec = parseRecordLine(line);
      if (typeof rec === 'string') return bad({ ...at, seq: expected, kind: 'malformed', problem: rec });
      if (rec.seq !== expected) {
        if (i === 0 && s === 0 && rec.seq > expected) {
          return bad({ ...at, seq: expected, kind: 'segment-missing', problem: `the log starts at seq ${rec.seq}: the first segment(s), seq ${expected}..${rec.seq - 1}, are missing` });
        }
        if (i === 0 && rec.seq > expected) {
          return bad({ ...at, seq: expected, kind: 'segment-missing', problem: `a segment is missing before ${segment}: seq ${expected}..${rec.seq - 1} are absent` });
        }
        const later = lines.slice(i + 1).some((l) => l.startsWith(`{"seq":${expected},`));
        if (later || rec.seq < expected) {
          return bad({ ...at, seq: rec.seq, kind: 'reordered', problem: `record seq ${rec.seq} is out of order (expected seq ${expected} here)` });
        }
        return bad({ ...at, seq: expected, kind: 'records-missing', problem: `record(s) deleted: seq ${expected}${rec.seq - 1 > expected ? `..${rec.seq - 1}` : ''} missing before seq ${rec.seq}` });
      }
      if (i === 0 && named !== rec.seq) {
        return bad({ ...at, seq: rec.seq, kind: 'malformed', problem: `segment name says it starts at seq ${named} but its first record is seq ${rec.seq}` });
      }
      if (rec.prev !== prev) {
        return bad({ ...at, seq: rec.seq, kind: 'broken-chain', problem: `record seq ${rec.seq} does not link to the previous record (prev hash differs)` });
      }
      if (recordHash(rec.seq, rec.prev, rec.eventJson) !== rec.hash) {
        return bad({ ...at, seq: rec.seq, kind: 'hash-mismatch', problem: `record seq ${rec.seq} was altered (hash mismatch)` });
      }
      let isCheckpoint = false;
      if (isCheckpointLine(line)) {
        let ev: { type?: string; details?: CheckpointDetails };
        try {
          ev = JSON.parse(rec.eventJson);
        } catch {
          return bad({ ...at, seq: rec.seq, kind: 'malformed', problem: `record seq ${rec.seq} is not valid JSON` });
        }
        if (ev.type === 'audit.checkpoint') {
          const d = ev.details;
          if (!d || d.seq !== rec.seq - 1 || d.head !== prev || !verifyCheckpointSignature(key, d.seq, d.head, String(d.sig))) {
            return bad({ ...at, seq: rec.seq, kind: 'bad-checkpoint', problem: `checkpoint seq ${rec.seq} has an invalid signature or does not cover the record before it` });
          }
          result.checkpoints++;
          isCheckpoint = true;
          if (d.next_segment) {
            pendingNext = d.next_segment;
            pendingNextFrom = { segment, seq: rec.seq };
          }
        }
      }
      if (anchorSeq !== undefined && !anchorVouched && line.endsWith(PURGED_TAIL)) {
        try {
          const ev = JSON.parse(rec.eventJson) as { type?: string; details?: { last_seq?: unknown } };
          if (ev.type === 'audit.purged' && ev.details?.last_seq === anchorSeq) anchorVouched = true;
        } catch {
          return bad({ ...at, seq: rec.seq, kind: 'malformed', problem: `record seq ${rec.seq} is not valid JSON` });
        }
      }
      const time = eventTimeOf(rec.eventJson);
      // The writer's rule for its seal's span (writer.ts push): string times only, checkpoints included.
      if (time !== undefined) {
        if (!span.minTime || time < span.minTime) span.minTime = time;
        if (time > span.maxTime) span.maxTime = time;
      }
      span.lastSeq = rec.seq;
      if (headSeqs.has(rec.seq)) for (const h of heads) if (h.head.seq === rec.seq) h.seen = rec.hash;
      prev = rec.hash;
      expected = rec.seq + 1;
      result.records++;
      result.lastSeq = rec.seq;
      // A checkpoint signs the head before it; the checkpoint record itself adds nothing to cover.
      if (isCheckpoint) result.checkpointedSeq = rec.seq;
    }
    // Reported after the chain's own checks: a cut or damaged segment disagrees with its sidecar too, and
    // what happened to the chain is the more useful report. Only sealed segments before the newest: readers
    // never skip the newest by its sidecar, and one left there (a cut back after a crash, or a log cut at a
    // checkpoint) proves no more than the chain does; how far the log reaches is the witness's question.
    if (!badMeta && !isLast) {
      const problem = checkSegmentMeta(dir, segment, named, span);
      if (problem) badMeta = { segment, line: 0, seq: named, kind: 'bad-meta', problem };
    }
    if (torn) {
      // The writer creates the next segment before it writes the seal naming it: a crash tearing that
      // write leaves the torn segment followed by an empty one, and it is still the end of the log.
      if (!isLast && !segments.slice(s + 1).every((n) => fs.statSync(path.join(dir, n), { throwIfNoEntry: false })?.size === 0)) {
        return bad({ segment, line: lines.length + 1, seq: expected, kind: 'malformed', problem: `segment ${segment} ends with a partial line but is not the newest` });
      }
      tornAt = { segment, line: lines.length + 1, seq: expected, kind: 'torn-tail', problem: `the last line (seq ${expected}) is partially written: a crash before it was acknowledged; reopen the log (vigil serve) to set it aside` };
    }
    // A live log (the console verifies while the gateway writes) may have sealed the newest segment after
    // the listing: the segment its seal names is then there now, and the chain goes on into it.
    if (isLast && pendingNext && !tornAt && fs.existsSync(path.join(dir, pendingNext))) {
      segments.push(pendingNext);
      result.segments = segments.length;
    }
  }
  if (pendingNext) {
    return bad({ segment: pendingNext, line: 0, seq: expected, kind: 'segment-missing', problem: `segment ${pendingNext} is missing (named by the checkpoint sealing ${pendingNextFrom!.segment}): the log was truncated after seq ${expected - 1}` });
  }
  if (anchorSeq !== undefined && !anchorVouched) {
    return bad({ segment: ANCHOR_FILE, line: 0, seq: anchorSeq + 1, kind: 'bad-anchor', problem: `no audit.purged event in the log covers ${ANCHOR_FILE} (seq ..${anchorSeq}): the oldest segments were removed outside vigil audit purge` });
  }
  for (const h of heads) {
    if (h.head.seq > result.lastSeq) {
      return bad({ segment: segments[segments.length - 1] ?? '', line: 0, seq: result.lastSeq + 1, kind: 'truncated', problem: `the log was truncated: the signed head in ${h.source} is at seq ${h.head.seq} but the last record is seq ${result.lastSeq}` });
    }
    if (h.seen !== h.head.head) {
      return bad({ segment: h.source === HEAD_FILE ? HEAD_FILE : '', line: 0, seq: h.head.seq, kind: 'bad-head', problem: `the signed head in ${h.source} does not match record seq ${h.head.seq}` });
    }
  }
  if (result.checkpoints === 0) {
    // Invalid, not a crash tail: offline, a log whose writer was killed before its first checkpoint cannot be
    // told from one rewritten without its checkpoints (and head.json). Say which of the two it may be, and
    // that its chain was checked: a changed record in it is reported as such above.
    const first = (anchorSeq ?? 0) + 1;
    const chain = result.records ? `its ${result.records} record(s), seq ${first}..${result.lastSeq}, hash and link correctly, but ` : '';
    return bad({
      segment: segments[0] ?? '', line: 0, seq: first, kind: 'no-checkpoint',
      problem: `no valid signed checkpoint: ${chain}no record is signed yet, so nothing in this log is proven to come from its writer (what a writer killed before its first checkpoint leaves, which restarting the gateway seals, and also what a log rewritten without its checkpoints looks like)`,
    });
  }
  if (badMeta) return bad(badMeta);
  for (const h of heads) if (h.source !== HEAD_FILE) result.witnessedSeq = Math.max(result.witnessedSeq ?? 0, h.head.seq);
  result.tailRecords = result.lastSeq - result.checkpointedSeq;
  if (result.tailRecords > 0 || tornAt) {
    const problem = tornAt ?? {
      segment: segments[segments.length - 1] ?? '', line: 0, seq: result.checkpointedSeq + 1, kind: 'uncovered-tail' as const,
      problem: `records seq ${result.checkpointedSeq + 1}..${result.lastSeq} are not covered by a signed checkpoint (a crash, or records added by someone else: reopen the writer to seal a crash tail)`,
    };
    return { ...result, ok: false, status: 'unsealed-tail', firstBad: problem };
  }
  // The last checkpoint signs the record before it: complete when that is exactly the newest witnessed head.
  if (result.witnessedSeq !== undefined && result.witnessedSeq === result.checkpointedSeq - 1) result.status = 'complete';
  return result;
}

/**
 * A segment's `.meta` sidecar against its records. Readers skip a sealed segment whose sidecar puts it
 * outside a query's time range, and nothing signs the sidecar: one edited to move the span would hide the
 * segment's events from time-bounded searches, exports and reports. So every claim in it is recomputed
 * here from the records just verified (a missing sidecar is fine: readers then read the segment).
 * Returns the problem, or undefined when there is no sidecar or it agrees.
 */
function checkSegmentMeta(dir: string, segment: string, firstSeq: number, span: { minTime: string; maxTime: string; lastSeq: number }): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, metaName(segment)), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const fix = `(delete ${metaName(segment)} to have readers scan the segment instead)`;
  let meta: Record<string, unknown>;
  try {
    meta = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return `${metaName(segment)} is not readable JSON ${fix}`;
  }
  const want = { first_seq: firstSeq, last_seq: span.lastSeq, min_time: span.minTime, max_time: span.maxTime };
  const wrong = (Object.keys(want) as (keyof typeof want)[]).filter((k) => meta?.[k] !== want[k]);
  if (wrong.length === 0) return undefined;
  const said = wrong.map((k) => `${k} ${JSON.stringify(meta?.[k])} (records: ${JSON.stringify(want[k])})`).join(', ');
  return `${metaName(segment)} does not describe segment ${segment}: ${said}; readers skip segments by it, so it could hide the segment's events from time-bounded searches, exports and reports ${fix}`;
}

const TYPE_TAG = '","type":"';
const TIME_TAG = ',"time":"';

/**
 * The event's top-level `time` when it is a string, as the writer took it for the seal's span. Canonical
 * JSON ends every event with `,"time":"…","type":"…"}` (keys sorted, `type` last; encode.ts): read from
 * there without parsing when nothing in between could be a quote or escape, else parse.
 */
function eventTimeOf(eventJson: string): string | undefined {
  const typeAt = eventJson.lastIndexOf(TYPE_TAG);
  const timeAt = typeAt > 0 ? eventJson.lastIndexOf(TIME_TAG, typeAt) : -1;
  const valueAt = timeAt + TIME_TAG.length;
  if (timeAt >= 0 && eventJson.endsWith('"}') && plainBetween(eventJson, valueAt, typeAt) && plainBetween(eventJson, typeAt + TYPE_TAG.length, eventJson.length - 2)) {
    return eventJson.slice(valueAt, typeAt);
  }
  try {
    const time = (JSON.parse(eventJson) as { time?: unknown } | null)?.time;
    return typeof time === 'string' ? time : undefined;
  } catch {
    return undefined;
  }
}

/** No quote or backslash in text[from, to): a JSON string's body without escapes. */
function plainBetween(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 || c === 0x5c) return false;
  }
  return true;
}
