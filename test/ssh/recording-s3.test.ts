import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, interactive, spawnClient, type SshWorld } from './harness.ts';
import { startS3, type S3Server } from '../support/s3.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { ConsoleClient, ensureConsole } from '../support/console.ts';
import { startTestGateway, type IssuedFiles } from '../support/gateway.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { S3Recordings } from '../../recorder/recordings/s3.ts';
import { searchAuditLog } from '../../recorder/audit/index.ts';

/**
 * Recordings in S3-compatible object storage (recording.storage kind s3) against a real S3 server (s3rver)
 * and a real sshd behind the gateway: uploaded while the session runs, completed and named with its
 * SHA-256 at the end, replayed from S3 by the CLI and the console, and an S3 outage never reaching the
 * session.
 */

const PART = 5 * 1024 * 1024;
let s3: S3Server;
let w: SshWorld;
let alice: IssuedFiles;
let auditor: IssuedFiles;
let dir: string;
let configFile: string;
const logged: string[] = [];
const env = { id: `VIGIL_TEST_S3_ID_${process.pid}`, secret: `VIGIL_TEST_S3_SECRET_${process.pid}` };

/** recording.storage as a config file has it: credentials by environment variable name only. */
function configStorage(): Record<string, unknown> {
  return {
    kind: 's3',
    bucket: s3.bucket,
    prefix: 'rec/',
    endpoint: s3.endpoint,
    force_path_style: true,
    access_key_id: { env: env.id },
    secret_access_key: { env: env.secret },
    part_size: '5MiB',
    flush_interval: '300ms',
    request_timeout: '5s',
    retry: { attempts: 2, base_delay: '100ms', max_delay: '400ms' },
  };
}

beforeAll(async () => {
  await ensureConsole();
  s3 = await startS3();
  process.env[env.id] = s3.accessKeyId;
  process.env[env.secret] = s3.secretAccessKey;
  dir = tempDir('vigil-rec-s3-');
  configFile = path.join(dir, 'vigil.json');
  const log = pino({ level: 'debug' }, new Writable({ write(c, _e, cb) { logged.push(c.toString()); cb(); } }));
  w = await startWorld({
    log,
    configFile,
    config: {
      roles: [
        { name: 'dev', targets: ['*'], logins: ['*'] },
        { name: 'auditor' },
      ],
      recording: { storage: configStorage() },
    },
  });
  alice = await w.issue();
  auditor = await w.gw.issue({ user: 'audrey', roles: ['auditor'] });
}, 60_000);

