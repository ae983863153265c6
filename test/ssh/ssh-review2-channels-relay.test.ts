import net from 'node:net';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';
import { certClient } from './cert-client.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { waitFor } from '../support/tmp.ts';

function listen(onConn: (s: net.Socket) => void): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer(onConn);
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r({ server, port: (server.address() as net.AddressInfo).port })));
}

const forwardOut = (c: ssh2.Client, port: number) =>
  new Promise<ssh2.ClientChannel>((resolve, reject) => c.forwardOut('127.0.0.1', 40001, '127.0.0.1', port, (err, ch) => (err ? reject(err) : resolve(ch))));

describe('ssh direct-tcpip relay', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('half-close: the client EOF reaches the destination, whose answer after it still reaches the client', async () => {
    const dest = await listen((s) => {
      let got = '';
      s.on('data', (d) => (got += d.toString()));
      s.on('end', () => s.end(`got ${got}; bye`));
    });
    const c = await certClient(w, alice);
    try {
      const ch = await forwardOut(c, dest.port);
      let answer = '';
      ch.on('data', (d: Buffer) => (answer += d.toString()));
      ch.end('ping');
      await new Promise((r) => ch.once('close', r));
      expect(answer).toBe('got ping; bye');
      const closed = await w.gw.waitForEvent((e) => e.type === 'ssh.forward' && e.details.state === 'closed' && e.details.destination === `127.0.0.1:${dest.port}`);
      expect(closed.details).toMatchObject({ bytes_from_client: 4, bytes_to_client: 'got ping; bye'.length });
    } finally {
      c.end();
      dest.server.close();
    }
  }, 60_000);

  it('a client that stops reading a forward holds the destination back', async () => {
    let written = 0;
    const dest = await listen((s) => {
      s.on('error', () => {});
      const chunk = Buffer.alloc(1024 * 1024, 0x61);
      const pump = () => {
        while (written < 256 * 1024 * 1024) {
          written += chunk.length;
          if (!s.write(chunk)) return void s.once('drain', pump);
        }
        s.end();
      };
      pump();
    });
    const c = await certClient(w, alice);
    try {
      const ch = await forwardOut(c, dest.port);
      let received = 0;
      ch.on('data', (d: Buffer) => (received += d.length));
      await waitFor(() => received > 1024 * 1024, 15_000, 'first MiB');
      ch.pause();
      let last = -1;
      const stalledAt = await waitFor(async () => {
        await new Promise((r) => setTimeout(r, 1000));
        const stalled = written === last;
        last = written;
        return stalled ? written : undefined;
      }, 60_000, 'the destination to block');
      expect(stalledAt).toBeLessThan(64 * 1024 * 1024);
    } finally {
      c.end();
      dest.server.close();
    }
  }, 90_000);
});
