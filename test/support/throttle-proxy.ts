import net from 'node:net';

/**
 * A TCP relay on a random loopback port in front of a server (TLS passes through untouched) that can hold
 * back what the server sends: `limit(n)` lets each connection pass at most n more bytes towards the
 * client, then holds the rest (the server's side is paused, so nothing is dropped) until `limit(Infinity)`.
 * How a test shows that a client uses the first part of a response before the rest has come.
 */
export interface ThrottleProxy {
  port: number;
  /** Bytes passed towards clients so far, all connections. */
  readonly downstream: number;
  limit(bytesPerConnection: number): void;
  close(): Promise<void>;
}

interface Relay {
  budget: number;
  ended: boolean;
  queue: Buffer[];
  pump(): void;
}

export async function startThrottleProxy(targetPort: number, host = '127.0.0.1'): Promise<ThrottleProxy> {
  const relays = new Set<Relay>();
  const sockets = new Set<net.Socket>();
  let perConnection = Infinity;
  let downstream = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, host);
    sockets.add(client).add(upstream);
    const relay: Relay = {
      budget: perConnection,
      ended: false,
      queue: [],
      pump() {
        while (relay.queue.length && relay.budget > 0) {
          const head = relay.queue[0];
          const n = Math.min(head.length, relay.budget);
          client.write(n === head.length ? head : head.subarray(0, n));
          if (n === head.length) relay.queue.shift();
          else relay.queue[0] = head.subarray(n);
          relay.budget -= n;
          downstream += n;
        }
        if (relay.queue.length) upstream.pause();
        else if (relay.ended) client.end();
        else upstream.resume();
      },
    };
    relays.add(relay);
    client.pipe(upstream);
    upstream.on('data', (d: Buffer) => {
      relay.queue.push(d);
      relay.pump();
    });
    const end = () => {
      relays.delete(relay);
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    upstream.on('end', () => {
      relay.ended = true;
      relay.pump();
    });
    upstream.on('error', end);
    client.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    get downstream() {
      return downstream;
    },
    limit(n) {
      perConnection = n;
      for (const r of relays) {
        r.budget = n;
        r.pump();
      }
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
