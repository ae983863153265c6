import fs from 'node:fs';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PacketFramer, encodePacket } from '../../proxies/mysql/framing.ts';
import { connectBackend } from '../../proxies/mysql/backend.ts';
import { buildClientHandshake, buildGreeting } from '../../proxies/mysql/handshake.ts';
import { CLIENT } from '../../proxies/mysql/wire.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startMariadb, type MariadbHandle } from '../support/mariadb.ts';
import { secretsDir, tempDir } from '../support/tmp.ts';
import { RAW_CAPS, rawConnect } from './raw-client.ts';

/**
 * Review of the MySQL login, client side and backend side, against a gateway running as its own process
 * (so a crash shows as a dead gateway, not as an error vitest swallows) and a real MariaDB.
 */

const PASSWORD = 'n@tive-pw';
const ED_PASSWORD = 'ed25519-pw!';

/** A backend that greets offering TLS, then never answers the TLS handshake (a stalled or wrong server). */
async function stallingTlsBackend(): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    const caps = CLIENT.LONG_PASSWORD | CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.PLUGIN_AUTH | CLIENT.SSL | CLIENT.TRANSACTIONS;
    s.write(encodePacket(0, buildGreeting({ serverVersion: '10.11.9-MariaDB', connectionId: 7, scramble: randomBytes(20), capabilities: caps, charset: 45, status: 2, authPlugin: 'mysql_native_password' })));
    // The SSLRequest and the ClientHello are read and ignored.
    s.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as net.AddressInfo).port, close: () => { for (const s of sockets) s.destroy(); server.close(); } };
}

/**
 * A relay to MariaDB that lets the login through and answers the first command after it (vigil's own
 * session-setup query) with a TCP reset: the backend connection fails between login and relay.
 */
