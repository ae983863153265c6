import net from 'node:net';
import { freePort } from '../support/tmp.ts';

/**
 * A TCP relay to a local PostgreSQL that picks connections by what their client sent (e.g. `LISTEN`), to
 * fault one connection of a store and leave its pool alone:
 *   - freeze: stop forwarding both ways without closing, as a connection gone half-open (failover, NAT
 *     timeout) looks to its ends: the kernel still acknowledges, nothing arrives.
 *   - hold: keep the client's bytes from the server until released, to act while a statement is in flight.
 * Patterns are matched per chunk; the short statements they are used for arrive in one.
 */
export interface PgRelay {
  port: number;
  /** Freeze every open connection whose client has sent `pattern`; how many were frozen. */
  freeze(pattern: string): number;
  /** How many open connections, not frozen, have sent `pattern`. */
  connections(pattern: string): number;
  /** Hold the next connection whose client sends `pattern` (that chunk and what follows) until release(). */
  hold(pattern: string): { held: Promise<void>; release(): void };
  close(): Promise<void>;
}

interface Conn {
  sent: string;
  frozen: boolean;
  held?: Buffer[];
}

export async function startPgRelay(to: number): Promise<PgRelay> {
  const port = await freePort();
  const conns = new Set<Conn>();
  const sockets = new Set<net.Socket>();
  const upstream = new Map<Conn, net.Socket>();
  const holds: { pattern: string; arm: (c: Conn) => void }[] = [];
  const server = net.createServer((c) => {
    const u = net.connect(to, '127.0.0.1');
    const conn: Conn = { sent: '', frozen: false };
    conns.add(conn);
    for (const s of [c, u]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => (sockets.delete(s), conns.delete(conn), upstream.delete(conn)));
    }
    c.on('close', () => u.destroy());
    u.on('close', () => c.destroy());
    c.on('data', (d: Buffer) => {
      if (conn.frozen) return;
      // Kept short: only recent text is matched, and a long-lived connection must not grow it without bound.
      conn.sent = (conn.sent + d.toString('latin1')).slice(-4096);
      const h = holds.findIndex((x) => d.includes(x.pattern));
      if (h >= 0) holds.splice(h, 1)[0].arm(conn);
      if (conn.held) conn.held.push(d);
      else u.write(d);
    });
    u.on('data', (d: Buffer) => {
      if (!conn.frozen) c.write(d);
    });
    upstream.set(conn, u);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    port,
    freeze(pattern) {
      let n = 0;
      for (const c of conns) if (!c.frozen && c.sent.includes(pattern)) (c.frozen = true), n++;
      return n;
    },
    connections(pattern) {
      return [...conns].filter((c) => !c.frozen && c.sent.includes(pattern)).length;
    },
    hold(pattern) {
      let armed!: () => void;
      const held = new Promise<void>((r) => (armed = r));
      let conn: Conn | undefined;
      holds.push({ pattern, arm: (c) => ((conn = c), (c.held = []), armed()) });
      return {
        held,
        release() {
          if (!conn?.held) return;
          const u = upstream.get(conn);
          for (const d of conn.held) u?.write(d);
          conn.held = undefined;
        },
      };
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
