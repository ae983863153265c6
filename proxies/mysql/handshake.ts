/**
 * Connection-phase messages and the generic OK / ERR / EOF packets: build and parse, pure functions over
 * payloads (framing is separate). Field order follows the Protocol::HandshakeV10, HandshakeResponse41,
 * SSLRequest, OK_Packet, ERR_Packet and EOF_Packet layouts.
 */
import { ProtocolError } from '../../src/errors.ts';
import { CLIENT, Reader, lenencBytes, lenencInt, u16, u32 } from './wire.ts';

export interface Greeting {
  protocolVersion: number;
  serverVersion: string;
  connectionId: number;
  /** Auth plugin data (scramble), usually 20 bytes. */
  scramble: Buffer;
  capabilities: number;
  charset: number;
  status: number;
  authPlugin: string;
  /** MariaDB's extended capabilities (bits 32-63), sent only when CLIENT_MYSQL (LONG_PASSWORD) is clear. */
  mariadbCapabilities?: number;
}

/** A MariaDB server says "I am MariaDB, read my extended capabilities" by clearing CLIENT_MYSQL (bit 0). */
function extendedCaps(caps: number, ext: number | undefined): Buffer {
  const b = Buffer.alloc(4);
  if (!(caps & CLIENT.LONG_PASSWORD) && ext) b.writeUInt32LE(ext >>> 0);
  return b;
}

export function buildGreeting(g: Omit<Greeting, 'protocolVersion'>): Buffer {
  const caps = g.capabilities >>> 0;
  const s = g.scramble;
  return Buffer.concat([
    Buffer.from([10]),
    Buffer.from(g.serverVersion + '\0', 'utf8'),
    u32(g.connectionId),
    s.subarray(0, 8),
    Buffer.from([0]),
    u16(caps & 0xffff),
    Buffer.from([g.charset]),
    u16(g.status),
    u16((caps >>> 16) & 0xffff),
    Buffer.from([s.length + 1]),
    Buffer.alloc(6),
    extendedCaps(caps, g.mariadbCapabilities),
    s.subarray(8),
    Buffer.from([0]),
    Buffer.from(g.authPlugin + '\0', 'utf8'),
  ]);
}

export function parseGreeting(payload: Buffer): Greeting {
  const r = new Reader(payload);
  const protocolVersion = r.u8();
  if (protocolVersion !== 10) throw new ProtocolError(`unsupported protocol version ${protocolVersion}`, 'VIGIL_MYSQL_MALFORMED');
  const serverVersion = r.cstring().toString('utf8');
  const connectionId = r.u32();
  const part1 = r.bytes(8);
  r.u8();
  let caps = r.u16();
  let charset = 0;
  let status = 0;
  let part2: Buffer = Buffer.alloc(0);
  let authPlugin = 'mysql_native_password';
  let ext = 0;
  if (r.remaining > 0) {
    charset = r.u8();
    status = r.u16();
    caps |= r.u16() << 16;
    const authLen = r.u8();
    r.bytes(6);
    const tail = r.u32();
    if (!(caps & CLIENT.LONG_PASSWORD)) ext = tail >>> 0;
    if (caps & CLIENT.SECURE_CONNECTION) {
      const n = Math.max(13, authLen - 8);
      part2 = r.bytes(Math.min(n, r.remaining));
      // The second part is NUL-terminated on the wire; the scramble itself is 20 bytes.
      if (part2.length > 0 && part2[part2.length - 1] === 0) part2 = part2.subarray(0, part2.length - 1);
    }
    if (caps & CLIENT.PLUGIN_AUTH && r.remaining > 0) authPlugin = r.cstringOrRest().toString('utf8');
  }
  const g: Greeting = { protocolVersion, serverVersion, connectionId, scramble: Buffer.concat([part1, part2]), capabilities: caps >>> 0, charset, status, authPlugin };
  if (ext) g.mariadbCapabilities = ext;
  return g;
}

