import net from 'node:net';
import tls from 'node:tls';
import fs from 'node:fs';
import { PacketFramer, encodePacket, type Packet } from '../../proxies/mysql/framing.ts';
import { buildClientHandshake, buildSslRequest, parseGreeting } from '../../proxies/mysql/handshake.ts';
import { CLIENT } from '../../proxies/mysql/wire.ts';
import type { IssuedFiles } from '../support/gateway.ts';

/** A bare MySQL client over the proxy's own codec, for sending hand-made (and broken) packets. */
export interface RawClient {
  socket: net.Socket | tls.TLSSocket;
  /** Packets received so far (after login). */
  packets: Packet[];
  closed: Promise<void>;
  isClosed(): boolean;
  next(ms?: number): Promise<Packet>;
  send(bytes: Buffer): void;
}

export const RAW_CAPS = CLIENT.LONG_PASSWORD | CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.PLUGIN_AUTH | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT.MULTI_STATEMENTS | CLIENT.MULTI_RESULTS | CLIENT.PS_MULTI_RESULTS | CLIENT.DEPRECATE_EOF | CLIENT.SESSION_TRACK | CLIENT.TRANSACTIONS;

function wrap(socket: net.Socket | tls.TLSSocket): RawClient {
  const packets: Packet[] = [];
  const framer = new PacketFramer(1 << 30);
  let waiter: ((p: Packet) => void) | undefined;
  let closed = false;
  const closedP = new Promise<void>((r) => socket.once('close', () => { closed = true; r(); }));
  socket.on('error', () => {});
  socket.on('data', (c: Buffer) => {
    try {
      framer.push(c, (p) => {
        if (waiter) { const w = waiter; waiter = undefined; w(p); } else packets.push(p);
      });
    } catch {
      socket.destroy();
    }
  });
  return {
    socket,
    packets,
    closed: closedP,
    isClosed: () => closed,
    // Each call settles once: its close handler and timeout stand down when a packet answered it, so a
    // packet queued later (an ERR followed by the close) is left for the next call, never swallowed.
    next: (ms = 5000) =>
      new Promise((resolve, reject) => {
        const p = packets.shift();
        if (p) return resolve(p);
        let settled = false;
        const settle = (f: () => void) => {
          if (settled) return;
          settled = true;
          clearTimeout(t);
          if (waiter === deliver) waiter = undefined;
          f();
        };
        const deliver = (x: Packet) => settle(() => resolve(x));
        const t = setTimeout(() => settle(() => reject(new Error('no packet'))), ms);
        void closedP.then(() => settle(() => { const q = packets.shift(); if (q) resolve(q); else reject(new Error('closed')); }));
        waiter = deliver;
      }),
    send: (b) => { if (!closed) socket.write(b); },
  };
}

/** Connect, upgrade to TLS with the credentials, log in to `user`; resolves after the OK. */
export async function rawLogin(port: number, creds: IssuedFiles, user = 'db', database?: string, capabilities = RAW_CAPS): Promise<RawClient> {
  const plain = net.connect({ host: '127.0.0.1', port });
  const pre = wrap(plain);
  const g = parseGreeting((await pre.next()).payload);
  void g;
  plain.removeAllListeners('data');
  plain.write(encodePacket(1, buildSslRequest(capabilities | CLIENT.SSL, 1 << 24, 45)));
  const secure = tls.connect({ socket: plain, ca: fs.readFileSync(creds.ca), cert: fs.readFileSync(creds.crt), key: fs.readFileSync(creds.key), servername: 'localhost' });
  await new Promise<void>((resolve, reject) => { secure.once('secureConnect', resolve); secure.once('error', reject); });
  const c = wrap(secure);
  const caps = capabilities | CLIENT.SSL | (database ? CLIENT.CONNECT_WITH_DB : 0);
  c.send(encodePacket(2, buildClientHandshake({ capabilities: caps, maxPacket: 1 << 24, charset: 45, user, authResponse: Buffer.alloc(0), database, authPlugin: 'mysql_native_password', attributes: {} })));
  const ok = await c.next();
  if (ok.payload[0] !== 0) throw new Error(`login failed: ${ok.payload.subarray(1).toString('latin1')}`);
  return c;
}

/** Plain TCP connection that has read the greeting. */
export async function rawConnect(port: number): Promise<RawClient> {
  const c = wrap(net.connect({ host: '127.0.0.1', port }));
  await c.next();
  return c;
}
