import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { describe, it, expect } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { verifyAuditLog, searchAuditLog, openAuditLog } from '../../recorder/audit/index.ts';
import { makeSigningKey, auditOptions } from './helpers.ts';
import { waitFor } from '../support/tmp.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const WRITER = path.join(import.meta.dirname, 'fixtures/crash-review-writer.ts');
// A pid namespace per run (as a container restart gives): pids start at 1 again, so a pid the killed
// writer held is handed to another process of the next run.
const canUnshare = spawnSync('unshare', ['-pfm', '--mount-proc', 'true']).status === 0;
const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** Run `script` as pid 1 of a fresh pid namespace (with its own /proc); resolves with its output. */
function inPidNamespace(script: string): Promise<{ out: string; err: string; code: number | null }> {
  const child = spawn('unshare', ['-pfm', '--mount-proc', 'sh', '-c', script], { cwd: ROOT, env: { ...process.env, KILL_SELF_AFTER_MS: '40' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ out, err, code })));
}

describe('audit writer lock held by a live writer process', () => {
  it('refuses a second writer, and takes over once the holder is killed', async () => {
    const base = tempDir();
    const key = makeSigningKey(path.join(base, 'ca'));
    const dir = path.join(base, 'audit');
    const child = spawn(process.execPath, ['--import', 'tsx', WRITER, dir, key.keyFile, 'live'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const exited = new Promise((resolve) => child.on('exit', resolve));
    try {
      await waitFor(() => out.includes('ready'), 30_000, 'writer ready');
      // The owner record matches the live holder: it is never taken for a stale lock.
      await expect(openAuditLog(dir, auditOptions(key.keyFile))).rejects.toMatchObject({ code: 'VIGIL_AUDIT_LOCKED' });
      expect(JSON.parse(fs.readFileSync(path.join(dir, 'writer.lock.owner'), 'utf8'))).toMatchObject({ pid: child.pid });
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    const w = await openAuditLog(dir, auditOptions(key.keyFile));
    await w.close();
    expect(fs.existsSync(path.join(dir, 'writer.lock'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'writer.lock.owner'))).toBe(false);
  }, 60_000);
});

describe.skipIf(!canUnshare)('audit writer lock left by a killed writer whose pid now belongs to another process', () => {
  it('is taken over at the restart (the process behind the pid is not the one that took the lock)', async () => {
    const base = tempDir();
    const key = makeSigningKey(path.join(base, 'ca'));
    const dir = path.join(base, 'audit');
    const writer = `${q(process.execPath)} --import tsx ${q(WRITER)} ${q(dir)} ${q(key.keyFile)}`;

    // First run: the writer opens the log, appends, and is killed with -9 (its lock stays behind).
    const first = await inPidNamespace(`${writer} first; true`);
    expect(first.out, first.err).toMatch(/^ready 0 \d+$/m);
    const lockPid = Number(fs.readFileSync(path.join(dir, 'writer.lock'), 'utf8').trim());
    expect(first.out).toContain(`ready 0 ${lockPid}\n`);

    // Second run in a new namespace: a few long-lived processes start first (a sidecar, a supervisor)
    // and take the low pids, the killed writer's among them.
    const second = await inPidNamespace(`for i in 1 2 3 4 5 6; do sleep 60 & echo "sleeper $!"; done; ${writer} second; kill $(jobs -p) 2>/dev/null; true`);
    const sleepers = [...second.out.matchAll(/^sleeper (\d+)$/gm)].map((m) => Number(m[1]));
    expect(sleepers, 'the dead writer\'s pid must be held by another process for this test to mean anything').toContain(lockPid);
    expect(second.err).not.toMatch(/VIGIL_AUDIT_LOCKED|held by a running process/);
    expect(second.out, second.err).toMatch(/^ready \d+ \d+$/m);

    // The restarted writer recovered the log: sessions the first run had started (acknowledged) ended once.
    const started = [...first.out.matchAll(/^ack \d+ \S+ session\.start (\S+)$/gm)].map((m) => m[1]);
    const { records } = await searchAuditLog(dir, { type: 'session.end' });
    for (const id of started) expect(records.filter((r) => r.event.session_id === id), id).toHaveLength(1);
    const before = verifyAuditLog(dir, key.publicPem);
    if (!before.ok) expect(before.status).toBe('unsealed-tail');
  }, 60_000);
});
