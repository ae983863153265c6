import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { searchAuditLog } from '../../recorder/audit/index.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { PASSWORDS, startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { startS3, type S3Server } from '../support/s3.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { spawnClient } from '../ssh/harness.ts';

/**
 * Two replicas on one PostgreSQL state store recording to one bucket of a real S3 server (s3rver): one is
 * `vigil serve` in its own process (so it can be killed like a lost machine), the other in this process.
 * A recording made on one replica replays through the other, from S3; and when the process is killed
 * mid-session, the other completes its upload from what reached S3 and records it (salvaged).
 */

let s3: S3Server;
let sshd: SshdHandle;
let storeDb: PostgresHandle;
let lost: GatewayProcess;
let survivor: TestGateway;
let alice: IssuedFiles;
let knownHosts: string;
const root = tempDir('vigil-replica-recordings-');
const survivorConfig = path.join(root, 'survivor.json');
const env = { store: `VIGIL_TEST_RECS_STORE_${process.pid}`, id: `VIGIL_TEST_RECS_S3_ID_${process.pid}`, secret: `VIGIL_TEST_RECS_S3_SECRET_${process.pid}` };

function config(): Record<string, unknown> {
  return {
    store: { kind: 'postgres', url: { env: env.store }, schema: 'recordings' },
    targets: [{ name: 'web', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub }],
    roles: [{ name: 'dev', targets: ['web'], logins: ['*'] }],
    recording: {
      storage: {
        kind: 's3', bucket: s3.bucket, prefix: 'rec/', endpoint: s3.endpoint, force_path_style: true,
        access_key_id: { env: env.id }, secret_access_key: { env: env.secret },
        part_size: '5MiB', flush_interval: '300ms', request_timeout: '5s', salvage_after: '2s',
        retry: { attempts: 2, base_delay: '100ms', max_delay: '400ms' },
      },
    },
  };
}

beforeAll(async () => {
  [s3, sshd, storeDb] = await Promise.all([startS3(), startSshd(), startPostgres()]);
  process.env[env.store] = `postgres://scram_user:${PASSWORDS.scram_user}@127.0.0.1:${storeDb.port}/app?sslmode=disable`;
  process.env[env.id] = s3.accessKeyId;
  process.env[env.secret] = s3.secretAccessKey;
  // The process replica makes the CA (and alice's credentials); the other gets a copy, as replicas share it.
  const lostBase = path.join(root, 'lost');
  lost = await startGatewayProcess(config(), lostBase, { issue: { user: 'alice', roles: ['dev'] } });
  alice = lost.issued!;
  const survivorBase = path.join(root, 'survivor');
  fs.mkdirSync(path.join(survivorBase, 'data'), { recursive: true, mode: 0o700 });
  fs.cpSync(path.join(lostBase, 'data', 'ca'), path.join(survivorBase, 'data', 'ca'), { recursive: true });
  survivor = await startTestGateway(config(), survivorBase, { configFile: survivorConfig });
  knownHosts = path.join(root, 'known_hosts');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${lost.ports.ssh} ${lost.sshHostKey}\n`);
}, 120_000);

afterAll(async () => {
  await lost?.kill();
  await survivor?.stop();
  await Promise.all([s3?.close(), sshd?.stop(), storeDb?.stop()]);
  for (const k of Object.values(env)) delete process.env[k];
  fs.rmSync(root, { recursive: true, force: true });
});

/** `ssh … web@gateway command` through the process replica, with alice's certificate. */
function sshOnLost(command: string) {
  const opts = [`Port=${lost.ports.ssh}`, `IdentityFile=${alice.sshKey}`, `CertificateFile=${alice.sshCert}`, 'IdentitiesOnly=yes', 'BatchMode=yes', `UserKnownHostsFile=${knownHosts}`, 'GlobalKnownHostsFile=/dev/null', 'StrictHostKeyChecking=yes'];
  return spawnClient('ssh', ['-F', '/dev/null', ...opts.flatMap((o) => ['-o', o]), 'web@127.0.0.1', command]);
}

/** Events the process replica wrote to its own audit log. */
async function lostLog(): Promise<AuditEvent[]> {
  return (await searchAuditLog(path.join(root, 'lost', 'data', 'audit'))).records.map((r) => r.event);
}

const sessionWith = (marker: string) =>
  waitFor(async () => (await lostLog()).find((e) => (e.type === 'ssh.exec' || e.type === 'ssh.exec.start') && String(e.details.command).includes(marker))?.session_id, 20_000, `the ssh.exec of ${marker}`);

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

describe('recordings of replicas on one store, in one bucket', () => {
  it('a recording made on one replica is stored in S3 and replays through the other', async () => {
    const run = sshOnLost('echo made-on-the-first-$((20+22))');
    expect(await run.exited, run.stderr()).toBe(0);
    expect(run.stdout()).toContain('made-on-the-first-42');
    const sid = await sessionWith('made-on-the-first');
    const stored = await waitFor(async () => (await lostLog()).find((e) => e.type === 'recording.stored' && e.session_id === sid), 30_000, 'recording.stored');
    expect(stored.details.salvaged).toBeUndefined();
    const replay = await runCliCaptured(['replay', sid!, '--print', '--config', survivorConfig]);
    expect(replay.code, replay.err).toBe(0);
    expect(replay.out).toContain('made-on-the-first-42');
  }, 60_000);

  it('a replica killed mid-session: the other completes its recording from S3 (recording.stored, salvaged) and it replays', async () => {
    const run = sshOnLost('echo before-the-kill-$((6*7)); sleep 60');
    await waitFor(() => run.stdout().includes('before-the-kill-42'), 20_000, 'the output before the kill');
    const sid = await sessionWith('before-the-kill');
    const key = `rec/${sid}/ch0.cast`;
    // The output has reached S3 (a pending object, every flush_interval), with the upload's manifest.
    await waitFor(
      async () => {
        const keys = await s3.keys(`rec/${sid}/`);
        if (!keys.includes(`${key}.upload`)) return undefined;
        for (const k of keys.filter((k) => k.includes('.pending/'))) if ((await s3.get(k)).toString().includes('before-the-kill-42')) return true;
        return undefined;
      },
      20_000,
      'the output in a pending object',
    );
    expect(await lost.kill('SIGKILL')).toBe('SIGKILL');
    const killedAt = Date.now();
    expect(await run.exited).not.toBe(0);

    const ev = await survivor.waitForEvent((e) => e.type === 'recording.stored' && e.session_id === sid, 30_000);
    console.log(`killed → recording.stored (salvaged) by the other replica: ${Date.parse(ev.time) - killedAt} ms (salvage_after 2 s)`);
    const object = await s3.get(key);
    expect(object.toString()).toContain('before-the-kill-42');
    expect(ev.outcome).toBe('success');
    expect(ev.details).toMatchObject({ recording: `${sid}/ch0.cast`, key, bytes: object.length, sha256: sha256(object), salvaged: true });
    expect(await s3.keys(`rec/${sid}/`)).toEqual([key]);
    const replay = await runCliCaptured(['replay', sid!, '--print', '--config', survivorConfig]);
    expect(replay.code, replay.err).toBe(0);
    expect(replay.out).toContain('before-the-kill-42');
  }, 90_000);
});
