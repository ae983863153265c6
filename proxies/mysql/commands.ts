/**
 * Decoding of client commands (command phase) from one logical packet payload. Pure: the caller supplies
 * what a packet alone does not carry (capabilities, the statement's parameter count and remembered types,
 * which parameters received long data).
 */
import { isUtf8 } from 'node:buffer';
import { ProtocolError } from '../../src/errors.ts';
import { CLIENT, COM, Reader, TYPE } from './wire.ts';

/** A decoded parameter value, JSON-friendly: NULL, number, string (also big integers, dates), or blob summary. */
export type ParamValue = null | number | string | { hex: string; length: number; truncated?: true } | { length: number; text: string; truncated: true };

/** Binary-protocol type of a parameter: the MYSQL_TYPE byte and the unsigned flag. */
export interface ParamType {
  type: number;
  unsigned: boolean;
  /** Name sent with CLIENT_QUERY_ATTRIBUTES (query attributes only). */
  name?: string;
}

export type ClientCommand =
  | { kind: 'query'; sql: string; sqlBytes: Buffer; escaped: boolean; attributes?: Record<string, ParamValue> }
  | { kind: 'init_db'; database: string }
  | { kind: 'stmt_prepare'; sql: string; escaped: boolean }
  | { kind: 'stmt_execute'; stmtId: number; flags: number; raw: Buffer }
  | { kind: 'stmt_send_long_data'; stmtId: number; paramId: number; data: Buffer }
  | { kind: 'stmt_close'; stmtId: number }
  | { kind: 'stmt_reset'; stmtId: number }
  | { kind: 'stmt_fetch'; stmtId: number; rows: number }
  | { kind: 'ping' }
  | { kind: 'quit' }
  | { kind: 'set_option'; option: number }
  | { kind: 'process_kill'; id: number }
  | { kind: 'change_user' }
  | { kind: 'reset_connection' }
  | { kind: 'other'; command: number };

/**
 * Statement text as vigil analyses and records it. A client with a non-UTF-8 connection charset (latin1
 * 0xE9 for é) sends bytes UTF-8 cannot decode; decoding them anyway would record U+FFFD and lose them. Such
 * text keeps its ASCII (SQL syntax, so splitting and checks still work) and writes every byte >= 0x80 as
 * `\xHH`; `escaped` marks it, and the events say so (`text_escaped`). The backend gets the original bytes.
 */
