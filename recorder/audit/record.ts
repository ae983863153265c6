import crypto from 'node:crypto';
import type { EventPieces } from './encode.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * On-disk record format (one JSON line per record, fixed member order so the verifier can slice the
 * exact event bytes out of a line without re-serialising):
 *
 *   {"seq":N,"prev":"<64 hex>","hash":"<64 hex>","event":<event JSON>}\n
 *
 * hash = SHA-256("vigil-audit-v1\n" + seq + "\n" + prev + "\n" + eventJson), hex, over the event's
 * bytes as stored — the event's canonical JSON (canonical.ts; encode.ts writes it in pieces), so a verifier
 * can hash the slice of the line or re-encode the parsed event and get the same bytes.
 * The first record (seq 1) has prev = 64 zeros. Checkpoints are ordinary records whose event type is
 * `audit.checkpoint`; details carry an Ed25519 signature over CHECKPOINT_DOMAIN + covered seq + head hash.
 */
export const ZERO_HASH = '0'.repeat(64);
const HASH_DOMAIN = 'vigil-audit-v1\n';
const SEQ_TAG = '{"seq":';
const PREV_TAG = ',"prev":"';
const HASH_TAG = '","hash":"';
const EVENT_TAG = '","event":';
// The same as bytes, copied into each record (ASCII).
const HASH_DOMAIN_BYTES = Buffer.from(HASH_DOMAIN, 'latin1');
const SEQ_TAG_BYTES = Buffer.from(SEQ_TAG, 'latin1');
const PREV_TAG_BYTES = Buffer.from(PREV_TAG, 'latin1');
const HASH_TAG_BYTES = Buffer.from(HASH_TAG, 'latin1');
const EVENT_TAG_BYTES = Buffer.from(EVENT_TAG, 'latin1');
/** Bytes of a line before the event, besides the sequence number's digits: the tags, prev and hash. */
const PREFIX_FIXED_BYTES = SEQ_TAG.length + PREV_TAG.length + 64 + HASH_TAG.length + 64 + EVENT_TAG.length;
const CHECKPOINT_DOMAIN = 'vigil-audit-checkpoint-v1\n';

export function recordHash(seq: number, prev: string, eventJson: string): string {
  return crypto.hash('sha256', `${HASH_DOMAIN}${seq}\n${prev}\n${eventJson}`, 'hex');
}

export function encodeRecord(seq: number, prev: string, hash: string, eventJson: string): string {
  return `{"seq":${seq},"prev":"${prev}","hash":"${hash}","event":${eventJson}}\n`;
}

/** Most bytes `encodeRecordInto` writes for this event JSON (or these pieces of it). */
export function maxRecordBytes(event: string | EventPieces): number {
  if (typeof event === 'string') return event.length * 3 + 200;
  return event.head.length + event.body.length * 3 + event.middle.length + event.tail.length + 200;
}

/**
 * Buffer's own encoders (on every Buffer since Node 0.x, used by encoding libraries): Buffer#write with an
 * encoding argument normalises its arguments on each call, which costs as much as writing these short
 * strings. Five or six writes per record make that worth skipping.
 */
interface FastWrite {
  utf8Write(s: string, offset: number): number;
  latin1Write(s: string, offset: number): number;
}

/** Number of decimal digits of a positive safe integer. */
function decimalDigits(n: number): number {
  let digits = 1;
  for (let v = n; v >= 10; v = Math.floor(v / 10)) digits++;
  return digits;
}

/**
 * The decimal digits of a positive safe integer as ASCII at `at` (`digits` = decimalDigits(n)); returns the
 * offset after them. A record writes its sequence number twice: a string plus a native write per copy
 * cost several times this loop.
 */
function writeDecimal(buf: Buffer, at: number, n: number, digits: number): number {
  for (let i = at + digits - 1, v = n; i >= at; i--) {
    buf[i] = 0x30 + (v % 10);
    v = Math.floor(v / 10);
  }
  return at + digits;
}

