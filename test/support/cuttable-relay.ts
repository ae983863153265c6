import net from 'node:net';
import { freePort } from './tmp.ts';

/** A TCP relay to a local port that can be cut (every connection dropped, new ones refused) and restored. */
export interface CuttableRelay {
  port: number;
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startCuttableRelay(to: number): Promise<CuttableRelay> {
  const port = await freePort();
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  const up = () =>
    new Promise<void>((resolve, reject) => {
      server = net.createServer((c) => {
        const u = net.connect(to, '127.0.0.1');
        for (const s of [c, u]) {
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
          s.on('error', () => {});
        }
        c.pipe(u).pipe(c);
        c.on('close', () => u.destroy());
        u.on('close', () => c.destroy());
      });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
  const down = async () => {
    const s = server;
    server = undefined;
    for (const x of sockets) x.destroy();
    if (s) await new Promise((r) => s.close(r));
  };
  await up();
  return { port, up, down, close: down };
}
