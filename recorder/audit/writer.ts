import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import type { Logger } from 'pino';
import type { AppendCallback, AppendReceipt, AuditSink } from '../types.ts';
import { createEvent, SYSTEM_ACTOR, LOCAL_SOURCE, type AuditEvent } from '../../src/events/envelope.ts';
import { AuditUnavailableError } from '../../src/errors.ts';
import { eventPieces, type EventPieces } from './encode.ts';
import {
  ZERO_HASH, isCheckpointLine, encodeRecordInto, maxRecordBytes, parseRecordLine, signCheckpoint, keyId, segmentName,
  parseSegmentName, metaName, type CheckpointDetails, type SegmentMeta, type SignedHead,
} from './record.ts';
import { listSegments, splitSegment } from './segments.ts';
import { acquireWriterLock } from './lock.ts';
import { fsyncDir, writeAllv, writeFileAtomic } from './durable.ts';
import { startSpoolIngest, SPOOL_DIR, type SpoolIngest } from './spool.ts';

export interface AuditOpenOptions {
  /** Ed25519 private key, PKCS#8 PEM (created by identity at dataDir/ca/audit_signing.key). */
  signingKeyFile: string;
  /** Rotate the segment once it reaches this size (a segment may exceed it by one record and its seal). */
  segmentMaxBytes: number;
  /** Sign a checkpoint at least this often while events flow. */
  checkpointIntervalMs: number;
  /** …and after this many events. */
  checkpointEvery: number;
  /** Operational log: write failures are reported here (fail closed). */
  log: Logger;
  /** How often the writer polls the CLI spool as a safety net (default 1 s); new spool files are noticed
   *  at once through a file-system watch unless `spoolWatch` is false. */
  spoolPollMs?: number;
  spoolWatch?: boolean;
  /**
   * Commit window: after an fsync, the next one waits until this long after it started (default 5 ms), so
   * that events arriving one at a time (one client's queries) share fsyncs instead of paying one each.
   * Awaited appends (auth decisions, grants) wait at most this much longer.
   */
  commitWindowMs?: number;
  /**
   * The same for groups nobody awaits — only fire-and-forget events (queries, file operations through
   * EventBus.record): default 25 ms. Fewer fsyncs for a steady trickle of queries; the price is that a
   * crash can lose up to this much more of them (they were never acknowledged to anyone). An awaited
   * append joining the group brings its commit forward to `commitWindowMs`.
   */
  backgroundWindowMs?: number;
}

/** The segment-file writer: the process that holds the writer lock of an audit directory. */
export interface AuditLogWriter extends AuditSink {
  readonly dir: string;
  /** Last record assigned (not necessarily durable yet). */
  readonly head: { seq: number; hash: string };
  /** Append a signed checkpoint now when records are uncovered; resolves once durable. */
  checkpoint(): Promise<AppendReceipt | undefined>;
}

export const HEAD_FILE = 'head.json';
const SEGMENT_OPEN_FLAGS = fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_DSYNC;
export const QUARANTINE_DIR = 'quarantine';

interface Segment {
  name: string;
  file: string;
  handle?: fsp.FileHandle;
  bytes: number;
  firstSeq: number;
  lastSeq: number;
  minTime: string;
  maxTime: string;
}

/** Spare chunk buffers kept for reuse: enough for a busy group and the one being filled meanwhile. */
const MAX_SPARES = 4;
const MAX_SPARE_BYTES = 32 * 1024 * 1024;

interface Chunk {
  segment: Segment;
  /** The chunk's record lines, encoded once, written as one buffer: `buf[0, bytes)`. */
  buf: Buffer;
  bytes: number;
  /** Set when the chunk ends with the segment's sealing checkpoint. */
  seal?: SegmentMeta;
  /** The segment the seal names: created before the seal is written, so a named segment always exists. */
  next?: Segment;
}

interface Later {
  events: AuditEvent[];
  callbacks: AppendCallback<any>[];
  contexts: unknown[];
}

const newLater = (): Later => ({ events: [], callbacks: [], contexts: [] });

function settleLater(later: Later, err: Error | undefined): void {
  for (let i = 0; i < later.events.length; i++) {
    try {
      later.callbacks[i](err, later.events[i], later.contexts[i]);
    } catch {
      // A throwing callback must not keep the others from hearing about their events.
    }
  }
}

