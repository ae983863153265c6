/**
 * MySQL packet framing: 3-byte little-endian payload length + 1-byte sequence id. A payload of 16 MiB - 1
 * (0xFFFFFF) means "continued in the next packet" (sequence id + 1); the logical payload is reassembled
 * here. Pure: bytes in, packets out; it never touches a socket and copies only across chunk boundaries.
 */
import { ProtocolError } from '../../src/errors.ts';

export const MAX_WIRE_PAYLOAD = 0xffffff;
const EMPTY = Buffer.alloc(0);

export interface Packet {
  /** Sequence id of the first wire packet. */
  seq: number;
  /** Sequence id of the last wire packet (differs from `seq` for payloads of 16 MiB and more). */
  lastSeq: number;
  payload: Buffer;
  /** The packet exactly as received (header + payload) when it came as one wire packet within one
   *  chunk: forwarding it unchanged is then a write of these bytes, without re-encoding. */
  wire?: Buffer;
}

/** A packet over the limit. The ERR answering it follows the last header read, as a server's does: a
 *  multi-part packet (16 MiB parts) is refused at the part that crosses the limit, so the ERR's sequence
 *  id is that part's plus one, not always 1. */
export class PacketTooLarge extends ProtocolError {
  constructor(
    message: string,
    readonly replySeq: number,
  ) {
    super(message, 'VIGIL_MYSQL_OVERSIZED');
  }
}

export class PacketFramer {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Parts of a payload continued over several wire packets. */
  private parts: Buffer[] = [];
  private partsLen = 0;
  private firstSeq = 0;
  private lastSeq = -1;
  /** The chunk the fast path is cutting packets from, and where its unread bytes begin. */
  private current: Buffer | undefined;
  private currentOff = 0;

  /** @param maxPayload largest logical payload accepted; larger is a ProtocolError (oversized). */
  constructor(private readonly maxPayload: number) {}

  /** Feed bytes; calls `onPacket` for each complete logical packet. Throws ProtocolError on bad framing. */
  push(chunk: Buffer, onPacket: (p: Packet) => void): void {
    if (chunk.length === 0) return;
    if (this.buffered === 0) {
      // Fast path: packets lying whole in this chunk are cut out as views of it, without copies.
      let off = 0;
      this.current = chunk;
      try {
        while (chunk.length - off >= 4 && this.parts.length === 0) {
          const len = chunk[off]! | (chunk[off + 1]! << 8) | (chunk[off + 2]! << 16);
          if (len > this.maxPayload) throw this.oversized(len, chunk[off + 3]!);
          if (len === MAX_WIRE_PAYLOAD || chunk.length - off < 4 + len) break;
          const seq = chunk[off + 3]!;
          const end = off + 4 + len;
          this.currentOff = end;
          // A chunk holding exactly one packet (the usual command) is its own wire bytes: one view less.
          onPacket({ seq, lastSeq: seq, payload: chunk.subarray(off + 4, end), wire: off === 0 && end === chunk.length ? chunk : chunk.subarray(off, end) });
          if (this.current !== chunk) return; // takeRemainder() took the rest
          off = end;
        }
      } finally {
        this.current = undefined;
      }
      if (off === chunk.length) return;
      chunk = off === 0 ? chunk : chunk.subarray(off);
    }
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (this.buffered >= 4) {
      const head = this.peek(4);
      const len = head[0]! | (head[1]! << 8) | (head[2]! << 16);
      const seq = head[3]!;
      if (this.partsLen + len > this.maxPayload) throw this.oversized(this.partsLen + len, seq);
      if (this.buffered < 4 + len) return;
      this.take(4);
      const body = this.take(len);
      if (this.lastSeq >= 0) {
        if (seq !== ((this.lastSeq + 1) & 0xff)) throw new ProtocolError('out-of-sequence continuation packet', 'VIGIL_MYSQL_SEQUENCE');
      } else {
        this.firstSeq = seq;
      }
      if (len === MAX_WIRE_PAYLOAD) {
        this.parts.push(body);
        this.partsLen += len;
        this.lastSeq = seq;
        continue;
      }
      let payload = body;
      if (this.parts.length > 0) {
        this.parts.push(body);
        payload = Buffer.concat(this.parts, this.partsLen + len);
        this.parts = [];
        this.partsLen = 0;
      }
      const first = this.firstSeq;
      this.lastSeq = -1;
      onPacket({ seq: first, lastSeq: seq, payload });
    }
  }

