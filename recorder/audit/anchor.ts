import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import { VigilError } from '../../src/errors.ts';
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

/**
 * Write atomically and durably (temp file, fsync, rename, fsync dir): a half-written anchor would fail verify.
 * The temp file is this write's own: two writers sharing one would interleave their bytes in it.
 */
export function writeAnchorFile(dir: string, anchor: AnchorFile): void {
  const file = path.join(dir, ANCHOR_FILE);
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`;
  try {
    const fd = fs.openSync(tmp, 'wx', 0o600);
    try {
      fs.writeSync(fd, JSON.stringify(anchor, null, 2) + '\n');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  const d = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(d);
  } finally {
    fs.closeSync(d);
  }
}

/** Taken by whoever rewrites anchor.json (a purge: the CLI's, the gateway's daily one, any process). */
export const ANCHOR_LOCK_FILE = 'anchor.json.lock';
/** How long a purge waits for another one's anchor update (milliseconds of work) before it gives up. */
const ANCHOR_LOCK_WAIT_MS = 30_000;
/** A lock file still empty this long after it was made: its maker died between creating and filling it. */
const EMPTY_LOCK_STALE_MS = 10_000;

/** Published when anchor.json is busy (another process is updating it) and this one waits: for tests. */
export const anchorLockWaitChannel = diagnostics.channel('vigil:audit:anchor-lock-wait');
/** Published inside the update, after the current anchor was read and before the new one is written: for tests. */
export const anchorReadChannel = diagnostics.channel('vigil:audit:anchor-read');

function lockPid(file: string): number | undefined {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether the lock at `file` was left by a process that is gone. Our own pid counts as gone: updates are
 * synchronous, so this process never holds the lock while it asks (a lock naming our pid is a previous
 * process's, e.g. pid 1 in a restarted container).
 */
function isStaleLock(file: string): boolean {
  const pid = lockPid(file);
  if (pid === undefined) {
    const st = fs.statSync(file, { throwIfNoEntry: false });
    return st !== undefined && Date.now() - st.mtimeMs > EMPTY_LOCK_STALE_MS;
  }
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'EPERM';
  }
}

function lockAnchor(dir: string): () => void {
  const file = path.join(dir, ANCHOR_LOCK_FILE);
  const deadline = Date.now() + ANCHOR_LOCK_WAIT_MS;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  let announced = false;
  for (;;) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      try {
        fs.writeSync(fd, `${process.pid}\n`);
      } finally {
        fs.closeSync(fd);
      }
      return () => fs.rmSync(file, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (isStaleLock(file)) {
      // Moved aside before removal, so two processes clearing the same stale lock cannot remove a fresh one.
      const aside = `${file}.stale-${process.pid}`;
      try {
        fs.renameSync(file, aside);
        if (!isStaleLock(aside)) fs.linkSync(aside, file); // a fresh lock taken in between: put it back
      } catch (e) {
        if (!['ENOENT', 'EEXIST'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
      }
      fs.rmSync(aside, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new VigilError('VIGIL_ANCHOR_LOCKED', `${ANCHOR_FILE} in ${dir} is being updated by process ${lockPid(file) ?? '?'} for over ${ANCHOR_LOCK_WAIT_MS / 1000} s; nothing was removed, run the purge again`);
    }
    if (!announced && anchorLockWaitChannel.hasSubscribers) anchorLockWaitChannel.publish({ dir });
    announced = true;
    // The holder only reads, writes and fsyncs one small file: a short synchronous wait.
    Atomics.wait(pause, 0, 0, 2);
  }
}

/**
 * Read-modify-write of anchor.json under a lock shared by every process: two purges at once (the CLI's and
 * the gateway's daily run) would otherwise both read the same anchor, and the one writing last would lose
 * the other's history or move the anchor back to a segment the other already removed (verify then fails).
 * `update` gets the current anchor (undefined when none) and returns the new one.
 */
export function updateAnchorFile(dir: string, update: (prior: AnchorFile | undefined) => AnchorFile): AnchorFile {
  const unlock = lockAnchor(dir);
  try {
    // Temp files of writers killed before their rename: no one else writes while the lock is held.
    for (const n of fs.readdirSync(dir)) if (/^anchor\.json\.(\d+\.[0-9a-f]+\.)?tmp$/.test(n)) fs.rmSync(path.join(dir, n), { force: true });
    const prior = readAnchorFile(dir);
    if (anchorReadChannel.hasSubscribers) anchorReadChannel.publish({ dir });
    const next = update(prior);
    writeAnchorFile(dir, next);
    return next;
  } finally {
    unlock();
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
