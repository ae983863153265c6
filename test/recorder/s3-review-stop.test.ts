import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startS3, type S3Server } from '../support/s3.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { S3Recordings, type S3StorageOptions, type UploadReport } from '../../recorder/recordings/s3.ts';

/**
 * The gateway stops while S3 is down, before `retry.attempts` failures: the recording is not in object
 * storage and only the local disk holds it. That must be on the record (recording.upload_failed, where the
 * copy is kept), not left to be inferred from a missing event — a replica whose disk does not come back
 * would otherwise lose it without a trace.
 */

let s3: S3Server;
let dir: string;

beforeAll(async () => {
  s3 = await startS3();
  dir = tempDir('vigil-s3-review-stop-');
}, 30_000);

afterAll(async () => {
  await s3?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function replica(o: Partial<S3StorageOptions>, hooks: { stored: UploadReport[]; failed: UploadReport[]; warned?: string[] }): S3Recordings {
  return new S3Recordings(
    {
      bucket: s3.bucket, prefix: 'stop/', endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      partSize: 5 * 1024 * 1024, flushIntervalMs: 100, maxConcurrentRequests: 2, requestTimeoutMs: 5000,
      // Many attempts, long delays: the gateway stops long before the failure event would be due.
      retry: { attempts: 5, baseDelayMs: 60_000, maxDelayMs: 60_000 }, keepLocal: false, salvageAfterMs: 60_000, ...o,
    },
    { stored: (r) => hooks.stored.push(r), failed: (r) => hooks.failed.push(r), warn: (m) => hooks.warned?.push(m) },
  );
}

describe('S3 uploads when the gateway stops', () => {
  it('S3 down at the end of the session and the gateway stops: recording.upload_failed names the local copy, which stays', async () => {
    const warned: string[] = [];
    const hooks = { stored: [] as UploadReport[], failed: [] as UploadReport[], warned };
    await s3.stop();
    const rec = replica({}, hooks);
    const file = path.join(dir, 'stop.cast');
    const data = Buffer.from('{"version":2,"width":80,"height":24}\n[0.1, "o", "rm -rf /srv"]\n');
    fs.writeFileSync(file, data);
    try {
      const u = rec.begin('01JSTOPSESSION000000000001/ch0.cast', file, '01JSTOPSESSION000000000001', 0);
      u.written(data.length);
      u.finish(data.length);
      // The first request has failed (connection refused): the upload is in its backoff.
      await waitFor(() => (warned.length > 0 ? true : undefined), 15_000, 'a failed request');
      await rec.close(200);
      expect(hooks.stored).toEqual([]);
      expect(hooks.failed).toHaveLength(1);
      expect(hooks.failed[0]).toMatchObject({ id: '01JSTOPSESSION000000000001/ch0.cast', sessionId: '01JSTOPSESSION000000000001', phase: 'complete', localPath: file, bytes: data.length });
      expect(hooks.failed[0]!.error?.message).toMatch(/stopped/);
      expect(JSON.stringify(hooks.failed)).not.toContain(s3.secretAccessKey);
      expect(fs.readFileSync(file).equals(data)).toBe(true);
    } finally {
      await s3.start();
    }
  }, 60_000);

  it('an upload that completes within the grace gets recording.stored only', async () => {
    const hooks = { stored: [] as UploadReport[], failed: [] as UploadReport[] };
    const rec = replica({ retry: { attempts: 5, baseDelayMs: 20, maxDelayMs: 100 } }, hooks);
    const file = path.join(dir, 'ok.cast');
    const data = Buffer.from('{"version":2,"width":80,"height":24}\n[0.1, "o", "ok"]\n');
    fs.writeFileSync(file, data);
    const u = rec.begin('01JSTOPSESSION000000000002/ch0.cast', file, '01JSTOPSESSION000000000002', 0);
    u.finish(data.length);
    await rec.close(30_000);
    expect(hooks.stored).toHaveLength(1);
    expect(hooks.failed).toEqual([]);
  }, 60_000);
});
