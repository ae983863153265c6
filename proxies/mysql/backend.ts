/**
 * Opens the connection to a backend MySQL/MariaDB server and logs in with the target's configured
 * credentials (optionally over TLS). Socket plumbing only; the exchange itself is BackendLogin.
 */
import net from 'node:net';
import tls from 'node:tls';
import fs from 'node:fs';
import { BackendError, ProtocolError } from '../../src/errors.ts';
import { PacketFramer, encodePacket, type Packet } from './framing.ts';
import { buildSslRequest, parseErr, parseGreeting, type ErrPacket, type Greeting, type OkPacket } from './handshake.ts';
import { BackendLogin } from './auth/backend-login.ts';
import { CLIENT } from './wire.ts';

export interface BackendTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database?: string;
  /** TLS to the backend: off, or on with an optional CA file (verified when given). */
  tls: false | { ca?: string };
  serverPublicKey?: string;
  /** Fetch the server's RSA key over plaintext when needed (the target's `allow_public_key_retrieval`). */
  allowPublicKeyRetrieval?: boolean;
  /** The target's name, for error messages. */
  name?: string;
}

export interface BackendConnection {
  socket: net.Socket | tls.TLSSocket;
  greeting: Greeting;
  /** Capabilities in force on the backend connection. */
  capabilities: number;
  /** MariaDB extended capabilities in force (0 with MySQL). */
  mariadbCapabilities: number;
  ok: OkPacket;
}

const MAX_BACKEND_PAYLOAD = 1 << 30;

const ignoreSocketError = () => {};

/** The backend answered the login with its own ERR: the client gets that ERR as the server sent it. */
export class BackendRefusedLogin extends BackendError {
  constructor(readonly serverError: ErrPacket) {
    super(`the target database refused vigil's login (${serverError.code} ${serverError.sqlState}): ${serverError.message}`);
  }
}

export async function connectBackend(
  t: BackendTarget,
  capabilities: number,
  charset: number,
  timeoutMs: number,
  attributes: Record<string, string>,
  mariadbCapabilities = 0,
): Promise<BackendConnection> {
  const raw = net.connect({ host: t.host, port: t.port, noDelay: true });
  raw.setNoDelay(true);
  let sock: net.Socket | tls.TLSSocket = raw;
  const framer = new PacketFramer(MAX_BACKEND_PAYLOAD);
  const queue: Packet[] = [];
  let waiter: { resolve: (p: Packet) => void; reject: (e: Error) => void } | undefined;
  let failure: Error | undefined;
  // Every wait of the login (a packet, the TLS handshake) ends with the first failure: the timeout too.
  let rejectFailed: (e: Error) => void = () => {};
  const failed = new Promise<never>((_, reject) => (rejectFailed = reject));
  failed.catch(() => {});
  const fail = (e: Error) => {
    failure ??= e;
    rejectFailed(failure);
    waiter?.reject(failure);
    waiter = undefined;
  };
  const onData = (chunk: Buffer) => {
    try {
      framer.push(chunk, (p) => {
        if (waiter) {
          const w = waiter;
          waiter = undefined;
          w.resolve(p);
        } else queue.push(p);
      });
    } catch (e) {
      fail(e as Error);
    }
  };
  const onError = (e: Error) => fail(new BackendError(`cannot reach the target database: ${(e as NodeJS.ErrnoException).code ?? e.message}`, { cause: e }));
  const onClose = () => fail(new BackendError('the target database closed the connection during login'));
  const next = () =>
    new Promise<Packet>((resolve, reject) => {
      if (failure) return reject(failure);
      const p = queue.shift();
      if (p) return resolve(p);
      waiter = { resolve, reject };
    });
  const timer = setTimeout(() => fail(new BackendError('timed out connecting to the target database')), timeoutMs);
  raw.on('data', onData);
  raw.on('error', onError);
  raw.on('close', onClose);
  try {
    const first = await next();
    if (first.payload[0] === 0xff) throw new BackendRefusedLogin(parseErr(first.payload));
    const greeting = parseGreeting(first.payload);
    let seq = first.seq + 1;
    const useTls = t.tls !== false;
    if (useTls && !(greeting.capabilities & CLIENT.SSL)) throw new BackendError('the target database does not offer TLS, but the target requires it');
    const login = new BackendLogin({
      user: t.user,
      password: t.password,
      database: t.database,
      capabilities: capabilities | (useTls ? CLIENT.SSL : 0),
      mariadbCapabilities,
      charset: charset || greeting.charset,
      maxPacket: MAX_BACKEND_PAYLOAD,
      tls: useTls,
      serverPublicKey: t.serverPublicKey,
      allowPublicKeyRetrieval: t.allowPublicKeyRetrieval,
      targetName: t.name,
      attributes,
    });
    const response = login.handshakeResponse(greeting);
    if (t.tls !== false) {
      raw.write(encodePacket(seq++, buildSslRequest(login.capabilities, MAX_BACKEND_PAYLOAD, charset || greeting.charset, login.mariadbCapabilities)));
      raw.off('data', onData);
      const ca = t.tls.ca ? fs.readFileSync(t.tls.ca) : undefined;
      const secure = tls.connect({ socket: raw, host: t.host, ca, servername: net.isIP(t.host) ? undefined : t.host, rejectUnauthorized: ca !== undefined });
      secure.on('data', onData);
      secure.on('error', onError);
      const handshake = new Promise<void>((resolve, reject) => {
        secure.once('secureConnect', resolve);
        secure.once('error', (e) => reject(new BackendError(`TLS to the target database failed: ${e.message}`, { cause: e })));
      });
      await Promise.race([handshake, failed]);
      sock = secure;
    }
    sock.write(encodePacket(seq++, response));
    for (;;) {
      const p = await next();
      const step = login.onPacket(p.payload);
      if (step.kind === 'ok') {
        clearTimeout(timer);
        sock.off('data', onData);
        sock.off('error', onError);
        raw.off('error', onError);
        raw.off('close', onClose);
        // Until the session's relay takes the socket over (vigil's session-setup queries run first), an
        // 'error' without a listener would crash the gateway: it is dropped here, and the 'close' that
        // follows it is what the session sees.
        sock.on('error', ignoreSocketError);
        if (sock !== raw) raw.on('error', ignoreSocketError);
        if (queue.length > 0 || framer.pendingBytes > 0) throw new ProtocolError('the target database sent data after login', 'VIGIL_MYSQL_UNSOLICITED');
        return { socket: sock, greeting, capabilities: login.capabilities, mariadbCapabilities: login.mariadbCapabilities, ok: step.ok };
      }
      if (step.kind === 'error') throw new BackendRefusedLogin(step.err);
      if (step.kind === 'send') sock.write(encodePacket(p.lastSeq + 1, step.payload));
    }
  } catch (e) {
    clearTimeout(timer);
    sock.destroy();
    raw.destroy();
    throw e;
  }
}