export interface ClientHandshake {
  capabilities: number;
  maxPacket: number;
  charset: number;
  /** True for the 32-byte SSLRequest (no user yet). */
  sslRequest: boolean;
  user: string;
  authResponse: Buffer;
  database?: string;
  authPlugin?: string;
  attributes: Record<string, string>;
  /** MariaDB extended capabilities (last 4 filler bytes) of a client that cleared CLIENT_MYSQL. */
  mariadbCapabilities?: number;
}

export const SSL_REQUEST_LENGTH = 32;

export function parseClientHandshake(payload: Buffer): ClientHandshake {
  const r = new Reader(payload);
  const capabilities = r.u32();
  if (!(capabilities & CLIENT.PROTOCOL_41)) throw new ProtocolError('client does not speak protocol 4.1', 'VIGIL_MYSQL_MALFORMED');
  const maxPacket = r.u32();
  const charset = r.u8();
  r.bytes(19);
  const tail = r.u32() >>> 0;
  const base: { capabilities: number; maxPacket: number; charset: number; attributes: Record<string, string>; mariadbCapabilities?: number } = { capabilities, maxPacket, charset, attributes: {} };
  if (!(capabilities & CLIENT.LONG_PASSWORD) && tail) base.mariadbCapabilities = tail;
  if (r.remaining === 0) return { ...base, sslRequest: true, user: '', authResponse: Buffer.alloc(0) };
  const user = r.cstring().toString('utf8');
  let authResponse: Buffer;
  if (capabilities & CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA) authResponse = r.lenencBytes();
  else if (capabilities & CLIENT.SECURE_CONNECTION) authResponse = r.bytes(r.u8());
  else authResponse = r.cstring();
  let database: string | undefined;
  if (capabilities & CLIENT.CONNECT_WITH_DB && r.remaining > 0) {
    database = r.cstringOrRest().toString('utf8');
    if (database === '') database = undefined;
  }
  let authPlugin: string | undefined;
  if (capabilities & CLIENT.PLUGIN_AUTH && r.remaining > 0) authPlugin = r.cstringOrRest().toString('utf8');
  if (capabilities & CLIENT.CONNECT_ATTRS && r.remaining > 0) {
    const total = r.lenenc();
    const attrs = new Reader(r.bytes(total));
    while (attrs.remaining > 0) {
      const k = attrs.lenencBytes().toString('utf8');
      base.attributes[k] = attrs.lenencBytes().toString('utf8');
    }
  }
  return { ...base, sslRequest: false, user, authResponse, database, authPlugin };
}

export function buildSslRequest(caps: number, maxPacket: number, charset: number, mariadbCapabilities?: number): Buffer {
  return Buffer.concat([u32(caps), u32(maxPacket), Buffer.from([charset]), Buffer.alloc(19), extendedCaps(caps, mariadbCapabilities)]);
}

export function buildClientHandshake(h: Omit<ClientHandshake, 'sslRequest'>): Buffer {
  const parts: Buffer[] = [u32(h.capabilities), u32(h.maxPacket), Buffer.from([h.charset]), Buffer.alloc(19), extendedCaps(h.capabilities, h.mariadbCapabilities), Buffer.from(h.user + '\0', 'utf8')];
  if (h.capabilities & CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA) parts.push(lenencBytes(h.authResponse));
  else parts.push(Buffer.from([h.authResponse.length]), h.authResponse);
  if (h.capabilities & CLIENT.CONNECT_WITH_DB) parts.push(Buffer.from((h.database ?? '') + '\0', 'utf8'));
  if (h.capabilities & CLIENT.PLUGIN_AUTH) parts.push(Buffer.from((h.authPlugin ?? '') + '\0', 'utf8'));
  if (h.capabilities & CLIENT.CONNECT_ATTRS) {
    const kv = Buffer.concat(Object.entries(h.attributes).flatMap(([k, v]) => [lenencBytes(Buffer.from(k)), lenencBytes(Buffer.from(v))]));
    parts.push(lenencInt(kv.length), kv);
  }
  return Buffer.concat(parts);
}

// ---- generic responses ----

export interface OkPacket {
  /** Up to 2^64 - 1: a bigint beyond 2^53 (an AUTO_INCREMENT can start anywhere). */
  affectedRows: number | bigint;
  lastInsertId: number | bigint;
  status: number;
  warnings: number;
}

