/**
 * The few DER encoders (X.690) vigil needs to build X.509 certificates: node:crypto signs and verifies
 * but cannot build certificates. Encoding only; reading certificates is left to node's X509Certificate.
 */
function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), length(content.length), content]);
}

export const seq = (...items: Buffer[]) => tlv(0x30, Buffer.concat(items));
export const set = (...items: Buffer[]) => tlv(0x31, Buffer.concat(items));
export const octets = (b: Buffer) => tlv(0x04, b);
export const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, 'utf8'));
export const bool = (v: boolean) => tlv(0x01, Buffer.from([v ? 0xff : 0]));
/** `[n] EXPLICIT` (constructed context tag). */
export const explicit = (n: number, inner: Buffer) => tlv(0xa0 | n, inner);
/** `[n] IMPLICIT` primitive (e.g. GeneralName dNSName = [2], iPAddress = [7], URI = [6]). */
export const implicit = (n: number, content: Buffer) => tlv(0x80 | n, content);

/** BIT STRING with `unused` padding bits in the last byte. */
export function bitString(content: Buffer, unused = 0): Buffer {
  return tlv(0x03, Buffer.concat([Buffer.from([unused]), content]));
}

/** INTEGER from an unsigned big-endian magnitude. */
export function uint(magnitude: Buffer): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  return tlv(0x02, m[0] & 0x80 ? Buffer.concat([Buffer.from([0]), m]) : m);
}

export function smallInt(n: number): Buffer {
  return uint(Buffer.from([n]));
}

export function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const bytes: number[] = [40 * parts[0] + parts[1]];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    bytes.push(...chunk);
  }
  return tlv(0x06, Buffer.from(bytes));
}

/** X.509 Time: UTCTime through 2049, GeneralizedTime after (RFC 5280 §4.1.2.5). Second precision. */
export function time(d: Date): Buffer {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '');
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(digits.slice(2) + 'Z')) : tlv(0x18, Buffer.from(digits + 'Z'));
}

// --- Reading: just enough to take the subject out of a certificate exactly, without going through a
// printed (escaped) form. Throws on anything it does not understand.

interface Tlv {
  tag: number;
  /** Offsets of the whole element and of its content within the buffer. */
  start: number;
  contentStart: number;
  end: number;
}

function readTlv(buf: Buffer, pos: number, limit: number): Tlv {
  if (pos + 2 > limit) throw new Error('DER: truncated');
  const tag = buf[pos];
  let len = buf[pos + 1];
  let p = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || p + n > limit) throw new Error('DER: bad length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i];
    p += n;
  }
  if (p + len > limit) throw new Error('DER: truncated');
  return { tag, start: pos, contentStart: p, end: p + len };
}

function children(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let p = parent.contentStart; p < parent.end; ) {
    const t = readTlv(buf, p, parent.end);
    out.push(t);
    p = t.end;
  }
  return out;
}

function decodeString(buf: Buffer, t: Tlv): string {
  const content = buf.subarray(t.contentStart, t.end);
  switch (t.tag) {
    case 0x0c: // UTF8String
    case 0x13: // PrintableString
    case 0x16: // IA5String
      return content.toString('utf8');
    case 0x1e: // BMPString (UTF-16BE): whole code units only (swap16 throws a RangeError otherwise)
      if (content.length % 2 !== 0) throw new Error('DER: BMPString of odd length');
      return Buffer.from(content).swap16().toString('utf16le');
    default:
      throw new Error(`DER: unsupported string type 0x${t.tag.toString(16)}`);
  }
}

/** Subject attributes of a DER certificate in order, as [dotted OID, value]. */
export function readSubject(cert: Buffer): Array<[string, string]> {
  const top = readTlv(cert, 0, cert.length);
  const [tbs] = children(cert, top);
  if (top.tag !== 0x30 || !tbs || tbs.tag !== 0x30) throw new Error('DER: not a certificate');
  const fields = children(cert, tbs);
  const offset = fields[0]?.tag === 0xa0 ? 1 : 0; // optional [0] version
  const subject = fields[offset + 4];
  if (!subject || subject.tag !== 0x30) throw new Error('DER: no subject');
  const out: Array<[string, string]> = [];
  for (const rdn of children(cert, subject)) {
    for (const atv of children(cert, rdn)) {
      const [type, value] = children(cert, atv);
      if (!type || type.tag !== 0x06 || !value) throw new Error('DER: bad attribute');
      out.push([decodeOid(cert.subarray(type.contentStart, type.end)), decodeString(cert, value)]);
    }
  }
  return out;
}

function decodeOid(b: Buffer): string {
  const parts: number[] = [];
  let v = 0;
  for (const byte of b) {
    v = v * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  const first = parts.shift() ?? 0;
  const a = first < 80 ? Math.floor(first / 40) : 2;
  return [a, first - 40 * a, ...parts].join('.');
}
