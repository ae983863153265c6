import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startS3, type S3Server } from '../support/s3.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { S3Recordings, type S3StorageOptions, type UploadReport } from '../../recorder/recordings/s3.ts';

/**
 * The heartbeat of a live upload (its manifest rewritten at least every quarter of salvage_after) must not
 * depend on flush_interval: an operator who flushes rarely (fewer requests) and salvages quickly must not
 * see the live uploads of healthy replicas taken for lost ones and completed under them.
 */

let s3: S3Server;
let dir: string;

beforeAll(async () => {
  s3 = await startS3();
  dir = tempDir('vigil-s3-review-hb-');
}, 30_000);

afterAll(async () => {
  await s3?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function replica(prefix: string, o: Partial<S3StorageOptions> = {}, stored?: UploadReport[]): S3Recordings {
  return new S3Recordings(
    {
      bucket: s3.bucket, prefix, endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      partSize: 5 * 1024 * 1024, flushIntervalMs: 100, maxConcurrentRequests: 2, requestTimeoutMs: 5000,
      retry: { attempts: 3, baseDelayMs: 20, maxDelayMs: 100 }, keepLocal: false, salvageAfterMs: 2000, ...o,
    },
    { stored: (r) => stored?.push(r) },
  );
}

describe('S3 upload heartbeat', () => {
  it('a flush_interval longer than salvage_after: the live upload still refreshes its manifest and is never salvaged', async () => {
    // Flushed every 5 s, salvaged after 1 s: the manifest (written at the first flush) must still be
    // rewritten every quarter of salvage_after in between.
    const salvageAfterMs = 1000;
    const a = replica('hb/', { flushIntervalMs: 5000, salvageAfterMs });
    const stored: UploadReport[] = [];
    const b = replica('hb/', { salvageAfterMs }, stored);
    const id = '01JHEARTBEATSESSION0000001/ch0.cast';
    const file = path.join(dir, 'hb.cast');
    const data = Buffer.from('{"version":2,"width":80,"height":24}\n[0.1, "o", "hello"]\n');
    fs.writeFileSync(file, data);
    const u = a.begin(id, file, '01JHEARTBEATSESSION0000001', 0);
    try {
      u.written(data.length);
      const manifestKey = `hb/${id}.upload`;
      await waitFor(async () => ((await s3.keys('hb/')).includes(manifestKey) ? true : undefined), 15_000, 'the manifest');
      const seen = Date.now();
      // Wait (a condition, not a timing assertion) until salvage_after has passed since the manifest was seen.
      await waitFor(async () => (Date.now() - seen > salvageAfterMs + 500 ? true : undefined), 15_000, 'salvage_after to pass');
      // Another replica's sweep leaves the live upload alone: no recording.stored for a session still running.
      expect(await b.salvageLost()).toBe(0);
      expect(stored).toEqual([]);
      u.finish(data.length);
      await waitFor(async () => ((await s3.keys('hb/')).includes(`hb/${id}`) ? true : undefined), 15_000, 'the object');
      expect((await s3.get(`hb/${id}`)).equals(data)).toBe(true);
    } finally {
      await a.close(5000);
      await b.close(0);
    }
  }, 60_000);
});
