import type { AuditEvent } from '../src/events/envelope.ts';

/** Proof that an event is in the chain and durable. */
export interface AppendReceipt {
  seq: number;
  hash: string;
}

export interface AppendOptions {
  /** A statement is held back until this record is durable (audit.durability strict): commit it within
   *  the strict window instead of the commit window. */
  strict?: boolean;
}

export type AppendCallback<C> = (err: Error | undefined, event: AuditEvent, context: C) => void;

/**
 * The hash-chained audit log, as the gateway and CLI use it. Implementations: the segment-file writer
 * (the process that holds the writer lock) and the spool client (a CLI process while a gateway holds it).
 */
export interface AuditSink {
  /** Append one event. Resolves only after the record is durable (group-commit fsync). Rejects with
   *  AuditUnavailableError when the log cannot be written; after that `healthy` is false. */
  append(event: AuditEvent, opts?: AppendOptions): Promise<AppendReceipt>;
  /** Append without a promise, for high-rate events: `callback(err, event, context)` runs once, after the
   *  record is durable (err undefined) or when it could not be written. Optional: sinks without it are
   *  used through append(). */
  appendLater?<C>(event: AuditEvent, callback: AppendCallback<C>, context: C): void;
  /** Hear of events appended on behalf of other processes (CLI commands through the spool), once durable,
   *  so live observers (stream, metrics) see them too. Returns an unsubscribe function. */
  onForeignEvent?(listener: (event: AuditEvent) => void): () => void;
  /** A session was refused because the log is down: counted into the outage's record (`sessions_refused`). */
  noteRefusedSession?(): void;
  /** False once a write has failed; the gateway refuses new sessions while false. */
  readonly healthy: boolean;
  /** Reason the sink is unhealthy, for the operational log and client errors. */
  readonly failure?: Error;
  /** Write a final checkpoint and close. */
  close(): Promise<void>;
}

export interface AsciicastHeader {
  width: number;
  height: number;
  /** Unix seconds. */
  timestamp: number;
  term?: string;
  title?: string;
  command?: string;
}

/**
 * One terminal recording (asciicast v2). Calls never block and never throw: data is queued and written
 * in the background; a write failure is reported once through `onError` so the session can be ended
 * (fail closed).
 */
export interface AsciicastWriter {
  /** Recording id (relative path inside the recording store) referenced from session events. */
  readonly id: string;
  output(data: Buffer | string): void;
  input(data: Buffer | string): void;
  resize(width: number, height: number): void;
  onError(cb: (err: Error) => void): void;
  /** Flush, sync and close the file; resolves with what the file holds (recorded as recording.closed). */
  close(): Promise<WrittenRecording>;
  /** Bytes accepted (as passed in) but not yet written. A relay pauses its source while this is high, so
   *  a fast session slows to disk speed instead of outrunning the recording (and failing it). */
  readonly queuedBytes: number;
  /** Call `cb` once, when the queue has fallen to the writer's low-water mark (at once if it already
   *  has, or if the recording failed — the failure itself is reported through onError). */
  onDrained(cb: () => void): void;
  /** The part of output (`o`) or recorded input (`i`) kept as size and hash only (binary: 'summary'),
   *  once the stream is finished; undefined while it was all text. */
  binarySummary(stream: 'o' | 'i'): BinarySummary | undefined;
}

/** A closed recording file: SHA-256 (hex) and size of exactly the bytes written to it. `error`: the recording
 *  failed (the file holds what was written until then). */
export interface WrittenRecording {
  sha256: string;
  bytes: number;
  error?: Error;
}

export interface AsciicastOptions {
  /**
   * What to do with a stream once it stops being text (bytes that are not UTF-8). `full` (default): record
   * it anyway, invalid bytes as U+FFFD, as a terminal would show them. `summary`: from the first non-text
   * chunk on, record only its size and SHA-256 — for output that is a file transfer, not a screen.
   */
  binary?: 'full' | 'summary';
}

/** A stream recorded as `summary` from byte `offset` on: `bytes` bytes with this SHA-256 (hex). */
export interface BinarySummary {
  offset: number;
  bytes: number;
  sha256: string;
}

/**
 * A recording still being written, as a live watcher follows it. What a watcher gets is exactly what lands
 * in the file (whole asciicast lines, after each write), so watching is the recording itself, never a
 * second copy of the session's data taken from the proxy.
 */
export interface LiveCast {
  readonly id: string;
  readonly channel: number;
  /**
   * Follow the recording. `fromStart`: everything on disk so far, then each write as it lands; otherwise the
   * header line, then new writes only. `onData` gets whole lines; `onEnd` runs once when the recording is
   * closed (after its last lines). Returns a function that stops following. From the start, what is on disk
   * comes in chunks of whole lines (about 256 KiB), the next once what `onData` returns (a promise, if any) has
   * settled: the watcher's backpressure. A throw or rejection of `onData` ends the follow.
   */
  follow(fromStart: boolean, onData: (lines: Buffer) => unknown, onEnd: () => void): () => void;
}

export interface RecordingStore {
  /** Open a recording for channel `channel` of session `sessionId`. */
  openAsciicast(sessionId: string, channel: number, header: AsciicastHeader, options?: AsciicastOptions): AsciicastWriter;
  /**
   * Hear of the recordings of session `sessionId` that are being written now (called at once for each)
   * and of each one opened later, until the returned function is called. Optional: stores without live
   * recordings do not offer it.
   */
  watch?(sessionId: string, onCast: (cast: LiveCast) => void): () => void;
  /** Recordings of a session (ids), in channel order. */
  list(sessionId: string): Promise<string[]>;
  /** Full path of a recording's local copy (which may be gone once it is stored in object storage). */
  pathOf(id: string): string;
  /** A recording for reading, wherever it is kept (the local copy first); undefined if there is none. */
  open(id: string): Promise<RecordingSource | undefined>;
  /** Gateway start: upload recordings an earlier process left on local disk (object storage only). */
  resumeUploads?(): Promise<number>;
  /** Gateway: complete, now and periodically, the uploads lost replicas left in object storage (S3 only). */
  salvageLostUploads?(): void;
  /** Let uploads of finished recordings complete for up to `graceMs`, then stop (gateway shutdown). */
  close?(graceMs: number): Promise<void>;
  /** Object storage only: what retention can find and remove there (the local copy is often gone). */
  remote?: RemoteRecordings;
}

/** Recordings kept outside the data directory (object storage), as retention sees them. */
export interface RemoteRecordings {
  /** Where they are, for the purge event (e.g. `s3://bucket/prefix`). */
  readonly location: string;
  /** Sessions whose newest stored object is older than `cutoffMs` (epoch ms). */
  sessionsOlderThan(cutoffMs: number): Promise<string[]>;
  /** Remove every stored object of these sessions. */
  deleteSessions(sessions: readonly string[]): Promise<void>;
}

/** A recording to read, streamed: never loaded whole into memory. */
export interface RecordingSource {
  id: string;
  size: number;
  where: { kind: 'local'; path: string } | { kind: 's3'; bucket: string; key: string };
  /** Bytes `start`..`end` (inclusive; default the whole recording) as a stream. */
  read(start?: number, end?: number): import('node:stream').Readable;
}
