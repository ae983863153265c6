/**
 * Salvage: complete the S3 recording uploads that lost replicas left behind (recordings/s3.ts).
 *
 * A running upload keeps a manifest beside its key (s3-manifest.ts) and refreshes it at least every
 * quarter of `salvage_after`. A manifest older than `salvage_after` that is not one of this process's
 * running uploads belongs to a process that is gone: its upload is completed here from the parts the
 * manifest names, then the pending objects after them as the last part, and reported as stored
 * (`salvaged`). The recording is then what reached S3 before the loss: up to its last flush.
 *
 * Replicas sweep on their own clocks, and all of them at start: two may find the same stale manifest.
 * The first to write its claim into the manifest and still read it there a moment later salvages it;
 * the others see a fresh claim and leave it. Without that, both would complete the upload — S3 answers a
 * repeated CompleteMultipartUpload with success — and the audit log would say `recording.stored` twice.
 *
 * Salvage acts only on what vigil wrote: manifests in its key layout (RECORDING_KEY) that parse as the
 * manifest of the recording beside them. Anything else named `*.upload` in a shared bucket is left alone.
 * It never drops or overwrites a part it does not know: the uploader writes the manifest naming a part
 * before it uploads the next one, so at most one part (the manifest's count + 1) can be in S3 unnamed;
 * ListParts, where the server has it, tells whether it is and what it holds, and the pending tail goes in
 * as the part after it either way.
 */
import crypto from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { MANIFEST, PENDING, RECORDING_KEY, manifestFor, type UploadManifest } from './s3-manifest.ts';
import type { UploadHooks } from './s3-report.ts';

/** The recording store salvage works for (S3Recordings). */
export interface SalvageStore {
  readonly opts: { bucket: string; prefix: string };
  readonly client: S3Client;
  readonly hooks: UploadHooks;
  readonly isStopping: boolean;
  readonly salvageAfterMs: number;
  /** Run one S3 request within the store's concurrency bound. */
  request<T>(fn: () => Promise<T>): Promise<T>;
  /** An error as code + message, credentials cut out. */
  describe(e: unknown): { code: string; message: string };
  isUploading(key: string): boolean;
  /** This process among the replicas sharing the bucket (a salvage claim names it). */
  readonly replicaId: string;
  deletePrefix(prefix: string): Promise<void>;
  ranges(key: string, start: number, end: number): AsyncGenerator<Buffer>;
}

