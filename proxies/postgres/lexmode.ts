import { decodeQuery } from './frontend.ts';
import type { StandardConformingStrings } from './sql.ts';

/**
 * What the server's lexer will assume for the next statement text, learned only from what the server
 * reports (ParameterStatus for standard_conforming_strings and client_encoding: at login, and after any
 * change, before the ReadyForQuery that ends the request that made it).
 *
 * Between a request that executes something (which may change either setting: SET, set_config(), a
 * rolled-back transaction…) and the ReadyForQuery that settles it, a change may already be in effect
 * on the server without having been reported: the mode is then unknown, and callers consider both.
 */
export class LexState {
  private reportedScs = true;
  /** client_encoding as reported, upper case (`UTF8`, `SJIS`…). */
  encoding = 'UTF8';
  private inFlight = false;

  /** standard_conforming_strings, or undefined while a change may be in flight. */
  get scs(): StandardConformingStrings {
    return this.inFlight ? undefined : this.reportedScs;
  }

  /** A request that executes SQL (Query, Execute, FunctionCall) was sent. */
  executing(): void {
    this.inFlight = true;
  }

  /** ReadyForQuery with nothing else pending: every change has been reported. */
  settled(): void {
    this.inFlight = false;
  }

  /** A ParameterStatus message (header included). */
  parameterStatus(msg: Buffer): void {
    const nameEnd = msg.indexOf(0, 5);
    if (nameEnd < 0) return;
    const valueEnd = msg.indexOf(0, nameEnd + 1);
    if (valueEnd < 0) return;
    const name = msg.toString('latin1', 5, nameEnd);
    const value = msg.toString('latin1', nameEnd + 1, valueEnd);
    if (name === 'standard_conforming_strings') this.reportedScs = value !== 'off';
    else if (name === 'client_encoding') this.encoding = value.toUpperCase();
  }
}

/**
 * Client encodings whose multi-byte characters may contain the byte of a backslash (or other ASCII):
 * the server converts them before lexing, so the bytes must be decoded the same way to be lexed right.
 * (PostgreSQL accepts them only as client encodings for that reason.) JOHAB has no decoder here.
 */
const NOT_ASCII_SAFE: Record<string, string | undefined> = {
  SJIS: 'shift_jis',
  BIG5: 'big5',
  GBK: 'gbk',
  GB18030: 'gb18030',
  UHC: 'euc-kr',
  JOHAB: undefined,
};

export interface QueryText {
  sql: string;
  /** False when the text could not be decoded as the server will: it must not be split. */
  certain: boolean;
}

/** The text of a Query message, decoded in the session's client encoding where that changes lexing. */
export function decodeQueryText(msg: Buffer, encoding: string): QueryText {
  return inEncoding(msg, 5, msg.length - 1, decodeQuery(msg), encoding);
}

/**
 * The query text of a Parse message (already decoded as UTF-8 by decodeParse, as `utf8`), decoded in
 * the session's client encoding where that changes lexing.
 */
export function decodeParseText(msg: Buffer, utf8: string, encoding: string): QueryText {
  if (!(encoding in NOT_ASCII_SAFE)) return { sql: utf8, certain: true };
  const start = msg.indexOf(0, 5) + 1;
  return inEncoding(msg, start, msg.indexOf(0, start), utf8, encoding);
}

function inEncoding(msg: Buffer, start: number, end: number, utf8: string, encoding: string): QueryText {
  if (!(encoding in NOT_ASCII_SAFE)) return { sql: utf8, certain: true };
  let ascii = true;
  for (let i = start; i < end; i++) {
    if (msg[i] >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return { sql: utf8, certain: true };
  const label = NOT_ASCII_SAFE[encoding];
  if (!label) return { sql: utf8, certain: false };
  try {
    return { sql: new TextDecoder(label, { fatal: true }).decode(msg.subarray(start, end)), certain: true };
  } catch {
    // Bytes the server will refuse too ("invalid byte sequence"): record them whole.
    return { sql: utf8, certain: false };
  }
}
