import net from 'node:net';
import tls from 'node:tls';
import fs from 'node:fs';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { BackendError } from '../../src/errors.ts';
import { MessageFramer } from './framing.ts';
import { B, decodeBackendMessage } from './backend.ts';
import { cstr, encodeMessage, encodeStartupMessage, encodeSslRequest, F, int32 } from './frontend.ts';

interface ScramClient {
  startSession(mechanisms: string[], stream?: unknown): { mechanism: string; response: string };
  continueSession(session: object, password: string, serverData: string, stream?: unknown): Promise<void>;
  finalizeSession(session: object, serverData: string): void;
}
let scramClient: ScramClient | undefined;
/** node-postgres' SCRAM-SHA-256 client (RFC 5802/7677, SASLprep, channel binding), loaded when first needed. */
function loadScram(): ScramClient {
  if (!scramClient) {
    try {
      scramClient = createRequire(import.meta.url)('pg/lib/crypto/sasl.js') as ScramClient;
    } catch {
      throw new BackendLoginError('SCRAM-SHA-256 login needs the "pg" package installed next to vigil', '28000');
    }
  }
  return scramClient;
}

/**
 * Logging in to the real PostgreSQL with the target's credentials (the engineer never sees them):
 * optional TLS (verified or not), StartupMessage, then whichever method the server asks for —
 * trust, SCRAM-SHA-256, md5, or cleartext (only over TLS). Resolves at the first ReadyForQuery with the
 * raw ParameterStatus/Notice messages to replay to the client and the real BackendKeyData.
 */

export type BackendTlsMode = 'disable' | 'require' | 'verify-full';

export interface BackendLogin {
  host: string;
  port: number;
  user: string;
  database: string;
  password?: string;
  tls: BackendTlsMode;
  /** PEM CA file to verify the backend certificate (verify-full); system roots when absent. */
  caFile?: string;
  /** Name checked against the backend certificate (default: host). */
  servername?: string;
  /** Startup parameters to pass through (besides user and database). */
  params: [string, string][];
  timeoutMs: number;
  maxMessage: number;
}

export interface BackendSession {
  socket: net.Socket;
  /** Raw ParameterStatus / NoticeResponse / NegotiateProtocolVersion messages, in order, to replay to the client. */
  replay: Buffer[];
  processId: number;
  secretKey: Buffer;
  /** Bytes received after ReadyForQuery (normally none). */
  leftover: Buffer;
  encrypted: boolean;
}

/** Error from the backend during login: SQLSTATE and message are safe to show to the client. */
export class BackendLoginError extends BackendError {
  constructor(
    message: string,
    readonly sqlstate: string,
  ) {
    super(message);
  }
}

function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = crypto.createHash('md5').update(password + user).digest('hex');
  return `md5${crypto.createHash('md5').update(Buffer.concat([Buffer.from(inner), salt])).digest('hex')}`;
}

function connectTcp(host: string, port: number, signal: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, noDelay: true });
    const fail = (e: Error) => {
      s.destroy();
      reject(e);
    };
    signal.addEventListener('abort', () => fail(new BackendError('timed out connecting')), { once: true });
    s.once('error', fail);
    s.once('connect', () => {
      s.off('error', fail);
      s.setNoDelay(true);
      resolve(s);
    });
  });
}

/** Read exactly one byte (the SSLRequest answer). */
function readByte(s: net.Socket): Promise<number> {
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      cleanup();
      if (d.length !== 1) {
        // A server must not send anything after 'S'/'N' before the handshake (CVE-2021-23222 class).
        s.destroy();
        reject(new BackendError('backend sent unexpected bytes after its SSLRequest answer'));
        return;
      }
      s.pause();
      resolve(d[0]);
    };
    const onEnd = () => {
      cleanup();
      reject(new BackendError('backend closed the connection during TLS negotiation'));
    };
    const cleanup = () => {
      s.off('data', onData);
      s.off('error', onEnd);
      s.off('close', onEnd);
    };
    s.on('data', onData);
    s.once('error', onEnd);
    s.once('close', onEnd);
  });
}

async function startTls(s: net.Socket, login: BackendLogin, signal: AbortSignal): Promise<tls.TLSSocket> {
  s.write(encodeSslRequest());
  const answer = await readByte(s);
  if (answer !== 0x53) throw new BackendError('backend does not accept TLS but the target requires it');
  return new Promise((resolve, reject) => {
    const verify = login.tls === 'verify-full';
    const servername = login.servername ?? login.host;
    const t = tls.connect({
      socket: s,
      servername: net.isIP(servername) ? undefined : servername,
      ca: login.caFile ? fs.readFileSync(login.caFile) : undefined,
      rejectUnauthorized: verify,
      checkServerIdentity: verify ? (_host, cert) => tls.checkServerIdentity(servername, cert) : () => undefined,
    });
    const fail = (e: Error) => {
      t.destroy();
      reject(new BackendError(`TLS to the backend failed: ${e.message}`));
    };
    signal.addEventListener('abort', () => fail(new Error('timed out')), { once: true });
    t.once('error', fail);
    t.once('secureConnect', () => {
      t.off('error', fail);
      resolve(t);
    });
  });
}

