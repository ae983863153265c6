import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCaKeys } from '../../src/identity/ca.ts';
import { certAlgoFor, formatCertificateLine, option } from '../../src/identity/openssh-cert.ts';
import { encodeOpenSshPrivateKey } from '../../src/identity/openssh-privkey.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { tempDir } from '../support/tmp.ts';
import { clientAuth, makeUserCert } from './helpers.ts';

/**
 * An empty `force-command` critical option is malformed: further on, '' reads as "no forced command" and
 * the client would run what it likes under a certificate meant to restrict it. ssh-keygen refuses to
 * write one; anyone holding the CA key (or a buggy issuer) still can, so the verifier refuses it.
 */
const run = promisify(execFile);
let sshd: SshdHandle;
let tg: TestGateway;
let base: string;
let knownHosts: string;

beforeAll(async () => {
  sshd = await startSshd();
  base = tempDir('vigil-force-command-');
  tg = await startTestGateway(
    {
      mysql: { enabled: false },
      targets: [{ name: 'web', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub }],
      roles: [{ name: 'ops', targets: ['web'], logins: ['*'] }],
    },
    base,
  );
  const key = ssh2.utils.parseKey(tg.gw.services.identity.sshHostKey());
  const hostKey = (Array.isArray(key) ? key[0] : key) as ssh2.ParsedKey;
  knownHosts = path.join(base, 'known_hosts');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${tg.ports.ssh} ${hostKey.type} ${hostKey.getPublicSSH().toString('base64')}\n`);
}, 120_000);

afterAll(async () => {
  await tg?.stop();
  await sshd?.stop();
});

/** A certificate for `user` (role ops) signed by the gateway's own user CA with `forceCommand`, written for stock ssh. */
async function certWithForceCommand(user: string, forceCommand: string, serial: bigint) {
  const ca = (await loadCaKeys(tg.dataDir)).userCa;
  const userKey = crypto.generateKeyPairSync('ed25519').privateKey;
  const blob = makeUserCert(ca, userKey, {
    principals: [user],
    serial,
    keyId: `test:${user}`,
    criticalOptions: [option('force-command', forceCommand)],
    extensions: [option('permit-pty'), option('roles@vigil', 'ops')],
  });
  const dir = path.join(base, user);
  fs.mkdirSync(dir, { mode: 0o700 });
  fs.writeFileSync(path.join(dir, 'id'), encodeOpenSshPrivateKey(userKey, user), { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'id-cert.pub'), formatCertificateLine(blob, certAlgoFor('ssh-ed25519'), user) + '\n');
  return { dir, blob, userKey };
}

const ssh = (dir: string, command: string) =>
  run('ssh', [
    '-F', '/dev/null', '-o', `Port=${tg.ports.ssh}`, '-o', `IdentityFile=${path.join(dir, 'id')}`, '-o', `CertificateFile=${path.join(dir, 'id-cert.pub')}`, '-o', 'IdentitiesOnly=yes',
    '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', 'web@127.0.0.1', command,
  ], { timeout: 30_000 }).then((r) => ({ code: 0, ...r }), (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }));

describe('force-command', () => {
  it('a certificate with an empty force-command is refused (malformed) and recorded; nothing runs', async () => {
    const { dir, blob, userKey } = await certWithForceCommand('emptyfc', '', 0xe0e0n);
    const r = await ssh(dir, 'echo client-chose-$((6*7))');
    expect(r.code).not.toBe(0);
    expect(r.stdout).not.toContain('client-chose-42');
    const ev = await tg.waitForEvent((e) => e.type === 'auth.failure' && e.actor.user === 'emptyfc');
    expect(ev.details.reason).toBe('malformed');
    expect(tg.events.filter((e) => e.type === 'session.start' && e.actor.user === 'emptyfc')).toEqual([]);
    // The verifier's own answer, for the record.
    expect(tg.gw.services.identity.verifySshAuth(clientAuth(blob, userKey))).toMatchObject({ ok: false, reason: 'malformed', detail: 'force-command is empty' });
  });

  it('a non-empty force-command is honoured: the forced command runs, not the one asked for', async () => {
    const { dir } = await certWithForceCommand('fc', 'echo forced-ran', 0xf0f0n);
    const r = await ssh(dir, 'echo client-chose');
    expect(r.stderr).not.toMatch(/denied/i);
    expect(r.stdout).toContain('forced-ran');
    expect(r.stdout).not.toContain('client-chose');
  });
});
