import { ProtocolError } from '../../src/errors.ts';
import { B, commandTag, errorFields, tagRows } from './backend.ts';
import { F, decodeBind, decodeExecute, decodeFunctionCall, decodeParse, decodeTarget, decodeCopyFail, isKnownFrontendType } from './frontend.ts';
import { redactSql, splitQuery, type StandardConformingStrings } from './sql.ts';
import { decodeParseText, decodeQueryText, LexState } from './lexmode.ts';
import { renderValue } from './values.ts';

/**
 * Correlates the two directions of a relayed session into one record per executed statement. Pure: fed
 * frontend and backend messages (as cut by MessageFramer) plus a clock, it calls `onRecord`. It mirrors
 * the server's processing order: responses come in the order requests were sent, and after an error
 * the server skips everything up to the next Sync.
 */

export interface QueryRecord {
  protocol: 'simple' | 'extended' | 'function_call';
  /** SQL text with secrets masked. */
  sql?: string;
  /** Bound parameters (masked where secret), for the extended protocol. */
  params?: (string | null)[];
  statement?: string;
  portal?: string;
  /** First word of the command tag (`SELECT`, `INSERT`, `COPY`…). */
  command?: string;
  rowsReturned: number;
  rowsAffected?: number;
  outcome: 'success' | 'failure';
  sqlstate?: string;
  error?: string;
  durationMs: number;
  /** Execute stopped at its row limit (PortalSuspended); the next Execute continues the portal. */
  suspended?: boolean;
  copy?: { direction: 'in' | 'out'; rows?: number; bytes: number };
  functionOid?: number;
  /** The statement boundaries were not certain: `sql` is the whole simple-query text. */
  unsplit?: boolean;
}

interface Statement {
  sql: string;
  masked: ReadonlySet<number>;
  paramTypes: number[];
}

interface Portal {
  statementName: string;
  stmt: Statement;
  formats: number[];
  values: (Buffer | null)[];
}

interface Copy {
  direction: 'in' | 'out';
  bytes: number;
}

type Op =
  | { k: 'query'; stmts: string[]; unsplit: boolean; scs: StandardConformingStrings; i: number; start: number; rows: number; copy?: Copy }
  | { k: 'parse'; name: string; stmt: Statement; start: number }
  | { k: 'bind'; portal: Portal; portalName: string; start: number }
  | { k: 'describe'; statement?: Statement }
  | { k: 'close' }
  | { k: 'execute'; portal: Portal | undefined; portalName: string; start: number; rows: number; copy?: Copy }
  | { k: 'fcall'; oid: number; args: (string | null)[]; start: number }
  | { k: 'sync' };

export interface TrackerOptions {
  /** Column/parameter names to mask (config.redaction.patterns compiled). */
  redact: RegExp | undefined;
  onRecord(r: QueryRecord): void;
}

const UNKNOWN_STATEMENT: Statement = { sql: '(unknown prepared statement)', masked: new Set(), paramTypes: [] };
const MASKED = '***';

/** Frontend types whose body the tracker reads; others are header-only for the framer. */
export function frontendNeedsBody(type: number): boolean {
  return type !== F.CopyData && type !== F.Sync && type !== F.Flush && type !== F.CopyDone && type !== F.Terminate;
}

/** Backend types whose body the tracker reads. */
export function backendNeedsBody(type: number): boolean {
  return type === B.CommandComplete || type === B.ErrorResponse || type === B.ParameterDescription || type === B.ReadyForQuery || type === B.ParameterStatus;
}

export class QueryTracker {
  private readonly ops: Op[] = [];
  private readonly statements = new Map<string, Statement>();
  private readonly portals = new Map<string, Portal>();
  /** The session's lexical mode, from the server's ParameterStatus reports. */
  private readonly lex = new LexState();
  constructor(private readonly opts: TrackerOptions) {}

  /** Pending requests not yet answered (for tests and diagnostics). */
  get pending(): number {
    return this.ops.length;
  }

  private statement(sql: string, paramTypes: number[], certain = true): Statement {
    const r = redactSql(sql, this.opts.redact, certain ? this.lex.scs : undefined);
    return { sql: r.text, masked: r.params, paramTypes };
  }