  private oversized(len: number, seq: number): PacketTooLarge {
    return new PacketTooLarge(`packet of ${len} bytes exceeds the limit of ${this.maxPayload}`, (seq + 1) & 0xff);
  }

  /** Take the bytes received after the last complete packet (e.g. the TLS ClientHello behind an SSLRequest). */
  takeRemainder(): Buffer {
    if (this.partsLen > 0) throw new ProtocolError('incomplete continued packet', 'VIGIL_MYSQL_TRUNCATED');
    const rest = this.current ? this.current.subarray(this.currentOff) : Buffer.concat(this.chunks);
    this.current = undefined;
    this.chunks = [];
    this.buffered = 0;
    return rest;
  }

  /** Bytes received but not yet part of a complete packet (a truncated packet at close). */
  get pendingBytes(): number {
    return this.buffered + this.partsLen;
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first;
    return Buffer.concat(this.chunks).subarray(0, n);
  }

  private take(n: number): Buffer {
    if (n === 0) return EMPTY;
    this.buffered -= n;
    const first = this.chunks[0]!;
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}

/** Encode a logical payload as wire packets starting at `seq` (splits at 16 MiB - 1). */
export function encodePacket(seq: number, payload: Buffer): Buffer {
  if (payload.length < MAX_WIRE_PAYLOAD) {
    const out = Buffer.allocUnsafe(4 + payload.length);
    out.writeUIntLE(payload.length, 0, 3);
    out[3] = seq & 0xff;
    payload.copy(out, 4);
    return out;
  }
  const pieces: Buffer[] = [];
  let off = 0;
  for (;;) {
    const len = Math.min(MAX_WIRE_PAYLOAD, payload.length - off);
    const h = Buffer.allocUnsafe(4);
    h.writeUIntLE(len, 0, 3);
    h[3] = seq & 0xff;
    seq++;
    pieces.push(h, payload.subarray(off, off + len));
    off += len;
    if (len < MAX_WIRE_PAYLOAD) break;
  }
  return Buffer.concat(pieces);
}

/** Number of wire packets `encodePacket` produces for a payload of `len` bytes. */
export function wirePacketCount(len: number): number {
  return Math.floor(len / MAX_WIRE_PAYLOAD) + 1;
}

/** What a PacketScanner asks of its consumer, once per logical packet. */
export interface ScanSink {
  /** A logical packet begins with byte `head` (-1 when empty) in a first wire packet of `length` bytes:
   *  true to get its whole payload in `packet`, false to only hear of it in `skipped`. */
  wants(head: number, length: number): boolean;
  packet(payload: Buffer, lastSeq: number): void;
  skipped(head: number, length: number, lastSeq: number): void;
  /** True while the packets to come are result-set rows the consumer only counts. The scanner then
   *  counts the whole rows lying in a chunk in one loop and reports them at once with `rows`, instead of
   *  a `wants` + `skipped` round trip per row. Any packet beginning with 0xFE or 0xFF (EOF/OK, ERR, or
   *  an unusual row) still takes the per-packet path, as do rows split across chunks. */
  countingRows(): boolean;
  rows(count: number, lastSeq: number): void;
}

/**
 * Follows a stream of packets whose bytes are relayed elsewhere (server responses), without cutting
 * out the packets nobody needs to read: rows and column definitions are only counted, so a result set
 * costs a few integer operations per row and no allocation. Packets the consumer wants are handed over
 * whole (views of the chunk when they lie in one, copied only across chunk boundaries). Pure.
 */
export class PacketScanner {
  private readonly header = Buffer.alloc(4);
  private headerLen = 0;
  /** Payload bytes of the current wire packet still to come; -1 while a header is expected. */
  private remaining = -1;
  private wireLen = 0;
  private lastSeq = 0;
  /** The current wire packet continues a logical packet (the previous one was 16 MiB - 1). */
  private continued = false;
  private decided = false;
  private capture = false;
  private head = -1;
  private firstLen = 0;
  private parts: Buffer[] = [];
  private partsLen = 0;

