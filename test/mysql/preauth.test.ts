import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PacketFramer, encodePacket, type Packet } from '../../proxies/mysql/framing.ts';
import { buildClientHandshake, buildSslRequest } from '../../proxies/mysql/handshake.ts';
import { CLIENT } from '../../proxies/mysql/wire.ts';
import { RAW_CAPS } from './raw-client.ts';
import { startWorld, type MyWorld } from './helpers.ts';

/**
 * Limits before authentication (issue #16): a stranger who has not authenticated cannot make the gateway
 * buffer a large handshake response, nor take every unauthenticated slot from one address.
 */

/** The largest length one MySQL packet header can claim (a longer payload continues in further packets). */
const CLAIMED = 0xffffff - 1;
const HOSTILE = 8;
const PER_SOURCE = 10;

function packets(sock: net.Socket | tls.TLSSocket) {
  const got: Packet[] = [];
  const framer = new PacketFramer(1 << 30);
  let closed = false;
  const waiters: (() => void)[] = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  const onData = (c: Buffer) => {
    try {
      framer.push(c, (p) => got.push({ ...p, payload: Buffer.from(p.payload) }));
    } catch {
      sock.destroy();
    }
    wake();
  };
  sock.on('data', onData);
  sock.on('error', () => {});
  sock.on('close', () => {
    closed = true;
    wake();
  });
  return {
    got,
    isClosed: () => closed,
    detach: () => sock.off('data', onData),
    async next(from: number): Promise<Packet | undefined> {
      for (;;) {
        if (got.length > from) return got[from];
        if (closed) return undefined;
        await new Promise<void>((r) => waiters.push(r));
      }
    },
    closed: () => new Promise<void>((r) => (closed ? r() : sock.once('close', () => r()))),
  };
}

const errCode = (p: Packet | undefined) => (p && p.payload[0] === 0xff ? p.payload.readUInt16LE(1) : undefined);

async function plainConnect(port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  const s = net.connect({ host: '127.0.0.1', port, localAddress });
  await new Promise<void>((r, j) => s.once('connect', () => r()).once('error', j));
  return s;
}

/** Greeting, SSLRequest, TLS (with alice's certificate when `cert`). */
async function tlsUpgrade(w: MyWorld, cert: boolean, localAddress?: string) {
  const plain = await plainConnect(w.port, localAddress);
  const pre = packets(plain);
  const greeting = await pre.next(0);
  expect(greeting?.payload[0]).toBe(10);
  pre.detach();
  plain.write(encodePacket(1, buildSslRequest(RAW_CAPS | CLIENT.SSL, 1 << 24, 45)));
  const creds = cert ? { cert: fs.readFileSync(w.alice.crt), key: fs.readFileSync(w.alice.key) } : {};
  const t = tls.connect({ socket: plain, ca: fs.readFileSync(w.alice.ca), servername: 'localhost', ...creds });
  await new Promise((r, j) => t.once('secureConnect', r).once('error', j));
  return { t, p: packets(t) };
}

/** Announces a handshake response of CLAIMED bytes and sends its body for as long as the gateway listens. */
async function hostile(w: MyWorld, claimed = CLAIMED): Promise<{ code: number | undefined; sent: number }> {
  const { t, p } = await tlsUpgrade(w, false);
  const header = Buffer.from([claimed & 0xff, (claimed >> 8) & 0xff, claimed >> 16, 2]);
  t.write(header);
  const chunk = Buffer.alloc(64 * 1024, 0x41);
  let sent = 0;
  while (p.got.length === 0 && !p.isClosed() && sent < claimed) {
    sent += chunk.length;
    if (!t.write(chunk)) await new Promise<void>((r) => { t.once('drain', r); t.once('close', r); });
  }
  const reply = await p.next(0);
  t.end();
  await p.closed();
  return { code: errCode(reply), sent };
}

describe('mysql: limits before authentication', () => {
  let w: MyWorld;
  beforeAll(async () => {
    w = await startWorld({ pre_auth: { max_message_size: '16KiB', max_per_source: PER_SOURCE } });
  }, 120_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('refuses an oversized handshake response from its length header (ERR 1153) while mariadb works alongside; memory does not follow the claim', async () => {
    expect((await w.cli(['--user=db', '-e', 'select 1'])).code).toBe(0);
    // The gateway's indexing thread up and caught up first: its start would count as growth.
    await w.tg.gw.services.auditIndex?.catchUpNow();
    const before = process.memoryUsage().rss;
    const attacks = Array.from({ length: HOSTILE }, () => hostile(w));
    const legit = await w.cli(['--user=db', '-N', '-e', 'select 40 + 2']);
    const results = await Promise.all(attacks);
    const after = process.memoryUsage().rss;
    const delta = after - before;
    console.log(`mysql pre-auth: ${HOSTILE} clients claiming ${CLAIMED} bytes each; rss before ${before} after ${after} delta ${delta}; body bytes sent per client: ${results.map((r) => r.sent).join(',')}`);
    expect(legit.stderr).toBe('');
    expect(legit.stdout.trim()).toBe('42');
    for (const r of results) {
      expect(r.code).toBe(1153);
      expect(r.sent).toBeLessThan(CLAIMED);
    }
    expect(delta).toBeLessThan(16 * 1024 * 1024);
    expect((await w.cli(['--user=db', '-N', '-e', 'select 1'])).stdout.trim()).toBe('1');
  }, 120_000);

  it('the limit is pre_auth.max_message_size, not the post-auth packet limit: 20 KiB is refused', async () => {
    const r = await hostile(w, 20 * 1024);
    expect(r.code).toBe(1153);
  }, 30_000);

  it(`caps unauthenticated connections per source address (${PER_SOURCE}); another address still gets in`, async () => {
    // The greeting is sent once the connection is counted: each held one has received it.
    const held: net.Socket[] = [];
    for (let i = 0; i < PER_SOURCE; i++) {
      const s = await plainConnect(w.port);
      const p = packets(s);
      expect((await p.next(0))?.payload[0]).toBe(10);
      held.push(s);
    }
    const extra = packets(await plainConnect(w.port));
    expect(errCode(await extra.next(0))).toBe(1040);
    await extra.closed();

    const { t, p } = await tlsUpgrade(w, true, '127.0.0.2');
    t.write(encodePacket(2, buildClientHandshake({ capabilities: RAW_CAPS | CLIENT.SSL, maxPacket: 1 << 24, charset: 45, user: 'db', authResponse: Buffer.alloc(0), authPlugin: 'mysql_native_password', attributes: {} })));
    const ok = await p.next(0);
    expect(ok?.payload[0], ok?.payload.toString('latin1')).toBe(0);
    t.destroy();
    for (const s of held) s.destroy();
  }, 60_000);
});
