import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, spawnClient, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { waitFor } from '../support/tmp.ts';
import { pidsOf, sessionAncestors } from './oracle-support.ts';

/** This run's remote command, told apart from any an earlier run left on the machine. */
const SLEEP = `sleep 3593.${String(Math.floor(Math.random() * 1e6)).padStart(6, '0')}`;

type Client = ReturnType<typeof spawnClient>;

/** The per-connection sshd processes (not the listener) serving the connection that runs `pid`. */
function connectionSshds(pid: number): number[] {
  return sessionAncestors(pid).filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim().startsWith('sshd');
    } catch {
      return false;
    }
  });
}

function signal(pids: number[], sig: NodeJS.Signals): void {
  for (const p of pids) {
    try {
      process.kill(p, sig);
    } catch {
      /* gone */
    }
  }
}

/**
 * No hangs: a target that stops answering without closing anything (a stopped sshd, a paused VM, a
 * partition) ends the session through vigil's own keepalives (ssh.backend_keepalive), since vigil answers
 * the client's keepalives itself and the client cannot notice.
 */
describe('a silently dead target (ssh.backend_keepalive)', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  const clients: Client[] = [];
  const stopped: number[] = [];
  beforeAll(async () => {
    w = await startWorld({ config: { ssh: { listen: '127.0.0.1:0', backend_keepalive: { interval: '1s', count: 2 } } } });
    alice = await w.issue();
  }, 30_000);
  afterEach(() => {
    signal(stopped.splice(0), 'SIGCONT');
    for (const c of clients.splice(0)) c.child.kill('SIGKILL');
    for (const p of pidsOf(SLEEP)) signal([p], 'SIGKILL');
  });
  afterAll(async () => {
    await w?.stop();
  });

  it('a stopped per-connection sshd under a running command: the client exits and session.end says backend_error', async () => {
    // The client's own keepalives are answered by vigil: they must not be what ends it.
    const c = spawnClient('ssh', [...w.opts(alice, ['-o', 'ServerAliveInterval=1', '-o', 'ServerAliveCountMax=2']), `${w.sshd.user}@web1@127.0.0.1`, `echo started; ${SLEEP}`]);
    clients.push(c);
    await waitFor(() => c.stdout().includes('started'), 10_000, 'the command to start');
    const start = w.eventsOf('session.start').at(-1)!;
    // bash prints "started" before it runs sleep: wait for the process itself.
    const sleep = await waitFor(() => pidsOf(SLEEP)[0], 10_000, 'the sleep process');
    const sshds = connectionSshds(sleep!);
    expect(sshds.length).toBeGreaterThan(0);
    stopped.push(...sshds);
    signal(sshds, 'SIGSTOP');
    const t0 = Date.now();

    const guard = new Promise<'hang'>((r) => setTimeout(() => r('hang'), 15_000).unref());
    const code = await Promise.race([c.exited, guard]);
    expect(code === 'hang' ? 'the ssh client still running 15 s after the target stopped' : 'exited').toBe('exited');
    expect(code).toBe(255);
    expect(c.stderr()).toContain('vigil:');
    expect(c.stderr()).toContain('web1 stopped answering');

    const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === start.session_id, 15_000 - (Date.now() - t0));
    expect(end.details).toMatchObject({ reason: 'backend_error' });
    expect(String(end.details.backend_error)).toContain('keepalive');
  }, 40_000);
});