/** Sweep the prefix once: complete every upload whose manifest went stale; returns how many. */
export async function salvageLost(s3: SalvageStore, now: number): Promise<number> {
  const cutoff = now - s3.salvageAfterMs;
  const stale: string[] = [];
  let token: string | undefined;
  do {
    const r = await s3.request(() => s3.client.send(new ListObjectsV2Command({ Bucket: s3.opts.bucket, Prefix: s3.opts.prefix, ContinuationToken: token })));
    for (const o of r.Contents ?? []) {
      const key = o.Key ?? '';
      if (!key.startsWith(s3.opts.prefix) || RECORDING_KEY.exec(key.slice(s3.opts.prefix.length))?.[3] !== MANIFEST) continue;
      if ((o.LastModified?.getTime() ?? now) < cutoff) stale.push(key.slice(0, -MANIFEST.length));
    }
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  // Ours and still running (their heartbeat could not be written, e.g. S3 was down): not lost.
  const lost = stale.filter((key) => !s3.isUploading(key));
  let n = 0;
  // Claimed a batch at a time, with one settling pause per batch (not one per upload: a replica lost with
  // a thousand sessions must not take a thousand seconds), and salvaged while the claims are young.
  for (let i = 0; i < lost.length && !s3.isStopping; i += CLAIM_BATCH) {
    const batch = lost.slice(i, i + CLAIM_BATCH);
    const claims = await Promise.all(batch.map((key) => claim(s3, key).catch((e) => void warnFailed(s3, key, e))));
    if (claims.some((c) => c !== undefined)) await new Promise((resolve) => setTimeout(resolve, CLAIM_SETTLE_MS));
    for (const c of claims) {
      if (c === undefined || s3.isStopping) continue;
      try {
        if (await salvageOne(s3, c)) n++;
      } catch (e) {
        warnFailed(s3, c.key, e);
      }
    }
  }
  return n;
}

function warnFailed(s3: SalvageStore, key: string, e: unknown): void {
  s3.hooks.warn?.('could not complete a recording upload a lost process left; trying again later', { key, ...s3.describe(e) });
}

/** A lost upload this replica has written its claim for. */
interface Claimed {
  key: string;
  mine: NonNullable<UploadManifest['claim']>;
}

/** Uploads claimed together before one settling pause (CLAIM_SETTLE_MS). */
const CLAIM_BATCH = 32;

/**
 * How long claims are left to settle before they are read back: a replica that read a manifest before
 * this one's claim landed writes its own within a request's time, and the last claim written wins.
 */
const CLAIM_SETTLE_MS = 1000;

/** Manifests this process found unreadable and left alone, per store: warned about once, not every sweep. */
const ignored = new WeakMap<SalvageStore, Set<string>>();

/**
 * Write this replica's claim into a lost upload's manifest. Undefined when there is nothing to claim: the
 * manifest is gone (completed or salvaged meanwhile), is not a manifest vigil wrote for the recording it
 * sits beside (left alone, with a warning: not provably vigil's, so not vigil's to delete), or carries
 * another replica's claim younger than `salvage_after` (a claimant that died leaves a claim that ages
 * out with the manifest).
 */
async function claim(s3: SalvageStore, key: string): Promise<Claimed | undefined> {
  const manifestKey = key + MANIFEST;
  const text = (await getBytes(s3, manifestKey))?.toString('utf8');
  if (text === undefined) return undefined;
  const m = manifestFor(text, key.slice(s3.opts.prefix.length));
  if (!m) {
    const seen = ignored.get(s3) ?? new Set<string>();
    ignored.set(s3, seen);
    if (!seen.has(manifestKey)) s3.hooks.warn?.('ignoring an unreadable recording upload manifest in object storage', { key: manifestKey });
    seen.add(manifestKey);
    return undefined;
  }
  // A claim dated further ahead than salvage_after is no claim: it would hold the upload for ever.
  if (m.claim && m.claim.by !== s3.replicaId && Math.abs(Date.now() - m.claim.at) < s3.salvageAfterMs) return undefined;
  const mine = { by: s3.replicaId, at: Date.now() };
  const body = JSON.stringify({ ...m, claim: mine } satisfies UploadManifest);
  await s3.request(() => s3.client.send(new PutObjectCommand({ Bucket: s3.opts.bucket, Key: manifestKey, Body: body, ContentType: 'application/json' })));
  return { key, mine };
}

function dropManifest(s3: SalvageStore, manifestKey: string): Promise<unknown> {
  return s3.request(() => s3.client.send(new DeleteObjectCommand({ Bucket: s3.opts.bucket, Key: manifestKey }))).catch(() => {});
}

/**
 * Salvage a claimed upload, if the manifest still carries this replica's claim after the pause (else
 * another replica's claim came later, or the uploader was alive and rewrote it: false).
 */
async function salvageOne(s3: SalvageStore, c: Claimed): Promise<boolean> {
  const { bucket, prefix } = s3.opts;
  const { key } = c;
  const manifestKey = key + MANIFEST;
  const id = key.slice(prefix.length);
  // Read again: the claim must still be this one, and what it describes is what is salvaged.
  const m = manifestFor((await getBytes(s3, manifestKey))?.toString('utf8'), id);
  if (!m || m.claim?.by !== c.mine.by || m.claim.at !== c.mine.at) return false;
  const parts: CompletedPart[] = m.parts.map((p) => ({ PartNumber: p.n, ETag: p.etag }));
  let partsEnd = m.parts.at(-1)?.end ?? 0;
  // The part after the manifest's last may be in S3 already (uploaded, its manifest not written yet).
  const unnamed = (await listParts(s3, key, m.upload_id))?.find((p) => p.PartNumber === m.parts.length + 1);
  if (unnamed?.ETag && unnamed.Size) {
    parts.push({ PartNumber: unnamed.PartNumber, ETag: unnamed.ETag });
    partsEnd += unnamed.Size;
  }
  const tail = await pendingTail(s3, key, partsEnd);
  const bytes = partsEnd + tail.length;
  // Completed, and lost before its manifest was deleted: nothing to salvage. Only if the object holds at
  // least what this upload would: else it is an earlier, shorter completion of the same recording.
  const size = await objectSize(s3, key);
  if (size !== undefined && size >= bytes) {
    await cleanUp(s3, key, [m.upload_id, ...(m.abandoned ?? [])]);
    return false;
  }
  try {
    if (tail.length > 0 || parts.length === 0) {
      // Never the number of a part this replica does not know: without ListParts the manifest's count + 1
      // may hold one (see above), and its bytes would be overwritten with the tail's.
      const PartNumber = m.parts.length + 2;
      const r = await s3.request(() => s3.client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: m.upload_id, PartNumber, Body: tail, ContentLength: tail.length })));
      parts.push({ PartNumber, ETag: r.ETag });
    }
    await s3.request(() => s3.client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: m.upload_id, MultipartUpload: { Parts: parts } })));
  } catch (e) {
    if (s3.describe(e).code !== 'NoSuchUpload') throw e;
    // Another replica completed it meanwhile, or the server dropped the upload.
    if ((await objectSize(s3, key)) !== undefined) return false;
    if (partsEnd > 0) {
      // Its parts went with it: what is left (the pending tail) is not the recording's beginning.
      s3.hooks.failed?.({ sessionId: m.session, channel: m.channel, id, bucket, key, bytes, failures: 1, phase: 'salvage', error: s3.describe(e) });
      await dropManifest(s3, manifestKey);
      return false;
    }
    // No part was uploaded: the pending objects hold the whole recording.
    await s3.request(() => s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: tail, ContentType: 'application/x-asciicast' })));
    parts.length = 0;
  }
  const hash = crypto.createHash('sha256');
  if (bytes > 0) for await (const b of s3.ranges(key, 0, bytes - 1)) hash.update(b);
  await cleanUp(s3, key, m.abandoned ?? []);
  s3.hooks.stored?.({ sessionId: m.session, channel: m.channel, id, bucket, key, bytes, sha256: hash.digest('hex'), parts: Math.max(1, parts.length), failures: 0, salvaged: true });
  return true;
}

