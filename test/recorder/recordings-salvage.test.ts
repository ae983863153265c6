import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startS3, type S3Server } from '../support/s3.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { S3Recordings, type S3StorageOptions, type UploadReport } from '../../recorder/recordings/s3.ts';

/**
 * A replica lost mid-recording (its process and its disk): another replica completes the upload it left
 * in a real S3 server (s3rver) from the parts and pending objects that got there, so the recording is
 * kept up to the lost replica's last flush. A live upload is never taken for a lost one.
 */

const PART = 5 * 1024 * 1024;
let s3: S3Server;
let dir: string;

beforeAll(async () => {
  s3 = await startS3();
  dir = tempDir('vigil-salvage-');
}, 30_000);

afterAll(async () => {
  await s3?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function replica(prefix: string, o: Partial<S3StorageOptions> = {}, hooks: { stored?: UploadReport[]; failed?: UploadReport[]; warned?: string[] } = {}): S3Recordings {
  return new S3Recordings(
    {
      bucket: s3.bucket, prefix, endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      partSize: PART, flushIntervalMs: 200, maxConcurrentRequests: 2, requestTimeoutMs: 5000,
      retry: { attempts: 3, baseDelayMs: 50, maxDelayMs: 200 }, keepLocal: false, salvageAfterMs: 60_000, ...o,
    },
    { stored: (r) => hooks.stored?.push(r), failed: (r) => hooks.failed?.push(r), warn: (msg) => hooks.warned?.push(msg) },
  );
}

/**
 * An HTTP relay to s3rver that answers the requests `fault` picks with an S3 error document instead;
 * `answer` may answer a request itself (true), `seen` is shown each response s3rver gave.
 */
async function s3Relay(
  fault: (req: http.IncomingMessage) => { status: number; code: string; message: string } | undefined,
  answer?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean,
  seen?: (req: http.IncomingMessage, status: number, headers: http.IncomingHttpHeaders, body: Buffer) => void,
): Promise<{ endpoint: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (answer?.(req, res)) return;
    const f = fault(req);
    if (f) {
      req.resume();
      res.writeHead(f.status, { 'content-type': 'application/xml' });
      res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${f.code}</Code><Message>${f.message}</Message></Error>`);
      return;
    }
    const up = http.request({ host: '127.0.0.1', port: s3.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      if (!seen) {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => {
        const body = Buffer.concat(chunks);
        seen(req, r.statusCode ?? 502, r.headers, body);
        res.writeHead(r.statusCode ?? 502, r.headers);
        res.end(body);
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as import('node:net').AddressInfo;
  return { endpoint: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) };
}

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

/** Bytes that look like a cast and differ everywhere (a misplaced piece changes the hash). */
function castBytes(n: number): Buffer {
  const head = Buffer.from('{"version":2,"width":80,"height":24}\n');
  const body = Buffer.alloc(Math.max(0, n - head.length));
  for (let i = 0; i < body.length; i++) body[i] = 0x20 + ((i * 7 + (i >> 9)) % 90);
  return Buffer.concat([head, body]).subarray(0, n);
}

/**
 * A replica records `bytes` into a session's recording, its uploader sends what is due (parts, the
 * pending objects after them, the manifest), and then the replica is lost: its uploads stop where they are
 * and its local disk goes. Returns the recording's id and what had been written.
 */
async function lostReplica(prefix: string, sid: string, bytes: number): Promise<{ id: string; data: Buffer }> {
  const a = replica(prefix);
  const id = `${sid}/ch0.cast`;
  const file = path.join(dir, `${sid}.cast`);
  const data = castBytes(bytes);
  fs.writeFileSync(file, data);
  const u = a.begin(id, file, sid, 0);
  u.written(data.length);
  const key = `${prefix}${id}`;
  const fullParts = Math.floor(data.length / PART);
  // Everything written has reached S3: the full parts (an open upload's parts are files of s3rver's) and
  // a pending object reaching the end, and the manifest naming the parts.
  await waitFor(
    async () => {
      const keys = await s3.keys(prefix);
      if (!keys.includes(`${key}.upload`)) return undefined;
      const manifest = JSON.parse((await s3.get(`${key}.upload`)).toString()) as { parts: unknown[] };
      if (manifest.parts.length !== fullParts) return undefined;
      if (fullParts * PART === data.length) return true;
      const pending = keys.filter((k) => k.startsWith(`${key}.pending/`)).map((k) => Number(k.slice(k.lastIndexOf('/') + 1)));
      for (const off of pending) if (off + (await s3.get(`${key}.pending/${String(off).padStart(16, '0')}`)).length === data.length) return true;
      return undefined;
    },
    30_000,
    'the upload to reach S3',
  );
  await a.close(0);
  fs.rmSync(file);
  expect(await s3.keys(key + '.')).toContain(`${key}.upload`);
  expect((await s3.keys(prefix)).includes(key)).toBe(false);
  return { id, data };
}

describe('salvaging the recording uploads of a lost replica', () => {
  it('parts and pending objects become the recording, with its SHA-256; the manifest and pending objects go', async () => {
    const { id, data } = await lostReplica('lost1/', '01JSALVAGEDSESSION00000001', PART + 300_000);
    const stored: UploadReport[] = [];
    const b = replica('lost1/', {}, { stored });
    try {
      // Its manifest is younger than salvage_after: the upload may still be alive.
      expect(await b.salvageLost()).toBe(0);
      expect(stored).toEqual([]);
      expect(await b.salvageLost(Date.now() + 120_000)).toBe(1);
      const object = await s3.get(`lost1/${id}`);
      expect(object.equals(data)).toBe(true);
      expect(stored).toEqual([
        expect.objectContaining({ sessionId: '01JSALVAGEDSESSION00000001', channel: 0, id, key: `lost1/${id}`, bytes: data.length, sha256: sha256(data), parts: 2, salvaged: true }),
      ]);
      expect(await s3.keys('lost1/')).toEqual([`lost1/${id}`]);
      // Readable like any stored recording, and swept only once.
      const src = (await b.open(id))!;
      expect(src.size).toBe(data.length);
      expect(await b.salvageLost(Date.now() + 120_000)).toBe(0);
    } finally {
      await b.close(0);
    }
  }, 60_000);

  it('a recording lost before its first full part: the pending objects are the whole recording', async () => {
    const { id, data } = await lostReplica('lost2/', '01JSALVAGEDSESSION00000002', 4321);
    const stored: UploadReport[] = [];
    const b = replica('lost2/', {}, { stored });
    try {
      expect(await b.salvageLost(Date.now() + 120_000)).toBe(1);
      expect((await s3.get(`lost2/${id}`)).equals(data)).toBe(true);
      expect(stored[0]).toMatchObject({ bytes: data.length, sha256: sha256(data), parts: 1, salvaged: true });
      expect(await s3.keys('lost2/')).toEqual([`lost2/${id}`]);
    } finally {
      await b.close(0);
    }
  }, 60_000);

  it('a manifest that does not match its recording is left alone; one whose upload the server no longer has is reported, or stored from its pending objects if it had no part', async () => {
    const put = (Key: string, Body: string | Buffer) => s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key, Body }));
    // Names another session than the one it sits beside: never turned into that session's recording, and
    // not provably vigil's, so not deleted either.
    await put('odd/01JODDSESSION0000000000001/ch0.cast.upload', JSON.stringify({ version: 1, upload_id: 'x', session: '01JSOMEONEELSE000000000001', channel: 0, parts: [] }));
    // A well-formed manifest whose upload is gone (aborted by a lifecycle rule, say): its parts are lost.
    await put('odd/01JODDSESSION0000000000002/ch0.cast.upload', JSON.stringify({ version: 1, upload_id: 'no-such-upload', session: '01JODDSESSION0000000000002', channel: 0, parts: [{ n: 1, etag: '"abc"', end: PART }] }));
    await put(`odd/01JODDSESSION0000000000002/ch0.cast.pending/${String(PART).padStart(16, '0')}`, Buffer.from('tail after the lost part'));
    // Gone too, but before any part: its pending objects hold the whole recording, stored as one object.
    await put('odd/01JODDSESSION0000000000003/ch1.cast.upload', JSON.stringify({ version: 1, upload_id: 'no-such-upload', session: '01JODDSESSION0000000000003', channel: 1, parts: [] }));
    const whole = castBytes(3000);
    await put(`odd/01JODDSESSION0000000000003/ch1.cast.pending/${'0'.repeat(16)}`, whole.subarray(0, 1000));
    await put(`odd/01JODDSESSION0000000000003/ch1.cast.pending/${String(1000).padStart(16, '0')}`, whole.subarray(1000));
    const stored: UploadReport[] = [];
    const failed: UploadReport[] = [];
    const warned: string[] = [];
    // s3rver answers an unknown upload id with InternalError; S3 says NoSuchUpload, as this relay does for
    // that one upload (everything else passes through to s3rver).
    const relay = await s3Relay((req) => (req.url?.includes('uploadId=no-such-upload') ? { status: 404, code: 'NoSuchUpload', message: 'The specified upload does not exist.' } : undefined));
    const b = replica('odd/', { endpoint: relay.endpoint }, { stored, failed, warned });
    try {
      expect(await b.salvageLost(Date.now() + 120_000)).toBe(1);
      expect(stored).toEqual([expect.objectContaining({ sessionId: '01JODDSESSION0000000000003', channel: 1, bytes: 3000, sha256: sha256(whole), salvaged: true })]);
      expect((await s3.get('odd/01JODDSESSION0000000000003/ch1.cast')).equals(whole)).toBe(true);
      expect(warned).toContain('ignoring an unreadable recording upload manifest in object storage');
      expect(failed).toEqual([expect.objectContaining({ sessionId: '01JODDSESSION0000000000002', phase: 'salvage', bytes: PART + 24, error: expect.objectContaining({ code: 'NoSuchUpload' }) })]);
      // The gone upload's manifests are removed (no report at every sweep); the pending tail stays for
      // retention; the mismatched manifest stays, warned about once.
      expect(await s3.keys('odd/')).toEqual([
        'odd/01JODDSESSION0000000000001/ch0.cast.upload',
        `odd/01JODDSESSION0000000000002/ch0.cast.pending/${String(PART).padStart(16, '0')}`,
        'odd/01JODDSESSION0000000000003/ch1.cast',
      ]);
      expect(await b.salvageLost(Date.now() + 120_000)).toBe(0);
      expect(warned.filter((w) => w === 'ignoring an unreadable recording upload manifest in object storage')).toHaveLength(1);
    } finally {
      await b.close(0);
      await relay.close();
    }
  }, 30_000);

  it('two replicas sweeping at once: one claims and salvages, the other leaves it (one recording.stored, even where S3 accepts a second completion)', async () => {
    const { id, data } = await lostReplica('race/', '01JRACESESSION000000000001', PART + 1234);
    // S3 answers a CompleteMultipartUpload repeated for an upload it completed with success (s3rver with
    // an error): this relay replays the first success, so a second completion would go through as on S3.
    const completed = new Map<string, { status: number; headers: http.IncomingHttpHeaders; body: Buffer }>();
    const relay = await s3Relay(() => undefined, (req, res) => {
      const m = req.method === 'POST' ? /[?&]uploadId=([^&]+)/.exec(req.url ?? '') : null;
      const done = m ? completed.get(m[1]!) : undefined;
      if (!done) return false;
      req.resume();
      res.writeHead(done.status, done.headers);
      res.end(done.body);
      return true;
    }, (req, status, headers, body) => {
      const m = req.method === 'POST' ? /[?&]uploadId=([^&]+)/.exec(req.url ?? '') : null;
      if (m && status === 200) completed.set(m[1]!, { status, headers, body });
    });
    const stored: UploadReport[] = [];
    const b = replica('race/', { endpoint: relay.endpoint }, { stored });
    const c = replica('race/', { endpoint: relay.endpoint }, { stored });
    try {
      const later = Date.now() + 120_000;
      const [nb, nc] = await Promise.all([b.salvageLost(later), c.salvageLost(later)]);
      expect(nb + nc).toBe(1);
      expect(stored).toEqual([expect.objectContaining({ sessionId: '01JRACESESSION000000000001', bytes: data.length, sha256: sha256(data), salvaged: true })]);
      expect((await s3.get(`race/${id}`)).equals(data)).toBe(true);
      expect(await s3.keys('race/')).toEqual([`race/${id}`]);
    } finally {
      await b.close(0);
      await c.close(0);
      await relay.close();
    }
  }, 60_000);

  it("another replica's claim: a fresh one is left alone, one that aged out or is dated ahead is taken over", async () => {
    const one = await lostReplica('claims/', '01JCLAIMSESSION00000000001', 2500);
    const two = await lostReplica('claims/', '01JCLAIMSESSION00000000002', 3500);
    const withClaim = async (id: string, at: number) => {
      const key = `claims/${id}.upload`;
      const m = JSON.parse((await s3.get(key)).toString()) as Record<string, unknown>;
      await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: JSON.stringify({ ...m, claim: { by: 'another-replica', at } }) }));
    };
    const stored: UploadReport[] = [];
    const b = replica('claims/', {}, { stored });
    try {
      const later = Date.now() + 120_000;
      await withClaim(one.id, Date.now());
      await withClaim(two.id, Date.now());
      expect(await b.salvageLost(later)).toBe(0);
      // Older than salvage_after (60 s): its claimant is gone. Dated a year ahead (a wrong clock, or a
      // hostile write): it would hold the upload for ever.
      await withClaim(one.id, Date.now() - 61_000);
      await withClaim(two.id, Date.now() + 365 * 86_400_000);
      expect(await b.salvageLost(later)).toBe(2);
      expect(stored.map((r) => [r.sessionId, r.bytes, r.sha256]).sort()).toEqual([
        ['01JCLAIMSESSION00000000001', one.data.length, sha256(one.data)],
        ['01JCLAIMSESSION00000000002', two.data.length, sha256(two.data)],
      ]);
      expect(await s3.keys('claims/')).toEqual([`claims/${one.id}`, `claims/${two.id}`]);
    } finally {
      await b.close(0);
    }
  }, 60_000);

  it('a malformed claim (wrong types, missing fields) counts as none: the upload is salvaged', async () => {
    const lost = await Promise.all(['01JBADCLAIMSESSION00000001', '01JBADCLAIMSESSION00000002', '01JBADCLAIMSESSION00000003'].map((sid, i) => lostReplica('badclaim/', sid, 1000 + i * 700)));
    const claims: unknown[] = [{ by: 42, at: Date.now() }, { by: 'another-replica', at: 'now' }, 'claimed'];
    for (const [i, { id }] of lost.entries()) {
      const key = `badclaim/${id}.upload`;
      const m = JSON.parse((await s3.get(key)).toString()) as Record<string, unknown>;
      await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: JSON.stringify({ ...m, claim: claims[i] }) }));
    }
    const stored: UploadReport[] = [];
    const b = replica('badclaim/', {}, { stored });
    try {
      expect(await b.salvageLost(Date.now() + 120_000)).toBe(3);
      for (const { id, data } of lost) expect((await s3.get(`badclaim/${id}`)).equals(data)).toBe(true);
      expect(stored).toHaveLength(3);
      expect(await s3.keys('badclaim/')).toEqual(lost.map(({ id }) => `badclaim/${id}`).sort());
    } finally {
      await b.close(0);
    }
  }, 60_000);

  it('a live upload keeps its manifest fresh and is never salvaged, by another replica or its own', async () => {
    // The live replica refreshes its manifest every quarter of salvage_after (here 0.75 s).
    const a = replica('live/', { salvageAfterMs: 3000 });
    const stored: UploadReport[] = [];
    const b = replica('live/', { salvageAfterMs: 3000 }, { stored });
    const file = path.join(dir, 'live.cast');
    const data = castBytes(2000);
    fs.writeFileSync(file, data);
    const u = a.begin('01JLIVESESSION000000000001/ch0.cast', file, '01JLIVESESSION000000000001', 0);
    try {
      u.written(data.length);
      await waitFor(async () => (await s3.keys('live/')).some((k) => k.endsWith('.upload')) || undefined, 15_000, 'the manifest');
      // Well past salvage_after since the upload began, with no new bytes: its heartbeat keeps it alive.
      await new Promise((r) => setTimeout(r, 4500));
      expect(await b.salvageLost()).toBe(0);
      // The replica's own sweep skips its running uploads whatever their manifest's age.
      expect(await a.salvageLost(Date.now() + 120_000)).toBe(0);
      expect(stored).toEqual([]);
      const more = Buffer.concat([data, castBytes(500)]);
      fs.writeFileSync(file, more);
      u.finish(more.length);
      await waitFor(async () => ((await s3.keys('live/')).includes('live/01JLIVESESSION000000000001/ch0.cast') ? true : undefined), 15_000, 'the object');
      expect((await s3.get('live/01JLIVESESSION000000000001/ch0.cast')).equals(more)).toBe(true);
      // Completed: its manifest is gone with its pending objects.
      await waitFor(async () => ((await s3.keys('live/')).length === 1 ? true : undefined), 10_000, 'the manifest removed');
    } finally {
      await a.close(5000);
      await b.close(0);
    }
  }, 60_000);
});
