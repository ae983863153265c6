import net from 'node:net';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';
import { certClient } from './cert-client.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { waitFor } from '../support/tmp.ts';

/**
 * A destination that sends without end (a download). Its connections are kept so the test can see the
 * gateway close them.
 */
function blaster(): Promise<{ server: net.Server; port: number; sockets: net.Socket[] }> {
  const sockets: net.Socket[] = [];
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    const pump = () => {
      while (!s.destroyed && s.write(chunk));
    };
    s.on('drain', pump);
    pump();
  });
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r({ server, port: (server.address() as net.AddressInfo).port, sockets })));
}

/**
 * A -L forward whose client stopped reading holds the destination paused (bounded memory); like a session
 * channel, it must not stay so until the idle timeout: after slow_clients.write_stall_timeout it is closed,
 * and its close record says why.
 */
describe('ssh -L: a client that stops reading a forward', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dest: Awaited<ReturnType<typeof blaster>>;
  beforeAll(async () => {
    dest = await blaster();
    w = await startWorld({ config: { slow_clients: { write_stall_timeout: '1500ms' }, gateway: { connect_timeout: '3s', auth_timeout: '5s', idle_timeout: '10m' } } });
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    dest?.server.close();
  });

  it('is closed after write_stall_timeout, with reason write_stall on its close record', async () => {
    const c = await certClient(w, alice);
    try {
      const stream = await new Promise<ssh2.ClientChannel>((resolve, reject) => c.forwardOut('127.0.0.1', 0, '127.0.0.1', dest.port, (err, ch) => (err ? reject(err) : resolve(ch))));
      // Never read: the client's SSH window shuts and stays shut.
      stream.pause();
      stream.on('error', () => {});
      const closed = await w.gw.waitForEvent((e) => e.type === 'ssh.forward' && e.details.state === 'closed', 60_000);
      expect(closed.details).toMatchObject({ destination: `127.0.0.1:${dest.port}`, reason: 'write_stall' });
      // The destination's connection is closed too (nothing is left paused on the target side).
      await waitFor(() => dest.sockets.length === 1 && dest.sockets[0]!.destroyed, 30_000, 'destination connection closed');
      // The session itself goes on: another channel still works.
      const out = await new Promise<string>((resolve, reject) =>
        c.exec('echo still-here', (err, ch) => {
          if (err) return reject(err);
          let s = '';
          ch.on('data', (d: Buffer) => (s += d.toString()));
          ch.once('close', () => resolve(s));
        }),
      );
      expect(out).toBe('still-here\n');
    } finally {
      c.end();
    }
  }, 90_000);
});
