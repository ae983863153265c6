import fs from 'node:fs';
import net from 'node:net';
import { constants, generateKeyPairSync, privateDecrypt, randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PacketFramer, encodePacket } from '../../proxies/mysql/framing.ts';
import { buildAuthSwitch, buildGreeting, buildOk, parseClientHandshake, type Greeting } from '../../proxies/mysql/handshake.ts';
import { BackendLogin, PublicKeyRetrievalRefused } from '../../proxies/mysql/auth/backend-login.ts';
import { CLIENT } from '../../proxies/mysql/wire.ts';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { secretsDir, tempDir } from '../support/tmp.ts';

/**
 * caching_sha2_password full authentication without TLS: vigil must not fetch the server's RSA key over
 * the plaintext connection (a man in the middle hands over its own key and decrypts the password) unless
 * the target opts in, like stock drivers (Connector/J allowPublicKeyRetrieval, mysql --get-server-public-key).
 */

const PASSWORD = 'backend-s3cret-pw';
const SERVER_CAPS =
  CLIENT.LONG_PASSWORD | CLIENT.FOUND_ROWS | CLIENT.LONG_FLAG | CLIENT.CONNECT_WITH_DB | CLIENT.PROTOCOL_41 | CLIENT.TRANSACTIONS | CLIENT.SECURE_CONNECTION |
  CLIENT.MULTI_STATEMENTS | CLIENT.MULTI_RESULTS | CLIENT.PS_MULTI_RESULTS | CLIENT.PLUGIN_AUTH | CLIENT.CONNECT_ATTRS | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT.DEPRECATE_EOF;

/**
 * A MySQL 8 server whose account's hash is not cached: every login goes to caching_sha2_password full
 * authentication (AuthMoreData 0x04). It hands out its public key on request and checks the password.
 */
