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
}

export class PacketFramer {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Parts of a payload continued over several wire packets. */
  private parts: Buffer[] = [];
  private partsLen = 0;
  private firstSeq = 0;
  private lastSeq = -1;

  /** @param maxPayload largest logical payload accepted; larger is a ProtocolError (oversized). */
  constructor(private readonly maxPayload: number) {}

  /** Feed bytes; calls `onPacket` for each complete logical packet. Throws ProtocolError on bad framing. */
  push(chunk: Buffer, onPacket: (p: Packet) => void): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (this.buffered >= 4) {
      const head = this.peek(4);
      const len = head[0]! | (head[1]! << 8) | (head[2]! << 16);
      const seq = head[3]!;
      if (this.partsLen + len > this.maxPayload) {
        throw new ProtocolError(`packet of ${this.partsLen + len} bytes exceeds the limit of ${this.maxPayload}`, 'VIGIL_MYSQL_OVERSIZED');
      }
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

  /** Take the bytes received after the last complete packet (e.g. the TLS ClientHello behind an SSLRequest). */
  takeRemainder(): Buffer {
    if (this.partsLen > 0) throw new ProtocolError('incomplete continued packet', 'VIGIL_MYSQL_TRUNCATED');
    const rest = Buffer.concat(this.chunks);
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
