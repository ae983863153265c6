import { refusalMessage, type GuardDecision, type Reading, type SessionGuardrails } from '../../src/guardrails/index.ts';
import type { MessageFramer, OnMessage } from './framing.ts';
import { F, decodeParse } from './frontend.ts';
import { decodeParseText, decodeQueryText } from './lexmode.ts';
import { asStandardStrings, type StandardConformingStrings } from './sql.ts';

/**
 * Guardrails on a Postgres session: every Query and Parse is decided before any of its bytes go to the
 * server. A refused one is swapped, in place, for a statement that makes the server itself raise
 * SQLSTATE 42501 with a message naming the rule: the refused text never reaches the server, and the
 * error arrives exactly where the server would have put it (pipelined requests before it are answered
 * first, a Parse's error comes with its Execute, the rest of the extended batch is skipped up to Sync,
 * and a transaction block is aborted as any failed statement aborts it).
 *
 * The relay otherwise forwards partial messages as they arrive; with guardrails, a Query or Parse split
 * across chunks is held until it is whole (bounded by max_message_size).
 *
 * The parser assumes standard_conforming_strings on and UTF-8; the server lexes in the session's mode.
 * The text is checked as the server will read it: decoded in the client encoding, and with '' strings
 * holding backslashes rewritten as E'' when the mode is off. While the mode is not known (a change may
 * be in flight), both readings are checked and either one's refusal counts. The bodies the server lexes
 * again when they run (DO, function bodies, EXECUTE'd strings) are always checked both ways: the mode
 * may change before they run (see check).
 */

/** The session's lexical mode as the server will apply it to the next message (LexState). */
export interface LexMode {
  scs: StandardConformingStrings;
  encoding: string;
}

type Refused = Exclude<GuardDecision, { action: 'allow' }>;

export interface RefusedStatement {
  decision: Refused;
  protocol: 'simple' | 'extended';
  sql: string;
  statement?: string;
}

const MAX_DECLARED_PARAMS = 65535;
const TEXT_OID = 25;

export class ClientGuard {
  /** Bytes framed but not forwarded: a Query/Parse (or header) not complete yet. */
  private carry: Buffer | undefined;
  /** Where the next message begins, relative to the bytes not forwarded yet. */
  private cursor = 0;
  private swaps: { at: number; len: number; bytes: Buffer }[] = [];

  constructor(
    private readonly framer: MessageFramer,
    private readonly guard: SessionGuardrails,
    private readonly onMessage: OnMessage,
    private readonly onRefused: (r: RefusedStatement) => void,
    private readonly lexMode: () => LexMode = () => ({ scs: true, encoding: 'UTF8' }),
  ) {}

  /**
   * Decide on a text in the mode the server will lex it in. The bodies it holds (a DO block, what it
   * EXECUTEs, a function body) are lexed again when they run, and the mode may have changed by then: a
   * DO prepared by Parse runs at an Execute sent after a SET, a SET earlier in the same query string
   * runs before the DO's body is lexed, and a block can turn the mode off itself before an EXECUTE. So
   * every body is checked both ways, whatever this session's mode is now.
   */
  private check(sql: string, mode: LexMode) {
    const readings = { now: EITHER_MODE, later: EITHER_MODE };
    if (mode.scs === true) return this.guard.checkSql(sql, 'postgres', readings);
    const off = this.guard.checkSql(asStandardStrings(sql), 'postgres', readings);
    if (mode.scs === false || off.action !== 'allow') return off;
    return this.guard.checkSql(sql, 'postgres', readings);
  }

  /** Frame a client chunk (calling `onMessage` per message) and return the bytes to forward now. */
  push(chunk: Buffer): Buffer {
    const all = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    this.carry = undefined;
    this.framer.push(chunk, this.observe);
    const upto = this.framer.holdsPartial ? this.cursor : all.length;
    let out: Buffer;
    if (this.swaps.length === 0) out = upto === all.length ? all : all.subarray(0, upto);
    else {
      const parts: Buffer[] = [];
      let pos = 0;
      for (const s of this.swaps) {
        parts.push(all.subarray(pos, s.at), s.bytes);
        pos = s.at + s.len;
      }
      parts.push(all.subarray(pos, upto));
      out = Buffer.concat(parts);
      this.swaps = [];
    }
    if (upto < all.length) this.carry = Buffer.from(all.subarray(upto));
    this.cursor -= upto;
    return out;
  }

  private readonly observe: OnMessage = (type, msg, length) => {
    // The mode before this message: observing it may mark a change in flight (it executes SQL).
    const mode = type === F.Query || type === F.Parse ? this.lexMode() : undefined;
    this.onMessage(type, msg, length);
    const at = this.cursor;
    this.cursor += 1 + length;
    if (type === F.Query) {
      const sql = decodeQueryText(msg!, mode!.encoding).sql;
      const d = this.check(sql, mode!);
      if (d.action === 'allow') return;
      this.swaps.push({ at, len: 1 + length, bytes: queryMessage(raiseSql(d)) });
      this.onRefused({ decision: d, protocol: 'simple', sql });
    } else if (type === F.Parse) {
      const p = decodeParse(msg!);
      const d = this.check(decodeParseText(msg!, p.query, mode!.encoding).sql, mode!);
      if (d.action === 'allow') return;
      this.swaps.push({ at, len: 1 + length, bytes: parseMessage(p.name, raiseSql(d), paramTypesFor(p.query, p.paramTypes)) });
      this.onRefused({ decision: d, protocol: 'extended', sql: p.query, statement: p.name || undefined });
    }
  };
}

/** A body lexed in either mode, as the standard-strings parser must be given it: as is, and rewritten. */
const EITHER_MODE: Reading = (t) => [t, asStandardStrings(t)];

/** A DO block that raises the refusal: no `$` in the texts, so neither dollar quote can be closed early. */
export function raiseSql(d: Refused): string {
  const { message, hint } = refusalMessage(d, 'statement');
  const lit = (s: string) => `$m$${s.replace(/\$/g, '')}$m$`;
  return `DO $vigil_guardrail$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = ${lit(message)}, HINT = ${lit(hint)}; END$vigil_guardrail$`;
}

/**
 * The swapped Parse keeps the parameter count, so the client's Bind still fits and the error comes at
 * Execute: declared types are kept, unspecified ones (and $n only referenced) become text.
 */
function paramTypesFor(sql: string, declared: number[]): number[] {
  let n = declared.length;
  for (const m of sql.matchAll(/\$(\d{1,5})/g)) n = Math.max(n, Math.min(Number(m[1]), MAX_DECLARED_PARAMS));
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = declared[i] || TEXT_OID;
  return out;
}

function queryMessage(sql: string): Buffer {
  const body = Buffer.from(`${sql}\0`, 'utf8');
  const m = Buffer.alloc(5 + body.length);
  m[0] = F.Query;
  m.writeUInt32BE(4 + body.length, 1);
  body.copy(m, 5);
  return m;
}

function parseMessage(name: string, sql: string, types: number[]): Buffer {
  const text = Buffer.from(`${name}\0${sql}\0`, 'utf8');
  const m = Buffer.alloc(5 + text.length + 2 + 4 * types.length);
  m[0] = F.Parse;
  m.writeUInt32BE(m.length - 1, 1);
  text.copy(m, 5);
  let off = 5 + text.length;
  m.writeInt16BE(types.length, off);
  off += 2;
  for (const t of types) {
    m.writeUInt32BE(t, off);
    off += 4;
  }
  return m;
}
