/**
 * Rendering of bound parameter values for audit events: text-format values as text, binary-format
 * values decoded for common types by OID, anything else as hex. Pure.
 */

export const OID = {
  bool: 16,
  bytea: 17,
  name: 19,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  oid: 26,
  json: 114,
  float4: 700,
  float8: 701,
  bpchar: 1042,
  varchar: 1043,
  date: 1082,
  timestamp: 1114,
  timestamptz: 1184,
  numeric: 1700,
  uuid: 2950,
  jsonb: 3802,
} as const;

/** Longest rendering of one value kept in an event; longer values are cut with a marker. */
export const MAX_VALUE_CHARS = 4096;

const PG_EPOCH_MS = Date.UTC(2000, 0, 1);

function clip(s: string): string {
  return s.length > MAX_VALUE_CHARS ? `${s.slice(0, MAX_VALUE_CHARS)}…[${s.length} chars]` : s;
}

function hex(b: Buffer): string {
  const max = MAX_VALUE_CHARS >> 1;
  return b.length > max ? `\\x${b.subarray(0, max).toString('hex')}…[${b.length} bytes]` : `\\x${b.toString('hex')}`;
}

function decodeNumeric(b: Buffer): string | undefined {
  if (b.length < 8) return undefined;
  const ndigits = b.readInt16BE(0);
  const weight = b.readInt16BE(2);
  const sign = b.readUInt16BE(4);
  const dscale = b.readInt16BE(6);
  if (sign === 0xc000) return 'NaN';
  if (sign === 0xd000) return 'Infinity';
  if (sign === 0xf000) return '-Infinity';
  if ((sign !== 0 && sign !== 0x4000) || ndigits < 0 || b.length !== 8 + ndigits * 2) return undefined;
  const digits: number[] = [];
  for (let i = 0; i < ndigits; i++) digits.push(b.readInt16BE(8 + i * 2));
  let intPart = '';
  for (let i = 0; i <= weight; i++) {
    const d = i < ndigits ? digits[i] : 0;
    intPart += i === 0 ? String(d) : String(d).padStart(4, '0');
  }
  if (intPart === '') intPart = '0';
  let frac = '';
  for (let i = weight + 1; frac.length < dscale; i++) {
    const d = i >= 0 && i < ndigits ? digits[i] : 0;
    frac += String(d).padStart(4, '0');
  }
  frac = frac.slice(0, dscale);
  return `${sign === 0x4000 ? '-' : ''}${intPart}${dscale > 0 ? `.${frac}` : ''}`;
}

function decodeTimestamp(b: Buffer, tz: boolean): string | undefined {
  if (b.length !== 8) return undefined;
  const us = b.readBigInt64BE(0);
  if (us === 0x7fffffffffffffffn) return 'infinity';
  if (us === -0x8000000000000000n) return '-infinity';
  const ms = PG_EPOCH_MS + Number(us / 1000n);
  const micros = Number(((us % 1_000_000n) + 1_000_000n) % 1_000_000n);
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return undefined;
  const iso = d.toISOString().slice(0, 19).replace('T', ' ');
  return `${iso}.${String(micros).padStart(6, '0')}${tz ? '+00' : ''}`;
}

/** Decode a binary-format value of type `oid`; undefined when the type is not known or the bytes are off. */
export function decodeBinary(oid: number, b: Buffer): string | undefined {
  switch (oid) {
    case OID.bool:
      return b.length === 1 ? (b[0] ? 'true' : 'false') : undefined;
    case OID.int2:
      return b.length === 2 ? String(b.readInt16BE(0)) : undefined;
    case OID.int4:
      return b.length === 4 ? String(b.readInt32BE(0)) : undefined;
    case OID.oid:
      return b.length === 4 ? String(b.readUInt32BE(0)) : undefined;
    case OID.int8:
      return b.length === 8 ? b.readBigInt64BE(0).toString() : undefined;
    case OID.float4:
      return b.length === 4 ? String(b.readFloatBE(0)) : undefined;
    case OID.float8:
      return b.length === 8 ? String(b.readDoubleBE(0)) : undefined;
    case OID.text:
    case OID.varchar:
    case OID.bpchar:
    case OID.name:
    case OID.json:
      return b.toString('utf8');
    case OID.jsonb:
      return b.length >= 1 && b[0] === 1 ? b.toString('utf8', 1) : undefined;
    case OID.bytea:
      return hex(b);
    case OID.uuid: {
      if (b.length !== 16) return undefined;
      const h = b.toString('hex');
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    }
    case OID.date: {
      if (b.length !== 4) return undefined;
      const days = b.readInt32BE(0);
      if (days === 0x7fffffff) return 'infinity';
      if (days === -0x80000000) return '-infinity';
      return new Date(PG_EPOCH_MS + days * 86_400_000).toISOString().slice(0, 10);
    }
    case OID.timestamp:
      return decodeTimestamp(b, false);
    case OID.timestamptz:
      return decodeTimestamp(b, true);
    case OID.numeric:
      return decodeNumeric(b);
    default:
      return undefined;
  }
}

/** Render one bound value for an event. `null` stays null (SQL NULL). */
export function renderValue(value: Buffer | null, format: number, oid: number): string | null {
  if (value === null) return null;
  if (format === 0) return clip(value.toString('utf8'));
  const decoded = decodeBinary(oid, value);
  return decoded === undefined ? hex(value) : clip(decoded);
}