type Resolve = (r: AppendReceipt) => void;
type Reject = (e: Error) => void;

/**
 * Group commits, for in-process observers (commit latency, batch sizes): `{ phase: 'write', lastSeq, bytes }`
 * when a group's write is issued, `{ phase: 'durable', lastSeq, bytes, ms }` once it is durable.
 */
export const commitChannel = diagnostics.channel('vigil:audit:commit');

export interface CommitMessage {
  phase: 'write' | 'durable';
  /** Sequence number of the group's last record. */
  lastSeq: number;
  bytes: number;
  /** From the write being issued until durable. */
  ms?: number;
}

/** One group commit in flight: its write, and who hears when it is durable. */
interface Group {
  written: Promise<void>;
  lastSeq: number;
  bytes: number;
  startedAt: number;
  resolves: Resolve[];
  rejects: Reject[];
  receipts: AppendReceipt[];
  later: Later;
  head?: SignedHead;
}

function utcDayEnd(now: number): number {
  const d = new Date(now);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1);
}

class SegmentWriter implements AuditLogWriter {
  readonly dir: string;
  private seq = 0;
  private headHash = ZERO_HASH;
  /** Size of a new chunk buffer: half again the last group's bytes, so a busy group usually fits in one. */
  private chunkHint = 64 * 1024;
  /** Buffers of written chunks, reused for new ones (a few, bounded in total size). */
  private spares: Buffer[] = [];
  private segment!: Segment;
  private chunks: Chunk[] = [];
  private resolves: Resolve[] = [];
  private rejects: Reject[] = [];
  private receipts: AppendReceipt[] = [];
  /** appendLater() entries of the group being filled: parallel arrays, so an append allocates nothing. */
  private later: Later = newLater();
  /**
   * appendLater() entries not encoded yet. They are encoded together — when the group commits, or first
   * thing before anything that needs the chain's head (append, checkpoint, close) — so a busy proxy runs
   * the encoder in one warm loop per group instead of between its own work, where every call starts with
   * cold caches. Order is kept: nothing is chained ahead of them.
   */
  private queued: Later = newLater();
  private pendingHead?: SignedHead;
  private sinceCheckpoint = 0;
  private dayEnd = 0;
  private flushing = false;
  /** The pending commit's timer and when it is due (performance.now()). */
  private flushTimer?: { handle: NodeJS.Timeout | NodeJS.Immediate; immediate: boolean };
  private flushDue = Infinity;
  /** Someone awaits a record of the group being filled (append(), checkpoint()): commit it soon. */
  private urgent = false;
  private draining = false;
  /** When the last group commit started (performance.now()), for the commit window. */
  private lastCommitAt = -Infinity;
  private get commitWindowMs(): number {
    return this.opts.commitWindowMs ?? 5;
  }
  private get backgroundWindowMs(): number {
    return Math.max(this.opts.backgroundWindowMs ?? 25, this.commitWindowMs);
  }
  private idleWaiters: (() => void)[] = [];
  private headWrite: Promise<void> = Promise.resolve();
  private queuedHead?: SignedHead;
  private timer?: NodeJS.Timeout;
  private spool?: SpoolIngest;
  private closed = false;
  private closing?: Promise<void>;
  private failureError?: AuditUnavailableError;
  private readonly keyId: string;

  constructor(
    dir: string,
    private readonly key: crypto.KeyObject,
    private readonly opts: AuditOpenOptions,
    private readonly releaseLock: () => void,
  ) {
    this.dir = dir;
    this.keyId = keyId(crypto.createPublicKey(key));
  }

  get healthy(): boolean {
    return !this.failureError;
  }

  get failure(): Error | undefined {
    return this.failureError;
  }

  get head(): { seq: number; hash: string } {
    return { seq: this.seq, hash: this.headHash };
  }

  append(event: AuditEvent): Promise<AppendReceipt> {
    if (this.failureError) return Promise.reject(this.failureError);
    if (this.closed) return Promise.reject(new AuditUnavailableError('the audit log is closed'));
    if (event.type === 'audit.checkpoint') return Promise.reject(new TypeError('audit.checkpoint records are written by the audit log itself'));
    let pieces: EventPieces;
    try {
      pieces = eventPieces(event);
    } catch (e) {
      return Promise.reject(e);
    }
    this.encodeQueued(); // chained after everything appended before it
    return new Promise<AppendReceipt>((resolve, reject) => {
      this.rotateIfNewDay();
      this.push(pieces, event.time);
      const receipt = this.receipt();
      this.resolves.push(resolve);
      this.rejects.push(reject);
      this.receipts.push(receipt);
      this.urgent = true;
      this.checkpointOrRotateIfDue();
      this.scheduleFlush();
    });
  }

