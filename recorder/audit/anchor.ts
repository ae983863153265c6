import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { parseRecordLine, recordHash, verifyCheckpointSignature, isCheckpointLine, type CheckpointDetails } from './record.ts';

/**
 * After a retention purge the oldest segments are gone, so the chain no longer starts at seq 1 with the
 * zero hash. anchor.json keeps the one record verification needs to start later: the signed checkpoint that
 * sealed the last purged segment (its line, verbatim). Its signature vouches for the head before it, its
 * hash is what the first kept record must link to, and its next_segment names the first kept segment.
 * Nothing else in the file is trusted: `purges` is history for people.
 */
export const ANCHOR_FILE = 'anchor.json';

export interface PurgeEntry {
  time: string;
  segments: string[];
  first_seq: number;
  last_seq: number;
  min_time: string;
  max_time: string;
  reason: string;
}

export interface AnchorFile {
  version: 1;
  /** The sealing checkpoint record of the last purged segment, exactly as it stood in the segment. */
  record: string;
  purges: PurgeEntry[];
}

export interface Anchor {
  /** Seq of the checkpoint record; the first kept record is seq + 1. */
  seq: number;
  /** Hash of the checkpoint record: the first kept record's prev. */
  hash: string;
  nextSegment: string;
}

export function readAnchorFile(dir: string): AnchorFile | undefined {
  const file = path.join(dir, ANCHOR_FILE);
  if (!fs.existsSync(file)) return undefined;
  return JSON.parse(fs.readFileSync(file, 'utf8')) as AnchorFile;
}

/** Write atomically and durably (temp file, fsync, rename, fsync dir): a half-written anchor would fail verify. */
export function writeAnchorFile(dir: string, anchor: AnchorFile): void {
  const file = path.join(dir, ANCHOR_FILE);
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(anchor, null, 2) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  const d = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(d);
  } finally {
    fs.closeSync(d);
  }
}

/** Check the anchor record with the log's public key; returns the anchor or a reason it is not valid. */
export function checkAnchor(anchor: AnchorFile, key: crypto.KeyObject): Anchor | string {
  if (!anchor || typeof anchor.record !== 'string') return `${ANCHOR_FILE} has no anchor record`;
  const rec = parseRecordLine(anchor.record);
  if (typeof rec === 'string') return `${ANCHOR_FILE}: ${rec}`;
  if (recordHash(rec.seq, rec.prev, rec.eventJson) !== rec.hash) return `${ANCHOR_FILE}: the anchor record was altered (hash mismatch)`;
  if (!isCheckpointLine(anchor.record)) return `${ANCHOR_FILE}: the anchor record is not a checkpoint`;
  let ev: { type?: string; details?: CheckpointDetails };
  try {
    ev = JSON.parse(rec.eventJson);
  } catch {
    return `${ANCHOR_FILE}: the anchor record is not valid JSON`;
  }
  const d = ev.details;
  if (ev.type !== 'audit.checkpoint' || !d || d.seq !== rec.seq - 1 || d.head !== rec.prev || !verifyCheckpointSignature(key, d.seq, d.head, String(d.sig))) {
    return `${ANCHOR_FILE}: the anchor checkpoint has an invalid signature or does not cover the record before it`;
  }
  if (!d.next_segment) return `${ANCHOR_FILE}: the anchor checkpoint does not seal a segment`;
  return { seq: rec.seq, hash: rec.hash, nextSegment: d.next_segment };
}
