import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { waitFor } from '../support/tmp.ts';

const run = promisify(execFile);

describe('test/support/sshd harness', () => {
  let sshd: SshdHandle;
  beforeAll(async () => {
    sshd = await startSshd();
  });
  afterAll(() => sshd?.stop());

  it('accepts the generated client key with the pinned host key and runs a command', async () => {
    const { stdout } = await run('ssh', [...sshd.sshArgs(), sshd.destination, 'echo hello; id -un']);
    expect(stdout).toBe(`hello\n${sshd.user}\n`);
    expect(sshd.logs().some((l) => l.includes('Accepted publickey'))).toBe(true);
  });

  it('serves the sftp subsystem', async () => {
    const child = run('sftp', ['-b', '-', ...sshd.sshArgs(), sshd.destination]);
    child.child.stdin!.end('pwd\n');
    const { stdout } = await child;
    expect(stdout).toMatch(/Remote working directory: \//);
  });

  it('stop() also ends live sessions (exec and pty)', async () => {
    const other = await startSshd();
    const exec = spawn('ssh', [...other.sshArgs(), other.destination, 'sleep 30'], { stdio: 'ignore' });
    const pty = spawn('ssh', [...other.sshArgs(['-tt']), other.destination, 'sleep 30'], { stdio: ['pipe', 'ignore', 'ignore'] });
    await waitFor(() => other.logs().filter((l) => l.includes('Accepted publickey')).length === 2, 10_000, 'two logins');
    const t0 = Date.now();
    await other.stop();
    await Promise.all([exec, pty].map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))));
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('stop() ends sshd and is idempotent', async () => {
    const other = await startSshd();
    await other.stop();
    await other.stop();
    await expect(run('ssh', [...other.sshArgs(['-o', 'ConnectTimeout=2']), other.destination, 'true'])).rejects.toThrow();
  });
});