  appendLater<C>(event: AuditEvent, callback: AppendCallback<C>, context: C): void {
    let err: Error | undefined = this.failureError;
    if (!err && this.closed) err = new AuditUnavailableError('the audit log is closed');
    if (!err && event.type === 'audit.checkpoint') err = new TypeError('audit.checkpoint records are written by the audit log itself');
    // Never call back synchronously: the caller is in the middle of its own work.
    if (err) return void process.nextTick(callback, err, event, context);
    this.queued.events.push(event);
    this.queued.callbacks.push(callback);
    this.queued.contexts.push(context);
    // The first queued event arranges the commit; the rest ride on it (a running commit re-arranges one
    // when it ends and finds events queued).
    if (this.queued.events.length === 1) this.scheduleFlush();
  }

  /** Chain and encode the queued appendLater() events (see `queued`). */
  private encodeQueued(): void {
    const q = this.queued;
    if (q.events.length === 0) return;
    this.queued = newLater();
    if (this.failureError) return settleLater(q, this.failureError);
    this.rotateIfNewDay();
    for (let i = 0; i < q.events.length; i++) {
      const event = q.events[i];
      let pieces: EventPieces;
      try {
        pieces = eventPieces(event);
      } catch (e) {
        process.nextTick(q.callbacks[i], e as Error, event, q.contexts[i]);
        continue;
      }
      this.push(pieces, event.time);
      this.later.events.push(event);
      this.later.callbacks.push(q.callbacks[i]);
      this.later.contexts.push(q.contexts[i]);
      this.checkpointOrRotateIfDue();
    }
  }

  checkpoint(): Promise<AppendReceipt | undefined> {
    if (this.failureError) return Promise.reject(this.failureError);
    if (!this.closed) this.encodeQueued();
    if (this.sinceCheckpoint === 0 || this.closed) return Promise.resolve(undefined);
    return new Promise<AppendReceipt>((resolve, reject) => {
      const receipt = this.pushCheckpoint('interval');
      this.resolves.push(resolve);
      this.rejects.push(reject);
      this.receipts.push(receipt);
      this.urgent = true;
      this.scheduleFlush();
    });
  }

  /** Assign seq and hash to one record and queue its line for the next group commit. */
  private push(event: string | EventPieces, time: string): void {
    const seq = this.seq + 1;
    const seg = this.segment;
    let chunk = this.chunks[this.chunks.length - 1];
    const need = maxRecordBytes(event);
    if (!chunk || chunk.segment !== seg || chunk.bytes + need > chunk.buf.length) {
      // A full chunk is followed by another one rather than grown: nothing already encoded is copied, and
      // a segment's chunks are written together with one writev.
      chunk = { segment: seg, buf: this.chunkBuffer(need), bytes: 0 };
      this.chunks.push(chunk);
    }
    const { end, hash } = encodeRecordInto(chunk.buf, chunk.bytes, seq, this.headHash, event);
    seg.bytes += end - chunk.bytes;
    chunk.bytes = end;
    this.seq = seq;
    this.headHash = hash;
    seg.lastSeq = seq;
    if (typeof time === 'string') {
      if (!seg.minTime || time < seg.minTime) seg.minTime = time;
      if (time > seg.maxTime) seg.maxTime = time;
    }
    this.sinceCheckpoint++;
  }

  private chunkBuffer(need: number): Buffer {
    const size = Math.max(this.chunkHint, need);
    const spare = this.spares.pop();
    if (spare && spare.length >= size) return spare;
    return Buffer.allocUnsafe(size);
  }

  private releaseChunkBuffer(buf: Buffer): void {
    if (buf.length <= MAX_SPARE_BYTES && this.spares.length < MAX_SPARES) this.spares.push(buf);
  }

  /** The receipt of the record just pushed (only awaited appends need one). */
  private receipt(): AppendReceipt {
    return { seq: this.seq, hash: this.headHash };
  }