export function statementText(b: Buffer, escapeAll = false): { sql: string; escaped: boolean } {
  if (!escapeAll && isUtf8(b)) return { sql: b.toString('utf8'), escaped: false };
  let sql = '';
  for (const byte of b) sql += byte < 0x80 ? String.fromCharCode(byte) : `\\x${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return { sql, escaped: true };
}

/**
 * Character sets whose multi-byte characters may end in an ASCII byte, with the lead and trail ranges
 * MariaDB's `ismbchar` checks (strings/ctype-gbk.c, ctype-big5.c, ctype-sjis.c, ctype-cp932.c). In them
 * 0xBF 0x5C is one character to the server, not a byte and a backslash, and 0x81 0x60 is not a backtick:
 * a lexer that reads bytes one by one sees string and identifier quotes end where the server's do not.
 * Every other character set a client may use (utf8mb3/utf8mb4, the single-byte ones, ujis, eucjpms,
 * euckr, gb2312) never has a quote or a backslash inside a multi-byte character.
 */
export const ASCII_TRAIL_CHARSETS: Readonly<Record<string, { lead: (c: number) => boolean; trail: (c: number) => boolean }>> = {
  gbk: { lead: (c) => c >= 0x81 && c <= 0xfe, trail: (c) => (c >= 0x40 && c <= 0x7e) || (c >= 0x80 && c <= 0xfe) },
  big5: { lead: (c) => c >= 0xa1 && c <= 0xf9, trail: (c) => (c >= 0x40 && c <= 0x7e) || (c >= 0xa1 && c <= 0xfe) },
  sjis: { lead: (c) => (c >= 0x81 && c <= 0x9f) || (c >= 0xe0 && c <= 0xfc), trail: (c) => (c >= 0x40 && c <= 0x7e) || (c >= 0x80 && c <= 0xfc) },
  cp932: { lead: (c) => (c >= 0x81 && c <= 0x9f) || (c >= 0xe0 && c <= 0xfc), trail: (c) => (c >= 0x40 && c <= 0x7e) || (c >= 0x80 && c <= 0xfc) },
};

/**
 * Whether a multi-byte character of one of ASCII_TRAIL_CHARSETS could swallow a byte that matters to
 * statement boundaries: a byte >= 0x81 right before a backslash (string escapes) or a backtick (quoted
 * identifiers). The other ASCII trail bytes (letters, `@`, `[`, `|`, …) only ever join a word, in either
 * reading. Without such a pair every character set reads the text's boundaries the same way.
 */
export function hasAsciiTrail(b: Buffer): boolean {
  for (let i = b.indexOf(0x5c); i >= 0; i = b.indexOf(0x5c, i + 1)) if (i > 0 && b[i - 1]! >= 0x81) return true;
  for (let i = b.indexOf(0x60); i >= 0; i = b.indexOf(0x60, i + 1)) if (i > 0 && b[i - 1]! >= 0x81) return true;
  return false;
}

/**
 * The server's multi-byte characters in `charset` over the escaped text `statementText(b, true)` makes of
 * `b` (each byte >= 0x80 written as the four characters `\xHH`): for a position of that text, how many of
 * its characters the multi-byte character starting there spans (0: none starts there). Positions are
 * mapped to bytes, not read from the text, since the text may also hold a literal `\x41` the client typed.
 */
export function multibyteReader(b: Buffer, charset: keyof typeof ASCII_TRAIL_CHARSETS): (i: number) => number {
  const cs = ASCII_TRAIL_CHARSETS[charset]!;
  // The byte each text position starts (-1: inside a `\xHH`).
  let len = 0;
  for (const byte of b) len += byte < 0x80 ? 1 : 4;
  const at = new Int16Array(len + 1).fill(-1);
  let p = 0;
  for (const byte of b) {
    at[p] = byte;
    p += byte < 0x80 ? 1 : 4;
  }
  return (i) => {
    const lead = at[i] ?? -1;
    if (lead < 0x80 || !cs.lead(lead)) return 0;
    const trail = at[i + 4] ?? -1;
    if (trail < 0 || !cs.trail(trail)) return 0;
    return trail < 0x80 ? 5 : 8;
  };
}

/** The largest blob prefix shown in events (the full size is always recorded). */
export const BLOB_PREVIEW_BYTES = 256;

export function parseCommand(payload: Buffer, capabilities: number): ClientCommand {
  if (payload.length === 0) throw new ProtocolError('empty command packet', 'VIGIL_MYSQL_MALFORMED');
  const r = new Reader(payload, 1);
  switch (payload[0]) {
    case COM.QUERY:
      if (capabilities & CLIENT.QUERY_ATTRIBUTES) {
        const attributes = parseQueryAttributes(r);
        const sqlBytes = r.rest();
        return { kind: 'query', ...statementText(sqlBytes), sqlBytes, attributes };
      }
      const sqlBytes = r.rest();
      return { kind: 'query', ...statementText(sqlBytes), sqlBytes };
    case COM.INIT_DB:
      return { kind: 'init_db', database: r.rest().toString('utf8') };
    case COM.STMT_PREPARE:
      return { kind: 'stmt_prepare', ...statementText(r.rest()) };
    case COM.STMT_EXECUTE: {
      const stmtId = r.u32();
      const flags = r.u8();
      return { kind: 'stmt_execute', stmtId, flags, raw: payload };
    }
    case COM.STMT_SEND_LONG_DATA: {
      const stmtId = r.u32();
      const paramId = r.u16();
      return { kind: 'stmt_send_long_data', stmtId, paramId, data: r.rest() };
    }
    case COM.STMT_CLOSE:
      return { kind: 'stmt_close', stmtId: r.u32() };
    case COM.STMT_RESET:
      return { kind: 'stmt_reset', stmtId: r.u32() };
    case COM.STMT_FETCH: {
      const stmtId = r.u32();
      return { kind: 'stmt_fetch', stmtId, rows: r.u32() };
    }
    case COM.PING:
      return { kind: 'ping' };
    case COM.QUIT:
      return { kind: 'quit' };
    case COM.SET_OPTION:
      return { kind: 'set_option', option: r.u16() };
    case COM.PROCESS_KILL:
      return { kind: 'process_kill', id: r.u32() };
    case COM.CHANGE_USER:
      return { kind: 'change_user' };
    case COM.RESET_CONNECTION:
      return { kind: 'reset_connection' };
    default:
      return { kind: 'other', command: payload[0]! };
  }
}

/** COM_QUERY prefix under CLIENT_QUERY_ATTRIBUTES: parameter_count, parameter_set_count, then one bound set. */
function parseQueryAttributes(r: Reader): Record<string, ParamValue> | undefined {
  const count = r.lenenc();
  r.lenenc(); // parameter_set_count, always 1
  if (count === 0) return undefined;
  const nullBitmap = r.bytes((count + 7) >> 3);
  const bound = r.u8();
  if (bound !== 1) throw new ProtocolError('query attributes without types', 'VIGIL_MYSQL_MALFORMED');
  const types: ParamType[] = [];
  for (let i = 0; i < count; i++) {
    const t = r.u8();
    const flags = r.u8();
    types.push({ type: t, unsigned: (flags & 0x80) !== 0, name: r.lenencBytes().toString('utf8') });
  }
  const out: Record<string, ParamValue> = {};
  for (let i = 0; i < count; i++) {
    const isNull = (nullBitmap[i >> 3]! >> (i & 7)) & 1;
    out[types[i]!.name ?? String(i)] = isNull ? null : readBinaryValue(r, types[i]!);
  }
  return out;
}

/** Flag of COM_STMT_EXECUTE under CLIENT_QUERY_ATTRIBUTES: a parameter count follows. */
export const PARAMETER_COUNT_AVAILABLE = 0x08;

export interface DecodedExecute {
  stmtId: number;
  flags: number;
  iterations: number;
  /** Types in force for this execution (sent now, or remembered from an earlier one). */
  types: ParamType[] | undefined;
  /** True when this packet carried new types (new_params_bound_flag = 1). */
  newTypes: boolean;
  /** One value per parameter; `undefined` for a parameter whose data came with COM_STMT_SEND_LONG_DATA. */
  values: (ParamValue | undefined)[];
  /** Extra parameters beyond the statement's own (query attributes), by name. */
  attributes?: Record<string, ParamValue>;
}

/**
 * Decode COM_STMT_EXECUTE. `numParams` comes from the COM_STMT_PREPARE response, `remembered` are the types
 * of the previous bound execution (the client may omit them after the first), `longData` the parameters
 * that received COM_STMT_SEND_LONG_DATA since the last execute/reset (their value is not in the packet).
 */
export function decodeStmtExecute(
  payload: Buffer,
  numParams: number,
  remembered: ParamType[] | undefined,
  longData: ReadonlySet<number>,
  capabilities: number,
): DecodedExecute {
  const r = new Reader(payload, 1);
  const stmtId = r.u32();
  const flags = r.u8();
  const iterations = r.u32();
  let count = numParams;
  const qa = (capabilities & CLIENT.QUERY_ATTRIBUTES) !== 0;
  if (qa && flags & PARAMETER_COUNT_AVAILABLE) count = r.lenenc();
  const out: DecodedExecute = { stmtId, flags, iterations, types: remembered, newTypes: false, values: [] };
  if (count === 0) return out;
  if (count < numParams) throw new ProtocolError('fewer parameters than the statement has', 'VIGIL_MYSQL_MALFORMED');
  const nullBitmap = r.bytes((count + 7) >> 3);
  const bound = r.u8();
  if (bound === 1) {
    const types: ParamType[] = [];
    for (let i = 0; i < count; i++) {
      const type = r.u8();
      const fl = r.u8();
      const t: ParamType = { type, unsigned: (fl & 0x80) !== 0 };
      if (qa) t.name = r.lenencBytes().toString('utf8');
      types.push(t);
    }
    out.types = types;
    out.newTypes = true;
  } else if (bound !== 0) {
    throw new ProtocolError('invalid new_params_bound_flag', 'VIGIL_MYSQL_MALFORMED');
  }
  const types = out.types;
  if (!types || types.length < count) throw new ProtocolError('parameters sent without types', 'VIGIL_MYSQL_MALFORMED');
  for (let i = 0; i < count; i++) {
    let v: ParamValue | undefined;
    // Long data first: MariaDB binds a parameter that received it whatever its NULL bit says
    // (sql_prepare.cc insert_params), and reads no bytes for it from the packet.
    if (i < numParams && longData.has(i)) v = undefined;
    else if ((nullBitmap[i >> 3]! >> (i & 7)) & 1) v = null;
    else v = readBinaryValue(r, types[i]!);
    if (i < numParams) out.values.push(v);
    else (out.attributes ??= {})[types[i]!.name || String(i)] = v ?? null;
  }
  return out;
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** One value of the binary protocol, by type. */
export function readBinaryValue(r: Reader, t: ParamType): ParamValue {
  switch (t.type) {
    case TYPE.NULL:
      return null;
    case TYPE.TINY: {
      const v = r.u8();
      return t.unsigned ? v : (v << 24) >> 24;
    }
    case TYPE.SHORT:
    case TYPE.YEAR: {
      const v = r.u16();
      return t.unsigned ? v : (v << 16) >> 16;
    }
    case TYPE.LONG:
    case TYPE.INT24: {
      const v = r.u32();
      return t.unsigned ? v : v | 0;
    }
    case TYPE.LONGLONG: {
      const raw = r.bytes(8);
      const v = t.unsigned ? raw.readBigUInt64LE() : raw.readBigInt64LE();
      return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
    }
    case TYPE.FLOAT:
      return r.bytes(4).readFloatLE();
    case TYPE.DOUBLE:
      return r.bytes(8).readDoubleLE();
    case TYPE.DATE:
    case TYPE.DATETIME:
    case TYPE.TIMESTAMP:
    case TYPE.NEWDATE: {
      const len = r.u8();
      const b = new Reader(r.bytes(len));
      if (len === 0) return t.type === TYPE.DATE ? '0000-00-00' : '0000-00-00 00:00:00';
      const date = `${pad(b.u16(), 4)}-${pad(b.u8())}-${pad(b.u8())}`;
      if (len < 7) return date;
      const time = `${pad(b.u8())}:${pad(b.u8())}:${pad(b.u8())}`;
      if (len < 11) return `${date} ${time}`;
      return `${date} ${time}.${pad(b.u32(), 6)}`;
    }
    case TYPE.TIME: {
      const len = r.u8();
      if (len === 0) return '00:00:00';
      const b = new Reader(r.bytes(len));
      const neg = b.u8() === 1;
      const days = b.u32();
      const h = b.u8() + days * 24;
      const time = `${neg ? '-' : ''}${pad(h)}:${pad(b.u8())}:${pad(b.u8())}`;
      return len >= 12 ? `${time}.${pad(b.u32(), 6)}` : time;
    }
    case TYPE.TINY_BLOB:
    case TYPE.MEDIUM_BLOB:
    case TYPE.LONG_BLOB:
    case TYPE.BLOB:
    case TYPE.GEOMETRY:
    case TYPE.BIT:
      return blobValue(r.lenencBytes());
    default:
      // Strings, decimals, JSON, enums: text on the wire.
      return textValue(r.lenencBytes());
  }
}

/** The longest text parameter shown in full in events (longer ones show a prefix and their size). */
export const TEXT_PREVIEW_BYTES = 4096;

/**
 * Text when it is valid UTF-8, else a blob summary: the bytes are checked themselves, so a value that holds
 * a literal U+FFFD next to invalid bytes is not shown as text (its invalid bytes would be lost as U+FFFD).
 */
export function textValue(b: Buffer): ParamValue {
  if (!isUtf8(b)) return blobValue(b);
  if (b.length > TEXT_PREVIEW_BYTES) {
    const head = b.subarray(0, TEXT_PREVIEW_BYTES).toString('utf8');
    // Members in sorted order, as the audit encoder writes sorted objects directly (connection.ts emitQuery).
    return { length: b.length, text: head, truncated: true };
  }
  return b.toString('utf8');
}

export function blobValue(b: Buffer): ParamValue {
  const shown = b.subarray(0, BLOB_PREVIEW_BYTES);
  return b.length > BLOB_PREVIEW_BYTES ? { hex: shown.toString('hex'), length: b.length, truncated: true } : { hex: shown.toString('hex'), length: b.length };
}
