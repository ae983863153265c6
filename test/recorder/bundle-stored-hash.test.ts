import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Writable } from 'node:stream';
import tar from 'tar-stream';
import { PutObjectCommand, DeleteObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from '../ssh/harness.ts';
import { startS3, type S3Server } from '../support/s3.ts';
import { tempDir } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { dataPaths } from '../../src/data-dir.ts';
import { searchAuditLog } from '../../recorder/audit/index.ts';
import { BUNDLE_EXIT_CODES, verifyBundle } from '../../recorder/bundle/index.ts';
import { signManifest } from '../../recorder/bundle/format.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Evidence bundles of recordings kept in object storage (a real S3 server, s3rver; a real sshd behind the
 * gateway; the vigil CLI). The audit log's `recording.stored` names each upload's SHA-256; whoever can
 * write to the bucket but does not hold the audit key can replace the object, and whoever can make the
 * storage fail must not turn a recording into "no longer available".
 */

let s3: S3Server;
let w: SshWorld;
let dir: string;
let configFile: string;
let sid: string;
let stored: AuditEvent;
let auditDir: string;
let signingKey: string;
const env = { id: `VIGIL_TEST_S3_ID_${process.pid}`, secret: `VIGIL_TEST_S3_SECRET_${process.pid}` };

async function readTar(file: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const ex = tar.extract();
  ex.on('entry', (h, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => chunks.push(c as Buffer));
    stream.on('end', () => {
      out.set(h.name, Buffer.concat(chunks));
      next();
    });
  });
  await pipeline(fs.createReadStream(file), ex as unknown as Writable);
  return out;
}

async function writeTar(file: string, members: Map<string, Buffer>): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack as unknown as NodeJS.ReadableStream, fs.createWriteStream(file));
  for (const [name, data] of members) pack.entry({ name, size: data.length }, data);
  pack.finalize();
  await done;
}

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
const bundleOf = (out: string) => runCliCaptured(['audit', 'bundle', '--config', configFile, '--session', sid, '--since', '1h', '--out', out]);
const bundleFailures = async () => (await searchAuditLog(auditDir, { type: 'audit.bundle' })).records.map((r) => r.event).filter((e) => e.outcome === 'failure');

beforeAll(async () => {
  s3 = await startS3();
  process.env[env.id] = s3.accessKeyId;
  process.env[env.secret] = s3.secretAccessKey;
  dir = tempDir('vigil-bundle-s3-');
  configFile = path.join(dir, 'vigil.json');
  w = await startWorld({
    configFile,
    config: {
      roles: [{ name: 'dev', targets: ['*'], logins: ['*'] }],
      recording: {
        storage: {
          kind: 's3', bucket: s3.bucket, prefix: 'rec/', endpoint: s3.endpoint, force_path_style: true,
          access_key_id: { env: env.id }, secret_access_key: { env: env.secret },
          part_size: '5MiB', flush_interval: '300ms', request_timeout: '5s', retry: { attempts: 2, base_delay: '100ms', max_delay: '400ms' },
        },
      },
    },
  });
  const alice = await w.issue();
  const r = await w.run('ssh', [...w.opts(alice), `${w.sshd.user}@web1@127.0.0.1`, 'echo stored-evidence-$((6*7))']);
  expect(r.stdout).toContain('stored-evidence-42');
  const start = await w.gw.waitForEvent((e) => e.type === 'session.start' && e.actor?.user === 'alice');
  sid = start.session_id!;
  stored = await w.gw.waitForEvent((e) => e.type === 'recording.stored' && e.session_id === sid, 60_000);
  auditDir = dataPaths(w.gw.dataDir).audit;
  signingKey = dataPaths(w.gw.dataDir).auditSigningKey;
  // Stopping the gateway seals the log with a checkpoint that signs recording.stored (sshd stays: the
  // config the CLI reads names its key).
  await w.gw.stop();
  // Uploaded and removed locally (keep_local off): the bundle reads the recording from S3.
  expect(fs.existsSync(path.join(w.gw.dataDir, 'recordings', sid, 'ch0.cast'))).toBe(false);
}, 120_000);

