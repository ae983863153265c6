import { execFile, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../app/main.ts';
import { caDir, PREVIOUS_DIR } from '../../src/identity/ca.ts';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { startPostgres, clientEnv, type PostgresHandle } from '../support/postgres.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * `vigil ca rotate` without downtime: after the rotation (and a config reload of the running gateway), a
 * certificate from the old CA and one from the new CA both work with stock ssh and psql; new certificates
 * are signed by the new CA; once the old CA's trust window is over its certificates are refused.
 */

const run = promisify(execFile);
let sshd: SshdHandle;
let pg: PostgresHandle;
let tg: TestGateway;
let base: string;
let configFile: string;
let knownHosts: string;

beforeAll(async () => {
  [sshd, pg] = await Promise.all([startSshd(), startPostgres()]);
  base = tempDir('vigil-ca-rotate-');
  configFile = path.join(base, 'vigil.yaml');
  tg = await startTestGateway(
    {
      targets: [
        { name: 'web', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub },
        { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user' },
      ],
      roles: [{ name: 'ops', targets: ['web', 'pg'], logins: ['*'] }],
    },
    base,
    { configFile },
  );
  const key = ssh2.utils.parseKey(tg.gw.services.identity.sshHostKey());
  const hostKey = (Array.isArray(key) ? key[0] : key) as ssh2.ParsedKey;
  knownHosts = path.join(base, 'known_hosts');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${tg.ports.ssh} ${hostKey.type} ${hostKey.getPublicSSH().toString('base64')}\n`);
});

afterAll(async () => {
  await tg?.stop();
  await Promise.all([sshd?.stop(), pg?.stop()]);
});

const psql = (who: IssuedFiles, sql: string) =>
  run('psql', ['-X', '-qAt', '-d', `host=127.0.0.1 port=${tg.ports.postgres} dbname=pg user=${who.creds.user} sslmode=verify-full sslrootcert=${who.ca} sslcert=${who.crt} sslkey=${who.key}`, '-c', sql], { env: clientEnv(), timeout: 30_000 });

const ssh = (who: IssuedFiles, command: string) =>
  run('ssh', [
    '-F', '/dev/null', '-o', `Port=${tg.ports.ssh}`, '-o', `IdentityFile=${who.sshKey}`, '-o', `CertificateFile=${who.sshCert}`, '-o', 'IdentitiesOnly=yes',
    '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', 'web@127.0.0.1', command,
  ], { timeout: 30_000 });

/** `Signing CA: ED25519 SHA256:…` of an SSH certificate, as ssh-keygen prints it. */
const signingCa = (certFile: string) => /Signing CA: (.*?) \(using/.exec(execFileSync('ssh-keygen', ['-L', '-f', certFile], { encoding: 'utf8' }))![1];

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d) => (o += d));
  err.on('data', (d) => (e += d));
  const code = await runCli(argv, out, err);
  return { code, out: o, err: e };
}

describe('vigil ca rotate', () => {
  let before: IssuedFiles;
  let after: IssuedFiles;

  it('old and new certificates both work with ssh and psql after the rotation; new ones are signed by the new CA', async () => {
    before = await tg.issue({ user: 'alice', roles: ['ops'] });
    expect((await ssh(before, 'echo old-before')).stdout).toContain('old-before');

    const r = await cli(['ca', 'rotate', '--config', configFile, '--by', 'root', '--json']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const rotated = JSON.parse(r.out);
    expect(rotated.current.sshUserCa).not.toBe(rotated.previous.sshUserCa);
    expect(rotated.current.x509Serial).not.toBe(rotated.previous.x509Serial);
    // Trusted until the old certificate's end at least (here: max_ttl ahead, which is later).
    expect(Date.parse(rotated.old_trusted_until)).toBeGreaterThanOrEqual(before.creds.notAfter.getTime());
    // The old private keys are gone; the public halves are kept with the trust window.
    const kept = fs.readdirSync(path.join(caDir(tg.dataDir), PREVIOUS_DIR, rotated.generation)).sort();
    expect(kept).toEqual(['ca.crt', 'meta.json', 'user_ca.pub']);

    const reload = await tg.gw.reload({ via: 'test' });
    expect(reload.ok).toBe(true);
    after = await tg.issue({ user: 'alice', roles: ['ops'] });
    expect(signingCa(after.sshCert)).not.toBe(signingCa(before.sshCert));
    const newCrt = new crypto.X509Certificate(fs.readFileSync(after.crt));
    expect(newCrt.issuer).toContain(`vigil CA ${rotated.generation}`);
    // The new ca.crt holds both CAs, so it verifies the gateway now and after the old CA retires.
    expect(fs.readFileSync(after.ca, 'utf8').match(/BEGIN CERTIFICATE/g)).toHaveLength(2);

    for (const [who, tag] of [[before, 'old'], [after, 'new']] as const) {
      expect((await ssh(who, `echo ${tag}-ssh`)).stdout).toContain(`${tag}-ssh`);
      expect((await psql(who, `SELECT '${tag}-psql'`)).stdout.trim()).toBe(`${tag}-psql`);
    }
    // A certificate from the old CA still works for a client that only ever had the old ca.crt.
    expect(fs.readFileSync(before.ca, 'utf8').match(/BEGIN CERTIFICATE/g)).toHaveLength(1);

    const ev = await tg.waitForEvent((e) => e.type === 'ca.rotated', 15_000);
    expect(ev.actor.user).toBe('root');
    expect(ev.details).toMatchObject({ generation: rotated.generation, old_trusted_until: rotated.old_trusted_until });
  });

  it('once the old CA retires its certificates are refused and the new ones keep working', async () => {
    const gens = fs.readdirSync(path.join(caDir(tg.dataDir), PREVIOUS_DIR));
    for (const g of gens) {
      const meta = path.join(caDir(tg.dataDir), PREVIOUS_DIR, g, 'meta.json');
      fs.writeFileSync(meta, JSON.stringify({ ...JSON.parse(fs.readFileSync(meta, 'utf8')), retire_after: new Date(Date.now() - 1000).toISOString() }));
    }
    expect((await tg.gw.reload({ via: 'test' })).ok).toBe(true);
    await expect(ssh(before, 'echo x')).rejects.toThrow();
    await expect(psql(before, 'SELECT 1')).rejects.toThrow();
    await tg.waitForEvent((e) => e.type === 'auth.failure' && e.details.reason === 'wrong_ca' && e.target.protocol === 'postgres', 15_000);
    expect((await ssh(after, 'echo still-new')).stdout).toContain('still-new');
    expect((await psql(after, "SELECT 'still-new'")).stdout.trim()).toBe('still-new');
  });
});
