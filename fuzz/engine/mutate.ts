/**
 * Byte-level mutators, in the spirit of libFuzzer/AFL havoc: each call applies 1 to 4 stacked edits.
 * Protocol decoders are mostly guarded by length fields, so besides bit flips and interesting values
 * there is a mutator that rewrites a would-be length field with values near the real remaining length.
 */

export type Rng = () => number;

/** mulberry32: small, fast, replayable from a seed. */
export function rng(seed: number): Rng {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const INTERESTING_8 = [0, 1, 0x7f, 0x80, 0xff, 0x10, 0x20, 0x40, 0x64, 0x0a, 0x00, 0x3b, 0x27, 0x22, 0x5c];
const INTERESTING_32 = [0, 1, 2, 3, 4, 5, 8, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0xffffff, 0x1000000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

export interface MutateContext {
  rand: Rng;
  maxLen: number;
  dictionary: Buffer[];
  /** Another input to splice with. */
  other: () => Buffer | undefined;
}

const int = (r: Rng, n: number): number => Math.floor(r() * n);

function writeUInt(buf: Buffer, off: number, width: 1 | 2 | 3 | 4, value: number, le: boolean): void {
  if (off < 0 || off + width > buf.length) return;
  value = value >>> 0;
  if (width === 4) le ? buf.writeUInt32LE(value, off) : buf.writeUInt32BE(value, off);
  else if (width === 3) buf.writeUIntLE(value & 0xffffff, off, 3);
  else if (width === 2) le ? buf.writeUInt16LE(value & 0xffff, off) : buf.writeUInt16BE(value & 0xffff, off);
  else buf[off] = value & 0xff;
}

type Mutator = (b: Buffer, c: MutateContext) => Buffer;

const mutators: Mutator[] = [
  // bit flip
  (b, c) => {
    if (b.length === 0) return b;
    b[int(c.rand, b.length)] ^= 1 << int(c.rand, 8);
    return b;
  },
  // random byte
  (b, c) => {
    if (b.length === 0) return b;
    b[int(c.rand, b.length)] = int(c.rand, 256);
    return b;
  },
  // interesting 8-bit value
  (b, c) => {
    if (b.length === 0) return b;
    b[int(c.rand, b.length)] = INTERESTING_8[int(c.rand, INTERESTING_8.length)];
    return b;
  },
  // interesting 16/24/32-bit value, either byte order
  (b, c) => {
    const w = ([2, 3, 4] as const)[int(c.rand, 3)];
    if (b.length < w) return b;
    writeUInt(b, int(c.rand, b.length - w + 1), w, INTERESTING_32[int(c.rand, INTERESTING_32.length)], c.rand() < 0.5);
    return b;
  },
  // small arithmetic on a byte or a 16/32-bit word
  (b, c) => {
    if (b.length === 0) return b;
    const w = ([1, 2, 4] as const)[int(c.rand, 3)];
    if (b.length < w) return b;
    const off = int(c.rand, b.length - w + 1);
    const le = c.rand() < 0.5;
    const cur = w === 1 ? b[off] : w === 2 ? (le ? b.readUInt16LE(off) : b.readUInt16BE(off)) : le ? b.readUInt32LE(off) : b.readUInt32BE(off);
    writeUInt(b, off, w, cur + (int(c.rand, 35) - 17), le);
    return b;
  },
  // length-field edit: a 16/24/32-bit field set near the number of bytes after it (or extreme values)
  (b, c) => {
    const w = ([2, 3, 4] as const)[int(c.rand, 3)];
    if (b.length < w) return b;
    const off = int(c.rand, b.length - w + 1);
    const rest = b.length - off - (c.rand() < 0.5 ? 0 : w);
    const choices = [rest, rest + 1, rest - 1, rest + int(c.rand, 64), 0, rest * 2, 0xffffffff, 0x7fffffff, 0xffffff];
    writeUInt(b, off, w, choices[int(c.rand, choices.length)], w === 3 || c.rand() < 0.3);
    return b;
  },
  // insert random or repeated bytes
  (b, c) => {
    const n = 1 + int(c.rand, c.rand() < 0.8 ? 8 : 128);
    const fill = c.rand() < 0.5 ? Buffer.alloc(n, int(c.rand, 256)) : Buffer.from(Array.from({ length: n }, () => int(c.rand, 256)));
    const at = int(c.rand, b.length + 1);
    return Buffer.concat([b.subarray(0, at), fill, b.subarray(at)]);
  },
  // delete a range
  (b, c) => {
    if (b.length < 2) return b;
    const at = int(c.rand, b.length);
    const n = 1 + int(c.rand, Math.min(b.length - at, c.rand() < 0.8 ? 8 : b.length));
    return Buffer.concat([b.subarray(0, at), b.subarray(at + n)]);
  },
  // duplicate or copy a range elsewhere
  (b, c) => {
    if (b.length < 2) return b;
    const from = int(c.rand, b.length);
    const n = 1 + int(c.rand, Math.min(b.length - from, 64));
    const at = int(c.rand, b.length + 1);
    const piece = Buffer.from(b.subarray(from, from + n));
    if (c.rand() < 0.5) return Buffer.concat([b.subarray(0, at), piece, b.subarray(at)]);
    piece.copy(b, Math.min(at, b.length - 1));
    return b;
  },
  // truncate
  (b, c) => (b.length === 0 ? b : b.subarray(0, int(c.rand, b.length))),
  // dictionary token: insert or overwrite
  (b, c) => {
    if (c.dictionary.length === 0) return b;
    const tok = c.dictionary[int(c.rand, c.dictionary.length)];
    const at = int(c.rand, b.length + 1);
    if (c.rand() < 0.5) return Buffer.concat([b.subarray(0, at), tok, b.subarray(at)]);
    const out = Buffer.from(b);
    tok.copy(out, at, 0, Math.max(0, Math.min(tok.length, out.length - at)));
    return out;
  },
  // splice / crossover with another corpus input
  (b, c) => {
    const o = c.other();
    if (!o || o.length === 0) return b;
    const cut = int(c.rand, b.length + 1);
    const from = int(c.rand, o.length);
    if (c.rand() < 0.5) return Buffer.concat([b.subarray(0, cut), o.subarray(from)]);
    const n = 1 + int(c.rand, Math.min(o.length - from, 256));
    return Buffer.concat([b.subarray(0, cut), o.subarray(from, from + n), b.subarray(cut)]);
  },
];

/** A mutated copy of `input` (the original is never modified), at most `maxLen` bytes. */
export function mutate(input: Buffer, c: MutateContext): Buffer {
  let b: Buffer = Buffer.from(input);
  const rounds = 1 + int(c.rand, 4);
  for (let i = 0; i < rounds; i++) b = mutators[int(c.rand, mutators.length)](b, c);
  if (b.length > c.maxLen) b = b.subarray(0, c.maxLen);
  return Buffer.from(b);
}
