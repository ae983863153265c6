import { ProtocolError } from '../../src/errors.ts';

/**
 * Decoding of frontend (client → server) messages of protocol 3.0. Pure functions over one whole
 * message as cut by `MessageFramer` (header included). Every decoder checks bounds and throws
 * ProtocolError('VIGIL_PG_MALFORMED') rather than reading past the end.
 */

export const PROTOCOL_3_0 = 196608;
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

/** Frontend message type bytes. */
export const F = {
  Query: 0x51, // Q
  Parse: 0x50, // P
  Bind: 0x42, // B
  Execute: 0x45, // E
  Describe: 0x44, // D
  Close: 0x43, // C
  Sync: 0x53, // S
  Flush: 0x48, // H
  Terminate: 0x58, // X
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyFail: 0x66, // f
  FunctionCall: 0x46, // F
  Password: 0x70, // p (PasswordMessage, SASLInitialResponse, SASLResponse, GSSResponse)
} as const;

const KNOWN_TYPES = new Set<number>(Object.values(F));

export function isKnownFrontendType(type: number): boolean {
  return KNOWN_TYPES.has(type);
}

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; processId: number; secretKey: Buffer }
  | { kind: 'startup'; version: number; params: Map<string, string> };

export interface BindMessage {
  portal: string;
  statement: string;
  /** Format code per parameter (expanded: 0 or 1 codes are applied to all). */
  paramFormats: number[];
  /** Parameter values; null for SQL NULL. Subarrays of the message. */
  values: (Buffer | null)[];
  resultFormats: number[];
}

export interface ParseMessage {
  name: string;
  query: string;
  paramTypes: number[];
}

export interface FunctionCallMessage {
  oid: number;
  argFormats: number[];
  args: (Buffer | null)[];
  resultFormat: number;
}

function malformed(what: string): never {
  throw new ProtocolError(`malformed ${what} message`, 'VIGIL_PG_MALFORMED');
}

/** Cursor over one message body. */
class Reader {
  constructor(
    private readonly buf: Buffer,
    public off: number,
    private readonly what: string,
  ) {}
  int16(): number {
    if (this.off + 2 > this.buf.length) malformed(this.what);
    const v = this.buf.readInt16BE(this.off);
    this.off += 2;
    return v;
  }
  int32(): number {
    if (this.off + 4 > this.buf.length) malformed(this.what);
    const v = this.buf.readInt32BE(this.off);
    this.off += 4;
    return v;
  }
  byte(): number {
    if (this.off + 1 > this.buf.length) malformed(this.what);
    return this.buf[this.off++];
  }
  cstring(): string {
    const end = this.buf.indexOf(0, this.off);
    if (end < 0) malformed(this.what);
    if (end === this.off) {
      // The unnamed portal/statement, in most Bind, Describe and Execute messages: no decoder call.
      this.off++;
      return '';
    }
    const s = this.buf.toString('utf8', this.off, end);
    this.off = end + 1;
    return s;
  }
  bytes(n: number): Buffer {
    if (n < 0 || this.off + n > this.buf.length) malformed(this.what);
    const b = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return b;
  }
  end(): void {
    if (this.off !== this.buf.length) malformed(this.what);
  }
}

/** Decode an untyped startup-phase packet (length(4) code(4) ...). */
export function decodeStartupPacket(msg: Buffer): StartupPacket {
  const r = new Reader(msg, 4, 'startup');
  const code = r.int32();
  if (code === SSL_REQUEST_CODE) {
    r.end();
    return { kind: 'ssl' };
  }
  if (code === GSSENC_REQUEST_CODE) {
    r.end();
    return { kind: 'gssenc' };
  }
  if (code === CANCEL_REQUEST_CODE) {
    const processId = r.int32();
    // Protocol 3.2 allows longer secret keys; accept 4..256 bytes.
    const rest = msg.length - r.off;
    if (rest < 4 || rest > 256) malformed('CancelRequest');
    return { kind: 'cancel', processId, secretKey: Buffer.from(r.bytes(rest)) };
  }
  if (code >> 16 !== 3) {
    throw new ProtocolError(`unsupported frontend protocol ${code >> 16}.${code & 0xffff}`, 'VIGIL_PG_UNSUPPORTED');
  }
  const params = new Map<string, string>();
  for (;;) {
    const key = r.cstring();
    if (key === '') break;
    params.set(key, r.cstring());
  }
  r.end();
  return { kind: 'startup', version: code, params };
}

/** Encode a StartupMessage (used towards the backend). */
export function encodeStartupMessage(params: Iterable<[string, string]>, version = PROTOCOL_3_0): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of params) parts.push(Buffer.from(`${k}\0${v}\0`, 'utf8'));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  const out = Buffer.alloc(8 + body.length);
  out.writeUInt32BE(out.length, 0);
  out.writeUInt32BE(version, 4);
  body.copy(out, 8);
  return out;
}

