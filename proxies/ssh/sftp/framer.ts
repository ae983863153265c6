import { SftpDecodeError } from './errors.ts';

export interface SftpFramerOptions {
  /** Largest packet accepted (the uint32 length); larger is a framing error. */
  maxPacket: number;
  /**
   * Packet types whose tail is bulk file data (WRITE from the client, DATA from the server): only their
   * first `headBytes` bytes are buffered and handed over; the rest is counted and dropped, so a
   * transfer never accumulates in memory.
   */
  streamed: (type: number) => boolean;
  headBytes: number;
  /**
   * One packet: `body` is the whole packet after the length field, or, for a streamed type, its first
   * bytes (then `body.length < length`). `body` may be a view into the caller's chunk: copy what you keep.
   */
  onPacket(body: Buffer, length: number): void;
}

/**
 * Splits an SFTP byte stream into packets (uint32 length + body), from chunks cut anywhere. Knows
 * nothing about packet contents besides the type byte deciding whether the tail is streamed.
 */
export class SftpFramer {
  private readonly opts: SftpFramerOptions;
  private readonly lenBytes = Buffer.alloc(4);
  private lenHave = 0;
  /** Length of the packet being read, or -1 while reading the length field. */
  private length = -1;
  /** Bytes of the current packet to hand over, or -1 until the type byte decides. */
  private want = -1;
  private partial: Buffer | null = null;
  private have = 0;
  /** Streamed tail bytes still to skip. */
  private skip = 0;

  constructor(opts: SftpFramerOptions) {
    this.opts = opts;
  }

  /** True when the stream stopped inside a packet. */
  get midPacket(): boolean {
    return this.lenHave > 0 || this.length >= 0 || this.skip > 0;
  }

  /** Feed a chunk. Throws SftpDecodeError (from framing or from `onPacket`); the stream is then unusable. */
  push(chunk: Buffer): void {
    let off = 0;
    const end = chunk.length;
    while (off < end) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, end - off);
        this.skip -= n;
        off += n;
        if (this.skip === 0) this.length = -1;
        continue;
      }
      if (this.length < 0) {
        if (this.lenHave === 0 && end - off >= 4) {
          this.length = chunk.readUInt32BE(off);
          off += 4;
        } else {
          const n = Math.min(4 - this.lenHave, end - off);
          chunk.copy(this.lenBytes, this.lenHave, off, off + n);
          this.lenHave += n;
          off += n;
          if (this.lenHave < 4) continue;
          this.length = this.lenBytes.readUInt32BE(0);
          this.lenHave = 0;
        }
        if (this.length === 0) throw new SftpDecodeError('packet of length 0');
        if (this.length > this.opts.maxPacket) {
          throw new SftpDecodeError(`packet of ${this.length} bytes exceeds the ${this.opts.maxPacket}-byte limit`, 'VIGIL_SFTP_OVERSIZED');
        }
        this.want = -1;
        continue;
      }
      if (this.want < 0) {
        const streamed = this.opts.streamed(chunk[off]);
        this.want = streamed ? Math.min(this.length, this.opts.headBytes) : this.length;
        this.have = 0;
      }
      let body: Buffer;
      if (this.have === 0 && end - off >= this.want) {
        body = chunk.subarray(off, off + this.want);
        off += this.want;
      } else {
        this.partial ??= Buffer.allocUnsafe(this.want);
        const n = Math.min(this.want - this.have, end - off);
        chunk.copy(this.partial, this.have, off, off + n);
        this.have += n;
        off += n;
        if (this.have < this.want) continue;
        body = this.partial;
        this.partial = null;
      }
      const length = this.length;
      this.skip = length - this.want;
      if (this.skip === 0) this.length = -1;
      this.want = -1;
      this.have = 0;
      this.opts.onPacket(body, length);
    }
  }
}
