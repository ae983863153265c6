import { describe, it, expect } from 'vitest';
import { createHash, generateKeyPairSync, privateDecrypt, constants, createPrivateKey, sign } from 'node:crypto';
import { cachingSha2Scramble, nativePasswordScramble } from '../../proxies/mysql/auth/scramble.ts';
import { mariadbEd25519PublicKey, mariadbEd25519Sign } from '../../proxies/mysql/auth/ed25519.ts';
import { BackendLogin } from '../../proxies/mysql/auth/backend-login.ts';
import { buildAuthSwitch, buildOk, parseClientHandshake, type Greeting } from '../../proxies/mysql/handshake.ts';
import { CLIENT } from '../../proxies/mysql/wire.ts';

const sha = (alg: string, ...b: Buffer[]) => b.reduce((h, x) => h.update(x), createHash(alg)).digest();
const SCRAMBLE = Buffer.from([10, 47, 74, 111, 75, 73, 34, 48, 88, 76, 114, 74, 37, 13, 3, 80, 82, 2, 23, 21]);
const CAPS = CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.PLUGIN_AUTH | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT.SSL | CLIENT.DEPRECATE_EOF;
const greeting = (plugin: string, scramble = SCRAMBLE): Greeting => ({ protocolVersion: 10, serverVersion: '8.0.36', connectionId: 5, scramble, capabilities: CAPS, charset: 255, status: 2, authPlugin: plugin });
const moreData = (...b: number[]) => Buffer.from([0x01, ...b]);

describe('mysql_native_password', () => {
  it('passes the server-side check (stored SHA1(SHA1(pw)) recovers SHA1(pw))', () => {
    const proof = nativePasswordScramble('s3cr3t', SCRAMBLE);
    const stored = sha('sha1', sha('sha1', Buffer.from('s3cr3t')));
    const mask = sha('sha1', SCRAMBLE, stored);
    const stage1 = Buffer.from(proof.map((b, i) => b ^ mask[i]!));
    expect(sha('sha1', stage1).equals(stored)).toBe(true);
    expect(nativePasswordScramble('', SCRAMBLE).length).toBe(0);
  });
});

describe('caching_sha2_password (MySQL 8) known answers', () => {
  it('fast-auth scramble matches published vectors', () => {
    // Vectors from go-sql-driver/mysql auth_test.go (TestSHA256Pass), computed by a real MySQL 8 client.
    expect(cachingSha2Scramble('secret', SCRAMBLE).toString('hex')).toBe('f490e76f66d9d86665ce54d98c78d0acfe2fb0b08b423da807144873d30b312c');
    expect(cachingSha2Scramble('secret2', SCRAMBLE).toString('hex')).toBe('abc3934a012cf342e876071c8ee202de51785b430258a7a0138bc79c4d800bc6');
  });

  it('fast path: scramble in the handshake, 0x03 then OK', () => {
    const login = new BackendLogin({ user: 'app', password: 'secret', capabilities: CAPS, charset: 45, maxPacket: 1 << 24, tls: false });
    const hs = parseClientHandshake(login.handshakeResponse(greeting('caching_sha2_password')));
    expect(hs.authPlugin).toBe('caching_sha2_password');
    expect(hs.authResponse.toString('hex')).toBe('f490e76f66d9d86665ce54d98c78d0acfe2fb0b08b423da807144873d30b312c');
    expect(hs.capabilities & CLIENT.SSL).toBe(0);
    expect(login.onPacket(moreData(0x03))).toEqual({ kind: 'wait' });
    expect(login.onPacket(buildOk())).toMatchObject({ kind: 'ok' });
  });

  it('full auth over TLS sends the NUL-terminated password', () => {
    const login = new BackendLogin({ user: 'app', password: 'secret', capabilities: CAPS, charset: 45, maxPacket: 1 << 24, tls: true });
    login.handshakeResponse(greeting('caching_sha2_password'));
    expect(login.onPacket(moreData(0x04))).toEqual({ kind: 'send', payload: Buffer.from('secret\0') });
    expect(login.onPacket(buildOk())).toMatchObject({ kind: 'ok' });
  });

  it('full auth without TLS (key retrieval opted in): requests the RSA key, sends OAEP(pw XOR scramble) the server can decrypt', () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    const login = new BackendLogin({ user: 'app', password: 'secret', capabilities: CAPS, charset: 45, maxPacket: 1 << 24, tls: false, allowPublicKeyRetrieval: true });
    login.handshakeResponse(greeting('caching_sha2_password'));
    expect(login.onPacket(moreData(0x04))).toEqual({ kind: 'send', payload: Buffer.from([0x02]) });
    const step = login.onPacket(Buffer.concat([Buffer.from([0x01]), Buffer.from(publicKey)]));
    expect(step.kind).toBe('send');
    const plain = privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, (step as { payload: Buffer }).payload);
    const pw = Buffer.from(plain.map((b, i) => b ^ SCRAMBLE[i % 20]!));
    expect(pw.toString()).toBe('secret\0');
    expect(login.onPacket(buildOk())).toMatchObject({ kind: 'ok' });
  });

  it('full auth with a configured server key does not ask for it', () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    const login = new BackendLogin({ user: 'app', password: 'secret', capabilities: CAPS, charset: 45, maxPacket: 1 << 24, tls: false, serverPublicKey: publicKey });
    login.handshakeResponse(greeting('caching_sha2_password'));
    const step = login.onPacket(moreData(0x04));
    expect(step.kind === 'send' && step.payload.length).toBe(256);
  });

  it('auth switch from caching_sha2 to mysql_native_password uses the new scramble', () => {
    const login = new BackendLogin({ user: 'app', password: 'pw', capabilities: CAPS, charset: 45, maxPacket: 1 << 24, tls: false });
    login.handshakeResponse(greeting('caching_sha2_password'));
    const fresh = Buffer.from('ABCDEFGHIJKLMNOPQRST');
    expect(login.onPacket(buildAuthSwitch('mysql_native_password', Buffer.concat([fresh, Buffer.from([0])])))).toEqual({ kind: 'send', payload: nativePasswordScramble('pw', fresh) });
  });

  it('never sends a clear-text password on an unencrypted connection', () => {
    const login = new BackendLogin({ user: 'app', password: 'pw', capabilities: CAPS, charset: 45, maxPacket: 1 << 24, tls: false });
    login.handshakeResponse(greeting('mysql_native_password'));
    expect(() => login.onPacket(buildAuthSwitch('mysql_clear_password', Buffer.alloc(0)))).toThrow(/unencrypted/);
    expect(() => login.onPacket(buildAuthSwitch('dialog', Buffer.alloc(0)))).toThrow(/unsupported/);
  });
});

describe('MariaDB client_ed25519', () => {
  it('derives the public key MariaDB stores for PASSWORD(...)', () => {
    // `CREATE USER e IDENTIFIED VIA ed25519 USING PASSWORD('secret')` on MariaDB 10.11 stores this key.
    expect(mariadbEd25519PublicKey('secret').toString('base64').replace(/=+$/, '')).toBe('ZIgUREUg5PVgQ6LskhXmO+eZLS0nC8be6HPjYWR4YJY');
  });

  it('for a 32-byte password equals standard Ed25519 with that seed (node:crypto)', () => {
    const seed = Buffer.alloc(32, 9);
    const key = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
    const msg = Buffer.from('0123456789abcdef0123456789abcdef');
    expect(mariadbEd25519Sign(seed, msg).equals(sign(null, msg, key))).toBe(true);
  });
});
