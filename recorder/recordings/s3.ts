import fsp from 'node:fs/promises';
import crypto from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  S3Client,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  CompleteMultipartUploadCommand,
  PutObjectCommand,
  DeleteObjectCommand,
  ListObjectsV2Command,
  HeadObjectCommand,
  GetObjectCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import type { RecordingSource } from '../types.ts';
import { PENDING, MANIFEST, RECORDING_KEY, folderPrefix, manifestFor, type UploadManifest } from './s3-manifest.ts';
import { salvageLost, abortUpload, getBytes } from './s3-salvage.ts';
import type { UploadHooks, UploadReport } from './s3-report.ts';

/**
 * Session recordings in S3-compatible object storage (`recording.storage.kind: s3`).
 *
 * The local file stays the recording's first copy: the writer appends to it as before (fail closed on the
 * local disk), and the uploader follows it by byte offset, reading what it sends back from the file. So S3
 * never holds up the session: nothing of the session's data is queued in memory for S3, the backlog of an
 * outage is the local file itself, and memory is at most one part per request in flight
 * (`max_concurrent_requests` × `part_size` for the whole gateway).
 *
 * While the session runs, each recording is one S3 multipart upload of `<prefix><session>/ch<N>.cast`:
 * every `part_size` bytes (≥ 5 MiB, the S3 minimum for all parts but the last) become the next part.
 * Bytes after the last full part are also copied every `flush_interval` into small objects
 * `<key>.pending/<offset, 16 digits>` (each holds the bytes from that offset on that were not yet in S3),
 * because S3 refuses a small part that is not the last. A replica lost mid-session therefore leaves in S3
 * all the parts plus pending objects up to the last flush: what is lost is at most the last
 * `flush_interval` of recording. A manifest beside the key (MANIFEST) names the upload and its parts; any
 * replica completes an upload whose manifest went stale (`salvage_after`) from those parts and pending
 * objects (salvageLost). So what reached S3 stays accounted for at every instant: the manifest naming a
 * part is written before anything else is sent for the upload (the next part in particular), and only
 * then are the pending objects that part covers deleted; the manifest is kept fresh until the upload is
 * completed, including while the completion itself is retried.
 * At the end of the recording the rest becomes the last part and the upload is completed; then
 * `recording.stored` names bucket, key and SHA-256, and the local copy is removed (unless `keep_local`).
 *
 * Failures: every S3 request is retried with exponential backoff (`retry.base_delay` doubling up to
 * `retry.max_delay`); after `retry.attempts` failures in a row `recording.upload_failed` is recorded once
 * (the local copy is kept) and the uploader keeps trying at `retry.max_delay` until it succeeds or the
 * gateway stops (an upload still not stored then is reported too, if it was not already: close). An upload the server forgot (NoSuchUpload) starts again from byte 0 of the local file.
 * An upload vigil gives up (restarted, or replaced by a resumed one) is aborted once its replacement is
 * stored: S3 keeps an open upload's parts, recording bytes, out of sight of listings and so of retention.
 *
 * vigil deletes under its prefix only what it wrote: keys in its layout (RECORDING_KEY), and manifests
 * only if they parse as vigil's manifest of the recording beside them. The prefix is a folder: `rec`
 * means `rec/` (else a purge of `rec` would reach into `records/`).
 */
export interface S3StorageOptions {
  bucket: string;
  /** Prepended to `<session>/ch<N>.cast` (e.g. `recordings/`); a folder: `/` is added if it lacks one. */
  prefix: string;
  endpoint?: string;
  region: string;
  forcePathStyle: boolean;
  /** Static credentials (read from env/file references at start); none: the SDK's default chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  partSize: number;
  flushIntervalMs: number;
  maxConcurrentRequests: number;
  requestTimeoutMs: number;
  retry: { attempts: number; baseDelayMs: number; maxDelayMs: number };
  keepLocal: boolean;
  /**
   * An upload whose manifest has not been refreshed for this long is taken for the upload of a lost
   * replica, and any replica completes it from what reached S3 (salvage). Unset: 15 minutes.
   */
  salvageAfterMs?: number;
}

