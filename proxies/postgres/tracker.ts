import { ProtocolError } from '../../src/errors.ts';
import { B, commandTag, errorFields, tagRows } from './backend.ts';
import { F, decodeBind, decodeExecute, decodeFunctionCall, decodeParse, decodeTarget, decodeCopyFail, isKnownFrontendType } from './frontend.ts';
import { redactSql, splitQuery, type StandardConformingStrings } from './sql.ts';
import { decodeParseText, decodeQueryText, LexState } from './lexmode.ts';
import { renderValue } from './values.ts';
import { mayChangeNames, serverName, sqlNameChange } from './names.ts';

/**
 * Correlates the two directions of a relayed session into one record per executed statement. Pure: fed
 * frontend and backend messages (as cut by MessageFramer) plus a clock, it calls `onRecord`. It mirrors
 * the server's processing order: responses come in the order requests were sent, and after an error
 * the server skips everything up to the next Sync.
 *
 * Every statement is known from the moment its message is framed (before it is forwarded): the
 * connection reports when a chunk went to the server (`forwarded`), and a session that ends with
 * statements still in flight has them written as `outcome: 'unknown'` by `abandon`. Names follow the
 * server: a prepared statement exists from its ParseComplete, a portal from its BindComplete, and both
 * stop existing at CloseComplete; a client's Parse/Bind/Close alone changes nothing.
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
  outcome: 'success' | 'failure' | 'unknown';
  sqlstate?: string;
  error?: string;
  durationMs: number;
  /** Execute stopped at its row limit (PortalSuspended); the next Execute continues the portal. */
  suspended?: boolean;
  copy?: { direction: 'in' | 'out'; rows?: number; bytes: number };
  functionOid?: number;
  /** Set on records written by `abandon`: why the session ended while the statement was in flight. */
  endReason?: string;
  /** The statement boundaries were not certain: `sql` is the whole simple-query text. */
  unsplit?: boolean;
  /**
   * The statement completed but its implicit transaction was then rolled back (a later statement of the
   * same batch or query string failed, its commit failed, or a ROLLBACK ended it): nothing it did
   * remains. `command`, `rowsAffected`… are what the server reported when it completed.
   */
  rolledBack?: boolean;
}

/** A statement about to run or still running (`db.query.start`): what is known before its result. */
export interface StatementStart {
  protocol: QueryRecord['protocol'];
  sql?: string;
  params?: (string | null)[];
  statement?: string;
  portal?: string;
  functionOid?: number;
  /** For a long-running announcement: how long it has been running. */
  runningMs?: number;
}

interface Statement {
  sql: string;
  masked: ReadonlySet<number>;
  paramTypes: number[];
  /** Which kinds of names its SQL may define or drop (namesIn), worked out when first asked. */
  names?: number;
}

interface Portal {
  statementName: string;
  stmt: Statement;
  formats: number[];
  values: (Buffer | null)[];
  /**
   * A cursor declared WITH HOLD: it outlives its transaction once that commits ('held'); until then
   * ('declared') an error or ROLLBACK drops it with the transaction.
   */
  hold?: 'declared' | 'held';
}

interface Copy {
  direction: 'in' | 'out';
  bytes: number;
}

/**
 * Requests awaiting the server's answer, in the order sent. Statement-running ops (query, execute, fcall)
 * carry `announced`: how many of their statements had a `db.query.start` written (intent in strict mode,
 * or the long-running notice), so neither is written twice. `ends`: how many CopyDone/CopyFail the client
 * had sent before the op (see `copyIn`).
 */
type Op =
  | { k: 'query'; text: string; stmts: string[]; unsplit: boolean; scs: StandardConformingStrings; i: number; start: number; rows: number; copy?: Copy; announced: number; ends: number; names?: number }
  | { k: 'parse'; name: string; stmt: Statement }
  | { k: 'bind'; portalName: string; statementName: string; formats: number[]; values: (Buffer | null)[] }
  | { k: 'describe'; kind: 'S' | 'P'; name: string }
  | { k: 'close'; kind: 'S' | 'P'; name: string }
  | { k: 'execute'; portalName: string; start: number; rows: number; copy?: Copy; announced: number; ends: number }
  | { k: 'fcall'; oid: number; args: (string | null)[]; start: number; announced: number }
  | { k: 'sync'; ends: number };

type Running = Extract<Op, { k: 'query' | 'execute' | 'fcall' }>;

export interface TrackerOptions {
  /** Column/parameter names to mask (config.redaction.patterns compiled). */
  redact: RegExp | undefined;
  onRecord(r: QueryRecord): void;
  /** A statement still running `longRunningAfter` ms after it was forwarded (see `announceDue`). */
  onStart?(s: StatementStart): void;
}

