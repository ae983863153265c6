import crypto from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, spawnClient, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { freePort, waitFor } from '../support/tmp.ts';

describe('ssh proxy: session limits and robustness', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let downPort: number;
  let sshd2: SshdHandle;
  let blackhole: net.Server;
  beforeAll(async () => {
    // Accepts TCP connections and never says a word: a hung target.
    blackhole = net.createServer(() => {});
    const blackholePort = await new Promise<number>((r) => blackhole.listen(0, '127.0.0.1', () => r((blackhole.address() as net.AddressInfo).port)));
    downPort = await freePort();
    sshd2 = await startSshd();
    const otherHostKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDXoYw2yQGyRVbaNt6Iaq4iI6m0bQmXLi9V2rUZ1lE9A other';
    w = await startWorld({
      config: { gateway: { connect_timeout: '2s', auth_timeout: '2s', max_unauthenticated: 8, idle_timeout: '3s' } },
      targets: (sshd) => [
        // Nothing listens on downPort.
        { name: 'down', protocol: 'ssh', host: '127.0.0.1', port: downPort, default_login: 'root', password: { env: 'VIGIL_TEST_UNUSED' }, host_key: otherHostKey },
        // A target whose pinned key is not the one its sshd presents.
        { name: 'impostor', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: otherHostKey },
        { name: 'hung', protocol: 'ssh', host: '127.0.0.1', port: blackholePort, default_login: 'root', private_key: sshd.clientKey, host_key: otherHostKey },
        // A target the test kills mid-session.
        { name: 'fragile', protocol: 'ssh', host: '127.0.0.1', port: sshd2.port, default_login: sshd2.user, private_key: sshd2.clientKey, host_key: sshd2.hostKeyPub },
      ],
    });
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    await sshd2?.stop();
    blackhole?.close();
  });

  it('backend down: a clear message within the connect timeout and a session.end with the reason', async () => {
    process.env.VIGIL_TEST_UNUSED = 'not-used-nothing-listens';
    const t0 = Date.now();
    const r = await w.run('ssh', [...w.opts(alice), 'down@127.0.0.1', 'true']);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/vigil: target down is unreachable/);
    const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.target.name === 'down');
    expect(end.outcome).toBe('failure');
    expect(end.details).toMatchObject({ reason: 'backend_error', error: 'unreachable' });
  });

  it('a hung target: the client hears about it within connect_timeout; a client that leaves meanwhile still gets session.end', async () => {
    const t0 = Date.now();
    const r = await w.run('ssh', [...w.opts(alice), 'hung@127.0.0.1', 'true']);
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/vigil: target hung did not answer within 2s/);
    await w.gw.waitForEvent((e) => e.type === 'session.end' && e.target.name === 'hung' && e.details.error === 'timeout');

    const impatient = spawnClient('ssh', [...w.opts(alice), 'hung@127.0.0.1', 'true']);
    await w.gw.waitForEvent((e) => e.type === 'session.start' && e.target.name === 'hung' && !w.eventsOf('session.end', (x) => x.session_id === e.session_id).length);
    impatient.child.kill('SIGKILL');
    const starts = w.eventsOf('session.start', (e) => e.target.name === 'hung');
    const last = starts[starts.length - 1]!;
    const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === last.session_id);
    expect(end.details.reason).toBe('client_closed');
    expect(w.gw.gw.services.sessions.get(last.session_id!)).toBeUndefined();
    // The backend attempt that was still running ends quietly: no second session.end.
    await new Promise((r) => setTimeout(r, 2500));
    expect(w.eventsOf('session.end', (e) => e.session_id === last.session_id)).toHaveLength(1);
  });

  it('a backend presenting an unknown host key is refused with a clear message and an event', async () => {
    const r = await w.run('ssh', [...w.opts(alice), 'impostor@127.0.0.1', 'true']);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/vigil: target impostor presented a host key vigil does not know \(SHA256:/);
    const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.target.name === 'impostor');
    expect(end.details).toMatchObject({ reason: 'backend_error', error: 'host_key_mismatch' });
  });

  it('cert expiry cuts a live session with a message and reason cert_expired', async () => {
    const short = await w.issue({ ttlMs: 8000 });
    const live = spawnClient('ssh', [...w.opts(short), 'web1@127.0.0.1', 'while true; do echo tick; sleep 0.5; done']);
    const code = await live.exited;
    expect(code).toBe(255);
    expect(live.stdout()).toContain('tick');
    expect(live.stderr()).toMatch(/vigil: Your vigil certificate has expired/);
    const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.actor.cert_serial === short.creds.serial);
    expect(end.details.reason).toBe('cert_expired');
    expect(end.outcome).toBe('failure');
  });

  it('idle sessions are ended after gateway.idle_timeout', async () => {
    const live = spawnClient('ssh', [...w.opts(alice), 'web1@127.0.0.1', 'sleep 30']);
    const code = await live.exited;
    expect(code).toBe(255);
    expect(live.stderr()).toMatch(/idle/);
    await w.gw.waitForEvent((e) => e.type === 'session.end' && e.details.reason === 'idle_timeout');
  });

  it('garbage, aborted handshakes, slow loris and a connection flood neither crash the gateway nor disturb a live session', async () => {
    // A live session that keeps producing output throughout.
    const live = spawnClient('ssh', [...w.opts(alice), 'web1@127.0.0.1', 'for i in $(seq 1 8); do echo tick $i; sleep 0.5; done']);
    await waitFor(() => live.stdout().includes('tick 1'), 30_000, 'live session');
    const sockets: net.Socket[] = [];
    const open = () => {
      const s = net.connect(w.port, '127.0.0.1');
      s.on('error', () => {});
      // Read (and drop) what the gateway says, so its FIN is seen.
      s.resume();
      sockets.push(s);
      return s;
    };
    // Random bytes, a version line followed by garbage, a half handshake, and slow-loris connections.
    open().write(crypto.randomBytes(4096));
    open().write(Buffer.concat([Buffer.from('SSH-2.0-evil\r\n'), crypto.randomBytes(2048)]));
    open().end('SSH-2.0-OpenSSH_9.2\r\n');
    for (let i = 0; i < 20; i++) open().write('SSH-2.0-slow');
    const closedWithin = (s: net.Socket, ms: number) =>
      new Promise<boolean>((resolve) => {
        if (s.destroyed || s.closed) return resolve(true);
        const t = setTimeout(() => resolve(false), ms);
        s.once('close', () => {
          clearTimeout(t);
          resolve(true);
        });
      });
    // Everything unauthenticated is gone after the auth timeout (2s) at the latest.
    const closed = await Promise.all(sockets.map((s) => closedWithin(s, 6000)));
    expect(closed.map((c, i) => (c ? -1 : i)).filter((i) => i >= 0)).toEqual([]);
    const code = await live.exited;
    expect(code).toBe(0);
    expect(live.stdout()).toContain('tick 8');
    // Once the flood is gone (dropped at the limit or at the auth timeout) new sessions get in again.
    const r = await w.run('ssh', [...w.opts(alice), 'web1@127.0.0.1', 'echo still-here']);
    expect(r.stdout).toBe('still-here\n');
  });

  it('the target dying mid-session closes the channel with an exit status and session.end says why', async () => {
    const live = spawnClient('ssh', [...w.opts(alice), 'fragile@127.0.0.1', 'echo started; sleep 30']);
    await waitFor(() => live.stdout().includes('started'), 30_000, 'session running');
    await sshd2.stop();
    const code = await live.exited;
    expect(code).not.toBe(0);
    const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.target.name === 'fragile');
    expect(['backend_closed', 'backend_error']).toContain(end.details.reason);
    // sshd's session process dies by signal (exit-signal) or the connection just drops (vigil's 255).
    expect(end.details.exit_status ?? end.details.exit_signal).toBeDefined();
  });
});