/**
 * A recording's upload is settled (its object stored): abort the uploads named (their parts are recording
 * bytes S3 would keep out of sight), delete its pending objects, and its manifest — unless an abort failed
 * for a reason that may pass: the manifest is then all that still names that upload, and the next sweep
 * (which finds the object stored) tries again.
 */
async function cleanUp(s3: SalvageStore, key: string, uploads: readonly string[]): Promise<void> {
  let aborted = true;
  for (const u of uploads) if ((await abortUpload(s3, key, u)) === 'failed') aborted = false;
  await s3.deletePrefix(`${key}${PENDING}`).catch(() => {});
  if (aborted) await dropManifest(s3, key + MANIFEST);
}

/**
 * Abort a multipart upload vigil opened and gave up (a restart, a resumed or salvaged recording, a purged
 * session): until then S3 keeps its parts, recording bytes, out of sight of listings and of retention.
 * 'gone': aborted, or the server had no such upload; 'unsupported': the server cannot abort uploads (its
 * own lifecycle rules must expire them; trying again would not help); 'failed': try again later.
 */
export async function abortUpload(s3: SalvageStore, key: string, uploadId: string): Promise<'gone' | 'unsupported' | 'failed'> {
  try {
    await s3.request(() => s3.client.send(new AbortMultipartUploadCommand({ Bucket: s3.opts.bucket, Key: key, UploadId: uploadId })));
    return 'gone';
  } catch (e) {
    const d = s3.describe(e);
    const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (d.code === 'NoSuchUpload' || status === 404) return 'gone';
    const unsupported = d.code === 'NotImplemented' || d.code === 'MethodNotAllowed' || status === 405 || status === 501;
    s3.hooks.warn?.(
      unsupported
        ? 'the object storage cannot abort multipart uploads: an abandoned recording upload stays until its lifecycle rules expire it'
        : 'could not abort an abandoned recording upload; trying again later',
      { key, upload_id: uploadId, ...d },
    );
    return unsupported ? 'unsupported' : 'failed';
  }
}