const UNKNOWN_STATEMENT: Statement = { sql: '(unknown prepared statement)', masked: new Set(), paramTypes: [] };
/** Kinds of names SQL may define or drop (see namesIn): prepared statements, portals. */
const STATEMENT_NAMES = 1;
const PORTAL_NAMES = 2;
const MASKED = '***';
/** Why a Query or FunctionCall sent after an extended-protocol error, before the Sync, has no result. */
const NOT_RUN = 'not executed: after an error in the extended protocol the server ignores every message up to the next Sync';
/**
 * Most Execute records held for one Sync (see `deliver`): a client may send any number of Executes
 * without a Sync, and memory must stay bounded; past this the held ones are written as they stand.
 */
const MAX_HELD = 10_000;
/** Command tags that end (or open) a transaction block: what ran before them no longer waits for Sync. */
const TX_COMMANDS = new Set(['COMMIT', 'ROLLBACK', 'BEGIN', 'START']);
/**
 * Statements the server commits as soon as they complete (PreventInTransactionBlock, postgres.c
 * XACT_FLAGS_NEEDIMMEDIATECOMMIT): one of them only runs first in its implicit transaction, and what
 * follows it runs in a new one. Keyed by the tag's first word, then read from the statement's text.
 */
const COMMITS_AT_ONCE = new Set(['VACUUM', 'CREATE', 'DROP', 'ALTER', 'DISCARD', 'REINDEX', 'CLUSTER', 'COMMIT', 'ROLLBACK']);
const COMMITS_AT_ONCE_SQL =
  /^(?:VACUUM\b|(?:CREATE|DROP)\s+(?:DATABASE|TABLESPACE)\b|ALTER\s+SYSTEM\b|DISCARD\s+ALL\b|(?:CREATE\s+(?:UNIQUE\s+)?INDEX|DROP\s+INDEX|REINDEX)\b[\s\S]*\bCONCURRENTLY\b|REINDEX\s+(?:\([^)]*\)\s*)?(?:SYSTEM|DATABASE)\b|CLUSTER\s*(?:VERBOSE\s*)?;?\s*$|(?:COMMIT|ROLLBACK)\s+PREPARED\b)/i;
const LEADING_COMMENTS = /^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*/;

