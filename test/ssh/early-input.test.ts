import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, spawnClient, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * A TCP relay between vigil and the target's sshd whose target-to-vigil direction can be held: while
 * held, nothing the target says (channel-open confirmations, exec replies, window adjustments) reaches
 * vigil, so client channels stay in the state "accepted by vigil, not yet open at the target".
 */
async function holdableRelay(upstream: () => number): Promise<{ port: number; hold(): void; release(): void; close(): void }> {
  const sockets = new Set<net.Socket>();
  let held = false;
  const waiting: Array<() => void> = [];
  const server = net.createServer((fromVigil) => {
    const toSshd = net.connect(upstream(), '127.0.0.1');
    for (const s of [fromVigil, toSshd]) {
      sockets.add(s);
      s.on('error', () => {
        fromVigil.destroy();
        toSshd.destroy();
      });
      s.on('close', () => sockets.delete(s));
    }
    fromVigil.pipe(toSshd);
    toSshd.on('data', (d: Buffer) => {
      const send = () => void (fromVigil.writable && fromVigil.write(d));
      if (held || waiting.length > 0) waiting.push(send);
      else send();
    });
    toSshd.on('end', () => (held || waiting.length > 0 ? waiting.push(() => fromVigil.end()) : fromVigil.end()));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    hold: () => void (held = true),
    release: () => {
      held = false;
      for (const send of waiting.splice(0)) send();
    },
    close: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

/**
 * Nothing the client sent is lost: input and EOF a client sends on a channel before the target has
 * opened its side (vigil accepts at once, then asks the target) are held and reach the target whole,
 * in order, EOF last — for many channels at once on one connection, and for inputs larger than the
 * SSH windows on both sides.
 */
describe('client input sent before the target opened the channel', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dir: string;
  let relay: Awaited<ReturnType<typeof holdableRelay>>;
  let sshdPort = 0;
  beforeAll(async () => {
    relay = await holdableRelay(() => sshdPort);
    w = await startWorld({
      // 30 sessions on one ControlMaster connection at once (the test sshd allows 100 too).
      config: { ssh: { listen: '127.0.0.1:0', max_sessions: 64 } },
      targets: (sshd) => {
        sshdPort = sshd.port;
        return [{ name: 'held1', protocol: 'ssh', host: '127.0.0.1', port: relay.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub }];
      },
    });
    alice = await w.issue();
    dir = tempDir('vigil-early-input-');
  }, 30_000);
  afterAll(async () => {
    relay?.release();
    await w?.stop();
    relay?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('30 multiplexed channels whose stdin and EOF arrive while the target has not answered: every byte reaches the target', async () => {
    const dest = `${w.sshd.user}@held1@127.0.0.1`;
    const sock = path.join(dir, 'mux.sock');
    const master = spawnClient('ssh', [...w.opts(alice, ['-o', 'ControlMaster=yes', '-o', `ControlPath=${sock}`, '-N']), dest]);
    await waitFor(() => fs.existsSync(sock), 15_000, 'the control socket');
    const out = path.join(dir, 'received');
    fs.mkdirSync(out);
    // Mostly one line; every tenth channel 3 MiB, more than vigil's window to the client (2 MiB) and
    // than the target's window to vigil, so both windows must reopen while the input is replayed.
    const inputs = Array.from({ length: 30 }, (_, i) => (i % 10 === 5 ? crypto.randomBytes(3 * 1024 * 1024 + i) : Buffer.from(`line ${i}\n`)));
    const command = (i: number) => `cat > ${out}/${i}; echo received`;
    relay.hold();
    const closed = new Set<number>();
    const mux = inputs.map((input, i) => {
      const c = spawnClient('ssh', [...w.opts(alice, ['-o', 'ControlMaster=no', '-o', `ControlPath=${sock}`]), dest, command(i)]);
      c.child.stdin!.end(input);
      void c.exited.then(() => closed.add(i));
      return c;
    });
    // vigil accepted every channel and asked the target (ssh.exec.start is written before it asks); the
    // target's answers are held, and the clients have handed over their whole input (a 3 MiB input can
    // only leave the client while vigil takes it).
    await waitFor(() => inputs.every((_, i) => w.eventsOf('ssh.exec.start', (e) => e.details.command === command(i)).length === 1), 20_000, '30 ssh.exec.start events');
    await waitFor(() => mux.every((c) => c.child.stdin!.writableFinished), 20_000, 'the clients to hand over their input');
    expect(closed.size).toBe(0);
    relay.release();

    await waitFor(() => closed.size === mux.length, 60_000, 'the channels to finish');
    expect(mux.map((c) => [c.child.exitCode, c.stdout()])).toEqual(mux.map(() => [0, 'received\n']));
    const received = inputs.map((_, i) => fs.readFileSync(`${out}/${i}`));
    expect(received.map((r, i) => r.equals(inputs[i]))).toEqual(inputs.map(() => true));
    // …and what vigil recorded as received from the client is what it forwarded.
    await waitFor(() => inputs.every((_, i) => w.eventsOf('ssh.exec', (e) => e.details.command === command(i)).length === 1), 10_000, '30 ssh.exec events');
    expect(inputs.map((_, i) => w.eventsOf('ssh.exec', (e) => e.details.command === command(i))[0].details.bytes_from_client)).toEqual(inputs.map((b) => b.length));
    master.child.kill('SIGTERM');
    await master.exited;
  }, 120_000);
});