async function mysql8FullAuthServer() {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
  const sockets = new Set<net.Socket>();
  const seen = { connections: 0, keyRequests: 0, passwordsOk: 0 };
  const server = net.createServer((s) => {
    seen.connections++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    const scramble = randomBytes(20);
    s.write(encodePacket(0, buildGreeting({ serverVersion: '8.0.36', connectionId: seen.connections, scramble, capabilities: SERVER_CAPS, charset: 255, status: 2, authPlugin: 'caching_sha2_password' })));
    let step: 'response' | 'full-auth' | 'encrypted' | 'done' = 'response';
    const framer = new PacketFramer(1 << 24);
    s.on('data', (chunk: Buffer) =>
      framer.push(chunk, (p) => {
        if (step === 'response') {
          parseClientHandshake(p.payload);
          step = 'full-auth';
          s.write(encodePacket(p.seq + 1, Buffer.from([0x01, 0x04])));
        } else if (step === 'full-auth' && p.payload.length === 1 && p.payload[0] === 0x02) {
          seen.keyRequests++;
          step = 'encrypted';
          s.write(encodePacket(p.seq + 1, Buffer.concat([Buffer.from([0x01]), Buffer.from(publicKey)])));
        } else if (step === 'encrypted') {
          const plain = privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, p.payload);
          const password = Buffer.from(plain.map((b, i) => b ^ scramble[i % 20]!)).toString('utf8');
          step = 'done';
          if (password === PASSWORD + '\0') {
            seen.passwordsOk++;
            s.write(encodePacket(p.seq + 1, buildOk({ status: 2 })));
          } else s.destroy();
        } else s.destroy();
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    openSockets: () => sockets.size,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

let refusing: Awaited<ReturnType<typeof mysql8FullAuthServer>>;
let optedIn: Awaited<ReturnType<typeof mysql8FullAuthServer>>;
let tg: TestGateway;
let alice: IssuedFiles;
let base: string;

beforeAll(async () => {
  refusing = await mysql8FullAuthServer();
  optedIn = await mysql8FullAuthServer();
  base = tempDir('vigil-mypubkey-');
  const secret = secretsDir(base);
  const target = (name: string, port: number, more: Record<string, unknown> = {}) => ({ name, protocol: 'mysql', host: '127.0.0.1', port, user: 'app', password: { file: secret(name, PASSWORD) }, ...more });
  tg = await startTestGateway(
    {
      targets: [target('mysql8', refusing.port), target('mysql8-optin', optedIn.port, { allow_public_key_retrieval: true })],
      roles: [{ name: 'dba', targets: ['mysql8', 'mysql8-optin'], databases: ['*'] }],
      certs: { clock_skew: 0 },
      // The greeting shows the opted-in server (vigil's probe logs in there), so clients ask for its capabilities.
      mysql: { listen: '127.0.0.1:0', greeting_target: 'mysql8-optin' },
    },
    base,
  );
  alice = await tg.issue({ user: 'alice', roles: ['dba'] });
}, 120_000);

afterAll(async () => {
  await tg?.stop();
  refusing?.close();
  optedIn?.close();
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

const connect = (user: string) =>
  mysql.createConnection({ host: '127.0.0.1', port: tg.ports.mysql!, user, ssl: { ca: fs.readFileSync(alice.ca), cert: fs.readFileSync(alice.crt), key: fs.readFileSync(alice.key) }, connectTimeout: 30_000 });

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('caching_sha2_password full authentication without TLS', () => {
  it('is refused by default: no key fetched over plaintext, a clear ERR naming the target and the remedy, an event, the backend closed', async () => {
    const err = await connect('mysql8').then(
      async (c) => {
        await c.end();
        return undefined;
      },
      (e: { errno?: number; message: string }) => e,
    );
    expect(refusing.seen.keyRequests).toBe(0);
    expect(refusing.seen.passwordsOk).toBe(0);
    expect(err?.errno).toBe(1429);
    expect(err?.message).toMatch(/target mysql8 .*unencrypted/);
    expect(err?.message).toMatch(/tls, server_public_key_file, or allow_public_key_retrieval: true/);
    const end = await tg.waitForEvent((e) => e.type === 'session.end' && e.target.name === 'mysql8');
    expect(end.outcome).toBe('failure');
    const details = end.details as Record<string, unknown>;
    expect(details.reason).toBe('backend_error');
    expect(String(details.error)).toMatch(/allow_public_key_retrieval/);
    expect(JSON.stringify(tg.events)).not.toContain(PASSWORD);
    await until(() => refusing.openSockets() === 0, 'the backend connection to close');
  }, 60_000);

  it('with allow_public_key_retrieval: true the key is fetched and the encrypted password logs in', async () => {
    const before = { ...optedIn.seen };
    const c = await connect('mysql8-optin');
    c.destroy();
    expect(optedIn.seen.keyRequests).toBe(before.keyRequests + 1);
    expect(optedIn.seen.passwordsOk).toBe(before.passwordsOk + 1);
  }, 60_000);
});

describe('BackendLogin: sha256_password without TLS or a key', () => {
  const CAPS = CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.PLUGIN_AUTH | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA;
  const greeting = (plugin: string): Greeting => ({ protocolVersion: 10, serverVersion: '8.0.36', connectionId: 5, scramble: randomBytes(20), capabilities: CAPS, charset: 255, status: 2, authPlugin: plugin });

  it('answers a sha256_password greeting with mysql_native_password, and refuses a switch to sha256_password', () => {
    const login = new BackendLogin({ user: 'app', password: PASSWORD, capabilities: CAPS, charset: 45, maxPacket: 1 << 24, tls: false, targetName: 'm8' });
    expect(parseClientHandshake(login.handshakeResponse(greeting('sha256_password'))).authPlugin).toBe('mysql_native_password');
    expect(() => login.onPacket(buildAuthSwitch('sha256_password', randomBytes(20)))).toThrow(PublicKeyRetrievalRefused);
  });

  it('requests the key for sha256_password when the target opts in', () => {
    const login = new BackendLogin({ user: 'app', password: PASSWORD, capabilities: CAPS, charset: 45, maxPacket: 1 << 24, tls: false, allowPublicKeyRetrieval: true });
    const hs = parseClientHandshake(login.handshakeResponse(greeting('sha256_password')));
    expect(hs.authPlugin).toBe('sha256_password');
    expect(hs.authResponse).toEqual(Buffer.from([0x01]));
  });
});
