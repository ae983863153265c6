import fs from 'node:fs';
import path from 'node:path';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { tempDir } from '../support/tmp.ts';
import { startS3, type S3Server } from '../support/s3.ts';
import { runCliCaptured } from '../support/cli.ts';
import { parseConfig } from '../../app/config.ts';
import { initIdentity } from '../../src/identity/ca.ts';
import { openAuditLog, searchAuditLog } from '../../recorder/audit/index.ts';
import { auditOptions, sampleEvent } from './helpers.ts';

const DAY = 86_400_000;
const env = { id: `VIGIL_TEST_S3P_ID_${process.pid}`, secret: `VIGIL_TEST_S3P_SECRET_${process.pid}` };

let s3: S3Server;

beforeAll(async () => {
  s3 = await startS3();
  process.env[env.id] = s3.accessKeyId;
  process.env[env.secret] = s3.secretAccessKey;
});
afterAll(async () => {
  await s3?.close();
});

/** A data dir whose recordings are stored in the local S3 server under `prefix`; the log has sessions S0..S7. */
async function setup(prefix: string) {
  const base = tempDir('vigil-retention-s3-');
  const dataDir = path.join(base, 'data');
  const configPath = path.join(base, 'vigil.json');
  const config = {
    data_dir: dataDir,
    retention: { floor: '90d', default: '400d', recordings: '100d' },
    recording: {
      storage: {
        kind: 's3', bucket: s3.bucket, prefix, endpoint: s3.endpoint, force_path_style: true,
        access_key_id: { env: env.id }, secret_access_key: { env: env.secret },
      },
    },
  };
  fs.writeFileSync(configPath, JSON.stringify(config));
  await initIdentity(dataDir, parseConfig({ data_dir: dataDir }, base));
  const audit = path.join(dataDir, 'audit');
  const w = await openAuditLog(audit, auditOptions(path.join(dataDir, 'ca', 'audit_signing.key')));
  for (let i = 0; i < 16; i++) await w.append(sampleEvent(i, { session_id: `S${Math.floor(i / 2)}` }));
  await w.close();
  return { audit, c: (...a: string[]) => runCliCaptured([...a, '--config', configPath]) };
}

const put = (key: string, body = 'x') => s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));

/** Make every object stored so far look `days` old (s3rver reports a file's mtime as LastModified). */
function ageAllObjects(days: number): void {
  const when = new Date(Date.now() - days * DAY);
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('._S3rver_object')) fs.utimesSync(p, when, when);
    }
  };
  walk(path.join(s3.dir, s3.bucket));
}

describe('retention of recordings in object storage', () => {
  it('purges stored recordings past the ceiling, keeps held and young ones, and records what went', async () => {
    const { audit, c } = await setup('purge/');
    // S1: a finished recording and a pending piece a lost replica left; S3: held; S5: finished; S7: young.
    await put('purge/S1/ch0.cast');
    await put('purge/S1/ch1.cast.pending/0000000000000000');
    await put('purge/S3/ch0.cast');
    await put('purge/S5/ch0.cast');
    // Not `<session>/…`: not vigil's to remove.
    await put('purge/notes.txt');
    await put('other/S1/ch0.cast');
    ageAllObjects(200);
    await put('purge/S7/ch0.cast');
    expect((await c('hold', 'add', '--session', 'S3', '--reason', 'litigation 2026-17')).code).toBe(0);

    const all = await s3.keys();
    const dry = await c('audit', 'purge', '--dry-run');
    expect(dry.err).toBe('');
    expect(dry.out).toContain(`would purge the recordings of 2 session(s) in s3://${s3.bucket}/purge/`);
    expect(await s3.keys()).toEqual(all);

    const res = await c('audit', 'purge', '--reason', 'PCI 10.5.1');
    expect(res.err).toBe('');
    expect(res.code).toBe(0);
    expect(res.out).toContain(`purged the recordings of 2 session(s) in s3://${s3.bucket}/purge/`);
    expect(await s3.keys()).toEqual(['other/S1/ch0.cast', 'purge/S3/ch0.cast', 'purge/S7/ch0.cast', 'purge/notes.txt']);

    const purged = (await searchAuditLog(audit, { type: 'audit.purged' })).records.map((r) => r.event);
    expect(purged).toHaveLength(1);
    expect(purged[0]!.details).toMatchObject({
      reason: 'PCI 10.5.1', segments: [], recording_sessions: ['S1', 'S5'],
      recording_storage: `s3://${s3.bucket}/purge/`, stored_recording_sessions: ['S1', 'S5'],
    });
    const verify = await c('audit', 'verify');
    expect(verify.err).toBe('');
    expect(verify.code).toBe(3);

    // Released, the held session's recording goes at the next run.
    const holds = await c('hold', 'list', '--json');
    const id = (JSON.parse(holds.out.trim().split('\n')[0]!) as { id: string }).id;
    expect((await c('hold', 'release', id, '--reason', 'case closed')).code).toBe(0);
    const again = await c('audit', 'purge');
    expect(again.code).toBe(0);
    expect(await s3.keys('purge/')).toEqual(['purge/S7/ch0.cast', 'purge/notes.txt']);
  }, 60_000);

  it('object storage away: says so, exits 1, and leaves the stored recordings for the next run', async () => {
    const { audit, c } = await setup('away/');
    await put('away/S2/ch0.cast');
    ageAllObjects(200);
    await s3.stop();
    let res;
    try {
      res = await c('audit', 'purge');
    } finally {
      await s3.start();
    }
    expect(res.code).toBe(1);
    expect(res.err).toContain(`could not list the recordings in s3://${s3.bucket}/away/`);
    expect(res.err).not.toContain(s3.secretAccessKey);
    expect(await s3.keys('away/')).toEqual(['away/S2/ch0.cast']);
    expect((await searchAuditLog(audit, { type: 'audit.purged' })).records).toHaveLength(0);
    expect((await c('audit', 'purge')).code).toBe(0);
    expect(await s3.keys('away/')).toEqual([]);
  }, 60_000);
});