async function resettingRelay(to: number): Promise<{ port: number; resets: () => number; close(): void }> {
  const sockets = new Set<net.Socket>();
  let resets = 0;
  const server = net.createServer((c) => {
    const u = net.connect(to, '127.0.0.1');
    for (const s of [c, u]) {
      sockets.add(s);
      s.on('error', () => {});
    }
    u.pipe(c);
    const framer = new PacketFramer(1 << 30);
    c.on('data', (chunk: Buffer) => {
      let command = false;
      framer.push(chunk, (p) => (command ||= p.seq === 0));
      if (!command) return void u.write(chunk);
      resets++;
      u.destroy();
      c.resetAndDestroy();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as net.AddressInfo).port, resets: () => resets, close: () => { for (const s of sockets) s.destroy(); server.close(); } };
}

/**
 * A relay to MariaDB that notes, per connection, the last byte of the AuthSwitchRequest data the server
 * sends (for client_ed25519: the 32-byte random nonce, sent without a terminator).
 */
async function switchWatchingRelay(to: number): Promise<{ port: number; lastNonceByte: () => number | undefined; close(): void }> {
  const sockets = new Set<net.Socket>();
  let last: number | undefined;
  const server = net.createServer((c) => {
    const u = net.connect(to, '127.0.0.1');
    for (const s of [c, u]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    c.pipe(u);
    const framer = new PacketFramer(1 << 30);
    u.on('data', (chunk: Buffer) => {
      framer.push(chunk, (p) => {
        if (p.payload[0] === 0xfe && p.payload.length > 1) last = p.payload[p.payload.length - 1];
      });
      c.write(chunk);
    });
    u.on('close', () => c.destroy());
    c.on('close', () => u.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    lastNonceByte: () => last,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

let db: MariadbHandle;
let gw: GatewayProcess;
let stalling: Awaited<ReturnType<typeof stallingTlsBackend>>;
let relay: Awaited<ReturnType<typeof resettingRelay>>;
let base: string;

beforeAll(async () => {
  db = await startMariadb();
  await db.query(`CREATE USER native_user@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('${PASSWORD}'); GRANT ALL ON *.* TO native_user@'%';
    INSTALL SONAME 'auth_ed25519'; CREATE USER ed_user@'%' IDENTIFIED VIA ed25519 USING PASSWORD('${ED_PASSWORD}');`);
  stalling = await stallingTlsBackend();
  relay = await resettingRelay(db.port);
  base = tempDir('vigil-myauth-');
  const secret = secretsDir(base);
  const target = (name: string, port: number, more: Record<string, unknown> = {}) => ({ name, protocol: 'mysql', host: '127.0.0.1', port, user: 'native_user', password: { file: secret(name, PASSWORD) }, ...more });
  gw = await startGatewayProcess(
    {
      targets: [target('db', db.port), target('db-stall', stalling.port, { tls: true }), target('db-reset', relay.port)],
      roles: [{ name: 'dba', targets: ['db', 'db-stall', 'db-reset'], databases: ['*'] }],
      certs: { clock_skew: 0 },
      budgets: { refusals_per_window: 1_000_000 },
      // Short, so a login that honours it ends well within the test's own wait.
      gateway: { connect_timeout: '3s' },
    },
    base,
    { issue: { user: 'alice', roles: ['dba'] } },
  );
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  stalling?.close();
  relay?.close();
  await db?.stop();
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

/** A mysql2 login with alice's certificate: 'logged in' (after a round trip), or the error's message. */
async function login(user: string): Promise<string> {
  const creds = gw.issued!;
  const ssl = { ca: fs.readFileSync(creds.ca), cert: fs.readFileSync(creds.crt), key: fs.readFileSync(creds.key) };
  try {
    const c = await mysql.createConnection({ host: '127.0.0.1', port: gw.ports.mysql!, user, ssl, connectTimeout: 30_000 });
    await c.query('SELECT 1');
    await c.end();
    return 'logged in';
  } catch (e) {
    return (e as Error).message;
  }
}

const errOf = (payload: Buffer) => ({ code: payload.readUInt16LE(1), message: payload.subarray(9).toString('utf8') });

describe('mysql login: client side', () => {
  it('a MySQL 8 client offering caching_sha2_password without TLS gets ERR 1045 naming TLS at once, and the connection closes', async () => {
    const c = await rawConnect(gw.ports.mysql!);
    const caps = RAW_CAPS & ~CLIENT.SSL;
    c.send(encodePacket(1, buildClientHandshake({ capabilities: caps, maxPacket: 1 << 24, charset: 45, user: 'db', authResponse: randomBytes(32), authPlugin: 'caching_sha2_password', attributes: {} })));
    const reply = await c.next(20_000);
    expect(reply.payload[0]).toBe(0xff);
    const err = errOf(reply.payload);
    expect(err.code).toBe(1045);
    expect(err.message).toMatch(/TLS/);
    // A public-key request (what the client sends next for RSA full authentication) gets nothing: closed.
    c.send(encodePacket(3, Buffer.from([0x02])));
    await c.closed;
  });

  it('mysql2 without TLS is refused with ER_ACCESS_DENIED_ERROR, not left waiting', async () => {
    const e = await mysql.createConnection({ host: '127.0.0.1', port: gw.ports.mysql!, user: 'db', password: 'x' }).then(
      (c) => { void c.destroy(); return undefined; },
      (err: { code?: string; message: string }) => err,
    );
    expect(e?.code).toBe('ER_ACCESS_DENIED_ERROR');
    expect(e?.message).toMatch(/TLS/);
  });
});

describe('mysql login: backend side', () => {
  it('a backend that stalls the TLS handshake: the client gets an ERR within connect_timeout, not a hang', async () => {
    // Without a deadline on the TLS handshake no answer ever comes (mysql2's own connect timeout is longer).
    const outcome = await login('db-stall');
    expect(outcome).toMatch(/timed out connecting to the target database/);
  }, 90_000);

  it('a backend reset between login and relay ends that session with an ERR; the gateway keeps running', async () => {
    const outcome = await login('db-reset');
    expect(relay.resets()).toBeGreaterThan(0);
    expect(outcome).toMatch(/vigil: /);
    // The gateway process is still there and serves the next session.
    expect(gw.child.exitCode).toBeNull();
    expect(gw.child.signalCode).toBeNull();
    expect(await login('db')).toBe('logged in');
  }, 90_000);
});

describe('mysql login: backend auth plugins', () => {
  it('client_ed25519 signs the whole 32-byte nonce, also when its last byte is zero (1 login in 256)', async () => {
    const watch = await switchWatchingRelay(db.port);
    const caps = CLIENT.LONG_PASSWORD | CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.PLUGIN_AUTH | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT.TRANSACTIONS;
    try {
      // MariaDB greets with mysql_native_password, then switches to client_ed25519 with a random nonce:
      // log in until one nonce ends in 0x00 (about 1 in 256; 4000 attempts miss with odds below 1e-6).
      for (let attempt = 0; attempt < 4000; attempt++) {
        const outcome = await connectBackend({ host: '127.0.0.1', port: watch.port, user: 'ed_user', password: ED_PASSWORD, tls: false }, caps, 45, 30_000, {}).then(
          (b) => {
            b.socket.destroy();
            return 'ok';
          },
          (e: Error) => e.message,
        );
        const zeroEnded = watch.lastNonceByte() === 0;
        expect(outcome, zeroEnded ? 'login with a nonce ending in 0x00' : 'login').toBe('ok');
        if (zeroEnded) return;
      }
      throw new Error('no nonce ending in 0x00 was seen');
    } finally {
      watch.close();
    }
  }, 300_000);
});

