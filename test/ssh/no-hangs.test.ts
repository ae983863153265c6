import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, spawnClient, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { killTargetConnectionOf, pidsOf } from './oracle-support.ts';

type Client = ReturnType<typeof spawnClient>;

/**
 * The remote commands of this run are told apart from any left on the machine by an earlier run (a test
 * that failed leaves its sleep behind: picking that one up by its command line killed the wrong
 * connection, which made the next run fail the same way).
 */
const RUN = String(Math.floor(Math.random() * 1e6)).padStart(6, '0');
const SLEEPS = [`sleep 3596.${RUN}`, `sleep 3595.${RUN}`, ...[0, 1, 2].map((i) => `sleep ${3590 + i}.${RUN}`)];

/** Hang guard: every client process must have exited within 10 s of the failure (a hang is forever). */
async function allExitPromptly(clients: Client[]): Promise<Array<number | null>> {
  const guard = new Promise<'hang'>((r) => setTimeout(() => r('hang'), 10_000).unref());
  const codes = await Promise.race([Promise.all(clients.map((c) => c.exited)), guard]);
  const stuck = clients.filter((c) => c.child.exitCode === null && c.child.signalCode === null).length;
  expect(codes === 'hang' ? `${stuck} of ${clients.length} ssh clients still running 10 s after the failure` : 'all exited').toBe('all exited');
  return codes as Array<number | null>;
}

/**
 * No hangs: whatever happens to the target, every client connection relayed to it is closed promptly
 * (exit status and message on the channels that were open), never left waiting.
 */
describe('no hangs when the target fails', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dir: string;
  const clients: Client[] = [];
  beforeAll(async () => {
    // 20 and 30 channels multiplexed on one connection (ssh.max_sessions is 10 by default; the test sshd allows 100).
    w = await startWorld({ config: { ssh: { listen: '127.0.0.1:0', max_sessions: 64 } } });
    alice = await w.issue();
    dir = tempDir('vigil-nohang-');
  }, 30_000);
  afterEach(() => {
    for (const c of clients.splice(0)) c.child.kill('SIGKILL');
  });
  afterAll(async () => {
    await w?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    // Remote commands whose sshd was killed outlive it (orphans): none is left for a later run.
    for (const line of SLEEPS) for (const p of pidsOf(line)) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
  });
  const dest = () => `${w.sshd.user}@web1@127.0.0.1`;
  const start = (args: string[]) => {
    const c = spawnClient('ssh', args);
    clients.push(c);
    return c;
  };

  it('the target connection reset under a running command', async () => {
    const c = start([...w.opts(alice), dest(), `echo started; ${SLEEPS[0]}`]);
    await waitFor(() => c.stdout().includes('started'), 10_000, 'the command to start');
    // bash prints "started" before it runs sleep: on a loaded machine the sleep may not exist yet, and
    // killing the connection of no process killed nothing (the client then waited for ever: a test bug).
    const sleeper = await waitFor(() => pidsOf(SLEEPS[0])[0], 10_000, 'the sleep process');
    killTargetConnectionOf(sleeper);
    const [code] = await allExitPromptly([c]);
    expect(code).toBe(255);
    expect(c.stderr()).toContain('vigil:');
  });

  it('an EOF storm: 20 multiplexed channels whose commands close their output, then the target connection dies', async () => {
    const sock = path.join(dir, 'storm.sock');
    const master = start([...w.opts(alice, ['-o', 'ControlMaster=yes', '-o', `ControlPath=${sock}`, '-N']), dest()]);
    await waitFor(() => fs.existsSync(sock), 10_000, 'the control socket');
    const mux = Array.from({ length: 20 }, () => start([...w.opts(alice, ['-o', 'ControlMaster=no', '-o', `ControlPath=${sock}`]), dest(), `exec >&- 2>&- </dev/null; ${SLEEPS[1]}`]));
    await waitFor(() => pidsOf(SLEEPS[1]).length === 20, 15_000, '20 remote commands');
    const pids = pidsOf(SLEEPS[1]);
    killTargetConnectionOf(pids[0]);
    const codes = await allExitPromptly([master, ...mux]);
    expect(codes.slice(1).every((c) => c !== 0)).toBe(true);
    for (const p of pids) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
    await waitFor(() => w.gw.gw.services.sessions.size === 0, 5_000, 'the session to end');
  });

  it('an EOF storm from the client side: 30 channels opened and EOF-ed at once all complete', async () => {
    const sock = path.join(dir, 'eof.sock');
    const master = start([...w.opts(alice, ['-o', 'ControlMaster=yes', '-o', `ControlPath=${sock}`, '-N']), dest()]);
    await waitFor(() => fs.existsSync(sock), 10_000, 'the control socket');
    const closed = new Set<number>();
    const mux = Array.from({ length: 30 }, (_, i) => {
      const c = start([...w.opts(alice, ['-o', 'ControlMaster=no', '-o', `ControlPath=${sock}`]), dest(), 'cat']);
      c.child.stdin!.end(`line ${i}\n`);
      void c.exited.then(() => closed.add(i));
      return c;
    });
    // Wait for 'close' (each client's stdout read to its end), not for exitCode: Node can report a
    // process's exit before it has read the output already in its pipe (here written by the mux master),
    // and with 30 clients ending together on a loaded machine it does; the output then looked empty.
    await waitFor(() => closed.size === mux.length, 20_000, 'the channels to finish');
    expect(mux.map((c, i) => [c.child.exitCode, c.stdout()])).toEqual(mux.map((_, i) => [0, `line ${i}\n`]));
    master.child.kill('SIGTERM');
    await allExitPromptly([master]);
  });

  it('sshd killed entirely (listener and every connection) under running commands and an idle connection', async () => {
    const running = [0, 1, 2].map((i) => start([...w.opts(alice), dest(), `echo started; ${SLEEPS[2 + i]}`]));
    const idle = start([...w.opts(alice), '-N', dest()]);
    await waitFor(() => running.every((c) => c.stdout().includes('started')), 10_000, 'the commands to start');
    await waitFor(() => w.gw.gw.services.sessions.size === 4, 10_000, 'four sessions');
    await w.sshd.stop();
    const codes = await allExitPromptly([...running, idle]);
    expect(codes.every((c) => c !== 0)).toBe(true);
    await waitFor(() => w.gw.gw.services.sessions.size === 0, 5_000, 'the sessions to end');
  });
});