  /** Observe a client message. Throws ProtocolError for malformed or unexpected messages. */
  frontend(type: number, msg: Buffer | undefined, length: number, now: number): void {
    switch (type) {
      case F.Query: {
        const text = decodeQueryText(msg!, this.lex.encoding);
        const scs = this.lex.scs;
        const split = text.certain ? splitQuery(text.sql, scs) : { statements: [text.sql.trim()], unsplit: true };
        this.ops.push({ k: 'query', stmts: split.statements, unsplit: split.unsplit, scs, i: 0, start: now, rows: 0 });
        this.lex.executing();
        return;
      }
      case F.Parse: {
        const p = decodeParse(msg!);
        const text = decodeParseText(msg!, p.query, this.lex.encoding);
        const stmt = this.statement(text.sql, p.paramTypes, text.certain);
        this.statements.set(p.name, stmt);
        this.ops.push({ k: 'parse', name: p.name, stmt, start: now });
        return;
      }
      case F.Bind: {
        const b = decodeBind(msg!);
        const stmt = this.statements.get(b.statement) ?? UNKNOWN_STATEMENT;
        const portal: Portal = { statementName: b.statement, stmt, formats: b.paramFormats, values: b.values };
        this.portals.set(b.portal, portal);
        this.ops.push({ k: 'bind', portal, portalName: b.portal, start: now });
        return;
      }
      case F.Execute: {
        const e = decodeExecute(msg!);
        this.ops.push({ k: 'execute', portal: this.portals.get(e.portal), portalName: e.portal, start: now, rows: 0 });
        this.lex.executing();
        return;
      }
      case F.Describe: {
        const d = decodeTarget(msg!, 'Describe');
        this.ops.push({ k: 'describe', statement: d.kind === 'S' ? this.statements.get(d.name) : undefined });
        return;
      }
      case F.Close: {
        const c = decodeTarget(msg!, 'Close');
        if (c.kind === 'S') this.statements.delete(c.name);
        else this.portals.delete(c.name);
        this.ops.push({ k: 'close' });
        return;
      }
      case F.Sync:
        this.ops.push({ k: 'sync' });
        return;
      case F.FunctionCall: {
        const f = decodeFunctionCall(msg!);
        const args = f.args.map((v, i) => renderValue(v, f.argFormats[i], 0));
        this.ops.push({ k: 'fcall', oid: f.oid, args, start: now });
        this.lex.executing();
        return;
      }
      case F.CopyData: {
        // Counted against the statement being executed; the data may be sent before CopyInResponse is seen.
        const h = this.ops[0];
        if (h && (h.k === 'query' || h.k === 'execute')) (h.copy ??= { direction: 'in', bytes: 0 }).bytes += length - 4;
        return;
      }
      case F.CopyFail:
        decodeCopyFail(msg!);
        return;
      case F.CopyDone:
      case F.Flush:
      case F.Terminate:
        return;
      default:
        if (type === F.Password) throw new ProtocolError('unexpected authentication message after login', 'VIGIL_PG_OUT_OF_PHASE');
        if (!isKnownFrontendType(type)) throw new ProtocolError(`unknown frontend message type 0x${type.toString(16)}`, 'VIGIL_PG_MALFORMED');
    }
  }

  /** Observe a server message. Never throws: an unexpected message only leaves a gap in the records. */
  backend(type: number, msg: Buffer | undefined, length: number, now: number): void {
    const h = this.ops[0];
    switch (type) {
      case B.DataRow:
        if (h && (h.k === 'query' || h.k === 'execute')) h.rows++;
        return;
      case B.CopyData:
        if (h && (h.k === 'query' || h.k === 'execute') && h.copy) h.copy.bytes += length - 4;
        return;
      case B.CommandComplete:
        this.complete(h, commandTag(msg!), now, false);
        return;
      case B.EmptyQueryResponse:
        if (h?.k === 'query') this.nextStatement(h, now);
        else if (h?.k === 'execute') this.ops.shift();
        return;
      case B.PortalSuspended:
        this.complete(h, undefined, now, true);
        return;
      case B.ErrorResponse:
        this.error(h, msg!, now);
        return;
      case B.ReadyForQuery:
        // Ends a simple query, a function call, or everything up to and including a Sync.
        while (this.ops.length) {
          const op = this.ops.shift()!;
          if (op.k === 'sync' || op.k === 'query' || op.k === 'fcall') break;
        }
        // Outside a transaction block no portal survives; forget them so a client that never closes
        // its named portals does not grow this map (only when nothing is in flight: a pipelined Bind may wait).
        if (msg && msg[5] === 0x49 /* I */ && this.ops.length === 0 && this.portals.size > 0) this.portals.clear();
        if (this.ops.length === 0) this.lex.settled();
        return;
      case B.ParameterStatus:
        if (msg) this.lex.parameterStatus(msg);
        return;
      case B.ParseComplete:
      case B.BindComplete:
      case B.CloseComplete:
        if (h && (h.k === 'parse' || h.k === 'bind' || h.k === 'close')) this.ops.shift();
        return;
      case B.ParameterDescription:
        if (h?.k === 'describe' && h.statement && msg) h.statement.paramTypes = parameterTypes(msg);
        return;
      case B.RowDescription:
      case B.NoData:
        if (h?.k === 'describe') this.ops.shift();
        return;
      case B.CopyInResponse:
      case B.CopyOutResponse:
      case B.CopyBothResponse:
        if (h && (h.k === 'query' || h.k === 'execute')) h.copy ??= { direction: type === B.CopyInResponse ? 'in' : 'out', bytes: 0 };
        return;
      case B.FunctionCallResponse:
        if (h?.k === 'fcall') {
          this.emit(h, 'success', now, 0, undefined, false, undefined, undefined);
          h.start = now;
        }
        return;
      default:
        // Notice, Notification, BackendKeyData…: asynchronous, not part of any request.
        return;
    }
  }