  /** A segment holds one UTC day: the first record after midnight starts a new one. */
  private rotateIfNewDay(): void {
    if (Date.now() >= this.dayEnd && this.segment.lastSeq >= this.segment.firstSeq) this.rotate();
  }

  /** After a record: a checkpoint every `checkpointEvery` records, a new segment past `segmentMaxBytes`. */
  private checkpointOrRotateIfDue(): void {
    if (this.sinceCheckpoint >= this.opts.checkpointEvery) this.pushCheckpoint('count');
    if (this.segment.bytes >= this.opts.segmentMaxBytes) this.rotate();
  }

  private pushCheckpoint(reason: CheckpointDetails['reason'], extra: Partial<CheckpointDetails> = {}): AppendReceipt {
    const details: CheckpointDetails = {
      seq: this.seq,
      head: this.headHash,
      sig: signCheckpoint(this.key, this.seq, this.headHash),
      key_id: this.keyId,
      reason,
      ...extra,
    };
    const event = createEvent({
      type: 'audit.checkpoint',
      outcome: 'success',
      actor: { user: SYSTEM_ACTOR.user, roles: [...SYSTEM_ACTOR.roles] },
      source: { ...LOCAL_SOURCE },
      target: { name: 'audit', protocol: 'vigil' },
      details: details as unknown as Record<string, unknown>,
    });
    this.push(eventPieces(event), event.time);
    const receipt = this.receipt();
    this.sinceCheckpoint = 0;
    this.pendingHead = { seq: details.seq, head: details.head, sig: details.sig, key_id: details.key_id };
    return receipt;
  }

  /** Seal the current segment with a checkpoint naming its successor and continue in a new one. */
  private rotate(): void {
    const now = Date.now();
    const next = segmentName(this.seq + 2, new Date(now));
    this.pushCheckpoint('rotate', { next_segment: next });
    const old = this.segment;
    const chunk = this.chunks[this.chunks.length - 1];
    chunk.seal = { first_seq: old.firstSeq, last_seq: old.lastSeq, min_time: old.minTime, max_time: old.maxTime };
    this.segment = this.newSegment(next, this.seq + 1);
    chunk.next = this.segment;
    this.dayEnd = utcDayEnd(now);
  }

  newSegment(name: string, firstSeq: number, bytes = 0): Segment {
    return { name, file: path.join(this.dir, name), bytes, firstSeq, lastSeq: firstSeq - 1, minTime: '', maxTime: '' };
  }

  /**
   * Arrange the next group commit: no sooner than one window after the previous one started — the short
   * window when someone awaits a record of the group, the background window otherwise — so events that
   * trickle in share fsyncs. A busy log whose commit outlasts the window commits again at once.
   */
  private scheduleFlush(): void {
    if (this.flushing) return; // the running commit schedules the next one when it ends
    const due = this.commitDueAt();
    if (this.flushTimer && this.flushDue <= due) return;
    this.cancelFlushTimer();
    this.flushDue = due;
    const run = () => {
      this.flushTimer = undefined;
      this.flushDue = Infinity;
      void this.flushGroup();
    };
    const wait = due - performance.now();
    this.flushTimer = wait > 0 ? { handle: setTimeout(run, wait), immediate: false } : { handle: setImmediate(run), immediate: true };
  }

  /** When the group being filled may commit: its window after the previous commit started (none when closing). */
  private commitDueAt(): number {
    return this.lastCommitAt + (this.draining ? 0 : this.urgent ? this.commitWindowMs : this.backgroundWindowMs);
  }

  private cancelFlushTimer(): void {
    if (!this.flushTimer) return;
    if (this.flushTimer.immediate) clearImmediate(this.flushTimer.handle as NodeJS.Immediate);
    else clearTimeout(this.flushTimer.handle as NodeJS.Timeout);
    this.flushTimer = undefined;
    this.flushDue = Infinity;
  }

