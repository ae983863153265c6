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
  parseSegmentName, metaName, type CheckpointDetails, type OpenSessionRef, type SegmentMeta, type SignedHead,
} from './record.ts';
import { listSegments, readSegmentMeta, splitSegment } from './segments.ts';
import { acquireWriterLock } from './lock.ts';
import { fsyncDir, writeAllv, writeFileAtomic } from './durable.ts';
import { startSpoolIngest, SPOOL_DIR, type SpoolIngest } from './spool.ts';

export type { OpenSessionRef } from './record.ts';

export interface AuditOpenOptions {
  /** Ed25519 private key, PKCS#8 PEM (created by identity at dataDir/ca/audit_signing.key). */
  signingKeyFile: string;
  /** Rotate the segment once it reaches this size (a segment may exceed it by one record and its seal). */
  segmentMaxBytes: number;
  /** Sign a checkpoint at least this often while events flow. */
  checkpointIntervalMs: number;
  /** …and after this many events. */
  checkpointEvery: number;
  /**
   * …and after this many bytes of records (default CHECKPOINT_MAX_BYTES). Readers of the signed chain (the
   * shared index's follower) hand out records only up to a checkpoint, so this bounds how much they must
   * hold and ship at once when events are large, whatever `checkpointEvery` says.
   */
  checkpointMaxBytes?: number;
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
  /**
   * The window of appends made with `{ strict: true }` (statements held back until their record is durable,
   * audit.durability strict): default 0 — committed as soon as the previous commit is done; sessions that
   * append while an fsync is in flight still share the next one.
   */
  strictWindowMs?: number;
  /** While the log cannot be written, retry this often (default 1 s); the log becomes healthy again by itself. */
  recoveryProbeMs?: number;
  /** Every signed head, once durable and in head.json, is also handed here (the witness publisher); heads
   *  are coalesced while one is being handed over. */
  onSignedHead?: (head: SignedHead) => void | Promise<void>;
}

/** The segment-file writer: the process that holds the writer lock of an audit directory. */
export interface AuditLogWriter extends AuditSink {
  readonly dir: string;
  /** Last record assigned (not necessarily durable yet). */
  readonly head: { seq: number; hash: string };
  /** Append a signed checkpoint now when records are uncovered; resolves once durable. */
  checkpoint(): Promise<AppendReceipt | undefined>;
  /** The current outage, while the log cannot be written (undefined when healthy). */
  readonly outage: Readonly<OutageState> | undefined;
}

/** An outage of the log: from the first failed write until a probe wrote again. */
export interface OutageState {
  started: Date;
  /** errno code or message of the write that failed first. */
  reason: string;
  /** Events refused (rejected to their callers) since it started: never in the log. */
  refused: number;
  /** Sessions refused at admission because the log was down (they never reached a backend). */
  sessionsRefused: number;
}

export const HEAD_FILE = 'head.json';
const SEGMENT_OPEN_FLAGS = fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_DSYNC;
export const QUARANTINE_DIR = 'quarantine';
/**
 * Default checkpointMaxBytes: a signed checkpoint at least every 1 MiB of records, so the shared index's
 * follower (which ships a few MiB per transaction, ending on a checkpoint) never has to take more than
 * that past its budget, however large the events and however many fit in `checkpointEvery`.
 */
export const CHECKPOINT_MAX_BYTES = 1024 * 1024;
/** How far back of an event's own time findOlderRecord still looks (a wall clock stepped back meanwhile). */
const CLOCK_STEP_MARGIN_MS = 60 * 60_000;