/** OK packet (header 0x00, or 0xFE when it ends a result set under CLIENT_DEPRECATE_EOF). */
export function parseOk(payload: Buffer): OkPacket {
  const r = new Reader(payload, 1);
  const affectedRows = r.lenencU64();
  const lastInsertId = r.lenencU64();
  const status = r.remaining >= 2 ? r.u16() : 0;
  const warnings = r.remaining >= 2 ? r.u16() : 0;
  return { affectedRows, lastInsertId, status, warnings };
}

export interface ErrPacket {
  code: number;
  sqlState: string;
  message: string;
}

export function parseErr(payload: Buffer): ErrPacket {
  const r = new Reader(payload, 1);
  const code = r.u16();
  let sqlState = 'HY000';
  if (r.remaining > 0 && r.buf[r.pos] === 0x23 /* # */) {
    r.u8();
    sqlState = r.bytes(5).toString('latin1');
  }
  return { code, sqlState, message: r.rest().toString('utf8') };
}

export function buildErr(e: ErrPacket): Buffer {
  return Buffer.concat([Buffer.from([0xff]), u16(e.code), Buffer.from('#' + e.sqlState, 'latin1'), Buffer.from(e.message, 'utf8')]);
}

export function buildOk(o: Partial<OkPacket> = {}): Buffer {
  return Buffer.concat([Buffer.from([0]), lenencInt(o.affectedRows ?? 0), lenencInt(o.lastInsertId ?? 0), u16(o.status ?? 0), u16(o.warnings ?? 0)]);
}

/** Status flags of a 5-byte EOF packet (0xFE, warnings, status). */
export function parseEofStatus(payload: Buffer): number {
  return payload.length >= 5 ? payload.readUInt16LE(3) : 0;
}

/** AuthSwitchRequest: 0xFE, plugin name, plugin data. */
export function buildAuthSwitch(plugin: string, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0xfe]), Buffer.from(plugin + '\0', 'utf8'), data]);
}

/** The data is kept whole: a native or SHA-2 scramble ends in a NUL its plugin ignores (it reads 20
 *  bytes), but client_ed25519's 32-byte nonce is random and unterminated, so a last 0x00 is part of it. */
export function parseAuthSwitch(payload: Buffer): { plugin: string; data: Buffer } {
  const r = new Reader(payload, 1);
  const plugin = r.cstringOrRest().toString('utf8');
  return { plugin, data: r.rest() };
}

/** Error codes vigil uses in its own ERR packets (MySQL's numbers where one fits). */
export const ERR = {
  ACCESS_DENIED: { code: 1045, sqlState: '28000' },
  UNKNOWN_COM: { code: 1047, sqlState: '08S01' },
  NET_PACKETS_OUT_OF_ORDER: { code: 1156, sqlState: '08S01' },
  NET_PACKET_TOO_LARGE: { code: 1153, sqlState: '08S01' },
  NET_READ_ERROR: { code: 1158, sqlState: '08S01' },
  NOT_ALLOWED_COMMAND: { code: 1148, sqlState: '42000' },
  NO_SUCH_THREAD: { code: 1094, sqlState: 'HY000' },
  /** ER_UNKNOWN_STMT_HANDLER: a statement id the server never confirmed to this session. */
  UNKNOWN_STMT_HANDLER: { code: 1243, sqlState: 'HY000' },
  /** ER_SPECIFIC_ACCESS_DENIED_ERROR: a guardrail refused the statement. */
  GUARDRAIL: { code: 1227, sqlState: '42000' },
  /** ER_CONNECT_TO_FOREIGN_DATA_SOURCE: the closest server-side code for "the target is unreachable". */
  BACKEND_UNAVAILABLE: { code: 1429, sqlState: 'HY000' },
  SERVER_SHUTDOWN: { code: 1053, sqlState: '08S01' },
  CONNECTION_KILLED: { code: 1927, sqlState: '70100' },
  HANDSHAKE: { code: 1043, sqlState: '08S01' },
  /** ER_UNKNOWN_ERROR: no server code says "not run because it could not be recorded". */
  AUDIT_UNAVAILABLE: { code: 1105, sqlState: 'HY000' },
} as const;