  /** @param maxCapture largest payload handed over whole; larger is a ProtocolError (oversized). */
  constructor(private readonly maxCapture: number) {}

  /** Sequence id of the last wire packet header seen. */
  get seq(): number {
    return this.lastSeq;
  }

  /** Sequence id of the first wire packet of the logical packet being handed over (`packet`/`skipped`). */
  get firstSeq(): number {
    return this.first;
  }
  private first = 0;

  push(chunk: Buffer, sink: ScanSink): void {
    const n = chunk.length;
    let off = 0;
    while (off < n) {
      if (this.remaining < 0 && this.headerLen === 0 && !this.continued && n - off >= 5 && sink.countingRows()) {
        // Result-set rows: a few integer operations per row (a read_only transaction relays ~400).
        let count = 0;
        let seq = this.lastSeq;
        while (n - off >= 5) {
          const len = chunk[off]! | (chunk[off + 1]! << 8) | (chunk[off + 2]! << 16);
          const head = chunk[off + 4]!;
          if (len === 0 || len === MAX_WIRE_PAYLOAD || n - off < 4 + len || head === 0xfe || head === 0xff) break;
          seq = chunk[off + 3]!;
          off += 4 + len;
          count++;
        }
        if (count > 0) {
          this.lastSeq = seq;
          sink.rows(count, seq);
          continue;
        }
      }
      if (this.remaining < 0) {
        let h: Buffer;
        let at: number;
        if (this.headerLen === 0 && n - off >= 4) {
          h = chunk;
          at = off;
          off += 4;
        } else {
          const k = Math.min(4 - this.headerLen, n - off);
          chunk.copy(this.header, this.headerLen, off, off + k);
          this.headerLen += k;
          off += k;
          if (this.headerLen < 4) return;
          this.headerLen = 0;
          h = this.header;
          at = 0;
        }
        const len = h[at]! | (h[at + 1]! << 8) | (h[at + 2]! << 16);
        const seq = h[at + 3]!;
        if (this.continued) {
          if (seq !== ((this.lastSeq + 1) & 0xff)) throw new ProtocolError('out-of-sequence continuation packet', 'VIGIL_MYSQL_SEQUENCE');
        } else {
          this.decided = false;
          this.first = seq;
        }
        this.lastSeq = seq;
        this.wireLen = len;
        this.remaining = len;
      }
      if (!this.decided) {
        let head = -1;
        if (this.wireLen > 0) {
          if (off >= n) return;
          head = chunk[off]!;
        }
        this.head = head;
        this.firstLen = this.wireLen;
        this.capture = sink.wants(head, this.wireLen);
        this.decided = true;
      }
      const take = Math.min(this.remaining, n - off);
      if (this.capture && take > 0) {
        if (this.partsLen + this.remaining > this.maxCapture) {
          throw new ProtocolError(`packet of more than ${this.maxCapture} bytes`, 'VIGIL_MYSQL_OVERSIZED');
        }
        this.parts.push(chunk.subarray(off, off + take));
        this.partsLen += take;
      }
      off += take;
      this.remaining -= take;
      if (this.remaining > 0) return;
      this.remaining = -1;
      if (this.wireLen === MAX_WIRE_PAYLOAD) {
        this.continued = true;
        continue;
      }
      this.continued = false;
      if (this.capture) {
        const parts = this.parts;
        const payload = parts.length === 1 ? parts[0]! : parts.length === 0 ? EMPTY : Buffer.concat(parts, this.partsLen);
        this.parts = [];
        this.partsLen = 0;
        sink.packet(payload, this.lastSeq);
      } else {
        sink.skipped(this.head, this.firstLen, this.lastSeq);
      }
    }
  }
}