const SALVAGE_AFTER_DEFAULT_MS = 15 * 60_000;

export type { UploadReport, UploadHooks } from './s3-report.ts';

/** One recording being uploaded; the writer tells it how far the local file is written. */
export interface RemoteUpload {
  written(bytes: number): void;
  /** The local file is complete (closed and synced) at `bytes`. */
  finish(bytes: number): void;
}

export class S3StorageError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'S3StorageError';
  }
}

/** At most `n` S3 requests at once for the whole gateway: the bound on memory and connections. */
class Semaphore {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  constructor(n: number) {
    this.free = Math.max(1, n);
  }
  /** Requests waiting for a slot. */
  get queued(): number {
    return this.waiting.length;
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.waiting.push(r));
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

/** Beside a local copy kept after its upload (keep_local): it is in object storage already. */
export const STORED_MARK = '.stored';

export class S3Recordings {
  readonly opts: S3StorageOptions;
  readonly client: S3Client;
  private readonly gate: Semaphore;
  private readonly active = new Set<CastUpload>();
  private stopping = false;
  private salvageTimer?: NodeJS.Timeout;
  private salvaging?: Promise<number>;
  /** Names this process in a salvage claim (s3-salvage.ts): random, nothing about the host in it. */
  readonly replicaId = crypto.randomUUID();
  /** Strings never to let out in an error message, log line or event (the credentials). */
  private readonly secrets: string[];

  constructor(
    opts: S3StorageOptions,
    readonly hooks: UploadHooks = {},
  ) {
    this.opts = { ...opts, prefix: folderPrefix(opts.prefix) };
    this.client = new S3Client({
      region: opts.region,
      endpoint: opts.endpoint,
      forcePathStyle: opts.forcePathStyle,
      credentials: opts.credentials,
      // Our own retry policy (backoff, the failure event) governs; the SDK tries each request once.
      maxAttempts: 1,
      // Checksums only where S3 requires them: S3-compatible servers differ in the newer checksum headers.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: Math.min(opts.requestTimeoutMs, 10_000), requestTimeout: opts.requestTimeoutMs },
    });
    this.gate = new Semaphore(opts.maxConcurrentRequests);
    this.secrets = opts.credentials ? [opts.credentials.secretAccessKey, opts.credentials.accessKeyId].filter((s) => s.length >= 4) : [];
  }

  keyOf(id: string): string {
    return this.opts.prefix + id;
  }