export async function loginToBackend(login: BackendLogin): Promise<BackendSession> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), login.timeoutMs);
  let socket: net.Socket | undefined;
  try {
    socket = await connectTcp(login.host, login.port, ac.signal);
    let encrypted = false;
    if (login.tls !== 'disable') {
      socket = await startTls(socket, login, ac.signal);
      encrypted = true;
    }
    return await authenticate(socket, login, encrypted, ac.signal);
  } catch (e) {
    socket?.destroy();
    if (e instanceof BackendError) throw e;
    throw new BackendError((e as Error).message, { cause: e });
  } finally {
    clearTimeout(timer);
  }
}

function authenticate(socket: net.Socket, login: BackendLogin, encrypted: boolean, signal: AbortSignal): Promise<BackendSession> {
  return new Promise((resolve, reject) => {
    const framer = new MessageFramer({ maxLength: login.maxMessage });
    const replay: Buffer[] = [];
    let processId = 0;
    let secretKey = Buffer.alloc(4);
    let scram: object | undefined;
    let done = false;
    const send = (type: number, body: Buffer) => socket.write(encodeMessage(type, body));
    const needPassword = () => {
      if (login.password === undefined) throw new BackendLoginError('the target asks for a password but none is configured', '28P01');
      return login.password;
    };
    const finish = (err?: Error, leftover?: Buffer) => {
      if (done) return;
      done = true;
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onClose);
      if (err) return reject(err);
      socket.pause();
      resolve({ socket, replay, processId, secretKey, leftover: leftover ?? Buffer.alloc(0), encrypted });
    };
    // Async SCRAM steps must stay in order with the messages that follow them.
    let chain = Promise.resolve();
    const onMessage = (type: number, msg: Buffer | undefined): void => {
      const m = msg!;
      switch (type) {
        case B.Authentication: {
          const a = decodeBackendMessage(m) as { name: string; salt?: Buffer; mechanisms?: string[]; data?: string };
          switch (a.name) {
            case 'authenticationOk':
              return;
            case 'authenticationCleartextPassword':
              if (!encrypted) throw new BackendLoginError('the target asks for a cleartext password over an unencrypted connection; enable backend TLS', '28000');
              send(F.Password, cstr(needPassword()));
              return;
            case 'authenticationMD5Password':
              send(F.Password, cstr(md5Password(login.user, needPassword(), a.salt!)));
              return;
            case 'authenticationSASL': {
              const s = loadScram().startSession(a.mechanisms!, encrypted ? socket : undefined);
              scram = s;
              const resp = Buffer.from(s.response, 'utf8');
              send(F.Password, Buffer.concat([cstr(s.mechanism), int32(resp.length), resp]));
              return;
            }
            case 'authenticationSASLContinue':
              chain = chain.then(async () => {
                await loadScram().continueSession(scram!, needPassword(), a.data!, encrypted ? socket : undefined);
                send(F.Password, Buffer.from((scram as { response: string }).response, 'utf8'));
              });
              return;
            case 'authenticationSASLFinal':
              chain = chain.then(() => loadScram().finalizeSession(scram!, a.data!));
              return;
            default:
              throw new BackendLoginError('the target asks for an authentication method vigil does not support', '28000');
          }
        }
        case B.ErrorResponse: {
          const e = decodeBackendMessage(m) as unknown as { code?: string; message: string };
          throw new BackendLoginError(e.message, e.code ?? '08006');
        }
        case B.BackendKeyData:
          processId = m.readInt32BE(5);
          secretKey = Buffer.from(m.subarray(9));
          return;
        case B.ParameterStatus:
        case B.NoticeResponse:
        case B.NegotiateProtocolVersion:
          replay.push(Buffer.from(m));
          return;
        default:
          throw new BackendLoginError(`unexpected message '${String.fromCharCode(type)}' from the backend during login`, '08P01');
      }
    };
    const onData = (chunk: Buffer) => {
      try {
        let ready = false;
        const off = framer.push(
          chunk,
          (type, msg) => {
            if (type === B.ReadyForQuery) ready = true;
            else onMessage(type, msg);
          },
          () => ready,
        );
        if (ready) chain.then(() => finish(undefined, chunk.subarray(off)), (e) => finish(e));
      } catch (e) {
        finish(e as Error);
      }
      chain = chain.catch((e) => {
        finish(e);
      });
    };
    const onClose = () => finish(new BackendError('the backend closed the connection during login'));
    signal.addEventListener('abort', () => finish(new BackendError('timed out logging in to the backend')), { once: true });
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onClose);
    socket.resume();
    const params: [string, string][] = [['user', login.user], ['database', login.database], ...login.params];
    socket.write(encodeStartupMessage(params));
  });
}