/**
 * Write one record line (exactly `encodeRecord(seq, prev, recordHash(seq, prev, json), json)`, json being
 * the event JSON or what its pieces spell) into `buf` at `at`, encoding the event once: its bytes are
 * written in place, the hash input's preamble (`vigil-audit-v1\n<seq>\n<prev>\n`, shorter than the line's
 * own prefix) is written just before them and hashed together with them, then the line's prefix overwrites
 * the preamble. `buf` needs maxRecordBytes(event) bytes from `at`. Returns the offset after the newline
 * and the hash.
 */
export function encodeRecordInto(buf: Buffer, at: number, seq: number, prev: string, event: string | EventPieces): { end: number; hash: string } {
  if (prev.length !== 64) throw new TypeError('prev must be a 64-digit hex hash');
  if (!Number.isSafeInteger(seq) || seq < 1) throw new TypeError('seq must be a positive safe integer');
  const fast = buf as unknown as FastWrite;
  const seqDigits = decimalDigits(seq);
  // {"seq":N,"prev":"<64>","hash":"<64>","event":
  const eventAt = at + PREFIX_FIXED_BYTES + seqDigits;
  let eventEnd = eventAt;
  if (typeof event === 'string') {
    eventEnd += fast.utf8Write(event, eventEnd);
  } else {
    // Cached pieces are copied as bytes; only the per-event strings are encoded.
    buf.set(event.head, eventEnd);
    eventEnd += event.head.length;
    eventEnd += fast.utf8Write(event.body, eventEnd);
    buf.set(event.middle, eventEnd);
    eventEnd += event.middle.length;
    eventEnd += fast.latin1Write(event.tail, eventEnd);
  }
  // Preamble `vigil-audit-v1\n<seq>\n<prev>\n`, then the line's prefix over it, written piecewise: no
  // concatenated strings to build and flatten per record.
  const preambleAt = eventAt - (HASH_DOMAIN_BYTES.length + seqDigits + 1 + 64 + 1);
  let o = preambleAt;
  buf.set(HASH_DOMAIN_BYTES, o);
  o += HASH_DOMAIN_BYTES.length;
  o = writeDecimal(buf, o, seq, seqDigits);
  buf[o++] = 0x0a;
  const prevInPreamble = o;
  o += fast.latin1Write(prev, o);
  buf[o] = 0x0a;
  const hash = crypto.hash('sha256', buf.subarray(preambleAt, eventEnd), 'hex');
  // The line's prefix: prev is copied from the preamble first (its place in the line lies before the
  // preamble, so nothing written below has overwritten it yet).
  o = at;
  buf.copyWithin(at + SEQ_TAG_BYTES.length + seqDigits + PREV_TAG_BYTES.length, prevInPreamble, prevInPreamble + 64);
  buf.set(SEQ_TAG_BYTES, o);
  o += SEQ_TAG_BYTES.length;
  o = writeDecimal(buf, o, seq, seqDigits);
  buf.set(PREV_TAG_BYTES, o);
  o += PREV_TAG_BYTES.length + 64;
  buf.set(HASH_TAG_BYTES, o);
  o += HASH_TAG_BYTES.length;
  o += fast.latin1Write(hash, o);
  buf.set(EVENT_TAG_BYTES, o);
  buf[eventEnd] = 0x7d; // }
  buf[eventEnd + 1] = 0x0a; // \n
  return { end: eventEnd + 2, hash };
}

export interface ParsedRecord {
  seq: number;
  prev: string;
  hash: string;
  /** The exact event bytes the hash covers. */
  eventJson: string;
}

/** Parse one line (without its newline). Returns a string describing the problem when malformed. */
export function parseRecordLine(line: string): ParsedRecord | string {
  if (!line.startsWith('{"seq":') || !line.endsWith('}')) return 'malformed record';
  const p = line.indexOf(PREV_TAG, 7);
  if (p < 0 || p > 7 + 16) return 'malformed record (seq)';
  const seqText = line.slice(7, p);
  if (!/^[1-9]\d*$/.test(seqText)) return 'malformed record (seq)';
  const prevAt = p + PREV_TAG.length;
  const prev = line.slice(prevAt, prevAt + 64);
  const hashTagAt = prevAt + 64;
  if (line.slice(hashTagAt, hashTagAt + HASH_TAG.length) !== HASH_TAG) return 'malformed record (prev)';
  const hashAt = hashTagAt + HASH_TAG.length;
  const hash = line.slice(hashAt, hashAt + 64);
  const eventTagAt = hashAt + 64;
  if (line.slice(eventTagAt, eventTagAt + EVENT_TAG.length) !== EVENT_TAG) return 'malformed record (hash)';
  // prev and hash need no hex check here: a value that is not the expected hex fails the link or the
  // recomputed hash anyway.
  return { seq: Number(seqText), prev, hash, eventJson: line.slice(eventTagAt + EVENT_TAG.length, -1) };
}

