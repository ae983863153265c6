import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, spawnClient, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { freePort, tempDir, waitFor } from '../support/tmp.ts';

/**
 * Per-connection channel limits (ssh.max_sessions, ssh.max_forwards): one connection cannot make the
 * gateway hold an unbounded number of target channels. Stock OpenSSH: a ControlMaster connection
 * multiplexing sessions, and `ssh -L` with many connections through one forward.
 */
describe('ssh proxy: channels per connection', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let echo: net.Server;
  let echoPort: number;
  beforeAll(async () => {
    echo = net.createServer((s) => s.pipe(s));
    echoPort = await new Promise<number>((r) => echo.listen(0, '127.0.0.1', () => r((echo.address() as net.AddressInfo).port)));
    w = await startWorld({ config: { ssh: { listen: '127.0.0.1:0', max_sessions: 2, max_forwards: 3 } } });
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    echo?.close();
  });

  it('a third session on one connection is refused; OpenSSH then opens its own connection, and a freed slot is usable again', async () => {
    const sock = path.join(tempDir('vigil-mux-'), 'm');
    const master = spawnClient('ssh', [...w.opts(alice, ['-M', '-S', sock, '-N']), 'web1@127.0.0.1']);
    const mux = (cmd: string) => w.run('ssh', [...w.opts(alice, ['-S', sock]), 'web1@127.0.0.1', cmd], undefined, 60_000);
    try {
      await waitFor(async () => (await w.run('ssh', ['-S', sock, '-O', 'check', 'x'])).code === 0, 30_000, 'control master up');
      const first = mux('sleep 6; echo one');
      const second = mux('sleep 6; echo two');
      await waitFor(() => w.eventsOf('ssh.exec.start').length >= 2, 30_000, 'two sessions running');
      // The master's connection refuses the channel; the stock mux client falls back to a connection of
      // its own (as it does against OpenSSH's MaxSessions), which is a session of its own.
      const third = await mux('echo three');
      expect(third.stderr).toContain('session request failed: Session open refused by peer');
      expect(third.stdout).toBe('three\n');
      expect((await first).stdout).toBe('one\n');
      expect((await second).stdout).toBe('two\n');
      const again = await mux('echo again');
      expect(again.stderr).toBe('');
      expect(again.stdout).toBe('again\n');
    } finally {
      await w.run('ssh', ['-S', sock, '-O', 'exit', 'x']);
      master.child.kill();
      await master.exited;
    }
    // The refusal is written without holding the client up (it reaches the bus at a later group commit).
    await w.gw.waitForEvent((e) => e.type === 'ssh.request' && e.details.request === 'session');
    const refused = w.eventsOf('ssh.request', (e) => e.details.request === 'session');
    expect(refused).toHaveLength(1);
    expect(refused[0]!.details.why).toBe('at most 2 sessions at once on one connection (ssh.max_sessions)');
    const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === refused[0]!.session_id);
    expect(end.details.refused_channels).toBe(1);
    // The master's session ran three commands; the fallback connection's session ran the third.
    const execs = w.eventsOf('ssh.exec.start');
    expect(execs.filter((e) => e.session_id === refused[0]!.session_id).map((e) => e.details.command).sort()).toEqual(['echo again', 'sleep 6; echo one', 'sleep 6; echo two']);
    expect(execs.find((e) => e.details.command === 'echo three')!.session_id).not.toBe(refused[0]!.session_id);
  }, 90_000);

  it('forwarded connections beyond max_forwards are refused, the others keep working', async () => {
    const localPort = await freePort();
    const fwd = spawnClient('ssh', [...w.opts(alice, ['-N', '-L', `${localPort}:127.0.0.1:${echoPort}`]), 'web1@127.0.0.1']);
    const open: net.Socket[] = [];
    try {
      /** A connection through the forward that answers "ping" with "ping", or undefined once refused. */
      const through = async (): Promise<net.Socket | undefined> => {
        const s = net.connect(localPort, '127.0.0.1');
        s.on('error', () => {});
        const connected = await new Promise<boolean>((r) => {
          s.once('connect', () => r(true));
          s.once('close', () => r(false));
        });
        if (!connected) return undefined;
        s.write('ping');
        const answer = await new Promise<string | undefined>((r) => {
          s.once('data', (d) => r(d.toString()));
          s.once('close', () => r(undefined));
        });
        if (answer === undefined) return undefined;
        expect(answer).toBe('ping');
        return s;
      };
      await waitFor(async () => {
        const s = await through();
        s?.destroy();
        return s !== undefined;
      }, 30_000, 'forward up');
      // Three held (the probe's slot is freed once its channel has closed: retried until then).
      while (open.length < 3) {
        await waitFor(async () => {
          const s = await through();
          if (s) open.push(s);
          return s !== undefined;
        }, 10_000, 'a forwarded connection');
      }
      expect(await through()).toBeUndefined();
      await waitFor(() => /resource shortage: vigil: at most 3 forwarded connections/.test(fwd.stderr()), 10_000, 'the refusal reason on the client');
      // Closing one frees its slot.
      open.pop()!.destroy();
      await waitFor(async () => {
        const s = await through();
        if (s) open.push(s);
        return s !== undefined;
      }, 10_000, 'a slot freed');
    } finally {
      for (const s of open) s.destroy();
      fwd.child.kill();
      await fwd.exited;
    }
    // The refusal is written without holding the client up (it reaches the bus at a later group commit);
    // the connection's session.end comes after every event of the connection.
    const first = await w.gw.waitForEvent((e) => e.type === 'ssh.request' && e.details.request === 'direct-tcpip');
    await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === first.session_id);
    const refused = w.eventsOf('ssh.request', (e) => e.details.request === 'direct-tcpip');
    expect(refused).toHaveLength(1);
    expect(refused[0]!.details.why).toContain('ssh.max_forwards');
  }, 90_000);
});
