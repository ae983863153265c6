import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage, DatabaseError } from 'pg-protocol/dist/messages.js';
import { ProtocolError } from '../../src/errors.ts';
import { cstr, encodeMessage, int32 } from './frontend.ts';

/**
 * Backend (server → client) messages: the few the gateway writes itself (errors, its own authentication
 * requests, the replacement BackendKeyData) and light decoders for what the relay observes. Full decoding
 * of backend messages is pg-protocol's job (`decodeBackendMessage`).
 */

export const B = {
  Authentication: 0x52, // R
  BackendKeyData: 0x4b, // K
  ParameterStatus: 0x53, // S
  ReadyForQuery: 0x5a, // Z
  RowDescription: 0x54, // T
  DataRow: 0x44, // D
  CommandComplete: 0x43, // C
  ErrorResponse: 0x45, // E
  NoticeResponse: 0x4e, // N
  NotificationResponse: 0x41, // A
  ParseComplete: 0x31, // 1
  BindComplete: 0x32, // 2
  CloseComplete: 0x33, // 3
  NoData: 0x6e, // n
  PortalSuspended: 0x73, // s
  EmptyQueryResponse: 0x49, // I
  ParameterDescription: 0x74, // t
  CopyInResponse: 0x47, // G
  CopyOutResponse: 0x48, // H
  CopyBothResponse: 0x57, // W
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  FunctionCallResponse: 0x56, // V
  NegotiateProtocolVersion: 0x76, // v
} as const;

export interface PgErrorFields {
  severity: string;
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

/** ErrorResponse (or NoticeResponse with `type` N). */
export function encodeError(f: PgErrorFields, type: number = B.ErrorResponse): Buffer {
  const parts: Buffer[] = [
    Buffer.from('S'), cstr(f.severity),
    Buffer.from('V'), cstr(f.severity),
    Buffer.from('C'), cstr(f.code),
    Buffer.from('M'), cstr(f.message),
  ];
  if (f.detail) parts.push(Buffer.from('D'), cstr(f.detail));
  if (f.hint) parts.push(Buffer.from('H'), cstr(f.hint));
  parts.push(Buffer.from([0]));
  return encodeMessage(type, Buffer.concat(parts));
}

export const fatal = (code: string, message: string, hint?: string): Buffer => encodeError({ severity: 'FATAL', code, message, hint });

export const authenticationOk = (): Buffer => encodeMessage(B.Authentication, int32(0));
export const authenticationCleartextPassword = (): Buffer => encodeMessage(B.Authentication, int32(3));

export function backendKeyData(processId: number, secretKey: Buffer): Buffer {
  return encodeMessage(B.BackendKeyData, Buffer.concat([int32(processId), secretKey]));
}

/**
 * NegotiateProtocolVersion, as a PostgreSQL 15 server sends it: the newest version it speaks (3.0, as the
 * full protocol number, like the server) and the `_pq_.` startup options it did not recognize.
 */
export function negotiateProtocolVersion(newest: number, unrecognized: string[]): Buffer {
  return encodeMessage(B.NegotiateProtocolVersion, Buffer.concat([int32(newest), int32(unrecognized.length), ...unrecognized.map(cstr)]));
}

export const readyForQuery = (status = 'I'): Buffer => encodeMessage(B.ReadyForQuery, Buffer.from(status));

let parser = new Parser();

/**
 * Decode one whole backend message (header included) with pg-protocol. The parser holds no state
 * between whole messages, so one instance serves every call. pg-protocol throws RangeErrors on a
 * malformed body and keeps the bytes it was given when it fails: the parser is then replaced (a stale
 * message left in it would be decoded in place of the next one, for any session) and the failure is a
 * ProtocolError like every other malformed message.
 */
export function decodeBackendMessage(msg: Buffer): BackendMessage {
  if ((msg[0] === B.ErrorResponse || msg[0] === B.NoticeResponse) && !fieldsTerminated(msg)) {
    throw new ProtocolError(`malformed backend message of type 0x${msg[0].toString(16)}`, 'VIGIL_PG_MALFORMED');
  }
  let out: BackendMessage | undefined;
  let count = 0;
  try {
    parser.parse(msg, (m) => {
      out = m;
      count++;
    });
  } catch {
    parser = new Parser();
    throw new ProtocolError(`malformed backend message of type 0x${(msg[0] ?? 0).toString(16)}`, 'VIGIL_PG_MALFORMED');
  }
  if (!out || count !== 1 || msg.length < 5 || msg.readUInt32BE(1) + 1 !== msg.length) {
    parser = new Parser();
    throw new ProtocolError('incomplete backend message', 'VIGIL_PG_MALFORMED');
  }
  return out;
}

/**
 * An ErrorResponse/NoticeResponse body is `(code byte, cstring)*` closed by a 0 byte. pg-protocol reads
 * fields until it meets that 0 and, past the end of the message, reads empty strings forever: a body
 * without its terminator would hang the process. Checked here before pg-protocol sees it.
 */
function fieldsTerminated(msg: Buffer): boolean {
  let pos = 5;
  while (pos < msg.length) {
    if (msg[pos] === 0) return pos === msg.length - 1;
    const nul = msg.indexOf(0, pos + 1);
    if (nul < 0) return false;
    pos = nul + 1;
  }
  return false;
}

/** CommandComplete tag (`SELECT 3`, `INSERT 0 1`, `COPY 10`). */
export function commandTag(msg: Buffer): string {
  const end = msg.indexOf(0, 5);
  return msg.toString('utf8', 5, end < 0 ? msg.length : end);
}

/** Rows affected or returned per a CommandComplete tag: the last number of the tag, if any. */
export function tagRows(tag: string): number | undefined {
  const sp = tag.lastIndexOf(' ');
  if (sp < 0) return undefined;
  const n = Number(tag.slice(sp + 1));
  return Number.isInteger(n) ? n : undefined;
}

/** Severity, SQLSTATE and message of an ErrorResponse / NoticeResponse (decoded by pg-protocol). */
export function errorFields(msg: Buffer): PgErrorFields {
  const m = decodeBackendMessage(msg) as Partial<DatabaseError>;
  return { severity: m.severity ?? 'ERROR', code: m.code ?? 'XX000', message: m.message ?? '', detail: m.detail, hint: m.hint };
}
