import { ProtocolError } from '../errors.ts';

/**
 * SSH wire encoding (RFC 4251 §5): uint32, uint64, string, mpint, packed into buffers. Pure and
 * socket-free; every read is bounds-checked and throws `ProtocolError` (code VIGIL_SSH_MALFORMED) on
 * truncated or oversized input, so a hostile blob can only ever produce that error.
 */
export class SshWireError extends ProtocolError {
  constructor(message: string) {
    super(message, 'VIGIL_SSH_MALFORMED');
  }
}

/** Untrusted text for an error message: shortened and JSON-quoted, so control characters stay inert. */
export function quote(s: string): string {
  return JSON.stringify(s.length > 64 ? s.slice(0, 64) + '…' : s);
}

export class SshReader {
  private pos: number;
  constructor(
    private readonly buf: Buffer,
    offset = 0,
  ) {
    this.pos = offset;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number, what: string): void {
    if (this.buf.length - this.pos < n) throw new SshWireError(`truncated ${what}`);
  }

  uint32(what = 'uint32'): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  uint64(what = 'uint64'): bigint {
    this.need(8, what);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  byte(what = 'byte'): number {
    this.need(1, what);
    return this.buf[this.pos++];
  }

  /** A `string`: uint32 length + bytes. The result shares memory with the input. */
  string(what = 'string'): Buffer {
    const len = this.uint32(`${what} length`);
    this.need(len, what);
    const v = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return v;
  }

  /** A `string` that must be UTF-8 text without NUL (names, principals, key ids). */
  text(what = 'text'): string {
    const b = this.string(what);
    if (b.includes(0)) throw new SshWireError(`${what} contains NUL`);
    const s = b.toString('utf8');
    if (Buffer.byteLength(s) !== b.length || s.includes('\uFFFD')) throw new SshWireError(`${what} is not valid UTF-8`);
    return s;
  }

  /** An `mpint`, returned as its unsigned big-endian magnitude (negative numbers are refused). */
  mpint(what = 'mpint'): Buffer {
    const b = this.string(what);
    if (b.length > 0 && b[0] & 0x80) throw new SshWireError(`${what} is negative`);
    let i = 0;
    while (i < b.length && b[i] === 0) i++;
    return b.subarray(i);
  }

  /** Throws unless every byte was consumed. */
  end(what: string): void {
    if (this.pos !== this.buf.length) throw new SshWireError(`${this.buf.length - this.pos} trailing bytes after ${what}`);
  }
}

export function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

export function u64(n: bigint): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64BE(n, 0);
  return b;
}

export function sshString(v: Buffer | string): Buffer {
  const data = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
  return Buffer.concat([u32(data.length), data]);
}

/** `mpint` from an unsigned big-endian magnitude (adds the 0x00 sign byte when the top bit is set). */
export function sshMpint(magnitude: Buffer): Buffer {
  let i = 0;
  while (i < magnitude.length && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  return sshString(m.length > 0 && m[0] & 0x80 ? Buffer.concat([Buffer.from([0]), m]) : m);
}