  private params(p: Portal): (string | null)[] {
    const { stmt, formats, values } = p;
    const out = new Array<string | null>(values.length);
    for (let i = 0; i < values.length; i++) {
      out[i] = stmt.masked.has(i + 1) && values[i] !== null ? MASKED : renderValue(values[i], formats[i], stmt.paramTypes[i] ?? 0);
    }
    return out;
  }

  private nextStatement(q: Extract<Op, { k: 'query' }>, now: number): void {
    q.i++;
    q.start = now;
    q.rows = 0;
    q.copy = undefined;
  }

  /**
   * One record shape for every case (all fields present, undefined when not applicable): records are
   * made per statement on the hot path, and a single hidden class keeps that cheap. The outcome's parts
   * come as arguments rather than an options object: one allocation less per statement.
   */
  private emit(
    op: Op,
    outcome: 'success' | 'failure',
    now: number,
    rows: number,
    tag: string | undefined,
    suspended: boolean,
    sqlstate: string | undefined,
    error: string | undefined,
  ): void {
    let protocol: QueryRecord['protocol'] = 'extended';
    let sql: string | undefined;
    let params: (string | null)[] | undefined;
    let statement: string | undefined;
    let portal: string | undefined;
    let copy: Copy | undefined;
    let functionOid: number | undefined;
    let unsplit: boolean | undefined;
    let start = 0;
    switch (op.k) {
      case 'query':
        protocol = 'simple';
        sql = redactSql(op.stmts[op.i] ?? op.stmts.join('; '), this.opts.redact, op.scs).text;
        unsplit = op.unsplit || undefined;
        copy = op.copy;
        start = op.start;
        break;
      case 'execute': {
        const p = op.portal;
        sql = p ? p.stmt.sql : '(unknown portal)';
        params = p ? this.params(p) : undefined;
        statement = p?.statementName || undefined;
        portal = op.portalName || undefined;
        copy = op.copy;
        start = op.start;
        break;
      }
      case 'parse':
        sql = op.stmt.sql;
        statement = op.name || undefined;
        start = op.start;
        break;
      case 'bind':
        sql = op.portal.stmt.sql;
        params = this.params(op.portal);
        statement = op.portal.statementName || undefined;
        portal = op.portalName || undefined;
        start = op.start;
        break;
      case 'fcall':
        protocol = 'function_call';
        params = op.args;
        functionOid = op.oid;
        start = op.start;
        break;
      default:
        return;
    }
    const sp = tag === undefined ? -1 : tag.indexOf(' ');
    const command = tag === undefined ? undefined : sp < 0 ? tag : tag.slice(0, sp);
    const n = tag === undefined ? undefined : tagRows(tag);
    const returnsRows = rows > 0 || command === 'SELECT' || command === 'FETCH' || command === 'SHOW';
    this.opts.onRecord({
      protocol,
      sql,
      params,
      statement,
      portal,
      command,
      rowsReturned: rows,
      rowsAffected: returnsRows || command === 'COPY' ? undefined : n,
      outcome,
      sqlstate,
      error,
      durationMs: now - start,
      suspended: suspended || undefined,
      copy: copy && { bytes: copy.bytes, direction: copy.direction, rows: outcome === 'success' ? n : undefined },
      functionOid,
      unsplit,
    });
  }

  private complete(h: Op | undefined, tag: string | undefined, now: number, suspended: boolean): void {
    if (!h || (h.k !== 'query' && h.k !== 'execute')) return;
    this.emit(h, 'success', now, h.rows, tag, suspended, undefined, undefined);
    if (h.k === 'query') this.nextStatement(h, now);
    else this.ops.shift();
  }

  private error(h: Op | undefined, msg: Buffer, now: number): void {
    if (!h) return;
    const e = errorFields(msg);
    this.emit(h, 'failure', now, h.k === 'query' || h.k === 'execute' ? h.rows : 0, undefined, false, e.code, e.message);
    if (h.k === 'query') {
      // The rest of a simple query string is not executed; ReadyForQuery follows.
      h.i = h.stmts.length;
      return;
    }
    if (h.k === 'fcall') return; // ReadyForQuery follows.
    // The server discards extended-protocol messages until Sync: drop them up to (not including) the Sync.
    while (this.ops.length && this.ops[0].k !== 'sync') this.ops.shift();
  }
}

function parameterTypes(msg: Buffer): number[] {
  if (msg.length < 7) return [];
  const n = msg.readInt16BE(5);
  const out: number[] = [];
  for (let i = 0; i < n && 7 + i * 4 + 4 <= msg.length; i++) out.push(msg.readUInt32BE(7 + i * 4));
  return out;
}