  /** An error as code + message with the credentials cut out (SDK messages may quote the key id). */
  describe(e: unknown): { code: string; message: string } {
    const err = e as { name?: string; Code?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    let message = String(err?.message ?? e);
    for (const s of this.secrets) message = message.split(s).join('[redacted]');
    const code = String(err?.Code ?? err?.name ?? err?.code ?? 'Error');
    return { code: code.slice(0, 64), message: message.slice(0, 300) };
  }

  request<T>(fn: () => Promise<T>): Promise<T> {
    return this.gate.run(fn);
  }

  /** Requests waiting for one of the `max_concurrent_requests` slots (diagnostics, tests). */
  get queuedRequests(): number {
    return this.gate.queued;
  }

  begin(id: string, file: string, sessionId: string, channel: number, resumed = false): RemoteUpload {
    const u = new CastUpload(this, id, file, sessionId, channel, resumed);
    this.active.add(u);
    void u.run().finally(() => this.active.delete(u));
    return u;
  }

  /**
   * At gateway start: recordings left on local disk by an earlier process (its upload did not complete:
   * a crash, S3 down at shutdown) are uploaded now, from byte 0, as if their session had just ended.
   * A recording counts as left over if it is `<session>/ch<N>.cast` with no `.stored` mark beside it.
   */
  async resume(dir: string): Promise<number> {
    let n = 0;
    let sessions: string[];
    try {
      sessions = await fsp.readdir(dir);
    } catch {
      return 0;
    }
    for (const sid of sessions) {
      let names: string[];
      try {
        names = await fsp.readdir(`${dir}/${sid}`);
      } catch {
        continue;
      }
      for (const name of names) {
        const m = /^ch(\d+)\.cast$/.exec(name);
        if (!m || names.includes(name + STORED_MARK)) continue;
        const file = `${dir}/${sid}/${name}`;
        const st = await fsp.stat(file).catch(() => undefined);
        if (!st?.isFile()) continue;
        this.begin(`${sid}/${name}`, file, sid, Number(m[1]), true).finish(st.size);
        n++;
      }
    }
    return n;
  }

  get salvageAfterMs(): number {
    return this.opts.salvageAfterMs ?? SALVAGE_AFTER_DEFAULT_MS;
  }

  /**
   * Gateway: complete the uploads lost replicas left behind — now, then every half of `salvage_after`.
   * Every replica sweeps; two finding the same upload at once settle it by a claim in its manifest.
   */
  startSalvage(): void {
    if (this.salvageTimer || this.stopping) return;
    const sweep = () => {
      this.salvageLost().then(
        (n) => n && this.hooks.warn?.('completed recording uploads that lost processes left in object storage', { recordings: n, bucket: this.opts.bucket }),
        (e) => this.hooks.warn?.('looking for recording uploads lost processes left failed; trying again later', { bucket: this.opts.bucket, ...this.describe(e) }),
      );
    };
    sweep();
    this.salvageTimer = setInterval(sweep, Math.max(1000, this.salvageAfterMs / 2));
    this.salvageTimer.unref();
  }

  /**
   * Complete every multipart upload whose manifest is older than `salvage_after` (its process was lost:
   * a live upload refreshes it) from what reached S3 (s3-salvage.ts); returns how many.
   */
  salvageLost(now = Date.now()): Promise<number> {
    this.salvaging ??= salvageLost(this, now).finally(() => (this.salvaging = undefined));
    return this.salvaging;
  }

  /** Whether this process is uploading the object `key` now. */
  isUploading(key: string): boolean {
    for (const u of this.active) if (u.objectKey === key) return true;
    return false;
  }

  async deletePrefix(prefix: string): Promise<void> {
    // Listed again after each page is deleted: the listing shrinks as its objects go.
    for (;;) {
      const r = await this.request(() => this.client.send(new ListObjectsV2Command({ Bucket: this.opts.bucket, Prefix: prefix })));
      const keys = (r.Contents ?? []).flatMap((o) => (o.Key ? [o.Key] : []));
      for (const Key of keys) await this.request(() => this.client.send(new DeleteObjectCommand({ Bucket: this.opts.bucket, Key })));
      if (!r.IsTruncated || keys.length === 0) return;
    }
  }

  /**
   * Retention: sessions whose newest object under `<prefix><session>/` (recordings, pending pieces,
   * manifests) was written before `cutoffMs`. One listing of the prefix, paginated. Only keys in vigil's
   * layout count (RECORDING_KEY): a folder of anything else in a shared bucket is no session. A session
   * left with nothing but manifests (its data gone) counts only while one of them is vigil's (it names an
   * upload still to abort); one that does not parse is never deleted, so it would be purged every run.
   */
  async sessionsOlderThan(cutoffMs: number): Promise<string[]> {
    const found = new Map<string, { at: number; data: boolean; manifests: string[] }>();
    let token: string | undefined;
    do {
      const r = await this.request(() => this.client.send(new ListObjectsV2Command({ Bucket: this.opts.bucket, Prefix: this.opts.prefix, ContinuationToken: token })));
      for (const o of r.Contents ?? []) {
        const named = RECORDING_KEY.exec(o.Key?.slice(this.opts.prefix.length) ?? '');
        if (!o.Key?.startsWith(this.opts.prefix) || !named) continue;
        const s = found.get(named[1]) ?? { at: 0, data: false, manifests: [] };
        s.at = Math.max(s.at, o.LastModified?.getTime() ?? Date.now());
        if (named[3] === MANIFEST) s.manifests.push(o.Key);
        else s.data = true;
        found.set(named[1], s);
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    const out: string[] = [];
    for (const [session, s] of found) {
      if (s.at >= cutoffMs) continue;
      if (s.data || (await this.vigilManifests(s.manifests)).length > 0) out.push(session);
    }
    return out.sort();
  }

  /** Of these manifest keys, the manifests vigil wrote (manifestFor), with their keys. */
  private async vigilManifests(keys: readonly string[]): Promise<{ key: string; manifest: UploadManifest }[]> {
    const out: { key: string; manifest: UploadManifest }[] = [];
    for (const key of keys) {
      const manifest = manifestFor((await getBytes(this, key))?.toString('utf8'), key.slice(this.opts.prefix.length, -MANIFEST.length));
      if (manifest) out.push({ key, manifest });
      else this.hooks.warn?.('leaving an object named like a recording upload manifest that is not one vigil wrote', { bucket: this.opts.bucket, key });
    }
    return out;
  }

  /**
   * Retention: delete every object vigil wrote of these sessions (recordings, pending pieces, manifests),
   * and abort the uploads their manifests name: an open upload's parts are recording bytes too, out of
   * sight of listings. A manifest goes last, and only once its uploads are aborted: until then it is all
   * that names them, and the next run tries again.
   */
  async deleteSessions(sessions: readonly string[]): Promise<void> {
    for (const session of sessions) {
      const prefix = this.keyOf(`${session}/`);
      const data: string[] = [];
      const manifests: string[] = [];
      let token: string | undefined;
      do {
        const r = await this.request(() => this.client.send(new ListObjectsV2Command({ Bucket: this.opts.bucket, Prefix: prefix, ContinuationToken: token })));
        for (const o of r.Contents ?? []) {
          const named = RECORDING_KEY.exec(o.Key?.slice(this.opts.prefix.length) ?? '');
          if (!named || named[1] !== session) continue;
          (named[3] === MANIFEST ? manifests : data).push(o.Key!);
        }
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (token);
      const settled: string[] = [];
      for (const { key, manifest } of await this.vigilManifests(manifests)) {
        const object = key.slice(0, -MANIFEST.length);
        // A recording this process is still uploading is not a purged session's: not aborted under it.
        if (this.isUploading(object)) continue;
        let ok = true;
        for (const u of [manifest.upload_id, ...(manifest.abandoned ?? [])]) if ((await abortUpload(this, object, u)) === 'failed') ok = false;
        if (ok) settled.push(key);
      }
      for (const Key of [...data, ...settled]) await this.request(() => this.client.send(new DeleteObjectCommand({ Bucket: this.opts.bucket, Key })));
    }
  }

  get isStopping(): boolean {
    return this.stopping;
  }

  /**
   * Let uploads of finished recordings complete for up to `graceMs`; then stop (local copies stay). Each
   * upload still not stored is reported (recording.upload_failed, unless already): until the next start
   * resumes it, only this replica's disk holds the recording, and the log must say so.
   */
  async close(graceMs: number): Promise<void> {
    clearInterval(this.salvageTimer);
    this.salvageTimer = undefined;
    if (this.active.size === 0) {
      this.stopping = true;
      this.client.destroy();
      return;
    }
    const uploads = [...this.active];
    const done = Promise.all(uploads.map((u) => u.settled));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([done, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    this.stopping = true;
    for (const u of this.active) u.wake();
    await Promise.race([done, new Promise((r) => (timer = setTimeout(r, 1000)))]);
    clearTimeout(timer);
    for (const u of uploads) u.reportStopped();
    this.client.destroy();
  }

  /** Recording ids (`<session>/chN.cast`) stored under the session's prefix. */
  async list(sessionDir: string): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const r = await this.request(() =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.opts.bucket, Prefix: this.keyOf(`${sessionDir}/`), ContinuationToken: token })),
      );
      for (const o of r.Contents ?? []) {
        const name = o.Key?.slice(this.keyOf(`${sessionDir}/`).length) ?? '';
        if (/^ch\d+\.cast$/.test(name)) out.push(`${sessionDir}/${name}`);
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  /** A stored recording, read in ranged GETs of at most 8 MiB (never the whole object in memory). */
  async open(id: string): Promise<RecordingSource | undefined> {
    const key = this.keyOf(id);
    let size: number;
    try {
      const h = await this.request(() => this.client.send(new HeadObjectCommand({ Bucket: this.opts.bucket, Key: key })));
      size = h.ContentLength ?? 0;
    } catch (e) {
      const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 404) return undefined;
      const d = this.describe(e);
      throw new S3StorageError(d.code, `cannot read recording ${id} from s3://${this.opts.bucket}/${key}: ${d.message}`);
    }
    return {
      id,
      size,
      where: { kind: 's3', bucket: this.opts.bucket, key },
      read: (start = 0, end = size - 1) => Readable.from(this.ranges(key, start, end)),
    };
  }

  /**
   * `key`'s bytes `start`..`end` (inclusive) in ranged GETs of at most `step`. Fewer bytes than asked for is
   * an error, not the end: the object shrank or was replaced since its size was read, and a reader must not
   * take what it got for the whole recording.
   */
  async *ranges(key: string, start: number, end: number, step = 8 * 1024 * 1024): AsyncGenerator<Buffer> {
    for (let at = start; at <= end; at += step) {
      const last = Math.min(end, at + step - 1);
      const bytes = await this.getRange(key, at, last);
      if (bytes.length !== last - at + 1) {
        throw new S3StorageError(
          'ShortRead',
          `cannot read s3://${this.opts.bucket}/${key}: asked for bytes ${at}-${last}, got ${bytes.length}; the object changed size since it was opened (truncated or replaced)`,
        );
      }
      yield bytes;
    }
  }

  async getRange(key: string, start: number, end: number): Promise<Buffer> {
    try {
      return await this.request(async () => {
        const r = await this.client.send(new GetObjectCommand({ Bucket: this.opts.bucket, Key: key, Range: `bytes=${start}-${end}` }));
        return Buffer.from(await r.Body!.transformToByteArray());
      });
    } catch (e) {
      const d = this.describe(e);
      throw new S3StorageError(d.code, `cannot read s3://${this.opts.bucket}/${key}: ${d.message}`);
    }
  }
}

/** Reads `len` bytes at `offset` of a file (fewer at its end). */
async function readRange(file: string, offset: number, len: number): Promise<Buffer> {
  const fh = await fsp.open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const { bytesRead } = await fh.read(buf, got, len - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

/**
 * The upload of one recording: a loop that wakes when a part is due (the file grew by `part_size`), at
 * each `flush_interval` and at the end, and does what is due, one request at a time.
 */
class CastUpload implements RemoteUpload {
  private readonly key: string;
  private uploadId?: string;
  /**
   * Earlier uploads of this recording given up (restart; the upload of an earlier process, for a resumed
   * one): named in the manifest, aborted once this upload is completed.
   */
  private abandoned: string[] = [];
  private parts: CompletedPart[] = [];
  /** Where each part ends in the file (the manifest carries it). */
  private partEnds: number[] = [];
  /** The manifest (MANIFEST) must be written: the upload started or a part was added. */
  private manifestDirty = false;
  private manifestAt = 0;
  private hash = crypto.createHash('sha256');
  /** Bytes of the file in uploaded parts, and in parts or pending objects. */
  private partsThrough = 0;
  private pendingThrough = 0;
  private pendingKeys: { key: string; end: number }[] = [];
  private writtenBytes = 0;
  private finalBytes?: number;
  private flushDue = false;
  private wakeUp?: () => void;
  private readonly timer: NodeJS.Timeout;
  private failures = 0;
  private totalFailures = 0;
  private reportedFailure = false;
  private stored = false;
  readonly settled: Promise<void>;
  private settle!: () => void;

  constructor(
    private readonly s3: S3Recordings,
    private readonly id: string,
    private readonly file: string,
    private readonly sessionId: string,
    private readonly channel: number,
    /** Left over by an earlier process: its manifest may name an upload of this recording to give up. */
    private readonly resumed = false,
  ) {
    this.key = s3.keyOf(id);
    this.settled = new Promise((r) => (this.settle = r));
    // One timer for both the flush and the heartbeat: it ticks at the shorter of the two, so a flush_interval
    // longer than a quarter of salvage_after never lets the manifest of a live upload go stale (another
    // replica would take the upload for a lost one and complete it under the running session).
    const tick = Math.min(s3.opts.flushIntervalMs, this.heartbeatMs);
    const ticksPerFlush = Math.max(1, Math.round(s3.opts.flushIntervalMs / tick));
    let ticks = 0;
    this.timer = setInterval(() => {
      if (++ticks % ticksPerFlush === 0) this.flushDue = true;
      this.wake();
    }, tick);
    this.timer.unref();
  }

  get objectKey(): string {
    return this.key;
  }

  /**
   * The manifest is due: new parts to name, or the heartbeat. Both until the upload is completed: a part
   * uploaded after the session ended must be named too (salvage knows only the parts a manifest names),
   * and an upload whose completion is being retried is alive, not to be salvaged.
   */
  private get manifestDue(): boolean {
    if (!this.uploadId) return false;
    return this.manifestDirty || this.heartbeatDue;
  }

  /** The manifest of a live upload is rewritten at least this often: salvage takes one older than salvage_after. */
  private get heartbeatMs(): number {
    return this.s3.salvageAfterMs / 4;
  }

  private get heartbeatDue(): boolean {
    return Date.now() - this.manifestAt >= this.heartbeatMs;
  }

  written(bytes: number): void {
    this.writtenBytes = bytes;
    if (bytes - this.partsThrough >= this.s3.opts.partSize) this.wake();
  }

  finish(bytes: number): void {
    this.writtenBytes = bytes;
    this.finalBytes = bytes;
    this.wake();
  }

  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  private get opts(): S3StorageOptions {
    return this.s3.opts;
  }

  private report(): UploadReport {
    return { sessionId: this.sessionId, channel: this.channel, id: this.id, bucket: this.opts.bucket, key: this.key, bytes: this.writtenBytes, failures: this.totalFailures };
  }

  async run(): Promise<void> {
    try {
      for (;;) {
        if (this.s3.isStopping) return;
        const due =
          this.finalBytes !== undefined ||
          this.writtenBytes - this.partsThrough >= this.opts.partSize ||
          (this.flushDue && this.writtenBytes > this.pendingThrough) ||
          this.manifestDue;
        if (!due) {
          await new Promise<void>((r) => (this.wakeUp = r));
          continue;
        }
        try {
          // A heartbeat that goes through says nothing of the request that keeps failing (a completion, say).
          const beat = !!this.uploadId && !this.manifestDirty && this.heartbeatDue;
          const done = await this.step();
          if (this.failures > 0 && !beat) this.failures = 0;
          if (done) return;
        } catch (e) {
          this.failures++;
          this.totalFailures++;
          const d = this.s3.describe(e);
          if (d.code === 'NoSuchUpload') this.restart();
          this.s3.hooks.warn?.('recording upload request failed', { recording: this.id, bucket: this.opts.bucket, key: this.key, code: d.code, error: d.message, failures: this.failures });
          if (this.failures >= this.opts.retry.attempts && !this.reportedFailure) {
            this.reportedFailure = true;
            this.s3.hooks.failed?.({ ...this.report(), localPath: this.file, phase: this.finalBytes === undefined ? 'session' : 'complete', error: d });
          }
          const delay = Math.min(this.opts.retry.maxDelayMs, this.opts.retry.baseDelayMs * 2 ** Math.min(this.failures - 1, 30));
          await Promise.race([sleep(delay), new Promise<void>((r) => (this.wakeUp = () => this.s3.isStopping && r()))]);
        }
      }
    } finally {
      clearInterval(this.timer);
      this.settle();
    }
  }

  /** The gateway stopped before this recording was stored: recorded once, with where the copy is kept. */
  reportStopped(): void {
    if (this.stored || this.reportedFailure) return;
    this.reportedFailure = true;
    const message = 'the gateway stopped before the upload completed; the local copy is kept and uploaded again at the next start';
    this.s3.hooks.failed?.({ ...this.report(), localPath: this.file, phase: this.finalBytes === undefined ? 'session' : 'complete', error: { code: 'GatewayStopped', message } });
  }

  /** The server lost the multipart upload: start over from the local file, which holds everything. */
  private restart(): void {
    // Lost as far as the server said; aborted anyway once the new one is stored, in case it was not.
    if (this.uploadId) this.abandoned.push(this.uploadId);
    this.uploadId = undefined;
    this.parts = [];
    this.partEnds = [];
    this.hash = crypto.createHash('sha256');
    this.partsThrough = 0;
    this.pendingThrough = 0;
  }

  /** One request's worth of what is due; true once the recording is stored. */
  private async step(): Promise<boolean> {
    const { bucket, partSize } = this.opts;
    if (!this.uploadId) {
      if (this.resumed && this.manifestAt === 0) {
        // The earlier process's upload of this recording (its manifest is about to be replaced by this
        // one's): given up for the new one from byte 0, and carried in this one's manifest until aborted.
        const earlier = manifestFor((await getBytes(this.s3, this.key + MANIFEST))?.toString('utf8'), this.id);
        for (const u of earlier ? [earlier.upload_id, ...(earlier.abandoned ?? [])] : []) if (!this.abandoned.includes(u)) this.abandoned.push(u);
      }
      const r = await this.s3.request(() =>
        this.s3.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: this.key, ContentType: 'application/x-asciicast' })),
      );
      if (!r.UploadId) throw new S3StorageError('NoUploadId', 'CreateMultipartUpload answered without an UploadId');
      this.uploadId = r.UploadId;
      this.manifestDirty = true;
      return false;
    }
    if (this.manifestDue) {
      await this.writeManifest();
      return false;
    }
    const final = this.finalBytes;
    const left = (final ?? this.writtenBytes) - this.partsThrough;
    if (left >= partSize || (final !== undefined && (left > 0 || this.parts.length === 0))) {
      // A full part, or the last one (an empty file still needs one part to complete).
      await this.uploadPart(Math.min(left, partSize));
      return false;
    }
    if (final !== undefined) {
      await this.s3.request(() =>
        this.s3.client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: this.key, UploadId: this.uploadId, MultipartUpload: { Parts: this.parts } })),
      );
      // Stored from here on: a stop during the clean-up below is no failure (recording.stored follows).
      this.stored = true;
      // The uploads this one replaced: their parts would outlive the recording's retention. The manifest
      // stays if one could not be aborted (it is all that names it): salvage finds it beside the stored
      // object and tries again.
      let aborted = true;
      for (const u of this.abandoned) if ((await abortUpload(this.s3, this.key, u)) === 'failed') aborted = false;
      // Best effort: the recording is complete; a pending object left behind is only litter. Listed rather
      // than remembered, so those of an earlier process (a crash, then a resumed upload) go too.
      await this.s3.deletePrefix(`${this.key}${PENDING}`).catch(() => {});
      if (this.manifestAt > 0 && aborted) await this.s3.request(() => this.s3.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: this.key + MANIFEST }))).catch(() => {});
      let localRemoved = false;
      if (!this.opts.keepLocal) {
        localRemoved = await fsp.rm(this.file).then(() => true, () => false);
        await fsp.rmdir(this.file.slice(0, this.file.lastIndexOf('/'))).catch(() => {});
      } else {
        // Kept: marked as stored, so a restart does not upload it again.
        await fsp.writeFile(this.file + STORED_MARK, JSON.stringify({ bucket: this.opts.bucket, key: this.key }) + '\n', { mode: 0o600 }).catch(() => {});
      }
      this.s3.hooks.stored?.({ ...this.report(), bytes: final, sha256: this.hash.digest('hex'), parts: this.parts.length, localRemoved });
      return true;
    }
    if (this.flushDue && this.writtenBytes > this.pendingThrough) {
      const from = Math.max(this.pendingThrough, this.partsThrough);
      const to = this.writtenBytes;
      const key = `${this.key}${PENDING}${String(from).padStart(16, '0')}`;
      // Read once the request has its slot: memory stays bounded by the requests in flight.
      const length = await this.s3.request(async () => {
        const body = await readRange(this.file, from, to - from);
        await this.s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: 'application/octet-stream' }));
        return body.length;
      });
      this.pendingKeys.push({ key, end: from + length });
      this.pendingThrough = from + length;
      this.flushDue = false;
    }
    return false;
  }

  private async uploadPart(len: number): Promise<void> {
    const PartNumber = this.parts.length + 1;
    // The part is read from the file once the request has its slot, not before: uploads waiting for a slot
    // (every leftover recording at start, say) hold no part in memory.
    const { body, r } = await this.s3.request(async () => {
      const body = await readRange(this.file, this.partsThrough, len);
      if (body.length !== len) throw new S3StorageError('LocalShort', `recording file ${this.id} is shorter than written`);
      const r = await this.s3.client.send(new UploadPartCommand({ Bucket: this.opts.bucket, Key: this.key, UploadId: this.uploadId, PartNumber, Body: body, ContentLength: len }));
      return { body, r };
    });
    this.parts.push({ PartNumber, ETag: r.ETag });
    this.hash.update(body);
    this.partsThrough += len;
    this.partEnds.push(this.partsThrough);
    // Named in the manifest before anything else is sent (step: manifestDue comes first); the pending
    // objects it covers are deleted only after that (writeManifest): until the manifest names the part,
    // they are how salvage knows those bytes.
    this.manifestDirty = true;
    if (this.pendingThrough < this.partsThrough) this.pendingThrough = this.partsThrough;
  }

  /** Write the manifest another replica completes this upload from if this process is lost. */
  private async writeManifest(): Promise<void> {
    const m: UploadManifest = {
      version: 1,
      upload_id: this.uploadId!,
      session: this.sessionId,
      channel: this.channel,
      parts: this.parts.map((p, i) => ({ n: p.PartNumber!, etag: p.ETag ?? '', end: this.partEnds[i] })),
      ...(this.abandoned.length ? { abandoned: [...this.abandoned] } : {}),
    };
    const named = this.partsThrough;
    const at = Date.now();
    await this.s3.request(() =>
      this.s3.client.send(new PutObjectCommand({ Bucket: this.opts.bucket, Key: this.key + MANIFEST, Body: JSON.stringify(m), ContentType: 'application/json' })),
    );
    this.manifestDirty = false;
    this.manifestAt = at;
    // Pending objects wholly inside the parts the manifest names are not needed any more (best effort:
    // failures only leave litter).
    await this.dropPending(named).catch(() => {});
  }

  private async dropPending(through: number): Promise<void> {
    const drop = this.pendingKeys.filter((p) => p.end <= through);
    for (const p of drop) {
      await this.s3.request(() => this.s3.client.send(new DeleteObjectCommand({ Bucket: this.opts.bucket, Key: p.key })));
      this.pendingKeys = this.pendingKeys.filter((x) => x !== p);
    }
  }
}
