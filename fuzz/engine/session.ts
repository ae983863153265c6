/**
 * Input format of the stateful targets (trackers, observers): a session as a series of chunks, each
 * `direction(1) length(2, big-endian) bytes`. Direction 0 is the client, 1 the server; targets may give
 * other values a meaning (a command shape, a resize). The capture script writes real sessions in this
 * format, and the mutators' length-field edit knows 16-bit big-endian lengths.
 */
export interface SessionChunk {
  dir: number;
  bytes: Buffer;
}

export function parseSession(data: Buffer): SessionChunk[] {
  const out: SessionChunk[] = [];
  let off = 0;
  while (off + 3 <= data.length) {
    const dir = data[off];
    const len = data.readUInt16BE(off + 1);
    const bytes = data.subarray(off + 3, Math.min(data.length, off + 3 + len));
    out.push({ dir, bytes });
    off += 3 + len;
  }
  return out;
}

export function encodeSession(chunks: SessionChunk[]): Buffer {
  const parts: Buffer[] = [];
  for (const c of chunks) {
    for (let off = 0; off < c.bytes.length || off === 0; off += 0xffff) {
      const piece = c.bytes.subarray(off, off + 0xffff);
      const h = Buffer.alloc(3);
      h[0] = c.dir;
      h.writeUInt16BE(piece.length, 1);
      parts.push(h, piece);
      if (c.bytes.length === 0) break;
    }
  }
  return Buffer.concat(parts);
}