/** The parts S3 holds of an upload, or undefined where the server does not list them (or lost the upload). */
async function listParts(s3: SalvageStore, key: string, uploadId: string): Promise<{ PartNumber: number; ETag?: string; Size?: number }[] | undefined> {
  const out: { PartNumber: number; ETag?: string; Size?: number }[] = [];
  let marker: string | undefined;
  try {
    for (;;) {
      const r = await s3.request(() => s3.client.send(new ListPartsCommand({ Bucket: s3.opts.bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker })));
      for (const p of r.Parts ?? []) if (p.PartNumber) out.push({ PartNumber: p.PartNumber, ETag: p.ETag, Size: p.Size });
      if (!r.IsTruncated || !r.NextPartNumberMarker) return out;
      marker = r.NextPartNumberMarker;
    }
  } catch (e) {
    const d = s3.describe(e);
    const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    // Not there (s3rver has no ListParts) or the upload is gone (completing it says so): the manifest alone.
    if (d.code === 'NotImplemented' || d.code === 'MethodNotAllowed' || d.code === 'NoSuchUpload' || status === 405 || status === 501 || status === 404) return undefined;
    throw e;
  }
}

/** The recording's bytes from `from` on, as its pending objects hold them (up to the first gap). */
async function pendingTail(s3: SalvageStore, key: string, from: number): Promise<Buffer> {
  const pieces: { offset: number; key: string }[] = [];
  let token: string | undefined;
  do {
    const r = await s3.request(() => s3.client.send(new ListObjectsV2Command({ Bucket: s3.opts.bucket, Prefix: `${key}${PENDING}`, ContinuationToken: token })));
    for (const o of r.Contents ?? []) {
      const m = /^(\d{16})$/.exec(o.Key?.slice(key.length + PENDING.length) ?? '');
      if (m) pieces.push({ offset: Number(m[1]), key: o.Key! });
    }
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  pieces.sort((a, b) => a.offset - b.offset);
  const chunks: Buffer[] = [];
  let at = from;
  for (const p of pieces) {
    if (p.offset > at) break; // a gap: nothing after it can be placed
    const body = await getBytes(s3, p.key);
    if (body === undefined) break;
    if (p.offset + body.length <= at) continue;
    chunks.push(body.subarray(at - p.offset));
    at = p.offset + body.length;
  }
  return Buffer.concat(chunks);
}

/** The size of the object `key`, or undefined if there is none. */
async function objectSize(s3: SalvageStore, key: string): Promise<number | undefined> {
  try {
    const h = await s3.request(() => s3.client.send(new HeadObjectCommand({ Bucket: s3.opts.bucket, Key: key })));
    return h.ContentLength ?? 0;
  } catch (e) {
    if ((e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined;
    throw e;
  }
}

/** A whole (small) object, or undefined if there is none. */
export async function getBytes(s3: SalvageStore, key: string): Promise<Buffer | undefined> {
  try {
    return await s3.request(async () => {
      const r = await s3.client.send(new GetObjectCommand({ Bucket: s3.opts.bucket, Key: key }));
      return Buffer.from(await r.Body!.transformToByteArray());
    });
  } catch (e) {
    const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 404 || s3.describe(e).code === 'NoSuchKey') return undefined;
    throw e;
  }
}