function commitsAtOnce(r: QueryRecord): boolean {
  return COMMITS_AT_ONCE.has(r.command ?? '') && r.sql !== undefined && COMMITS_AT_ONCE_SQL.test(r.sql.replace(LEADING_COMMENTS, ''));
}

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
  /** Prepared statements and portals as the server confirmed them. */
  private readonly statements = new Map<string, Statement>();
  private readonly portals = new Map<string, Portal>();
  /** How many ops at the end of `ops` were framed but not yet forwarded (see `forwarded`). */
  private unsent = 0;
  /** How many of those run statements (simple Query statements count one each). */
  private unsentStatements = 0;

  /** The session's lexical mode, from the server's ParameterStatus reports. */
  private readonly lex = new LexState();
  /**
   * The server is discarding messages up to the next Sync (postgres.c `ignore_till_sync`, set by an
   * error in the extended protocol) and the forwarded ops at the head of `ops` are in that window.
   */
  private skipping = false;
  /**
   * Records since the last ReadyForQuery, held while a statement's result depends on its implicit
   * transaction: outside a transaction block an Execute is committed at Sync, and a simple query's
   * statements when the query ends. Until then a later error in the same batch or query string (or a
   * failed commit: a deferred constraint) rolls it back, and its record must say so. Later records wait
   * behind held ones so the order stays the server's.
   */
  private readonly held: QueryRecord[] = [];
  /** Which held records the implicit transaction's end decides (parallel to `held`). */
  private readonly heldCommit: boolean[] = [];
  /** The last ReadyForQuery said idle: an Execute now runs in an implicit transaction committed at Sync. */
  private implicit = true;
  /** Executes of the current implicit transaction were written before its Sync was answered (MAX_HELD). */
  private releasedEarly = false;
  /** CopyDone and CopyFail messages the client sent so far. */
  private copyEnds = 0;
  /** The server is in copy-in mode until the client's CopyDone/CopyFail number `copyInUntil` (see `copyIn`). */
  private copyInUntil = 0;
  constructor(private readonly opts: TrackerOptions) {}

  /** Pending requests not yet answered (for tests and diagnostics). */
  get pending(): number {
    return this.ops.length;
  }

  /** The lexical mode the server will apply to the next statement text (for the guardrails). */
  lexMode(): { scs: StandardConformingStrings; encoding: string } {
    return { scs: this.lex.scs, encoding: this.lex.encoding };
  }

  /** Statements framed since the last `forwarded()` call: forwarding the chunk would run them. */
  get statementsToForward(): number {
    return this.unsentStatements;
  }

  private statement(sql: string, paramTypes: number[], certain = true, scs = this.lex.scs): Statement {
    const r = redactSql(sql, this.opts.redact, certain ? scs : undefined);
    return { sql: r.text, masked: r.params, paramTypes };
  }

  private push(op: Op): void {
    this.ops.push(op);
    this.unsent++;
  }

  /** Observe a client message. Throws ProtocolError for malformed or unexpected messages. */
  frontend(type: number, msg: Buffer | undefined, length: number, now: number): void {
    switch (type) {
      case F.Query: {
        const text = decodeQueryText(msg!, this.lex.encoding);
        const scs = this.lex.scs;
        const split = text.certain ? splitQuery(text.sql, scs) : { statements: [text.sql.trim()], unsplit: true };
        this.push({ k: 'query', text: text.sql, stmts: split.statements, unsplit: split.unsplit, scs, i: 0, start: now, rows: 0, announced: 0, ends: this.copyEnds });
        this.unsentStatements += Math.max(1, split.statements.length);
        this.lex.executing();
        return;
      }
      case F.Parse: {
        const p = decodeParse(msg!);
        const text = decodeParseText(msg!, p.query, this.lex.encoding);
        this.push({ k: 'parse', name: serverName(p.name), stmt: this.statement(text.sql, p.paramTypes, text.certain) });
        return;
      }
      case F.Bind: {
        const b = decodeBind(msg!);
        this.push({ k: 'bind', portalName: serverName(b.portal), statementName: serverName(b.statement), formats: b.paramFormats, values: b.values });
        return;
      }
      case F.Execute: {
        const e = decodeExecute(msg!);
        this.push({ k: 'execute', portalName: serverName(e.portal), start: now, rows: 0, announced: 0, ends: this.copyEnds });
        this.unsentStatements++;
        this.lex.executing();
        return;
      }
      case F.Describe: {
        const d = decodeTarget(msg!, 'Describe');
        this.push({ k: 'describe', kind: d.kind, name: serverName(d.name) });
        return;
      }
      case F.Close: {
        const c = decodeTarget(msg!, 'Close');
        this.push({ k: 'close', kind: c.kind, name: serverName(c.name) });
        return;
      }
      case F.Sync:
        // Read by the server in copy-in mode, which ignores it: no ReadyForQuery will answer it.
        if (this.copyEnds < this.copyInUntil) return;
        this.push({ k: 'sync', ends: this.copyEnds });
        return;
      case F.FunctionCall: {
        const f = decodeFunctionCall(msg!);
        const args = f.args.map((v, i) => renderValue(v, f.argFormats[i], 0));
        this.push({ k: 'fcall', oid: f.oid, args, start: now, announced: 0 });
        this.unsentStatements++;
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
        this.copyEnds++;
        return;
      case F.CopyDone:
        this.copyEnds++;
        return;
      case F.Flush:
      case F.Terminate:
        return;
      default:
        if (type === F.Password) throw new ProtocolError('unexpected authentication message after login', 'VIGIL_PG_OUT_OF_PHASE');
        if (!isKnownFrontendType(type)) throw new ProtocolError(`unknown frontend message type 0x${type.toString(16)}`, 'VIGIL_PG_MALFORMED');
    }
  }

  /**
   * What the messages framed since the last `forwarded()` will run, as the server will see it if
   * everything before succeeds (pending Parse/Bind count): the intent records of strict durability.
   */
  startsToForward(): StatementStart[] {
    const out: StatementStart[] = [];
    for (let j = this.ops.length - this.unsent; j < this.ops.length; j++) {
      const op = this.ops[j];
      if (op.k === 'query') {
        if (op.stmts.length === 0) out.push({ protocol: 'simple', sql: '' });
        for (let i = 0; i < op.stmts.length; i++) out.push({ protocol: 'simple', sql: redactSql(op.stmts[i], this.opts.redact, op.scs).text });
      } else if (op.k === 'execute' || op.k === 'fcall') out.push(this.startOf(op, j, undefined));
    }
    return out;
  }

  /**
   * The chunk holding the messages framed so far went to the server. `announced`: their intent records
   * were written (strict durability), so no long-running notice follows for them; `now` restarts their
   * clocks (the wait for the intents is not the statement's duration).
   */
  forwarded(announced: boolean, now?: number): void {
    if (announced) {
      // Held back until the intents were durable: their clocks start now, when the server gets them.
      for (let j = this.ops.length - this.unsent; j < this.ops.length; j++) {
        const op = this.ops[j];
        if (op.k === 'query') op.announced = op.stmts.length;
        else if (op.k === 'execute' || op.k === 'fcall') op.announced = 1;
        if (now !== undefined && (op.k === 'query' || op.k === 'execute' || op.k === 'fcall')) op.start = now;
      }
    }
    this.unsent = 0;
    this.unsentStatements = 0;
    // Sent after an extended-protocol error and before its Sync: the server will read and ignore them.
    if (this.skipping) this.skipToSync();
  }

  /**
   * Forget what was framed but not forwarded (the connection refused it): it never reached the server,
   * so it must not be recorded as run.
   */
  discardUnforwarded(): void {
    this.ops.length -= this.unsent;
    this.unsent = 0;
    this.unsentStatements = 0;
  }

  /**
   * Calls `onStart` for each forwarded statement running for at least `afterMs` and not announced yet.
   * Returns when the next one becomes due (or undefined when nothing forwarded is running): the
   * connection keeps one timer per session for this, not one per statement.
   */
  announceDue(now: number, afterMs: number): number | undefined {
    let next = Infinity;
    const sent = this.ops.length - this.unsent;
    for (let j = 0; j < sent; j++) {
      const op = this.ops[j];
      if (op.k !== 'query' && op.k !== 'execute' && op.k !== 'fcall') continue;
      const current = op.k === 'query' ? op.i : 0;
      const total = op.k === 'query' ? op.stmts.length : 1;
      if (op.announced >= total) continue;
      // Only the head is running; statements queued behind it start later: look again then.
      if (j === 0 && op.announced <= current && current < total) {
        const due = op.start + afterMs;
        if (now < due) next = Math.min(next, due);
        else {
          // The server flushes a simple query's results only when its buffer fills or at the end: which
          // of the remaining statements runs is unknown, so all of them are announced.
          for (let i = current; i < total; i++) this.opts.onStart?.({ ...this.startOf(op, j, i), runningMs: now - op.start });
          op.announced = total;
        }
      } else next = Math.min(next, now + afterMs);
    }
    return next === Infinity ? undefined : next;
  }

  /**
   * The session ends (for any reason) with forwarded statements unanswered: record each as
   * `outcome: 'unknown'` with what was seen so far. Statements of a simple query not reached yet are
   * included: the server runs them without waiting for the client.
   */
  abandon(endReason: string, now: number): void {
    const sent = this.ops.length - this.unsent;
    for (let j = 0; j < sent; j++) {
      const op = this.ops[j];
      if (op.k === 'query') {
        for (; op.i < Math.max(1, op.stmts.length); this.nextStatement(op, op.start)) {
          this.emit(op, 'unknown', now, op.rows, undefined, false, undefined, undefined, endReason, j);
        }
      } else if (op.k === 'execute' || op.k === 'fcall') {
        this.emit(op, 'unknown', now, op.k === 'execute' ? op.rows : 0, undefined, false, undefined, undefined, endReason, j);
      }
    }
    this.ops.length = 0;
    this.unsent = 0;
    this.unsentStatements = 0;
    this.skipping = false;
    // The Sync that would commit them was never answered: whether they took effect is unknown.
    for (let i = 0; i < this.held.length; i++) {
      if (this.heldCommit[i]) Object.assign(this.held[i], { outcome: 'unknown', endReason });
    }
    this.release();
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
        else if (h?.k === 'execute') this.shift();
        return;
      case B.PortalSuspended:
        this.complete(h, undefined, now, true);
        return;
      case B.ErrorResponse:
        this.error(h, msg!, now);
        return;
      case B.ReadyForQuery:
        // Ends a simple query, a function call, or everything up to and including a Sync.
        while (this.ops.length > this.unsent) {
          const op = this.shift();
          if (op.k === 'query' && op.i < op.stmts.length) this.unmatched(op, now);
          // A simple query that ran (one skipped after an error never gets here) dropped the unnamed
          // statement as it began and its own unnamed portal as it ended (postgres.c exec_simple_query).
          if (op.k === 'query') this.forgetUnnamed();
          if (op.k === 'sync' || op.k === 'query' || op.k === 'fcall') break;
        }
        // The request is over (a Sync's commit succeeded, if it had one): what waited on it is written.
        this.release();
        this.implicit = !!msg && msg[5] === 0x49; /* I */
        this.releasedEarly = false;
        if (this.implicit && this.portals.size > 0) {
          // Outside a transaction block no portal survives but a held cursor (portalmem.c
          // AtCommit_Portals / AtAbort_Portals): an Execute still in flight on a dropped name fails, and
          // its record must not carry the text the name used to mean. Binds in flight are still ops,
          // not in this map.
          this.transactionEnded(true);
          for (const [name, p] of this.portals) if (p.hold !== 'held') this.portals.delete(name);
        }
        if (this.ops.length === 0) this.lex.settled();
        return;
      case B.ParameterStatus:
        if (msg) this.lex.parameterStatus(msg);
        return;
      case B.ParseComplete:
        if (h?.k === 'parse') {
          this.statements.set(h.name, h.stmt);
          this.shift();
        }
        return;
      case B.BindComplete:
        if (h?.k === 'bind') {
          const stmt = this.statements.get(h.statementName) ?? UNKNOWN_STATEMENT;
          this.portals.set(h.portalName, { statementName: h.statementName, stmt, formats: h.formats, values: h.values });
          this.shift();
        }
        return;
      case B.CloseComplete:
        if (h?.k === 'close') {
          if (h.kind === 'S') this.statements.delete(h.name);
          else this.portals.delete(h.name);
          this.shift();
        }
        return;
      case B.ParameterDescription:
        if (h?.k === 'describe' && h.kind === 'S' && msg) {
          const stmt = this.statements.get(h.name);
          if (stmt) stmt.paramTypes = parameterTypes(msg);
        }
        return;
      case B.RowDescription:
      case B.NoData:
        if (h?.k === 'describe') this.shift();
        return;
      case B.CopyInResponse:
      case B.CopyOutResponse:
      case B.CopyBothResponse:
        if (h && (h.k === 'query' || h.k === 'execute')) {
          h.copy ??= { direction: type === B.CopyInResponse ? 'in' : 'out', bytes: 0 };
          if (type === B.CopyInResponse) this.copyIn(h);
        }
        return;
      case B.FunctionCallResponse:
        if (h?.k === 'fcall') {
          this.emit(h, 'success', now, 0, undefined, false, undefined, undefined, undefined, 0);
          h.start = now;
        }
        return;
      default:
        // Notice, Notification, BackendKeyData…: asynchronous, not part of any request.
        return;
    }
  }

  /**
   * The server entered copy-in mode for the statement at the head: until the client's next CopyDone or
   * CopyFail it reads only copy messages and ignores Sync and Flush (copyfromparse.c CopyGetData). A Sync
   * sent in that window (libpq sends one right after Execute, and another after CopyDone) gets no
   * ReadyForQuery: counting it would leave a Sync that is never answered, and every later answer would
   * be matched to the request before its own.
   */
  private copyIn(h: QueryOrExecute): void {
    this.copyInUntil = ++h.ends;
    for (let j = 1; j < this.ops.length; j++) {
      const op = this.ops[j];
      if (op.k !== 'sync') continue;
      if (op.ends >= this.copyInUntil) break;
      this.ops.splice(j--, 1);
      if (j >= this.ops.length - this.unsent) this.unsent--;
    }
  }

  /** Answers only ever concern forwarded ops; never consume one the server has not been sent. */
  private shift(): Op {
    const op = this.ops.shift()!;
    if (this.unsent > this.ops.length) this.unsent = this.ops.length;
    return op;
  }

  /**
   * The portal an op at index `j` will run, as the server will see it if everything before succeeds.
   * Pending requests count in order, but a Bind to a named portal that exists fails (42P03 duplicate
   * cursor) and leaves the old one: after the next Sync an Execute of that name runs the old text, and
   * a strict-mode intent naming the refused Bind's text would name a statement that never ran. Only the
   * unnamed portal is replaced by a Bind (or dropped by a simple query). Where a pending request may
   * have ended the portal (a Sync, a query: the transaction may end; DECLARE, CLOSE, DISCARD), a Bind
   * after it is taken as succeeding.
   */
  private portalFor(name: string, j: number): Portal | undefined {
    let x = j - 1;
    let portal: Portal | undefined;
    for (; x >= 0; x--) {
      const op = this.ops[x];
      if (op.k === 'close' && op.kind === 'P' && op.name === name) break;
      if (name !== '') continue;
      if (op.k === 'bind' && op.portalName === '') return this.boundPortal(op, x);
      if (op.k === 'query') return undefined;
    }
    if (x < 0) portal = this.portals.get(name);
    if (name === '') return portal;
    let certain = true;
    for (let y = x + 1; y < j; y++) {
      const op = this.ops[y];
      if (op.k === 'bind' && op.portalName === name && (!portal || !certain)) {
        portal = this.boundPortal(op, y);
        certain = true;
      } else if (portal && portal.hold !== 'held' && (op.k === 'sync' || op.k === 'query' || op.k === 'execute')) certain = false;
      else if (this.mayChangeNames(op, PORTAL_NAMES)) certain = false;
    }
    return portal;
  }

  private boundPortal(op: Extract<Op, { k: 'bind' }>, x: number): Portal {
    return { statementName: op.statementName, stmt: this.statementFor(op.statementName, x) ?? UNKNOWN_STATEMENT, formats: op.formats, values: op.values };
  }

  /**
   * The statement a name will mean for an op at index `j`, as the server will see it if everything
   * before succeeds. A Parse of a named statement that exists fails (42P05 duplicate prepared statement)
   * and leaves the old one (see portalFor); only the unnamed statement is replaced by a Parse (or
   * dropped by a simple query). Where a pending request may have dropped the name (PREPARE, DEALLOCATE,
   * DISCARD), a Parse after it is taken as succeeding.
   */
  private statementFor(name: string, j: number): Statement | undefined {
    let x = j - 1;
    let stmt: Statement | undefined;
    for (; x >= 0; x--) {
      const op = this.ops[x];
      if (op.k === 'close' && op.kind === 'S' && op.name === name) break;
      if (name !== '') continue;
      if (op.k === 'parse' && op.name === '') return op.stmt;
      if (op.k === 'query') return undefined;
    }
    if (x < 0) stmt = this.statements.get(name);
    if (name === '') return stmt;
    let certain = true;
    for (let y = x + 1; y < j; y++) {
      const op = this.ops[y];
      if (op.k === 'parse' && op.name === name && (!stmt || !certain)) {
        stmt = op.stmt;
        certain = true;
      }
      if (this.mayChangeNames(op, STATEMENT_NAMES)) certain = false;
    }
    return stmt;
  }

  /** A pending request whose SQL may define or drop names of `kind`. */
  private mayChangeNames(op: Op, kind: number): boolean {
    let holder: { names?: number; text?: string; sql?: string } | undefined;
    if (op.k === 'query') holder = op;
    else if (op.k === 'parse') holder = op.stmt;
    else if (op.k === 'bind') holder = this.statements.get(op.statementName);
    if (!holder) return false;
    holder.names ??= namesIn(holder.text ?? holder.sql ?? '');
    return (holder.names & kind) !== 0;
  }

  private startOf(op: Running, j: number, index: number | undefined): StatementStart {
    if (op.k === 'query') return { protocol: 'simple', sql: redactSql(op.stmts[index ?? op.i] ?? '', this.opts.redact, op.scs).text };
    if (op.k === 'fcall') return { protocol: 'function_call', params: op.args, functionOid: op.oid };
    const p = this.portalFor(op.portalName, j);
    return {
      protocol: 'extended',
      sql: p ? p.stmt.sql : '(unknown portal)',
      params: p ? this.params(p) : undefined,
      statement: p?.statementName || undefined,
      portal: op.portalName || undefined,
    };
  }

  private params(p: Portal): (string | null)[] {
    const { stmt, formats, values } = p;
    const out = new Array<string | null>(values.length);
    for (let i = 0; i < values.length; i++) {
      out[i] = stmt.masked.has(i + 1) && values[i] !== null ? MASKED : renderValue(values[i], formats[i], stmt.paramTypes[i] ?? 0);
    }
    return out;
  }

  /**
   * A simple query ended without error before every statement of its split had a result: the split
   * was wrong (the server ran fewer, longer statements). Its text is never dropped: everything from
   * the first statement without a result to the end is recorded as one, marked unsplit.
   */
  private unmatched(op: Extract<Op, { k: 'query' }>, now: number): void {
    let at = 0;
    for (let k = 0; k < op.i; k++) at = op.text.indexOf(op.stmts[k], at) + op.stmts[k].length;
    const from = op.text.indexOf(op.stmts[op.i], at);
    op.stmts[op.i] = op.text.slice(from < 0 ? at : from).trim();
    op.stmts.length = op.i + 1;
    op.unsplit = true;
    this.emit(op, 'success', now, op.rows, undefined, false, undefined, undefined, undefined, 0);
    op.i = op.stmts.length;
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
    outcome: QueryRecord['outcome'],
    now: number,
    rows: number,
    tag: string | undefined,
    suspended: boolean,
    sqlstate: string | undefined,
    error: string | undefined,
    endReason: string | undefined,
    j: number,
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
        // More results than statements: the split was wrong, and this result has no text of its own.
        unsplit = op.unsplit || op.i >= op.stmts.length || undefined;
        copy = op.copy;
        start = op.start;
        break;
      case 'execute': {
        const p = this.portalFor(op.portalName, j);
        sql = p ? p.stmt.sql : '(unknown portal)';
        params = p ? this.params(p) : undefined;
        statement = p?.statementName || undefined;
        portal = op.portalName || undefined;
        copy = op.copy;
        start = op.start;
        break;
      }
      case 'fcall':
        protocol = 'function_call';
        params = op.args;
        functionOid = op.oid;
        start = op.start;
        break;
      case 'parse':
        // Refused at Parse or Bind (error): recorded with what the client asked, as a failure.
        sql = op.stmt.sql;
        statement = op.name || undefined;
        start = now;
        break;
      case 'bind': {
        const stmt = this.statementFor(op.statementName, j) ?? UNKNOWN_STATEMENT;
        sql = stmt.sql;
        params = this.params({ statementName: op.statementName, stmt, formats: op.formats, values: op.values });
        statement = op.statementName || undefined;
        portal = op.portalName || undefined;
        start = now;
        break;
      }
      default:
        return;
    }
    const sp = tag === undefined ? -1 : tag.indexOf(' ');
    const command = tag === undefined ? undefined : sp < 0 ? tag : tag.slice(0, sp);
    const n = tag === undefined ? undefined : tagRows(tag);
    const returnsRows = rows > 0 || command === 'SELECT' || command === 'FETCH' || command === 'SHOW';
    this.deliver((op.k === 'execute' || op.k === 'query') && outcome === 'success', {
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
      endReason,
      unsplit,
      rolledBack: undefined,
    });
  }

  /**
   * Write a record, or hold it until the implicit transaction ends (the Sync or the simple query is
   * answered): a successful statement in an implicit transaction (a later error or its commit may still
   * roll it back), and anything after one (order). A transaction command settles what was held before
   * it: the implicit transaction's end no longer concerns them.
   */
  private deliver(commit: boolean, r: QueryRecord): void {
    if (commit && TX_COMMANDS.has(r.command ?? '')) {
      // ROLLBACK with no block open ends the implicit transaction by rolling it back (xact.c
      // UserAbortTransactionBlock: TBLOCK_STARTED / TBLOCK_IMPLICIT_INPROGRESS to ABORT_PENDING).
      if (r.command === 'ROLLBACK' && this.implicit) this.rollBack(undefined, 'ROLLBACK ended the implicit transaction');
      // BEGIN turns what ran into a block (its end commits nothing); after COMMIT/ROLLBACK a new
      // implicit transaction starts.
      this.implicit = r.command === 'COMMIT' || r.command === 'ROLLBACK';
      commit = false;
      this.release();
    } else if (!this.implicit || (commit && commitsAtOnce(r))) commit = false;
    if (!commit && this.held.length === 0) return this.opts.onRecord(r);
    this.held.push(r);
    this.heldCommit.push(commit);
    if (this.held.length >= MAX_HELD) {
      this.releasedEarly = true;
      this.release();
    }
  }

  /** Write what was held, in order. Runs once per request (every transaction): the arrays are reused. */
  private release(): void {
    const held = this.held;
    const n = held.length;
    if (n === 0) return;
    for (let i = 0; i < n; i++) this.opts.onRecord(held[i]);
    // onRecord only collects (it never calls back into the tracker); should it, what it added stays.
    held.copyWithin(0, n);
    held.length -= n;
    this.heldCommit.copyWithin(0, n);
    this.heldCommit.length -= n;
  }

  /**
   * ErrorResponse with a Sync at the head: the implicit transaction's commit failed (a deferred
   * constraint, a serialization failure), so the Executes it held were rolled back: their records say
   * failure with the server's error. ReadyForQuery follows and the server does not skip (a Sync never
   * starts a skip). When none was held (already written), the failed commit gets a record of its own
   * so the error is not lost.
   */
  private commitFailed(code: string | undefined, message: string | undefined): void {
    let marked = 0;
    for (let i = 0; i < this.held.length; i++) {
      if (!this.heldCommit[i]) continue;
      Object.assign(this.held[i], { outcome: 'failure', sqlstate: code, error: message, rolledBack: true });
      marked++;
    }
    this.release();
    if (marked === 0 || this.releasedEarly) {
      this.opts.onRecord({
        protocol: 'extended',
        sql: '(implicit commit at Sync)',
        command: 'COMMIT',
        rowsReturned: 0,
        outcome: 'failure',
        sqlstate: code,
        error: message,
        durationMs: 0,
        params: undefined,
      });
    }
  }

  /**
   * The implicit transaction was rolled back (an error in it, or ROLLBACK): the statements it held
   * completed but are undone with it. Their records keep what the server reported and say failure,
   * rolled back, with the cause. They are settled: the session ending now does not make them unknown.
   */
  private rollBack(code: string | undefined, cause: string): void {
    const error = `rolled back with its implicit transaction: ${cause}`;
    for (let i = 0; i < this.held.length; i++) {
      if (!this.heldCommit[i]) continue;
      Object.assign(this.held[i], { outcome: 'failure', sqlstate: code, error, rolledBack: true });
      this.heldCommit[i] = false;
    }
  }

  /**
   * postgres.c `ignore_till_sync`: after an error in the extended protocol the server reads and drops
   * every message up to the next Sync. Parse/Bind/Execute there are covered by the failure already
   * recorded; a Query or FunctionCall there reached the server but never ran: recorded as such.
   */
  private skipToSync(): void {
    while (this.ops.length > this.unsent) {
      const op = this.ops[0];
      if (op.k === 'sync') {
        this.skipping = false;
        return;
      }
      this.shift();
      if (op.k === 'query') {
        for (; op.i < Math.max(1, op.stmts.length); this.nextStatement(op, op.start)) {
          this.emit(op, 'failure', op.start, 0, undefined, false, undefined, NOT_RUN, undefined, 0);
        }
      } else if (op.k === 'fcall') this.emit(op, 'failure', op.start, 0, undefined, false, undefined, NOT_RUN, undefined, 0);
    }
  }

  /**
   * The transaction that declared WITH HOLD cursors ended: committed (idle again with no error since),
   * they are held; rolled back (an error, ROLLBACK), they are gone with it. An error inside a savepoint
   * drops them too: forgetting a cursor the server kept only makes a later record say "unknown portal".
   */
  private transactionEnded(committed: boolean): void {
    for (const [name, p] of this.portals) {
      if (p.hold !== 'declared') continue;
      if (committed) p.hold = 'held';
      else this.portals.delete(name);
    }
  }

  private forgetUnnamed(): void {
    this.statements.delete('');
    this.portals.delete('');
  }

  /**
   * SQL commands share the protocol's names (PREPARE makes a statement that Bind can use, DECLARE a
   * portal that Execute can fetch from; DEALLOCATE, CLOSE and DISCARD ALL drop them): follow them once
   * the server confirmed (CommandComplete), so a later Execute is never recorded with the text of a
   * statement that name no longer means. What it defines is recorded as its whole text (the text the
   * server logs for its executions).
   */
  private sqlNames(h: QueryOrExecute, tag: string): void {
    let sql: string | undefined;
    let scs: boolean | undefined = this.lex.scs;
    if (h.k === 'query') {
      if (!h.unsplit && h.i < h.stmts.length) sql = h.stmts[h.i];
      scs = h.scs;
    } else sql = this.portalFor(h.portalName, 0)?.stmt.sql;
    const change = sqlNameChange(tag, sql, scs ?? true);
    if (!change) return;
    // Not read for certain (mode unknown, unsplit text): forget every name of that kind.
    const name = scs === undefined ? undefined : change.name;
    if (change.kind === 'all') {
      this.statements.clear();
      this.portals.clear();
    } else if (name === undefined) {
      if (change.kind === 'statement') this.statements.clear();
      else this.portals.clear();
    } else if (change.op === 'drop') {
      if (change.kind === 'statement') this.statements.delete(name);
      else this.portals.delete(name);
    } else {
      const stmt = h.k === 'query' ? this.statement(sql!, [], true, h.scs) : (this.portalFor(h.portalName, 0)?.stmt ?? UNKNOWN_STATEMENT);
      if (change.kind === 'statement') this.statements.set(name, stmt);
      else this.portals.set(name, { statementName: '', stmt, formats: [], values: [], hold: change.holdable ? 'declared' : undefined });
    }
  }

  private complete(h: Op | undefined, tag: string | undefined, now: number, suspended: boolean): void {
    if (!h || (h.k !== 'query' && h.k !== 'execute')) return;
    this.emit(h, 'success', now, h.rows, tag, suspended, undefined, undefined, undefined, 0);
    if (tag !== undefined && mayChangeNames(tag)) this.sqlNames(h, tag);
    else if (tag === 'ROLLBACK') this.transactionEnded(false);
    if (h.k === 'query') this.nextStatement(h, now);
    else this.shift();
  }

  private error(h: Op | undefined, msg: Buffer, now: number): void {
    if (!h) return;
    const e = errorFields(msg);
    this.transactionEnded(false);
    if (h.k === 'sync') return this.commitFailed(e.code, e.message);
    // A COPY FROM that failed left copy-in mode at once: Syncs the client sends from now on count again.
    if ((h.k === 'query' || h.k === 'execute') && h.copy?.direction === 'in') this.copyInUntil = 0;
    // Outside a transaction block an error aborts the implicit transaction: every statement of it that
    // completed since it began (earlier Executes before the Sync, earlier statements of a simple query
    // string) is undone (postgres.c: AbortCurrentTransaction; ReadyForQuery then says idle).
    if (this.implicit) this.rollBack(e.code, `a later statement failed${e.code ? ` (${e.code})` : ''}: ${e.message ?? ''}`);
    this.emit(h, 'failure', now, h.k === 'query' || h.k === 'execute' ? h.rows : 0, undefined, false, e.code, e.message, undefined, 0);
    if (h.k === 'query') {
      // The rest of a simple query string is not executed; ReadyForQuery follows.
      h.i = h.stmts.length;
      return;
    }
    if (h.k === 'fcall') return; // ReadyForQuery follows.
    // An unnamed Parse drops the previous unnamed statement before it parses (exec_parse_message).
    if (h.k === 'parse' && h.name === '') this.statements.delete('');
    // The server discards extended-protocol messages until Sync, including those not sent yet.
    this.shift();
    this.skipping = true;
    this.skipToSync();
  }
}

type QueryOrExecute = Extract<Op, { k: 'query' | 'execute' }>;

/** Which kinds of names a text may define or drop, from its words alone (never missing one). */
function namesIn(sql: string): number {
  return (/\b(?:PREPARE|DEALLOCATE|DISCARD)\b/i.test(sql) ? STATEMENT_NAMES : 0) | (/\b(?:DECLARE|CLOSE|DISCARD)\b/i.test(sql) ? PORTAL_NAMES : 0);
}

function parameterTypes(msg: Buffer): number[] {
  if (msg.length < 7) return [];
  const n = msg.readInt16BE(5);
  const out: number[] = [];
  for (let i = 0; i < n && 7 + i * 4 + 4 <= msg.length; i++) out.push(msg.readUInt32BE(7 + i * 4));
  return out;
}
