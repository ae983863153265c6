/**
 * The body of a JSON string (without the quotes) straight from UTF-8 bytes, byte for byte what
 * `JSON.stringify(buf.toString('utf8'))` encodes to as UTF-8 — for well-formed UTF-8 input, which the
 * caller checks (isUtf8) before taking this path. Recordings of binary-ish output (zeros, control bytes)
 * otherwise pay for decoding, a 6x longer escaped string and encoding it back; this is one pass.
 */

/** Per ASCII byte: 0 = copied as is, 0xff = `\u00XX`, else the letter after a backslash (`\n`, `\"`, …). */
const ESCAPE = new Uint8Array(128);
for (let b = 0; b < 0x20; b++) ESCAPE[b] = 0xff;
ESCAPE[0x08] = 0x62; // \b
ESCAPE[0x09] = 0x74; // \t
ESCAPE[0x0a] = 0x6e; // \n
ESCAPE[0x0c] = 0x66; // \f
ESCAPE[0x0d] = 0x72; // \r
ESCAPE[0x22] = 0x22; // \"
ESCAPE[0x5c] = 0x5c; // \\
const HEX = Buffer.from('0123456789abcdef', 'latin1');
/** The escape of each byte that has one, for filling runs of it natively. */
const PATTERN: (Buffer | undefined)[] = Array.from({ length: 128 }, (_, b) =>
  ESCAPE[b] === 0 ? undefined : Buffer.from(JSON.stringify(String.fromCharCode(b)).slice(1, -1), 'latin1'),
);
/** Runs of one escaped byte at least this long (zero padding, `head -c N /dev/zero`) are written with
 *  Buffer.fill instead of byte by byte. */
const RUN = 16;

/** Most bytes `escapeJsonUtf8` writes for `n` input bytes. */
export const maxEscapedLength = (n: number): number => n * 6;

/**
 * Write the escaped form of `src` (well-formed UTF-8) into `out` at `at`; returns the new offset. `out`
 * must have room for maxEscapedLength(src.length) bytes. Bytes >= 0x80 are copied: JSON leaves non-ASCII
 * characters unescaped, and well-formed UTF-8 holds no lone surrogates (the one case it would escape).
 */
export function escapeJsonUtf8(src: Uint8Array, out: Buffer, at: number): number {
  let o = at;
  for (let i = 0; i < src.length; i++) {
    const b = src[i];
    if (b >= 0x80) {
      out[o++] = b;
      continue;
    }
    const e = ESCAPE[b];
    if (e === 0) {
      out[o++] = b;
      continue;
    }
    if (i + RUN <= src.length && src[i + RUN - 1] === b) {
      let end = i + 1;
      while (end < src.length && src[end] === b) end++;
      if (end - i >= RUN) {
        const pattern = PATTERN[b]!;
        const next = o + (end - i) * pattern.length;
        out.fill(pattern, o, next);
        o = next;
        i = end - 1;
        continue;
      }
    }
    if (e !== 0xff) {
      out[o] = 0x5c;
      out[o + 1] = e;
      o += 2;
    } else {
      out[o] = 0x5c;
      out[o + 1] = 0x75; // u
      out[o + 2] = 0x30;
      out[o + 3] = 0x30;
      out[o + 4] = HEX[b >> 4];
      out[o + 5] = HEX[b & 15];
      o += 6;
    }
  }
  return o;
}
