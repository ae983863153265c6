import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * `kill -HUP` on `vigil serve`, the way operators reload: an invalid file is logged with the key that is
 * wrong and changes nothing; a valid one adds a target that stock ssh reaches at once.
 */

const run = promisify(execFile);
let sshd: SshdHandle;
let gp: GatewayProcess;
let base: string;
let doc: Record<string, any>;

beforeAll(async () => {
  sshd = await startSshd();
  base = tempDir('vigil-sighup-');
  gp = await startGatewayProcess(
    {
      targets: [{ name: 'web', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub }],
      roles: [{ name: 'ops', targets: ['web', 'later'], logins: ['*'] }],
    },
    base,
    { issue: { user: 'alice', roles: ['ops'] } },
  );
  doc = JSON.parse(fs.readFileSync(gp.configFile, 'utf8'));
  fs.writeFileSync(path.join(base, 'known_hosts'), `[127.0.0.1]:${gp.ports.ssh} ${gp.sshHostKey}\n`);
}, 120_000);

afterAll(async () => {
  await gp?.stop();
  await sshd?.stop();
});

function ssh(target: string, command: string) {
  const f = gp.issued!;
  return run('ssh', [
    '-F', '/dev/null', '-o', `Port=${gp.ports.ssh}`, '-o', `IdentityFile=${f.sshKey}`, '-o', `CertificateFile=${f.sshCert}`, '-o', 'IdentitiesOnly=yes',
    '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${path.join(base, 'known_hosts')}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes',
    `${target}@127.0.0.1`, command,
  ], { timeout: 30_000 });
}

describe('SIGHUP', () => {
  it('an invalid file is logged with its key and changes nothing; a valid one adds a target stock ssh reaches', async () => {
    await expect(ssh('later', 'echo x')).rejects.toThrow();

    const bad = structuredClone(doc);
    bad.targets.push({ ...bad.targets[0], name: 'later', port: 'twenty-two' });
    fs.writeFileSync(gp.configFile, JSON.stringify(bad));
    gp.child.kill('SIGHUP');
    const failed = await waitFor(() => gp.output().split('\n').find((l) => l.includes('config reload failed')), 15_000, 'reload failure logged');
    expect(JSON.parse(failed)).toMatchObject({ key: 'targets[1].port', via: 'signal' });
    expect((await ssh('web', 'echo still')).stdout).toContain('still');
    await expect(ssh('later', 'echo x')).rejects.toThrow();

    const good = structuredClone(doc);
    good.targets.push({ ...good.targets[0], name: 'later' });
    fs.writeFileSync(gp.configFile, JSON.stringify(good));
    gp.child.kill('SIGHUP');
    await waitFor(() => gp.output().includes('configuration reloaded'), 15_000, 'reload logged');
    expect((await ssh('later', 'echo via-later')).stdout).toContain('via-later');
    // The process is still the same one: nothing restarted.
    expect(gp.child.exitCode).toBeNull();
  });
});