  /**
   * Group commit: everything queued since the previous commit is written (O_DSYNC) together. A busy log
   * runs one group after another in this loop, and starts the next group's write before the callers of the
   * one just written hear of it: their continuations (a producer appending its next batch, sessions going
   * on with their work) can run for tens of milliseconds, and the disk would sit idle for all of it if the
   * next write waited for the event loop to come round again.
   */
  private async flushGroup(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    let group = this.startGroup();
    while (group) {
      try {
        await group.written;
      } catch (e) {
        this.fail(e as Error, group.rejects, group.later); // settles everything pending: nothing follows
        break;
      }
      if (commitChannel.hasSubscribers) {
        commitChannel.publish({ phase: 'durable', lastSeq: group.lastSeq, bytes: group.bytes, ms: performance.now() - group.startedAt } satisfies CommitMessage);
      }
      const next = this.nextGroupDue() ? this.startGroup() : undefined;
      for (let i = 0; i < group.resolves.length; i++) group.resolves[i](group.receipts[i]);
      settleLater(group.later, undefined);
      if (group.head) this.publishHead(group.head);
      group = next;
    }
    this.flushing = false;
    if ((this.chunks.length > 0 || this.queued.events.length > 0) && !this.failureError) {
      this.scheduleFlush();
    } else {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Is there a group to commit, and has its commit window (see scheduleFlush) passed? */
  private nextGroupDue(): boolean {
    if (this.failureError || (this.chunks.length === 0 && this.queued.events.length === 0)) return false;
    return performance.now() >= this.commitDueAt();
  }

  /**
   * Take everything queued as one group and start writing it; the write is issued before this returns (a
   * segment opened earlier needs no await first). Undefined when there is nothing to write.
   */
  private startGroup(): Group | undefined {
    this.cancelFlushTimer();
    this.encodeQueued();
    if (this.chunks.length === 0 || this.failureError) return undefined;
    const chunks = this.chunks;
    let bytes = 0;
    for (const c of chunks) bytes += c.bytes;
    // Half again this group's size for the next chunk buffers: a busy log fills one per group without wasting much.
    this.chunkHint = Math.min(Math.max(bytes + (bytes >> 1), 64 * 1024), 16 * 1024 * 1024);
    const startedAt = performance.now();
    const group: Group = { written: this.writeGroup(chunks), lastSeq: this.seq, bytes, startedAt, resolves: this.resolves, rejects: this.rejects, receipts: this.receipts, later: this.later, head: this.pendingHead };
    this.chunks = [];
    this.resolves = [];
    this.rejects = [];
    this.receipts = [];
    this.later = newLater();
    this.pendingHead = undefined;
    this.urgent = false;
    this.lastCommitAt = startedAt;
    if (commitChannel.hasSubscribers) commitChannel.publish({ phase: 'write', lastSeq: group.lastSeq, bytes } satisfies CommitMessage);
    return group;
  }

  private async writeGroup(chunks: Chunk[]): Promise<void> {
    for (let i = 0; i < chunks.length; ) {
      // One segment's chunks of this group: consecutive, the last one possibly sealing it.
      let end = i + 1;
      while (end < chunks.length && chunks[end].segment === chunks[i].segment) end++;
      await this.writeChunks(chunks.slice(i, end));
      i = end;
    }
  }

  private async openSegment(seg: Segment): Promise<fsp.FileHandle> {
    if (!seg.handle) {
      // O_DSYNC: each write returns once its data is durable — one thread-pool round trip per group commit
      // instead of a write and then a datasync.
      seg.handle = await fsp.open(seg.file, SEGMENT_OPEN_FLAGS, 0o600);
      await fsyncDir(this.dir); // the new segment's directory entry must survive a crash too
    }
    return seg.handle;
  }

  /** Write one segment's chunks of a group (one writev, durable on return), then seal it if the last says so. */
  private async writeChunks(run: Chunk[]): Promise<void> {
    const seg = run[0].segment;
    const chunk = run[run.length - 1];
    // No await when the segments are open already: startGroup() relies on the write being issued at once.
    if (!seg.handle) await this.openSegment(seg);
    if (chunk.next && !chunk.next.handle) await this.openSegment(chunk.next);
    await writeAllv(seg.handle!, run.map((c) => c.buf.subarray(0, c.bytes))); // durable on return (O_DSYNC)
    // Written: the buffers are free for the next groups.
    for (const c of run) this.releaseChunkBuffer(c.buf);
    if (chunk.seal) {
      await seg.handle!.close();
      seg.handle = undefined;
      await writeFileAtomic(path.join(this.dir, metaName(seg.name)), JSON.stringify(chunk.seal) + '\n');
    }
  }

  /** Keep head.json at the newest durable checkpoint, in the background (coalesced). */
  private publishHead(head: SignedHead): void {
    const idle = this.queuedHead === undefined;
    this.queuedHead = head;
    if (!idle) return;
    this.headWrite = this.headWrite.then(async () => {
      const h = this.queuedHead;
      this.queuedHead = undefined;
      if (!h || this.failureError) return;
      try {
        await writeFileAtomic(path.join(this.dir, HEAD_FILE), JSON.stringify(h) + '\n');
      } catch (e) {
        this.fail(e as Error, []);
      }
    });
  }

  private fail(err: Error, rejects: Reject[], later?: Later): void {
    if (!this.failureError) {
      const code = (err as NodeJS.ErrnoException).code;
      this.failureError = new AuditUnavailableError(
        `the audit log cannot be written (${code ? `${code}: ` : ''}${err.message}); vigil refuses new sessions until it is fixed`,
        { cause: err },
      );
      this.opts.log.error({ err, dir: this.dir }, 'audit log write failed: failing closed, new sessions are refused');
      if (this.timer) clearInterval(this.timer);
    }
    const all = [...rejects, ...this.rejects];
    const pendingLater = this.later;
    const queued = this.queued;
    this.queued = newLater();
    this.chunks = [];
    this.resolves = [];
    this.rejects = [];
    this.receipts = [];
    this.later = newLater();
    for (const r of all) r(this.failureError);
    if (later) settleLater(later, this.failureError);
    settleLater(pendingLater, this.failureError);
    settleLater(queued, this.failureError);
  }

  private whenIdle(): Promise<void> {
    if (!this.flushing && !this.flushTimer && this.chunks.length === 0 && this.queued.events.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Open the chain where the last complete record left it; set aside a crash-torn final line. */
  async recover(): Promise<Map<string, true>> {
    const ids = new Map<string, true>();
    const segments = listSegments(this.dir);
    this.dayEnd = utcDayEnd(Date.now());
    let current: Segment | undefined;
    let torn: { bytes: number; quarantined: string } | undefined;
    const empty: string[] = [];
    for (let i = segments.length - 1; i >= 0 && !current; i--) {
      const name = segments[i];
      const file = path.join(this.dir, name);
      if (!fs.statSync(file).isFile()) throw new Error(`audit segment ${name} is not a regular file`);
      const text = fs.readFileSync(file, 'utf8');
      const { lines, torn: tail } = splitSegment(text);
      let size = Buffer.byteLength(text);
      if (tail) {
        // Never acknowledged (an append resolves only after its whole line is fsync'd): keep it for
        // forensics, cut it from the segment, and say so in the recovery checkpoint.
        const tailBytes = Buffer.byteLength(tail);
        size -= tailBytes;
        const qdir = path.join(this.dir, QUARANTINE_DIR);
        fs.mkdirSync(qdir, { recursive: true, mode: 0o700 });
        const q = path.join(qdir, `${name}.${size}.torn`);
        fs.writeFileSync(q, tail, { mode: 0o600 });
        fs.truncateSync(file, size);
        const fd = fs.openSync(file, 'r+');
        fs.fsyncSync(fd);
        fs.closeSync(fd);
        torn = { bytes: tailBytes, quarantined: `${QUARANTINE_DIR}/${path.basename(q)}` };
      }
      if (lines.length === 0) {
        empty.push(name); // crash right after rotation (or a fresh log): nothing to recover here
        continue;
      }
      const seg = this.newSegment(name, parseSegmentName(name)!.firstSeq, size);
      let sealNext: string | undefined;
      for (const line of lines) {
        const rec = parseRecordLine(line);
        if (typeof rec === 'string') throw new Error(`audit segment ${name} has a ${rec}; run \`vigil audit verify\``);
        const ev = JSON.parse(rec.eventJson) as AuditEvent;
        if (ev.id) ids.set(ev.id, true);
        if (!seg.minTime || ev.time < seg.minTime) seg.minTime = ev.time;
        if (ev.time > seg.maxTime) seg.maxTime = ev.time;
        this.sinceCheckpoint++;
        sealNext = undefined;
        if (isCheckpointLine(line) && ev.type === 'audit.checkpoint') {
          this.sinceCheckpoint = 0;
          sealNext = (ev.details as unknown as CheckpointDetails).next_segment;
        }
        this.seq = rec.seq;
        this.headHash = rec.hash;
      }
      seg.lastSeq = this.seq;
      // A segment sealed just before a crash continues in the segment its seal names.
      current = sealNext ? this.newSegment(sealNext, this.seq + 1) : seg;
    }
    if (!current) current = this.newSegment(empty[empty.length - 1] ?? segmentName(1, new Date()), 1);
    for (const name of empty) if (name !== current.name) fs.rmSync(path.join(this.dir, name));
    this.segment = current;
    // A segment from an earlier UTC day is rotated by the first append of today.
    const day = parseSegmentName(current.name)?.day;
    if (day) this.dayEnd = Date.UTC(Number(day.slice(0, 4)), Number(day.slice(4, 6)) - 1, Number(day.slice(6, 8)) + 1);
    if (torn || this.sinceCheckpoint > 0) {
      await new Promise<AppendReceipt>((resolve, reject) => {
        const receipt = this.pushCheckpoint('recover', torn ? { torn_bytes: torn.bytes, quarantined: torn.quarantined } : {});
        this.resolves.push(resolve);
        this.rejects.push(reject);
        this.receipts.push(receipt);
        this.urgent = true;
        this.scheduleFlush();
      });
      if (torn) this.opts.log.warn({ dir: this.dir, ...torn }, 'audit log: set aside a crash-torn final line (never acknowledged)');
    }
    return ids;
  }

  start(knownIds: Map<string, true>): void {
    if (this.opts.checkpointIntervalMs > 0) {
      this.timer = setInterval(() => {
        if (!this.failureError && !this.closed) this.encodeQueued();
        if (this.sinceCheckpoint > 0 && !this.failureError && !this.closed) {
          this.pushCheckpoint('interval');
          this.scheduleFlush();
        }
      }, this.opts.checkpointIntervalMs);
      this.timer.unref();
    }
    this.spool = startSpoolIngest(this, path.join(this.dir, SPOOL_DIR), this.opts.spoolPollMs ?? 1000, knownIds, this.opts.log, (e) => {
      for (const fn of this.foreignListeners) {
        try {
          fn(e);
        } catch {
          // An observer must never affect ingesting.
        }
      }
    }, this.opts.spoolWatch ?? true);
  }

  private readonly foreignListeners = new Set<(e: AuditEvent) => void>();

  onForeignEvent(listener: (e: AuditEvent) => void): () => void {
    this.foreignListeners.add(listener);
    return () => this.foreignListeners.delete(listener);
  }

  /** Drain the spool once now (used at open). */
  async drainSpool(): Promise<void> {
    await this.spool?.drain();
  }

  close(): Promise<void> {
    return (this.closing ??= (async () => {
      if (this.timer) clearInterval(this.timer);
      await this.spool?.stop();
      // Closing commits what is queued now, without waiting for a window.
      this.draining = true;
      this.encodeQueued();
      if (!this.failureError && this.sinceCheckpoint > 0) this.pushCheckpoint('close');
      if (this.chunks.length > 0 && !this.failureError) {
        this.cancelFlushTimer();
        this.scheduleFlush();
      }
      this.closed = true;
      await this.whenIdle();
      await this.headWrite;
      await this.segment.handle?.close().catch(() => {});
      this.segment.handle = undefined;
      this.releaseLock();
    })());
  }
}

/**
 * Open the audit log of `dir` as its single writer: take the lock, recover the chain after the last
 * complete record (writing a recovery checkpoint when the tail was uncovered or torn), ingest anything
 * CLI processes left in the spool, then accept appends.
 */
export async function openAuditLog(dir: string, opts: AuditOpenOptions): Promise<AuditLogWriter> {
  fs.mkdirSync(path.join(dir, SPOOL_DIR), { recursive: true, mode: 0o700 });
  const key = crypto.createPrivateKey(fs.readFileSync(opts.signingKeyFile));
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${opts.signingKeyFile} is not an Ed25519 private key`);
  const release = acquireWriterLock(dir);
  const writer = new SegmentWriter(dir, key, opts, release);
  try {
    const ids = await writer.recover();
    if (!writer.healthy) throw writer.failure;
    writer.start(ids);
    await writer.drainSpool();
  } catch (e) {
    await writer.close().catch(() => {});
    release();
    throw e;
  }
  return writer;
}
