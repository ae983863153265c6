import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, spawnClient, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { segmentName } from '../../recorder/audit/record.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { init, mkdir, rawSftp } from './raw-sftp.ts';
import { killRemote, killTargetConnectionOf, pidsOf } from './oracle-support.ts';
import { holdDurability } from '../support/durability.ts';

const indexOf = (w: SshWorld, e: AuditEvent) => w.gw.events.indexOf(e);

/**
 * A command is on record from the moment the target is asked to run it (ssh.exec.start), and its end is
 * on record however the session ends: with the target's exit status, or `unknown` (with bytes, duration
 * and why) when the client, the target or vigil ended the session first — always before session.end.
 */
describe('ssh exec: recorded when asked, in-flight never lost', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    killRemote(['echo started; sleep 3600; rm -rf /nonexistent/vigil-data', 'echo started; sleep 3599']);
    await w?.stop();
  });
  const dest = () => `${w.sshd.user}@web1@127.0.0.1`;

  async function startLong(command: string) {
    const c = spawnClient('ssh', [...w.opts(alice), dest(), command]);
    const start = await w.gw.waitForEvent((e) => e.type === 'ssh.exec.start' && e.details.command === command);
    await waitFor(() => c.stdout().includes('started'), 10_000, 'the command to start');
    // Still running, and already on record.
    expect(w.eventsOf('ssh.exec', (e) => e.details.command === command)).toHaveLength(0);
    return { c, start };
  }

  it('ssh.exec.start is written before the command runs, ssh.exec with the exit status after', async () => {
    const command = 'echo hi; exit 3';
    const r = await w.run('ssh', [...w.opts(alice), dest(), command]);
    expect(r.code).toBe(3);
    const start = await w.gw.waitForEvent((e) => e.type === 'ssh.exec.start' && e.details.command === command);
    const end = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === command);
    expect(indexOf(w, start)).toBeLessThan(indexOf(w, end));
    expect(start.session_id).toBe(end.session_id);
    expect(end).toMatchObject({ outcome: 'failure', details: { exit_status: 3, bytes_to_client: 3 } });
    expect(end.details.end_reason).toBeUndefined();
  });

  it('client killed mid-command: ssh.exec outcome unknown with bytes, duration and end_reason, before session.end', async () => {
    const command = 'echo started; sleep 3600; rm -rf /nonexistent/vigil-data';
    const { c, start } = await startLong(command);
    c.child.kill('SIGKILL');
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === command);
    const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === start.session_id);
    expect(exec.outcome).toBe('unknown');
    expect(exec.details).toMatchObject({ end_reason: 'client_closed', bytes_to_client: 8 });
    expect(exec.details.exit_status).toBeUndefined();
    expect(typeof exec.details.duration_ms).toBe('number');
    expect(indexOf(w, exec)).toBeLessThan(indexOf(w, end));
  });

  it('session revoked mid-command: unknown, end_reason revoked, the client hears why', async () => {
    const command = 'echo started; sleep 3599';
    const { c, start } = await startLong(command);
    w.gw.gw.services.sessions.terminateWhere((s) => s.id === start.session_id, 'revoked', 'access revoked by the operator.');
    const code = await c.exited;
    expect(code).not.toBe(0);
    expect(c.stderr()).toContain('access revoked');
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === command);
    const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === start.session_id);
    expect(exec).toMatchObject({ outcome: 'unknown', details: { end_reason: 'revoked' } });
    expect(indexOf(w, exec)).toBeLessThan(indexOf(w, end));
  });

  it('the target dies mid-command: unknown, end_reason backend_closed', async () => {
    // Its own sleep, told apart from any an earlier run left on the machine.
    const sleepLine = `sleep 3598.${String(Math.floor(Math.random() * 1e6)).padStart(6, '0')}`;
    const command = `echo started; ${sleepLine}`;
    const { c, start } = await startLong(command);
    const sleeper = await waitFor(() => pidsOf(sleepLine)[0], 5_000, 'the sleep process');
    // Kill the target's whole per-connection sshd (not the listener).
    killTargetConnectionOf(sleeper);
    const code = await c.exited;
    expect(code).not.toBe(0);
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === command);
    const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === start.session_id);
    expect(exec.outcome).toBe('unknown');
    expect(['backend_closed', 'backend_error']).toContain(exec.details.end_reason);
    expect(indexOf(w, exec)).toBeLessThan(indexOf(w, end));
  });
});

describe('ssh exec at gateway shutdown', () => {
  it('a running command is recorded unknown with end_reason shutdown before session.end', async () => {
    const w = await startWorld({ config: { gateway: { connect_timeout: '3s', auth_timeout: '5s', shutdown_drain: '1s' } } });
    try {
      const alice = await w.issue();
      const command = 'echo started; sleep 3597';
      const c = spawnClient('ssh', [...w.opts(alice), `${w.sshd.user}@web1@127.0.0.1`, command]);
      const start = await w.gw.waitForEvent((e) => e.type === 'ssh.exec.start' && e.details.command === command);
      await waitFor(() => c.stdout().includes('started'), 10_000, 'the command to start');
      await w.gw.stop();
      expect(await c.exited).not.toBe(0);
      const exec = w.eventsOf('ssh.exec', (e) => e.details.command === command);
      const end = w.eventsOf('session.end', (e) => e.session_id === start.session_id);
      expect(exec).toHaveLength(1);
      expect(exec[0]).toMatchObject({ outcome: 'unknown', details: { end_reason: 'shutdown' } });
      expect(end).toHaveLength(1);
      expect(indexOf(w, exec[0])).toBeLessThan(indexOf(w, end[0]));
    } finally {
      killRemote(['echo started; sleep 3597']);
      await w.sshd.stop();
    }
  }, 30_000);
});

