import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';

/**
 * A peer may send its identification line in as many TCP segments as it likes (RFC 4253 says nothing
 * about segments; a slow link or a keystroke-at-a-time relay splits it). ssh2 alone loses a line that comes
 * in more than two reads and closes without a word: vigil hands it the line whole, on both sides.
 */

/** A TCP relay that sends the first line of one direction one byte per segment, then relays as it comes. */
async function splittingRelay(upstream: () => number, split: 'client' | 'server'): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect(upstream(), '127.0.0.1');
    for (const s of [down, up]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('error', () => {
        down.destroy();
        up.destroy();
      });
      s.on('close', () => sockets.delete(s));
    }
    const [from, to] = split === 'client' ? [down, up] : [up, down];
    const [other, otherTo] = split === 'client' ? [up, down] : [down, up];
    other.pipe(otherTo);
    let queue = Promise.resolve();
    let lineDone = false;
    from.on('data', (d: Buffer) => {
      queue = queue.then(async () => {
        for (let i = 0; i < d.length; i++) {
          if (lineDone) {
            to.write(d.subarray(i));
            return;
          }
          to.write(d.subarray(i, i + 1));
          if (d[i] === 0x0a) lineDone = true;
          await new Promise((r) => setTimeout(r, 3));
        }
      });
    });
    from.on('end', () => void queue.then(() => to.end()));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

describe('ssh: an identification line split into one-byte segments', () => {
  let w: SshWorld;
  let targetSide: { port: number; close(): void };
  beforeAll(async () => {
    let sshdPort = 0;
    targetSide = await splittingRelay(() => sshdPort, 'server');
    w = await startWorld({ targets: (sshd) => [{ name: 'slowident', protocol: 'ssh', host: '127.0.0.1', port: targetSide.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub }] });
    sshdPort = w.sshd.port;
  }, 60_000);
  afterAll(async () => {
    targetSide?.close();
    await w?.stop();
  });

  it('from the client: stock ssh through a relay that splits its line byte by byte runs the command', async () => {
    const relay = await splittingRelay(() => w.port, 'client');
    try {
      const alice = await w.issue();
      const r = await w.run('ssh', ['-o', `Port=${relay.port}`, '-o', `HostKeyAlias=[127.0.0.1]:${w.port}`, ...w.opts(alice), 'web1@127.0.0.1', 'echo split-ok']);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('split-ok\n');
      expect(r.code).toBe(0);
    } finally {
      relay.close();
    }
  }, 60_000);

  it("from the target: a target whose sshd line arrives byte by byte is reached and the command's result recorded", async () => {
    const alice = await w.issue();
    const r = await w.run('ssh', [...w.opts(alice), 'slowident@127.0.0.1', 'echo target-split-ok']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('target-split-ok\n');
    expect(r.code).toBe(0);
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.target?.name === 'slowident' && e.outcome === 'success');
    expect(exec.details.command).toBe('echo target-split-ok');
  }, 60_000);
});