interface Segment {
  name: string;
  file: string;
  handle?: fsp.FileHandle;
  bytes: number;
  firstSeq: number;
  lastSeq: number;
  minTime: string;
  maxTime: string;
  /** Bytes of the file written so far (durable: O_DSYNC). */
  written: number;
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
  /** The segment the group ends in: once durable, the log is durable up to its `written` bytes. */
  lastSegment: Segment;
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
  /** Bytes of the records since the last checkpoint (see checkpointMaxBytes). */
  private sinceCheckpointBytes = 0;
  private dayEnd = 0;
  private flushing = false;
  /** The pending commit's timer and when it is due (performance.now()). */
  private flushTimer?: { handle: NodeJS.Timeout | NodeJS.Immediate; immediate: boolean };
  private flushDue = Infinity;
  /** Who waits for the group being filled: 0 nobody (background window), 1 an awaited append or checkpoint
   *  (commit window), 2 a strict append holding a statement back (strict window). */
  private urgency: 0 | 1 | 2 = 0;
  private draining = false;
  /** When the last group commit started (performance.now()), for the commit window. */
  private lastCommitAt = -Infinity;
  private get commitWindowMs(): number {
    return this.opts.commitWindowMs ?? 5;
  }
  private get backgroundWindowMs(): number {
    return Math.max(this.opts.backgroundWindowMs ?? 25, this.commitWindowMs);
  }
  private get strictWindowMs(): number {
    return Math.min(this.opts.strictWindowMs ?? 0, this.commitWindowMs);
  }
  /** Set from the first failed write until a probe has written again; appends are refused meanwhile. */
  private outageState?: OutageState & { error: AuditUnavailableError; refusedEnds: AuditEvent[]; lateRecords: AuditEvent[] };
  private probeTimer?: NodeJS.Timeout;
  private probing = false;
  /** Rejects of the writer's own awaited commits (recovery), not counted as refused events. */
  private readonly internalRejects = new WeakSet<Reject>();
  /** How far the log is durable: everything before it was acknowledged; anything after it, never. */
  private durableAt!: { seg: Segment; bytes: number };
  /** Sessions with a session.start and no session.end in the chain so far (in chain order). */
  private openSessions = new Map<string, OpenSessionRef>();
  private idleWaiters: (() => void)[] = [];
  private headWrite: Promise<void> = Promise.resolve();
  private queuedHead?: SignedHead;
  private timer?: NodeJS.Timeout;
  private spool?: SpoolIngest;
  private closed = false;
  private closing?: Promise<void>;
  private failureError?: AuditUnavailableError;
  private readonly keyId: string;
  /** The newest segment with records when the log was opened (loadTail read it whole). */
  private tailScanned?: string;

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
    return !this.outageState;
  }

  get failure(): Error | undefined {
    return this.outageState?.error;
  }

  get outage(): Readonly<OutageState> | undefined {
    const o = this.outageState;
    return o && { started: o.started, reason: o.reason, refused: o.refused, sessionsRefused: o.sessionsRefused };
  }

  noteRefusedSession(): void {
    if (this.outageState) this.outageState.sessionsRefused++;
  }

  get head(): { seq: number; hash: string } {
    return { seq: this.seq, hash: this.headHash };
  }

  append(event: AuditEvent, opts?: { strict?: boolean }): Promise<AppendReceipt> {
    if (this.outageState) {
      this.refuse(event);
      return Promise.reject(this.outageState.error);
    }
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
      this.trackSession(event);
      const receipt = this.receipt();
      this.resolves.push(resolve);
      // A session.end refused by a failing write is written once the log is back (see recoverFromOutage).
      this.rejects.push(event.type === 'session.end' ? (e) => (this.keepRefusedEnd(event), reject(e)) : reject);
      this.receipts.push(receipt);
      this.urgency = opts?.strict ? 2 : Math.max(this.urgency, 1) as 1 | 2;
      this.checkpointOrRotateIfDue();
      this.scheduleFlush();
    });
  }

  appendLater<C>(event: AuditEvent, callback: AppendCallback<C>, context: C): void {
    let err: Error | undefined = this.outageState?.error;
    if (err) {
      this.refuse(event);
      this.keepLateRecord(event);
    }
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
    if (this.failureError) {
      for (const e of q.events) this.refuse(e);
      return settleLater(q, this.failureError);
    }
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
      this.trackSession(event);
      this.later.events.push(event);
      this.later.callbacks.push(q.callbacks[i]);
      this.later.contexts.push(q.contexts[i]);
      this.checkpointOrRotateIfDue();
    }
  }

  checkpoint(): Promise<AppendReceipt | undefined> {
    if (this.outageState) return Promise.reject(this.outageState.error);
    if (!this.closed) this.encodeQueued();
    if (this.sinceCheckpoint === 0 || this.closed) return Promise.resolve(undefined);
    return new Promise<AppendReceipt>((resolve, reject) => {
      const receipt = this.pushCheckpoint('interval');
      this.resolves.push(resolve);
      this.rejects.push(reject);
      this.receipts.push(receipt);
      this.urgency = Math.max(this.urgency, 1) as 1 | 2;
      this.scheduleFlush();
    });
  }

  /** Keep the set of open sessions in chain order: a seal carries it, crash recovery ends what is left. */
  private trackSession(event: AuditEvent): void {
    if (event.type === 'session.start' && event.session_id) {
      this.openSessions.set(event.session_id, { session_id: event.session_id, actor: event.actor, source: event.source, target: event.target });
    } else if (event.type === 'session.end' && event.session_id) {
      this.openSessions.delete(event.session_id);
    }
  }

  /** Count an event refused during an outage; a refused session.end is kept to be written afterwards. */
  private refuse(event: AuditEvent): void {
    if (!this.outageState) return;
    this.outageState.refused++;
    if (event.type === 'session.end') this.keepRefusedEnd(event);
  }

  /**
   * Fire-and-forget records (appendLater: queries, commands, file operations) describe what already
   * happened: in batched durability a statement is forwarded as soon as its record is queued, and a
   * completion record follows a statement forwarded before the outage. Their callers still hear of the
   * failure (their sessions end: fail closed), but the records are kept and written once the log is back,
   * marked like refused session.end events — otherwise a backend ran them unrecorded (#14, disk full).
   * Bounded; past the bound they are only counted in events_refused.
   */
  private keepLateRecord(event: AuditEvent): void {
    const o = this.outageState;
    if (o && event.type !== 'session.end' && o.lateRecords.length < 100_000) o.lateRecords.push(event);
  }

  private keepRefusedEnd(event: AuditEvent): void {
    const o = this.outageState;
    // Bounded: one per session; past this many the sessions are ended as gateway_crash at the next start.
    if (o && o.refusedEnds.length < 100_000 && !o.refusedEnds.includes(event)) o.refusedEnds.push(event);
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
    this.sinceCheckpointBytes += end - chunk.bytes;
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

  /**
   * After a record: a checkpoint every `checkpointEvery` records or `checkpointMaxBytes` bytes of them
   * (reason `count` either way), a new segment past `segmentMaxBytes`.
   */
  private checkpointOrRotateIfDue(): void {
    if (this.sinceCheckpoint >= this.opts.checkpointEvery || this.sinceCheckpointBytes >= (this.opts.checkpointMaxBytes ?? CHECKPOINT_MAX_BYTES)) this.pushCheckpoint('count');
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
    this.sinceCheckpointBytes = 0;
    this.pendingHead = { seq: details.seq, head: details.head, sig: details.sig, key_id: details.key_id };
    return receipt;
  }

  /** Seal the current segment with a checkpoint naming its successor and continue in a new one. */
  private rotate(): void {
    const now = Date.now();
    const next = segmentName(this.seq + 2, new Date(now));
    // The seal carries the open sessions, so crash recovery reads only the newest segment and this seal.
    this.pushCheckpoint('rotate', { next_segment: next, open_sessions: [...this.openSessions.values()] });
    const old = this.segment;
    const chunk = this.chunks[this.chunks.length - 1];
    chunk.seal = { first_seq: old.firstSeq, last_seq: old.lastSeq, min_time: old.minTime, max_time: old.maxTime };
    this.segment = this.newSegment(next, this.seq + 1);
    chunk.next = this.segment;
    this.dayEnd = utcDayEnd(now);
  }

  newSegment(name: string, firstSeq: number, bytes = 0): Segment {
    return { name, file: path.join(this.dir, name), bytes, firstSeq, lastSeq: firstSeq - 1, minTime: '', maxTime: '', written: bytes };
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
    const window = this.draining ? 0 : this.urgency === 2 ? this.strictWindowMs : this.urgency === 1 ? this.commitWindowMs : this.backgroundWindowMs;
    return this.lastCommitAt + window;
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
      this.durableAt = { seg: group.lastSegment, bytes: group.lastSegment.written };
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
    const lastSegment = chunks[chunks.length - 1].segment;
    const group: Group = { written: this.writeGroup(chunks), lastSeq: this.seq, bytes, startedAt, resolves: this.resolves, rejects: this.rejects, receipts: this.receipts, later: this.later, head: this.pendingHead, lastSegment };
    this.chunks = [];
    this.resolves = [];
    this.rejects = [];
    this.receipts = [];
    this.later = newLater();
    this.pendingHead = undefined;
    this.urgency = 0;
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
    const bufs = run.map((c) => c.buf.subarray(0, c.bytes));
    await writeAllv(seg.handle!, bufs); // durable on return (O_DSYNC)
    for (const b of bufs) seg.written += b.length;
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
        return;
      }
      try {
        await this.opts.onSignedHead?.(h); // awaited: close() returns once the last head is witnessed
      } catch (e) {
        this.opts.log.warn({ err: e }, 'audit witness: could not hand over a signed head');
      }
    });
  }

  /**
   * A write failed: refuse everything pending (their callers end their sessions: fail closed) and every
   * append until a probe (every `recoveryProbeMs`) manages to write again. Refused events are never in the
   * log; the outage event written at recovery says how many there were.
   */
  private fail(err: Error, rejects: Reject[], later?: Later): void {
    if (!this.outageState) {
      const code = (err as NodeJS.ErrnoException).code;
      const error = new AuditUnavailableError(
        `the audit log cannot be written (${code ? `${code}: ` : ''}${err.message}); vigil refuses new sessions until it can write again`,
        { cause: err },
      );
      this.outageState = { started: new Date(), reason: code ?? err.message, refused: 0, sessionsRefused: 0, error, refusedEnds: [], lateRecords: [] };
      this.opts.log.error({ err, dir: this.dir }, 'audit log write failed: failing closed, new sessions are refused until it can write again');
      if (this.timer) clearInterval(this.timer);
      this.timer = undefined;
      if (!this.closed) {
        this.probeTimer = setInterval(() => void this.probe(), this.opts.recoveryProbeMs ?? 1000);
        this.probeTimer.unref();
      }
    } else {
      this.opts.log.debug({ err: (err as Error).message, dir: this.dir }, 'audit log still cannot be written');
    }
    this.failureError = this.outageState.error;
    const all = [...rejects, ...this.rejects];
    const pendingLater = this.later;
    const queued = this.queued;
    this.queued = newLater();
    this.chunks = [];
    this.resolves = [];
    this.rejects = [];
    this.receipts = [];
    this.later = newLater();
    this.pendingHead = undefined;
    this.outageState.refused += all.filter((r) => !this.internalRejects.has(r)).length;
    for (const l of [later, pendingLater, queued]) {
      for (const e of l?.events ?? []) {
        this.refuse(e);
        this.keepLateRecord(e);
      }
    }
    for (const r of all) r(this.failureError);
    if (later) settleLater(later, this.failureError);
    settleLater(pendingLater, this.failureError);
    settleLater(queued, this.failureError);
  }

  /** One recovery attempt during an outage (never two at once, never while a group is being written). */
  private async probe(): Promise<void> {
    if (this.probing || this.closed || this.flushing || !this.outageState) return;
    this.probing = true;
    try {
      await this.recoverFromOutage();
    } catch (e) {
      // Still failing: the next probe tries again. Whatever this attempt wrote past the durable point is
      // cut again by the next one.
      if (this.outageState) this.failureError = this.outageState.error;
      this.opts.log.debug({ err: (e as Error).message, dir: this.dir }, 'audit log recovery probe failed');
    } finally {
      this.probing = false;
    }
  }

  /**
   * Back from an outage without a restart: cut the log back to where it was last durable (records of the
   * failed group were refused to their callers, so they must not stay in the chain; their bytes go to
   * quarantine/), reload the chain head from disk, then write — as one group — an `audit.outage` event
   * (window, reason, events refused), the session.end events refused meanwhile (marked), and a checkpoint.
   * Only once that is durable does the log accept appends again.
   */
  private async recoverFromOutage(): Promise<void> {
    const o = this.outageState!;
    await this.headWrite;
    for (const seg of new Set([this.segment, this.durableAt.seg])) {
      await seg.handle?.close().catch(() => {});
      seg.handle = undefined;
    }
    this.discardUndurable();
    this.seq = 0;
    this.headHash = ZERO_HASH;
    this.sinceCheckpoint = 0;
    this.sinceCheckpointBytes = 0;
    this.openSessions = new Map();
    this.chunks = [];
    this.failureError = undefined;
    this.loadTail();
    const ended = new Date();
    const outageEvent = createEvent({
      type: 'audit.outage',
      outcome: 'failure',
      actor: { user: SYSTEM_ACTOR.user, roles: [...SYSTEM_ACTOR.roles] },
      source: { ...LOCAL_SOURCE },
      target: { name: 'audit', protocol: 'vigil' },
      details: {
        started: o.started.toISOString(),
        ended: ended.toISOString(),
        duration_ms: ended.getTime() - o.started.getTime(),
        reason: o.reason,
        events_refused: o.refused,
        sessions_refused: o.sessionsRefused,
        session_ends_recorded_late: o.refusedEnds.filter((e) => this.openSessions.has(e.session_id!)).length,
        events_recorded_late: o.lateRecords.filter((e) => !e.session_id || this.openSessions.has(e.session_id)).length,
      },
    });
    this.push(eventPieces(outageEvent), outageEvent.time);
    const late: AuditEvent[] = [];
    // Only for sessions whose start is in the chain (a refused session.start means the session never ran).
    for (const e of o.lateRecords) {
      if (e.session_id && !this.openSessions.has(e.session_id)) continue;
      const marked = { ...e, details: { ...e.details, recorded_after_outage: true } };
      this.push(eventPieces(marked), marked.time);
      late.push(marked);
    }
    for (const end of o.refusedEnds) {
      if (!this.openSessions.has(end.session_id!)) continue;
      const marked = { ...end, details: { ...end.details, recorded_after_outage: true } };
      this.push(eventPieces(marked), marked.time);
      this.trackSession(marked);
      late.push(marked);
    }
    await this.commitNow(this.pushCheckpoint('recover', { outage: true }));
    this.outageState = undefined;
    for (const e of [outageEvent, ...late]) for (const fn of this.foreignListeners) {
      try {
        fn(e); // live observers (metrics, streams) hear of the outage like of any other event
      } catch {
        // An observer must never affect recording.
      }
    }
    if (this.probeTimer) clearInterval(this.probeTimer);
    this.probeTimer = undefined;
    this.startCheckpointTimer();
    this.opts.log.warn({ dir: this.dir, started: o.started, reason: o.reason, refused: o.refused }, 'audit log writable again: new sessions are accepted');
  }

  /** Await the commit of everything pushed so far, `receipt` being its last record. */
  private commitNow(receipt: AppendReceipt): Promise<AppendReceipt> {
    return new Promise<AppendReceipt>((resolve, reject) => {
      this.resolves.push(resolve);
      this.rejects.push(reject);
      this.internalRejects.add(reject);
      this.receipts.push(receipt);
      this.urgency = Math.max(this.urgency, 1) as 1 | 2;
      this.scheduleFlush();
    });
  }

  /** After a failed write: move every byte past the durable point into quarantine/ and cut it from the log. */
  private discardUndurable(closing = false): void {
    const { seg, bytes } = this.durableAt;
    const qdir = path.join(this.dir, QUARANTINE_DIR);
    const setAside = (name: string, data: Buffer, at: number) => {
      fs.mkdirSync(qdir, { recursive: true, mode: 0o700 });
      // Written before the cut: if the disk is still full this throws and nothing has changed.
      fs.writeFileSync(path.join(qdir, `${name}.${at}.refused`), data, { mode: 0o600 });
    };
    for (const name of listSegments(this.dir)) {
      if (name <= seg.name) continue;
      const file = path.join(this.dir, name);
      if (!fs.statSync(file).isFile()) {
        if (closing) continue; // nothing of ours is in it; the next start refuses it with a clear error
        throw new Error(`audit segment ${name} is not a regular file`);
      }
      const data = fs.readFileSync(file);
      if (data.length > 0) setAside(name, data, 0);
      fs.rmSync(file);
      fs.rmSync(path.join(this.dir, metaName(name)), { force: true });
    }
    let size: number;
    try {
      size = fs.statSync(seg.file).size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    if (size > bytes) {
      const fd = fs.openSync(seg.file, 'r+');
      try {
        const excess = Buffer.alloc(size - bytes);
        fs.readSync(fd, excess, 0, excess.length, bytes);
        setAside(seg.name, excess, bytes);
        fs.ftruncateSync(fd, bytes);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      // A seal in the cut part is gone too, and with it the segment's sidecar.
      fs.rmSync(path.join(this.dir, metaName(seg.name)), { force: true });
    }
  }

  private whenIdle(): Promise<void> {
    if (!this.flushing && !this.flushTimer && this.chunks.length === 0 && this.queued.events.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Read the chain's end from disk: the newest segment with records (a crash-torn final line is set aside
   * in quarantine/), and the sessions open there — from the seal of the segment before it, which carries
   * them, plus the starts and ends since. Sets seq, head, the current segment and the durable point.
   */
  private loadTail(): { ids: Map<string, AppendReceipt>; torn?: { bytes: number; quarantined: string } } {
    const ids = new Map<string, AppendReceipt>();
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
      this.openSessions = new Map((i > 0 ? this.sealedOpenSessions(segments[i - 1]) : []).map((r) => [r.session_id, r]));
      const seg = this.newSegment(name, parseSegmentName(name)!.firstSeq, size);
      let sealNext: string | undefined;
      for (const line of lines) {
        const rec = parseRecordLine(line);
        if (typeof rec === 'string') throw new Error(`audit segment ${name} has a ${rec}; run \`vigil audit verify\``);
        const ev = JSON.parse(rec.eventJson) as AuditEvent;
        if (ev.id) ids.set(ev.id, { seq: rec.seq, hash: rec.hash });
        if (!seg.minTime || ev.time < seg.minTime) seg.minTime = ev.time;
        if (ev.time > seg.maxTime) seg.maxTime = ev.time;
        this.sinceCheckpoint++;
        this.sinceCheckpointBytes += Buffer.byteLength(line) + 1;
        sealNext = undefined;
        if (isCheckpointLine(line) && ev.type === 'audit.checkpoint') {
          this.sinceCheckpoint = 0;
          this.sinceCheckpointBytes = 0;
          sealNext = (ev.details as unknown as CheckpointDetails).next_segment;
        } else {
          this.trackSession(ev);
        }
        this.seq = rec.seq;
        this.headHash = rec.hash;
      }
      seg.lastSeq = this.seq;
      this.tailScanned = name;
      // A segment sealed just before a crash continues in the segment its seal names.
      current = sealNext ? this.newSegment(sealNext, this.seq + 1) : seg;
    }
    if (!current) current = this.newSegment(empty[empty.length - 1] ?? segmentName(1, new Date()), 1);
    for (const name of empty) if (name !== current.name) fs.rmSync(path.join(this.dir, name));
    this.segment = current;
    this.durableAt = { seg: current, bytes: current.written };
    // A segment from an earlier UTC day is rotated by the first append of today.
    const day = parseSegmentName(current.name)?.day;
    if (day) this.dayEnd = Date.UTC(Number(day.slice(0, 4)), Number(day.slice(4, 6)) - 1, Number(day.slice(6, 8)) + 1);
    return { ids, torn };
  }

  /** The open sessions carried by the seal (last record) of a segment; none when it has no such seal. */
  private sealedOpenSessions(name: string): OpenSessionRef[] {
    const file = path.join(this.dir, name);
    const size = fs.statSync(file).size;
    // Read backwards until the last line is whole (a seal with many open sessions can be large).
    for (let span = 64 * 1024; ; span *= 4) {
      const start = Math.max(0, size - span);
      const fd = fs.openSync(file, 'r');
      const buf = Buffer.alloc(size - start);
      try {
        fs.readSync(fd, buf, 0, buf.length, start);
      } finally {
        fs.closeSync(fd);
      }
      const text = buf.toString('utf8').replace(/\n$/, '');
      const nl = text.lastIndexOf('\n');
      if (nl < 0 && start > 0) continue;
      const line = text.slice(nl + 1);
      if (!isCheckpointLine(line)) return [];
      const rec = parseRecordLine(line);
      if (typeof rec === 'string') return [];
      const details = (JSON.parse(rec.eventJson) as AuditEvent).details as unknown as CheckpointDetails;
      return details.open_sessions ?? [];
    }
  }

  /**
   * Open the chain where the last complete record left it. Sessions a crash left open (a session.start
   * and no session.end) get their session.end now, reason `gateway_crash`; a recovery checkpoint seals
   * the uncovered or torn tail.
   */
  async recover(): Promise<Map<string, AppendReceipt>> {
    const { ids, torn } = this.loadTail();
    const crashed = [...this.openSessions.values()];
    for (const s of crashed) {
      const end = createEvent({
        type: 'session.end',
        outcome: 'failure',
        actor: s.actor,
        source: s.source,
        target: s.target,
        session_id: s.session_id,
        details: { reason: 'gateway_crash', recovered_at_start: true },
      });
      this.push(eventPieces(end), end.time);
      this.trackSession(end);
    }
    if (torn || this.sinceCheckpoint > 0) {
      await this.commitNow(this.pushCheckpoint('recover', torn ? { torn_bytes: torn.bytes, quarantined: torn.quarantined } : {}));
      if (torn) this.opts.log.warn({ dir: this.dir, ...torn }, 'audit log: set aside a crash-torn final line (never acknowledged)');
      if (crashed.length > 0) this.opts.log.warn({ dir: this.dir, sessions: crashed.length }, 'audit log: ended sessions left open by a crash (gateway_crash)');
    }
    return ids;
  }

  private startCheckpointTimer(): void {
    if (this.opts.checkpointIntervalMs <= 0 || this.closed) return;
    this.timer = setInterval(() => {
      if (!this.failureError && !this.closed) this.encodeQueued();
      if (this.sinceCheckpoint > 0 && !this.failureError && !this.closed) {
        this.pushCheckpoint('interval');
        this.scheduleFlush();
      }
    }, this.opts.checkpointIntervalMs);
    this.timer.unref();
  }

  start(knownIds: Map<string, AppendReceipt>): void {
    this.startCheckpointTimer();
    const recorded = (e: AuditEvent) => (e.id ? knownIds.get(e.id) ?? this.findOlderRecord(e) : undefined);
    this.spool = startSpoolIngest(this, path.join(this.dir, SPOOL_DIR), this.opts.spoolPollMs ?? 1000, recorded, this.opts.log, (e) => {
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

  /**
   * The receipt of `event` if a segment older than the one loadTail read holds it: a spooled event the
   * previous writer appended just before it was killed, with segments rotated since. Only asked for
   * `.claimed` files a crash left, so reading segments here is rare; the search goes back from the newest
   * and stops at a segment whose newest event is clearly older than this one (every later segment ends
   * with a seal made after the event was appended, so it cannot lie further back).
   */
  private findOlderRecord(event: AuditEvent): AppendReceipt | undefined {
    const scanned = this.tailScanned;
    if (!scanned || !event.id) return undefined;
    const notBefore = Date.parse(event.time) - CLOCK_STEP_MARGIN_MS;
    const older = listSegments(this.dir).filter((n) => n < scanned).reverse();
    for (const name of older) {
      const text = fs.readFileSync(path.join(this.dir, name), 'utf8');
      const needle = `"id":"${event.id}"`;
      // Usually the envelope's id; a details member named id with the same value is told apart by parsing.
      for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + 1)) {
        const start = text.lastIndexOf('\n', at) + 1;
        const end = text.indexOf('\n', at);
        const rec = parseRecordLine(text.slice(start, end < 0 ? undefined : end));
        if (typeof rec !== 'string' && (JSON.parse(rec.eventJson) as AuditEvent).id === event.id) return { seq: rec.seq, hash: rec.hash };
      }
      const maxTime = readSegmentMeta(this.dir, name)?.max_time;
      if (maxTime !== undefined && Date.parse(maxTime) < notBefore) return undefined;
    }
    return undefined;
  }

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
      if (this.probeTimer) clearInterval(this.probeTimer);
      while (this.probing) await new Promise((r) => setTimeout(r, 10));
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
      if (this.outageState) {
        // Closed during an outage: cut what was refused, so the next start does not take it for records.
        await this.durableAt.seg.handle?.close().catch(() => {});
        this.durableAt.seg.handle = undefined;
        try {
          this.discardUndurable(true);
        } catch (e) {
          this.opts.log.error({ err: e, dir: this.dir }, 'audit log closed during an outage: could not cut refused records back (run `vigil audit verify`)');
        }
      }
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
