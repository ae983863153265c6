import { SftpDecodeError } from './errors.ts';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Bounds-checked reader over one SFTP packet body. Every overrun is a SftpDecodeError. */
export class SftpReader {
  private off = 0;
  constructor(private readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.off;
  }

  get offset(): number {
    return this.off;
  }

  private need(n: number, what: string): void {
    if (this.buf.length - this.off < n) throw new SftpDecodeError(`truncated ${what}`);
  }

  u8(what = 'byte'): number {
    this.need(1, what);
    return this.buf[this.off++];
  }

  u32(what = 'uint32'): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }

  /** uint64 as a number: exact below 2^53 (8 PiB), which covers every real offset and size. */
  u64(what = 'uint64'): number {
    this.need(8, what);
    const v = this.buf.readUInt32BE(this.off) * 0x1_0000_0000 + this.buf.readUInt32BE(this.off + 4);
    this.off += 8;
    return v;
  }

  /** A length-prefixed byte string, as a view (copy it to keep it beyond the packet). */
  bytes(what = 'string'): Buffer {
    const n = this.u32(`${what} length`);
    this.need(n, what);
    const v = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }

  /** Length prefix of a string whose contents may lie beyond this buffer (streamed data). */
  lengthOnly(what: string): number {
    return this.u32(`${what} length`);
  }

  /** A path or message: UTF-8 when valid, otherwise the bytes with non-ASCII escaped as \xNN. */
  text(what = 'string'): string {
    return bytesToText(this.bytes(what));
  }
}

export function bytesToText(b: Buffer): string {
  try {
    return utf8.decode(b);
  } catch {
    let s = '';
    for (const c of b) s += c < 0x80 ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
    return s;
  }
}