afterAll(async () => {
  await w?.stop();
  await s3?.close();
  delete process.env[env.id];
  delete process.env[env.secret];
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

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

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
const stored = (sid: string) => w.gw.waitForEvent((e) => e.type === 'recording.stored' && e.session_id === sid, 60_000);
const sessionOf = (pred: (e: AuditEvent) => boolean) => waitFor(() => w.gw.events.find((e) => e.type === 'session.start' && pred(e))?.session_id, 15_000, 'session.start');

describe('recordings in S3', () => {
  it('an interactive session is in S3 while it runs, stored with its SHA-256 at the end, and replays from S3 (CLI and console)', async () => {
    const before = new Set(w.gw.events.filter((e) => e.type === 'session.start').map((e) => e.session_id));
    const s = interactive(w, alice);
    try {
      const sid = await sessionOf((e) => !before.has(e.session_id));
      s.send('echo s3-marker-$((6*7))\r');
      await s.until('s3-marker-42');
      // While the session runs: the multipart upload is open, and the bytes not yet in a part are in
      // pending objects (flush_interval) — the typed command's output among them.
      const key = `rec/${sid}/ch0.cast`;
      await waitFor(async () => {
        const pending = (await s3.keys(`${key}.pending/`));
        const text = (await Promise.all(pending.map((k) => s3.get(k)))).map((b) => b.toString()).join('');
        return text.includes('s3-marker-42');
      }, 20_000, 'pending objects holding the output');
      expect(s3.openUploads().map((u) => u.key)).toContain(key);
      expect(await s3.keys(key)).not.toContain(key);
      expect(w.gw.events.some((e) => e.type === 'session.end' && e.session_id === sid)).toBe(false);
      s.send('exit\r');
      await s.c.exited;

      const ev = await stored(sid);
      const object = await s3.get(key);
      expect(ev.details).toMatchObject({ recording: `${sid}/ch0.cast`, bucket: s3.bucket, key, bytes: object.length, sha256: sha256(object), parts: 1, local_removed: true });
      expect(object.toString()).toContain('s3-marker-42');
      // Pending objects are gone once the upload is complete; so is the local copy.
      expect(await s3.keys(`${key}.pending/`)).toEqual([]);
      expect(fs.existsSync(path.join(w.gw.dataDir, 'recordings', sid, 'ch0.cast'))).toBe(false);

      const cli = await runCliCaptured(['replay', sid, '--print', '--config', configFile]);
      // Checked against the SHA-256 the upload logged, and said so on stderr.
      expect(cli.err).toMatch(/^vigil: \S+\/ch0\.cast: verified: matches the SHA-256 its recording\.stored event \(seq \d+\) logged/);
      expect(cli.code).toBe(0);
      expect(cli.out).toContain('s3-marker-42');

      // An evidence bundle of the session carries the recording from S3, with the hash recording.stored names.
      const bundle = path.join(dir, `${sid}.tar`);
      // A bundle ends on a signed checkpoint: until the writer's next one covers the session's last events,
      // `audit bundle` says to wait and run it again, which is what this does.
      const made = await waitFor(async () => {
        const m = await runCliCaptured(['audit', 'bundle', '--config', configFile, '--session', sid, '--since', '1h', '--out', bundle]);
        return m.code === 0 || !/not signed by a checkpoint yet/.test(m.err) ? m : undefined;
      }, 30_000, 'a checkpoint covering the session');
      expect(made.code, made.err).toBe(0);
      const members = await readTar(bundle);
      const manifest = JSON.parse(members.get('manifest.json')!.toString()) as { recordings_unavailable: string[]; files: { path: string; sha256: string }[] };
      expect(manifest.recordings_unavailable).toEqual([]);
      expect(manifest.files.find((f) => f.path.endsWith(`${sid}/ch0.cast`))?.sha256).toBe(ev.details.sha256);
      expect([...members.entries()].find(([name]) => name.endsWith(`${sid}/ch0.cast`))?.[1].equals(object)).toBe(true);

      const c = new ConsoleClient(`https://127.0.0.1:${w.gw.ports.api}`, auditor.creds.caCertificate, { cert: auditor.creds.x509Certificate, key: auditor.creds.x509PrivateKey });
      expect((await c.signIn()).status).toBe(200);
      const detail = await c.get(`/console/api/sessions/${sid}`);
      expect(detail.status).toBe(200);
      expect(detail.body.recordings).toEqual([expect.objectContaining({ id: `${sid}/ch0.cast`, bytes: object.length, stored: 's3' })]);
      const all = await c.get(`/console/api/sessions/${sid}/recordings/0`);
      expect(all.status).toBe(200);
      expect(all.text).toBe(object.toString());
      const part = await c.get(`/console/api/sessions/${sid}/recordings/0`, { range: 'bytes=0-9' });
      expect(part.status).toBe(206);
      expect(part.text).toBe(object.subarray(0, 10).toString());
    } finally {
      s.c.child.kill('SIGKILL');
    }
  }, 120_000);

  it('output beyond part_size is uploaded as a 5 MiB part while the session still runs; the object is complete at the end', async () => {
    const before = new Set(w.gw.events.filter((e) => e.type === 'session.start').map((e) => e.session_id));
    // 6 MB of text, then the command waits: the session stays open until the test ends it.
    const c = spawnClient('ssh', [...w.opts(alice), `${w.sshd.user}@web1@127.0.0.1`, "head -c 6000000 /dev/zero | tr '\\0' a; echo; echo big-done; sleep 120"]);
    try {
      const sid = await sessionOf((e) => !before.has(e.session_id));
      await waitFor(() => c.stdout().includes('big-done'), 60_000, 'the output');
      const key = `rec/${sid}/ch0.cast`;
      // The harness reads parts from s3rver's storage directory, where a part being received is already a
      // file: wait until the first has its full size (a wrong part size times out here and fails below).
      const upload = await waitFor(() => s3.openUploads().find((u) => u.key === key && u.parts.length >= 1 && u.parts[0] === PART), 30_000, 'a whole part of the open upload');
      expect(upload.parts[0]).toBe(PART);
      expect(w.gw.events.some((e) => e.type === 'session.end' && e.session_id === sid)).toBe(false);
      c.child.kill('SIGTERM');
      await c.exited;
      const ev = await stored(sid);
      const object = await s3.get(key);
      expect(object.length).toBeGreaterThan(6_000_000);
      expect(ev.details).toMatchObject({ bytes: object.length, sha256: sha256(object), parts: 2 });
      expect(object.toString()).toContain('big-done');
    } finally {
      c.child.kill('SIGKILL');
    }
  }, 120_000);

  it('S3 down mid-session: the session goes on, recording.upload_failed is recorded, the local copy kept, and it is stored once S3 is back', async () => {
    const before = new Set(w.gw.events.filter((e) => e.type === 'session.start').map((e) => e.session_id));
    const s = interactive(w, alice);
    let sid: string | undefined;
    try {
      sid = await sessionOf((e) => !before.has(e.session_id));
      s.send('echo first-$((1+1))\r');
      await s.until('first-2');
      await s3.stop();
      // The session does not notice: typing and output go on while S3 refuses connections.
      s.send('echo while-down-$((2+3))\r');
      await s.until('while-down-5');
      const failed = await w.gw.waitForEvent((e) => e.type === 'recording.upload_failed' && e.session_id === sid, 30_000);
      expect(failed.outcome).toBe('failure');
      expect(failed.details).toMatchObject({ recording: `${sid}/ch0.cast`, bucket: s3.bucket, key: `rec/${sid}/ch0.cast`, phase: 'session' });
      const local = path.join(w.gw.dataDir, 'recordings', sid, 'ch0.cast');
      expect(failed.details.local_path).toBe(local);
      s.send('echo still-typing-$((3+4))\r');
      await s.until('still-typing-7');
      s.send('exit\r');
      await s.c.exited;
      await waitFor(() => w.gw.events.some((e) => e.type === 'session.end' && e.session_id === sid), 15_000, 'session.end');
      // Ended while S3 is down: the recording stays on local disk, complete.
      await new Promise((r) => setTimeout(r, 1000));
      expect(fs.readFileSync(local, 'utf8')).toContain('still-typing-7');
      expect(w.gw.events.some((e) => e.type === 'recording.stored' && e.session_id === sid)).toBe(false);

      await s3.start();
      const ev = await stored(sid);
      const object = await s3.get(`rec/${sid}/ch0.cast`);
      expect(object.toString()).toContain('while-down-5');
      expect(object.toString()).toContain('still-typing-7');
      expect(ev.details).toMatchObject({ sha256: sha256(object), bytes: object.length });
      expect(Number(ev.details.failures)).toBeGreaterThanOrEqual(2);
      expect(fs.existsSync(local)).toBe(false);
    } catch (e) {
      // What the uploader said, to tell why (its warnings name each failed request).
      console.log(logged.filter((l) => l.includes('recording')).slice(-20).join(''));
      throw e;
    } finally {
      s.c.child.kill('SIGKILL');
      await s3.start().catch(() => {});
    }
  }, 120_000);

  it('a recording an earlier run left on local disk (crash, S3 down at stop) is uploaded at the next start', async () => {
    const base = tempDir('vigil-rec-s3-resume-');
    const sid = '01JRESUMEDRECORDING0000001';
    const local = path.join(base, 'data', 'recordings', sid, 'ch0.cast');
    fs.mkdirSync(path.dirname(local), { recursive: true });
    const cast = '{"version":2,"width":80,"height":24,"timestamp":1700000000,"env":{"TERM":"xterm"}}\n[0.1, "o", "left-behind\\r\\n"]\n';
    fs.writeFileSync(local, cast);
    const said: string[] = [];
    const log = pino({ level: 'debug' }, new Writable({ write(c, _e, cb) { said.push(c.toString()); cb(); } }));
    const tg = await startTestGateway({ ssh: { enabled: false }, postgres: { enabled: false }, mysql: { enabled: false }, recording: { storage: { ...configStorage(), prefix: 'resumed/' } } }, base, { log });
    try {
      // From the log, not the bus: the upload may complete before the harness subscribes to the bus.
      const ev = await waitFor(
        async () => (await searchAuditLog(path.join(tg.dataDir, 'audit'), { type: 'recording.stored', session: sid })).records[0]?.event,
        60_000,
        'recording.stored in the audit log',
      );
      expect(ev.details).toMatchObject({ key: `resumed/${sid}/ch0.cast`, bytes: cast.length, sha256: sha256(Buffer.from(cast)) });
      expect((await s3.get(`resumed/${sid}/ch0.cast`)).toString()).toBe(cast);
      expect(fs.existsSync(local)).toBe(false);
    } catch (e) {
      console.log(said.filter((l) => l.includes('recording')).slice(-20).join(''));
      throw e;
    } finally {
      await tg.stop();
      fs.rmSync(base, { recursive: true, force: true });
    }
  }, 90_000);

  it('a replica lost mid-recording: a gateway completes its upload from what reached S3 and records recording.stored (salvaged)', async () => {
    const sid = '01JLOSTREPLICARECORDING001';
    const base = tempDir('vigil-rec-s3-salvage-');
    const file = path.join(base, 'lost.cast');
    const cast = Buffer.from('{"version":2,"width":80,"height":24,"timestamp":1700000000,"env":{"TERM":"xterm"}}\n[0.1, "o", "typed on the lost replica\\r\\n"]\n');
    fs.writeFileSync(file, cast);
    // The lost replica: its uploader got the recording's bytes to S3 (a pending object, the manifest), then
    // the process and its disk were gone.
    const lost = new S3Recordings({ bucket: s3.bucket, prefix: 'salvaged/', endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }, partSize: PART, flushIntervalMs: 100, maxConcurrentRequests: 1, requestTimeoutMs: 5000, retry: { attempts: 3, baseDelayMs: 50, maxDelayMs: 100 }, keepLocal: false });
    lost.begin(`${sid}/ch0.cast`, file, sid, 0).written(cast.length);
    await waitFor(async () => {
      const keys = await s3.keys(`salvaged/${sid}/`);
      return keys.includes(`salvaged/${sid}/ch0.cast.upload`) && keys.some((k) => k.includes('.pending/')) ? true : undefined;
    }, 15_000, 'the lost upload in S3');
    await lost.close(0);
    fs.rmSync(file);
    await new Promise((r) => setTimeout(r, 2500)); // its manifest is now older than the gateway's salvage_after
    const salvagerConfig = path.join(base, 'vigil.json');
    const tg = await startTestGateway({ ssh: { enabled: false }, postgres: { enabled: false }, mysql: { enabled: false }, recording: { storage: { ...configStorage(), prefix: 'salvaged/', salvage_after: '1s' } } }, base, { configFile: salvagerConfig });
    try {
      const ev = await waitFor(
        async () => (await searchAuditLog(path.join(tg.dataDir, 'audit'), { type: 'recording.stored', session: sid })).records[0]?.event,
        30_000,
        'recording.stored in the audit log',
      );
      expect(ev.outcome).toBe('success');
      expect(ev.details).toMatchObject({ recording: `${sid}/ch0.cast`, key: `salvaged/${sid}/ch0.cast`, bytes: cast.length, sha256: sha256(cast), salvaged: true });
      expect((await s3.get(`salvaged/${sid}/ch0.cast`)).equals(cast)).toBe(true);
      expect(await s3.keys(`salvaged/${sid}/`)).toEqual([`salvaged/${sid}/ch0.cast`]);
      // And replayable through the gateway's configuration like any stored recording.
      const out = await runCliCaptured(['replay', sid, '--print', '--config', salvagerConfig]);
      expect(out.code, out.err).toBe(0);
      expect(out.out).toContain('typed on the lost replica');
    } finally {
      await tg.stop();
      fs.rmSync(base, { recursive: true, force: true });
    }
  }, 90_000);

  it('the credentials appear in no event, no audit log file and no gateway log line', async () => {
    // Errors happened above (S3 down): their messages and the log lines are among what is checked.
    expect(w.gw.events.some((e) => e.type === 'recording.upload_failed')).toBe(true);
    expect(logged.some((l) => l.includes('recording upload request failed'))).toBe(true);
    const secrets = [s3.accessKeyId, s3.secretAccessKey];
    // An error message that quotes a credential (some servers echo the key id) is cut before it goes anywhere.
    const remote = new S3Recordings({ bucket: 'b', prefix: '', region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }, partSize: PART, flushIntervalMs: 1000, maxConcurrentRequests: 1, requestTimeoutMs: 1000, retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 }, keepLocal: false });
    const said = remote.describe(Object.assign(new Error(`The key ${s3.accessKeyId} with secret ${s3.secretAccessKey} was refused`), { name: 'InvalidAccessKeyId' }));
    remote.client.destroy();
    expect(said).toEqual({ code: 'InvalidAccessKeyId', message: 'The key [redacted] with secret [redacted] was refused' });
    const auditDir = path.join(w.gw.dataDir, 'audit');
    const audit = fs.readdirSync(auditDir).filter((f) => f.endsWith('.jsonl')).map((f) => fs.readFileSync(path.join(auditDir, f), 'utf8')).join('');
    expect(audit).toContain('recording.stored');
    for (const secret of secrets) {
      expect(JSON.stringify(w.gw.events)).not.toContain(secret);
      expect(audit).not.toContain(secret);
      expect(logged.join('')).not.toContain(secret);
    }
  });
});