/**
 * Checkpoint records end with this: canonical JSON sorts `type` last among the envelope's members, so the
 * check is O(1) per line. (The parsed event's type is checked as well before a checkpoint counts.)
 */
export const CHECKPOINT_TAIL = '"type":"audit.checkpoint"}}';

export function isCheckpointLine(line: string): boolean {
  return line.endsWith(CHECKPOINT_TAIL);
}

export function checkpointPayload(seq: number, head: string): Buffer {
  return Buffer.from(`${CHECKPOINT_DOMAIN}${seq}\n${head}`);
}

export function signCheckpoint(key: crypto.KeyObject, seq: number, head: string): string {
  return crypto.sign(null, checkpointPayload(seq, head), key).toString('base64');
}

export function verifyCheckpointSignature(key: crypto.KeyObject, seq: number, head: string, sig: string): boolean {
  try {
    return crypto.verify(null, checkpointPayload(seq, head), key, Buffer.from(sig, 'base64'));
  } catch {
    return false;
  }
}

/** Short fingerprint of the signing key (SHA-256 of the SPKI DER), so auditors can tell keys apart. */
export function keyId(publicKey: crypto.KeyObject): string {
  return crypto.createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16);
}

/** Details of an `audit.checkpoint` event. */
export interface CheckpointDetails {
  /** Sequence number of the last record covered (the record just before the checkpoint). */
  seq: number;
  /** Hash of that record: the chain head being signed. */
  head: string;
  /** Base64 Ed25519 signature over CHECKPOINT_DOMAIN + seq + head. */
  sig: string;
  key_id: string;
  reason: 'count' | 'interval' | 'rotate' | 'close' | 'recover';
  /** Set on the checkpoint that seals a segment: the name of the segment that continues the chain. */
  next_segment?: string;
  /** Set on a recovery checkpoint when a crash-torn final line (never acknowledged) was set aside. */
  torn_bytes?: number;
  quarantined?: string;
  /** On a seal: the sessions open at that point of the chain (crash recovery starts from them). */
  open_sessions?: OpenSessionRef[];
  /** On a recovery checkpoint written after an outage (see the audit.outage event before it). */
  outage?: boolean;
}

/** What an open session needs so that a session.end can be written for it after a crash. */
export interface OpenSessionRef {
  session_id: string;
  actor: AuditEvent['actor'];
  source: AuditEvent['source'];
  target: AuditEvent['target'];
}

/** The signed chain head, also written to `head.json` after every durable checkpoint. */
export interface SignedHead {
  seq: number;
  head: string;
  sig: string;
  key_id: string;
}

// Segment files: seg-<first seq, 16 digits>-<UTC day YYYYMMDD>.jsonl; sorting by name sorts by first seq.
const SEGMENT_RE = /^seg-(\d{16})-(\d{8})\.jsonl$/;

export function segmentName(firstSeq: number, date: Date): string {
  const day = date.toISOString().slice(0, 10).replaceAll('-', '');
  return `seg-${String(firstSeq).padStart(16, '0')}-${day}.jsonl`;
}

export function parseSegmentName(name: string): { firstSeq: number; day: string } | undefined {
  const m = SEGMENT_RE.exec(name);
  return m ? { firstSeq: Number(m[1]), day: m[2] } : undefined;
}

/** Sidecar written when a segment is sealed, so readers can skip segments outside a time range. */
export interface SegmentMeta {
  first_seq: number;
  last_seq: number;
  min_time: string;
  max_time: string;
}

export function metaName(segment: string): string {
  return `${segment}.meta`;
}