/** SSLRequest (or GSSENCRequest with `code`). */
export function encodeSslRequest(code = SSL_REQUEST_CODE): Buffer {
  const out = Buffer.alloc(8);
  out.writeUInt32BE(8, 0);
  out.writeUInt32BE(code, 4);
  return out;
}

export function encodeCancelRequest(processId: number, secretKey: Buffer): Buffer {
  const out = Buffer.alloc(12 + secretKey.length);
  out.writeUInt32BE(out.length, 0);
  out.writeUInt32BE(CANCEL_REQUEST_CODE, 4);
  out.writeInt32BE(processId, 8);
  secretKey.copy(out, 12);
  return out;
}

/** Messages whose whole body is one string: Query, CopyFail, PasswordMessage. */
function decodeSingleString(msg: Buffer, what: string): string {
  const r = new Reader(msg, 5, what);
  const v = r.cstring();
  r.end();
  return v;
}

export const decodeQuery = (msg: Buffer): string => decodeSingleString(msg, 'Query');

export function decodeParse(msg: Buffer): ParseMessage {
  const r = new Reader(msg, 5, 'Parse');
  const name = r.cstring();
  const query = r.cstring();
  const n = r.int16();
  if (n < 0) malformed('Parse');
  const paramTypes = new Array<number>(n);
  for (let i = 0; i < n; i++) paramTypes[i] = r.int32() >>> 0;
  r.end();
  return { name, query, paramTypes };
}

function readFormats(r: Reader, what: string): number[] {
  const n = r.int16();
  if (n < 0) malformed(what);
  const f = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    f[i] = r.int16();
    if (f[i] !== 0 && f[i] !== 1) malformed(what);
  }
  return f;
}

function readValues(r: Reader, what: string): (Buffer | null)[] {
  const n = r.int16();
  if (n < 0) malformed(what);
  const values = new Array<Buffer | null>(n);
  for (let i = 0; i < n; i++) {
    const len = r.int32();
    if (len === -1) values[i] = null;
    else if (len < 0) malformed(what);
    else values[i] = r.bytes(len);
  }
  return values;
}

function expandFormats(formats: number[], count: number, what: string): number[] {
  if (formats.length === count) return formats;
  if (formats.length > 1) malformed(what);
  // A plain loop: Array.prototype.fill is a slow runtime call in V8, and this runs per Bind.
  const f = formats.length === 0 ? 0 : formats[0];
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(f);
  return out;
}

export function decodeBind(msg: Buffer): BindMessage {
  const r = new Reader(msg, 5, 'Bind');
  const portal = r.cstring();
  const statement = r.cstring();
  const formats = readFormats(r, 'Bind');
  const values = readValues(r, 'Bind');
  const resultFormats = readFormats(r, 'Bind');
  r.end();
  return { portal, statement, paramFormats: expandFormats(formats, values.length, 'Bind'), values, resultFormats };
}

export function decodeExecute(msg: Buffer): { portal: string; maxRows: number } {
  const r = new Reader(msg, 5, 'Execute');
  const portal = r.cstring();
  const maxRows = r.int32();
  r.end();
  return { portal, maxRows };
}

/** Describe and Close: `S` (statement) or `P` (portal) plus a name. */
export function decodeTarget(msg: Buffer, what: 'Describe' | 'Close'): { kind: 'S' | 'P'; name: string } {
  const r = new Reader(msg, 5, what);
  const k = r.byte();
  if (k !== 0x53 && k !== 0x50) malformed(what);
  const name = r.cstring();
  r.end();
  return { kind: k === 0x53 ? 'S' : 'P', name };
}

export const decodeCopyFail = (msg: Buffer): string => decodeSingleString(msg, 'CopyFail');

export function decodeFunctionCall(msg: Buffer): FunctionCallMessage {
  const r = new Reader(msg, 5, 'FunctionCall');
  const oid = r.int32() >>> 0;
  const formats = readFormats(r, 'FunctionCall');
  const args = readValues(r, 'FunctionCall');
  const resultFormat = r.int16();
  r.end();
  return { oid, argFormats: expandFormats(formats, args.length, 'FunctionCall'), args, resultFormat };
}

/** PasswordMessage: a NUL-terminated password (used for the vigil token). */
export const decodePassword = (msg: Buffer): string => decodeSingleString(msg, 'PasswordMessage');

/** Messages whose body is exactly empty. */
export function checkEmpty(msg: Buffer, what: string): void {
  if (msg.length !== 5) malformed(what);
}

/** Encode a typed message from a type byte and body parts (used for tests and backend-side messages). */
export function encodeMessage(type: number, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out[0] = type;
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

export function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, 'utf8');
}

export function int16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(v);
  return b;
}

export function int32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v);
  return b;
}