afterAll(async () => {
  await w?.stop().catch(() => {});
  await s3?.close();
  delete process.env[env.id];
  delete process.env[env.secret];
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('evidence bundles check recordings against the SHA-256 recording.stored logged', () => {
  it('an intact recording: the chain reaches its recording.stored, and verify-bundle checks the hash against it', async () => {
    const out = path.join(dir, 'good.tar');
    const made = await bundleOf(out);
    expect(made.code, made.err).toBe(0);
    const m = await readTar(out);
    const manifest = JSON.parse(m.get('manifest.json')!.toString()) as { recordings_not_stored: string[]; recordings_unavailable: string[] };
    expect(manifest.recordings_not_stored).toEqual([]);
    expect(manifest.recordings_unavailable).toEqual([]);
    expect(m.get('chain.jsonl')!.toString()).toContain('"type":"recording.stored"');
    expect(sha256(m.get(`recordings/${sid}/ch0.cast`)!)).toBe(stored.details.sha256);
    const v = await runCliCaptured(['audit', 'verify-bundle', out]);
    expect(v.err).toBe('');
    expect(v.code).toBe(0);
    expect(v.out).toContain('1 recording(s) intact (1 matching the SHA-256 the log holds for them (recording.stored or recording.closed), 0 with neither in the chain');
  });

  it('a recording swapped in the bundle and the manifest re-signed: verify-bundle names the recording.stored hash (exit 5)', async () => {
    const good = path.join(dir, 'good.tar');
    const m = await readTar(good);
    const name = `recordings/${sid}/ch0.cast`;
    const forged = Buffer.from(m.get(name)!.toString().replace('stored-evidence-42', 'nothing-to-see-42'));
    m.set(name, forged);
    // As a maker that trusted whatever the storage returned would have signed it (the manifest agrees with the archive).
    const manifest = JSON.parse(m.get('manifest.json')!.toString()) as { files: { path: string; sha256: string; bytes: number }[] };
    Object.assign(manifest.files.find((f) => f.path === name)!, { sha256: sha256(forged), bytes: forged.length });
    const bytes = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
    m.set('manifest.json', bytes);
    m.set('manifest.sig', Buffer.from(signManifest(crypto.createPrivateKey(fs.readFileSync(signingKey)), bytes) + '\n'));
    const file = path.join(dir, 'resigned.tar');
    await writeTar(file, m);
    const v = await verifyBundle(file);
    expect(v.code).toBe(BUNDLE_EXIT_CODES.recording);
    expect(v.problems).toEqual([
      {
        kind: 'recording',
        message: expect.stringMatching(new RegExp(`^recording ${sid}/ch0\\.cast does not match the SHA-256 its recording\\.stored event \\(seq \\d+\\) logged when it was uploaded \\(${String(stored.details.sha256)}, \\d+ bytes; the archive holds ${sha256(forged)}`)),
      },
    ]);
  });

  it('S3 down or refusing: no bundle, a clear message, never "no longer available"', async () => {
    const out = path.join(dir, 'outage.tar');
    await s3.stop();
    try {
      const down = await bundleOf(out);
      expect(down.code).toBe(1);
      expect(down.err).toContain(`recording ${sid}/ch0.cast could not be read from object storage (`);
      expect(down.err).toContain('that does not show it is gone, so no bundle was made');
      expect(fs.existsSync(out)).toBe(false);
    } finally {
      await s3.start();
    }
    // Credentials the server rejects (403, an access key it does not know): the same.
    process.env[env.id] = 'AKIAUNKNOWNTOTHESERVER';
    try {
      const refused = await bundleOf(out);
      expect(refused.code).toBe(1);
      expect(refused.err).toContain(`recording ${sid}/ch0.cast could not be read from object storage (`);
      expect(fs.existsSync(out)).toBe(false);
    } finally {
      process.env[env.id] = s3.accessKeyId;
    }
    expect((await bundleFailures()).map((e) => String(e.details.error))).toEqual([
      expect.stringContaining('could not be read from object storage'),
      expect.stringContaining('could not be read from object storage'),
    ]);
  });

  it('the object replaced in S3 after recording.stored: no bundle, naming both hashes; deleted: listed as no longer available', async () => {
    const key = String(stored.details.key);
    const original = await s3.get(key);
    const replaced = Buffer.from(original.toString().replace('stored-evidence-42', 'nothing-to-see-42'));
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: replaced }));
    const out = path.join(dir, 'replaced.tar');
    const made = await bundleOf(out);
    expect(made.code).toBe(1);
    expect(made.err).toMatch(new RegExp(`recording ${sid}/ch0\\.cast \\(s3://${s3.bucket}/${key}\\) does not match what recording\\.stored \\(seq \\d+\\) logged for s3://${s3.bucket}/${key}: SHA-256 ${sha256(replaced)} \\(${replaced.length} bytes\\), logged ${String(stored.details.sha256)} \\(${original.length} bytes\\); it was altered or replaced after it was stored, so no bundle was made`));
    expect(fs.existsSync(out)).toBe(false);
    expect((await bundleFailures()).at(-1)?.details.error).toContain('does not match what recording.stored');

    // Gone from storage (404) is what recordings_unavailable means: the bundle is made and says so.
    await s3.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: key }));
    const gone = await bundleOf(out);
    expect(gone.code, gone.err).toBe(0);
    expect(gone.err).toContain('(1 no longer available)');
    const manifest = JSON.parse((await readTar(out)).get('manifest.json')!.toString()) as { recordings_unavailable: string[] };
    expect(manifest.recordings_unavailable).toEqual([`${sid}/ch0.cast`]);
  });
});
