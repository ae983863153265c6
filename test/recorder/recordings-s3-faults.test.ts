import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateMultipartUploadCommand, DeleteObjectCommand, PutObjectCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { startS3, type S3Server } from '../support/s3.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { S3Recordings, type S3StorageOptions, type UploadReport } from '../../recorder/recordings/s3.ts';

/**
 * S3 recording uploads under faults, against a real S3-compatible server (s3rver) behind a small HTTP
 * relay that injects them: nothing that reached S3 is lost to a salvage, vigil deletes only what it wrote,
 * no multipart upload it gave up stays open (its parts are recording bytes), and an upload waiting for a
 * request slot holds no part in memory.
 */

const PART = 5 * 1024 * 1024;
const DAY = 86_400_000;
let s3: S3Server;
let dir: string;

beforeAll(async () => {
  s3 = await startS3();
  dir = tempDir('vigil-s3-faults-');
}, 30_000);

afterAll(async () => {
  await s3?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function replica(prefix: string, o: Partial<S3StorageOptions> = {}, hooks: { stored?: UploadReport[]; warned?: string[] } = {}): S3Recordings {
  return new S3Recordings(
    {
      bucket: s3.bucket, prefix, endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      partSize: PART, flushIntervalMs: 100, maxConcurrentRequests: 2, requestTimeoutMs: 5000,
      retry: { attempts: 3, baseDelayMs: 20, maxDelayMs: 100 }, keepLocal: false, salvageAfterMs: 1000, ...o,
    },
    { stored: (r) => hooks.stored?.push(r), warn: (msg) => hooks.warned?.push(msg) },
  );
}

type Fault = { status: number; code: string } | 'hold' | undefined;

/**
 * An HTTP relay to s3rver: `fault` may answer a request with an S3 error, or hold it (never answered,
 * as from an endpoint that hangs); `seen` is shown each request s3rver answered, with its status.
 * s3rver has no AbortMultipartUpload (it answers 405); the relay does it on s3rver's own storage (an open
 * upload is the directory `._S3rver_uploads/<upload id>`, see support/s3.ts), as S3 does: removed, 204;
 * unknown, 404 NoSuchUpload. `aborted` lists the upload ids it aborted.
 */
async function s3Relay(fault: (req: http.IncomingMessage) => Fault = () => undefined, seen?: (req: http.IncomingMessage, status: number) => void) {
  const aborted: string[] = [];
  const held: http.ServerResponse[] = [];
  const error = (res: http.ServerResponse, status: number, code: string) => {
    res.writeHead(status, { 'content-type': 'application/xml' });
    res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${code}</Message></Error>`);
  };
  const server = http.createServer((req, res) => {
    const f = fault(req);
    if (f === 'hold') {
      held.push(res);
      return;
    }
    if (f) {
      req.resume();
      error(res, f.status, f.code);
      return;
    }
    const abort = req.method === 'DELETE' ? /[?&]uploadId=([0-9a-f]+)/.exec(req.url ?? '') : null;
    if (abort) {
      req.resume();
      const up = path.join(s3.dir, s3.bucket, '._S3rver_uploads', abort[1]!);
      if (!fs.existsSync(up)) return error(res, 404, 'NoSuchUpload');
      fs.rmSync(up, { recursive: true, force: true });
      aborted.push(abort[1]!);
      res.writeHead(204);
      res.end();
      return;
    }
    const up = http.request({ host: '127.0.0.1', port: s3.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      seen?.(req, r.statusCode ?? 502);
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as import('node:net').AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    aborted,
    held,
    close: () => {
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      return closed;
    },
  };
}

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

/** Bytes that look like a cast and differ everywhere (a misplaced piece changes the hash). */
function castBytes(n: number): Buffer {
  const head = Buffer.from('{"version":2,"width":80,"height":24}\n');
  const body = Buffer.alloc(Math.max(0, n - head.length));
  for (let i = 0; i < body.length; i++) body[i] = 0x20 + ((i * 7 + (i >> 9)) % 90);
  return Buffer.concat([head, body]).subarray(0, n);
}

const isPart = (req: http.IncomingMessage) => req.method === 'PUT' && /[?&]partNumber=/.test(req.url ?? '');
const isComplete = (req: http.IncomingMessage) => req.method === 'POST' && /[?&]uploadId=/.test(req.url ?? '');
const isManifestPut = (req: http.IncomingMessage) => req.method === 'PUT' && /\.upload(\?|$)/.test(req.url ?? '') && !/[?&]uploadId=/.test(req.url ?? '');

/** The manifest of `key` as stored, if any. */
async function manifestOf(key: string): Promise<{ upload_id: string; parts: { end: number }[]; abandoned?: string[] } | undefined> {
  return (await s3.keys(key)).includes(`${key}.upload`) ? JSON.parse((await s3.get(`${key}.upload`)).toString()) : undefined;
}

/** Until a pending object of `key` reaches `end`. */
async function pendingThrough(key: string, end: number): Promise<void> {
  await waitFor(
    async () => {
      for (const k of await s3.keys(`${key}.pending/`)) if (Number(k.slice(k.lastIndexOf('/') + 1)) + (await s3.get(k)).length >= end) return true;
      return undefined;
    },
    20_000,
    `a pending object of ${key} through ${end}`,
  );
}

/** An object's bytes at rest in s3rver, stored `days` ago (s3rver reports a file's mtime as LastModified). */
function age(days: number): void {
  const when = new Date(Date.now() - days * DAY);
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('._S3rver_object')) fs.utimesSync(p, when, when);
    }
  };
  walk(path.join(s3.dir, s3.bucket));
}

const put = (Key: string, Body: string | Buffer = 'x') => s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key, Body }));

/** A multipart upload of `key` left open with one part of `bytes`, as a lost process leaves it. */
async function openUpload(key: string, bytes: Buffer): Promise<{ uploadId: string; etag: string }> {
  const c = await s3.client.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: key }));
  const p = await s3.client.send(new UploadPartCommand({ Bucket: s3.bucket, Key: key, UploadId: c.UploadId, PartNumber: 1, Body: bytes, ContentLength: bytes.length }));
  return { uploadId: c.UploadId!, etag: p.ETag! };
}

describe('S3 recording uploads under faults', () => {
  it('parts uploaded after the session ended are named in the manifest: a salvage completes all the bytes that reached S3', async () => {
    // The lost replica's completion fails (it dies while retrying): its last parts were uploaded after
    // finish(), and the pending objects they cover deleted.
    let completions = 0;
    const relay = await s3Relay((req) => (isComplete(req) ? (completions++, { status: 500, code: 'InternalError' }) : undefined));
    const a = replica('late/', { endpoint: relay.endpoint });
    const sid = '01JLATEPARTSESSION00000001';
    const key = `late/${sid}/ch0.cast`;
    const file = path.join(dir, `${sid}.cast`);
    const data = castBytes(PART + 1024 * 1024);
    const stored: UploadReport[] = [];
    const b = replica('late/', {}, { stored });
    try {
      fs.writeFileSync(file, data.subarray(0, 3 * 1024 * 1024));
      const u = a.begin(`${sid}/ch0.cast`, file, sid, 0);
      u.written(3 * 1024 * 1024);
      await pendingThrough(key, 3 * 1024 * 1024);
      await waitFor(() => manifestOf(key), 10_000, 'the manifest');
      fs.writeFileSync(file, data);
      u.finish(data.length);
      await waitFor(() => completions > 0 || undefined, 20_000, 'a completion tried');
      // Lost: its process stops here, its disk goes.
      await a.close(0);
      fs.rmSync(file);
      expect(await b.salvageLost(Date.now() + 2000)).toBe(1);
      const object = await s3.get(key);
      expect(object.length).toBe(data.length);
      expect(object.equals(data)).toBe(true);
      expect(stored).toEqual([expect.objectContaining({ key, bytes: data.length, sha256: sha256(data), salvaged: true })]);
      expect(await s3.keys('late/')).toEqual([key]);
    } finally {
      await a.close(0);
      await b.close(0);
      await relay.close();
    }
  }, 60_000);

  it('a replica lost between a part and the manifest naming it: the pending objects it covered are still there for the salvage', async () => {
    // After its first part the replica can write no manifest any more (then it is lost).
    let parts = 0;
    let refused = 0;
    const relay = await s3Relay((req) => (parts > 0 && isManifestPut(req) ? (refused++, { status: 503, code: 'SlowDown' }) : undefined), (req, status) => {
      if (isPart(req) && status === 200) parts++;
    });
    const a = replica('gap/', { endpoint: relay.endpoint });
    const sid = '01JGAPSESSION0000000000001';
    const key = `gap/${sid}/ch0.cast`;
    const file = path.join(dir, `${sid}.cast`);
    const data = castBytes(PART + 1024 * 1024);
    const stored: UploadReport[] = [];
    const b = replica('gap/', {}, { stored });
    try {
      fs.writeFileSync(file, data.subarray(0, 3 * 1024 * 1024));
      const u = a.begin(`${sid}/ch0.cast`, file, sid, 0);
      u.written(3 * 1024 * 1024);
      await pendingThrough(key, 3 * 1024 * 1024);
      await waitFor(() => manifestOf(key), 10_000, 'the manifest');
      fs.writeFileSync(file, data);
      u.written(data.length);
      await waitFor(() => refused > 0 || undefined, 20_000, 'the manifest naming part 1 refused');
      await a.close(0);
      fs.rmSync(file);
      expect(await b.salvageLost(Date.now() + 2000)).toBe(1);
      // The manifest names no part; the pending object holds the first 3 MiB. (The part itself, 5 MiB,
      // reached S3 too, but nothing named it: only a server with ListParts tells; s3rver has none.)
      const object = await s3.get(key);
      expect(object.length).toBe(3 * 1024 * 1024);
      expect(object.equals(data.subarray(0, object.length))).toBe(true);
      expect(stored).toEqual([expect.objectContaining({ key, bytes: object.length, sha256: sha256(object), salvaged: true })]);
    } finally {
      await a.close(0);
      await b.close(0);
      await relay.close();
    }
  }, 60_000);

  it('retention and salvage leave alone what vigil did not write, and purge what it did', async () => {
    const own = '01JOWNSESSION0000000000001';
    // In a bucket shared with others: a backup folder, someone's `*.upload`, one in vigil's layout that is
    // no vigil manifest, and a folder beside vigil's `rec` prefix that begins like it.
    const foreign = ['backups/x.tar', 'foo.upload', '01JGARBAGE0000000000000001/ch0.cast.upload', 'recent/01JSIBLING0000000000001/ch0.cast', 'recent/01JSIBLING0000000000001/ch0.cast.upload'];
    for (const k of foreign) await put(k, 'not vigil\'s');
    await put(`${own}/ch0.cast`, castBytes(100));
    await put(`${own}/ch0.cast.pending/${'0'.repeat(16)}`, castBytes(50));
    await put(`rec/${own}/ch1.cast`, castBytes(200));
    age(200);
    const warned: string[] = [];
    const root = replica('', {}, { warned });
    // Configured without the slash: still the folder `rec/`.
    const rec = replica('rec', {}, { warned });
    try {
      for (const st of [root, rec]) {
        expect(await st.sessionsOlderThan(Date.now() - 100 * DAY)).toEqual([own]);
        await st.deleteSessions([own]);
        expect(await st.salvageLost(Date.now() + DAY)).toBe(0);
      }
      const keys = await s3.keys();
      expect(keys).toEqual(expect.arrayContaining(foreign));
      expect(keys.filter((k) => k.includes(own))).toEqual([]);
      expect(warned).toContain('ignoring an unreadable recording upload manifest in object storage');
    } finally {
      await root.close(0);
      await rec.close(0);
      for (const k of foreign) await s3.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: k }));
    }
  }, 60_000);

  it('a resumed upload aborts the upload the earlier process left open once it is stored', async () => {
    const relay = await s3Relay();
    const recordings = path.join(dir, 'resume');
    const sid = '01JRESUMESESSION0000000001';
    const key = `resume/${sid}/ch0.cast`;
    const file = path.join(recordings, sid, 'ch0.cast');
    const data = castBytes(PART + 4321);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, data);
    const a = replica('resume/', { endpoint: relay.endpoint });
    // The earlier process uploaded the first part, then stopped (a crash): the file stays.
    a.begin(`${sid}/ch0.cast`, file, sid, 0).written(data.length);
    const earlier = await waitFor(async () => ((await manifestOf(key))?.parts.length === 1 ? (await manifestOf(key))!.upload_id : undefined), 20_000, 'part 1 named');
    await a.close(0);
    expect(s3.openUploads().filter((u) => u.key === key)).toHaveLength(1);
    const stored: UploadReport[] = [];
    const b = replica('resume/', { endpoint: relay.endpoint }, { stored });
    try {
      expect(await b.resume(recordings)).toBe(1);
      await waitFor(() => stored.length > 0 || undefined, 20_000, 'the resumed upload stored');
      expect((await s3.get(key)).equals(data)).toBe(true);
      expect(relay.aborted).toContain(earlier);
      expect(s3.openUploads().filter((u) => u.key === key)).toEqual([]);
      await waitFor(async () => ((await s3.keys('resume/')).length === 1 ? true : undefined), 10_000, 'the manifest removed');
    } finally {
      await a.close(0);
      await b.close(0);
      await relay.close();
    }
  }, 60_000);

  it('salvage aborts the upload of a recording already stored, and retention the open uploads of the sessions it purges', async () => {
    const relay = await s3Relay();
    // Stored, then its process was lost before it removed the manifest; an upload of it still open.
    const done = 'abort/01JSTOREDSESSION0000000001/ch0.cast';
    const whole = castBytes(7000);
    const left = await openUpload(done, whole.subarray(0, 3000));
    await put(done, whole);
    await put(`${done}.upload`, JSON.stringify({ version: 1, upload_id: left.uploadId, session: '01JSTOREDSESSION0000000001', channel: 0, parts: [] }));
    // A session past retention whose upload was never completed nor salvaged, and one replaced earlier.
    const purged = 'abort/01JPURGEDSESSION0000000001/ch2.cast';
    const open = await openUpload(purged, castBytes(4000));
    const older = await openUpload(purged, castBytes(3000));
    await put(`${purged}.upload`, JSON.stringify({ version: 1, upload_id: open.uploadId, session: '01JPURGEDSESSION0000000001', channel: 2, parts: [{ n: 1, etag: open.etag, end: 4000 }], abandoned: [older.uploadId] }));
    await put(`${purged}.pending/${String(4000).padStart(16, '0')}`, castBytes(10));
    age(200);
    const stored: UploadReport[] = [];
    // Salvage would rather complete the purged session's upload than leave it: not this time (no sweep).
    const st = replica('abort/', { endpoint: relay.endpoint, salvageAfterMs: 1000 }, { stored });
    try {
      expect(await st.sessionsOlderThan(Date.now() - 100 * DAY)).toEqual(['01JPURGEDSESSION0000000001', '01JSTOREDSESSION0000000001']);
      await st.deleteSessions(['01JPURGEDSESSION0000000001']);
      expect(relay.aborted.sort()).toEqual([open.uploadId, older.uploadId].sort());
      expect(await s3.keys('abort/01JPURGEDSESSION0000000001/')).toEqual([]);
      expect(await st.salvageLost(Date.now() + DAY)).toBe(0);
      expect(relay.aborted).toContain(left.uploadId);
      expect((await s3.get(done)).equals(whole)).toBe(true);
      expect(await s3.keys('abort/')).toEqual([done]);
      expect(s3.openUploads().filter((u) => u.key.startsWith('abort/'))).toEqual([]);
      expect(stored).toEqual([]);
    } finally {
      await st.close(0);
      await relay.close();
    }
  }, 60_000);

  it('an upload waiting for a request slot reads no part: memory stays within the requests in flight', async () => {
    // Every part request is held by an endpoint that never answers: the one slot stays taken, and the
    // other uploads wait for it.
    let hold = false;
    const relay = await s3Relay((req) => (hold && isPart(req) ? 'hold' : undefined));
    const n = 8;
    // No manifest heartbeat meanwhile (a quarter of salvage_after); a flush has nothing new to send.
    const st = replica('memory/', { endpoint: relay.endpoint, maxConcurrentRequests: 1, salvageAfterMs: 15 * 60_000 });
    try {
      const uploads = [];
      for (let i = 0; i < n; i++) {
        const sid = `01JMEMORYSESSION000000000${i}`;
        const file = path.join(dir, `${sid}.cast`);
        fs.writeFileSync(file, castBytes(PART + 1000));
        const u = st.begin(`${sid}/ch0.cast`, file, sid, 0);
        u.written(100);
        uploads.push(u);
      }
      // Every upload started (at its first flush; its manifest written) before the slot is taken for good.
      await waitFor(async () => ((await s3.keys('memory/')).filter((k) => k.endsWith('.upload')).length === n ? true : undefined), 20_000, 'the uploads started');
      hold = true;
      const before = process.memoryUsage().arrayBuffers;
      for (const u of uploads) u.finish(PART + 1000);
      await waitFor(() => (relay.held.length === 1 && st.queuedRequests === n - 1) || undefined, 20_000, 'one part in flight, the others waiting');
      const grown = process.memoryUsage().arrayBuffers - before;
      // The part in flight, and room to spare; reading before the slot would hold n parts (40 MiB).
      expect(grown).toBeLessThan(3 * PART);
    } finally {
      await relay.close();
      await st.close(0);
    }
  }, 60_000);
});