/**
 * Fail closed (#14): an exec on an already-open connection is not forwarded while the audit log cannot
 * take its record; in strict mode it is forwarded only once ssh.exec.start is durable.
 */
describe('ssh exec fails closed on an open connection when the audit log is unavailable', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dir: string;
  const masters: Array<ReturnType<typeof spawnClient>> = [];
  beforeAll(async () => {
    w = await startWorld({ config: { audit: { segment_max_bytes: 4096, durability: 'strict' } } });
    alice = await w.issue();
    dir = tempDir('vigil-ssh-failclosed-');
    fs.chmodSync(dir, 0o777);
  }, 30_000);
  afterAll(async () => {
    for (const m of masters) m.child.kill('SIGKILL');
    await w?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const dest = () => `${w.sshd.user}@web1@127.0.0.1`;

  /** An idle ControlMaster connection; commands through `mux` become new channels on it. */
  async function master(name: string) {
    const sock = path.join(dir, `${name}.sock`);
    const m = spawnClient('ssh', [...w.opts(alice, ['-o', 'ControlMaster=yes', '-o', `ControlPath=${sock}`, '-N']), dest()]);
    masters.push(m);
    await waitFor(() => fs.existsSync(sock), 10_000, 'the control socket');
    return (command: string) => w.run('ssh', [...w.opts(alice, ['-o', 'ControlMaster=no', '-o', `ControlPath=${sock}`]), dest(), command]);
  }

  it('strict: the command is forwarded only after ssh.exec.start is durable; a rejected record means it never runs', async () => {
    const mux = await master('strict');
    expect((await mux('echo warm')).stdout).toBe('warm\n');
    const events = w.gw.gw.services.events;
    // Hold the durable record back: the command must wait for it.
    const { release, real } = holdDurability(events);
    const marker = path.join(dir, 'held');
    const running = mux(`touch ${marker}; echo ran`);
    await w.gw.waitForEvent((e) => e.type === 'ssh.exec.start' && e.details.command === `touch ${marker}; echo ran`);
    await new Promise((r) => setTimeout(r, 500));
    expect(fs.existsSync(marker)).toBe(false);
    release();
    expect((await running).stdout).toBe('ran\n');
    expect(fs.existsSync(marker)).toBe(true);

    // A record that cannot be made durable: refused, not run, session ended audit_unavailable.
    events.beforeForward = () => Promise.reject(new Error('ENOSPC: no space left on device'));
    const refusedMarker = path.join(dir, 'refused');
    const r = await mux(`touch ${refusedMarker}`);
    events.beforeForward = real;
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('vigil: audit log unavailable, command not run');
    expect(fs.existsSync(refusedMarker)).toBe(false);
    const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.details.reason === 'audit_unavailable');
    expect(end.actor.user).toBe('alice');
  });

  it('an idle connection whose next exec meets an unwritable log (/dev/full): not run, message, non-zero exit; an open sftp channel forwards nothing more', async () => {
    const mux = await master('devfull');
    expect((await mux('echo warm')).stdout).toBe('warm\n');
    // An sftp channel open (and used) before the log fails, on its own connection.
    const sftp = rawSftp([...w.opts(alice), '-s', dest(), 'sftp']);
    sftp.send(init());
    await sftp.replies(1);
    sftp.send(mkdir(1, path.join(dir, 'sftp-before')));
    await sftp.replies(2);
    expect(fs.existsSync(path.join(dir, 'sftp-before'))).toBe(true);
    // Every segment the writer could rotate to next is a link to a full device.
    const auditDir = path.join(w.gw.dataDir, 'audit');
    for (let seq = 2; seq < 2000; seq++) {
      const p = path.join(auditDir, segmentName(seq, new Date()));
      if (!fs.existsSync(p)) fs.symlinkSync('/dev/full', p);
    }
    // Other sessions write until the writer has to rotate onto the full device; the master stays idle.
    await waitFor(async () => {
      await w.run('ssh', [...w.opts(alice), dest(), `echo ${'x'.repeat(1500)}`]).catch(() => undefined);
      return !w.gw.gw.services.events.healthy;
    }, 30_000, 'the audit log to fail');
    const marker = path.join(dir, 'devfull-marker');
    const r = await mux(`touch ${marker}`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('vigil: audit log unavailable, command not run');
    expect(fs.existsSync(marker)).toBe(false);

    sftp.send(mkdir(2, path.join(dir, 'sftp-after')));
    expect(await sftp.exited).not.toBe(0);
    expect(sftp.stderr()).toContain('vigil: audit log unavailable, nothing more is forwarded');
    expect(fs.existsSync(path.join(dir, 'sftp-after'))).toBe(false);
  });
});
