/**
 * Follows the server's responses in the command phase to know where each command's response ends and
 * what it said (OK / ERR / result sets with row counts, prepared-statement metadata). Pure: it sees each
 * logical server packet once; the bytes themselves are relayed unchanged by the caller.
 */
import { ProtocolError } from '../../src/errors.ts';
import { parseErr, parseOk, type ErrPacket } from './handshake.ts';
import { CLIENT, Reader, SERVER_STATUS } from './wire.ts';
import { parseSessionChanges, type SessionChanges } from './session-state.ts';

/** The shape of response a command gets. */
export type ResponseShape =
  /** OK, ERR or one or more result sets (COM_QUERY, COM_STMT_EXECUTE, COM_STMT_FETCH rows). */
  | 'results'
  /** COM_STMT_EXECUTE that asked for a cursor: a result set whose column EOF may say the server opened
   *  one (SERVER_STATUS_CURSOR_EXISTS, no rows follow: they come with COM_STMT_FETCH). */
  | 'cursor'
  /** COM_STMT_FETCH: rows of an open cursor (no column count or definitions) until EOF/OK, or ERR. */
  | 'fetch'
  /** COM_STMT_PREPARE: prepare-OK + parameter and column definitions, or ERR. */
  | 'prepare'
  /** Column definitions until EOF (COM_FIELD_LIST), or ERR. */
  | 'fieldlist'
  /** Exactly one packet of any kind (COM_STATISTICS). */
  | 'single';

export interface ResultSummary {
  /** Rows of a result set, or undefined for an OK. */
  rows?: number;
  affectedRows?: number | bigint;
  lastInsertId?: number | bigint;
  error?: ErrPacket;
  /** Session state the server said this result changed (CLIENT_SESSION_TRACK): schema, sql_mode, ... */
  changes?: SessionChanges;
}

export interface CommandResponse {
  results: ResultSummary[];
  /** Time each result completed (performance.now()), parallel to `results`. */
  ends: number[];
  /** COM_STMT_PREPARE success. */
  prepared?: { stmtId: number; numColumns: number; numParams: number };
  /** Server status flags of the last OK/EOF. */
  status: number;
}

const CURSOR_EXISTS = 0x0040;

type Phase =
  | 'first' // expecting the first packet of a response (or of the next result set)
  | 'columns'
  | 'columnsEof'
  | 'rows'
  | 'prepareParams'
  | 'prepareParamsEof'
  | 'prepareColumns'
  | 'prepareColumnsEof'
  | 'fieldlist';

export class ResponseTracker {
  private shape: ResponseShape | undefined;
  private phase: Phase = 'first';
  private left = 0;
  private rows = 0;
  private prepareColumns = 0;
  private current: CommandResponse | undefined;
  private readonly deprecateEof: boolean;
  private readonly sessionTrack: boolean;

  constructor(capabilities: number) {
    this.deprecateEof = (capabilities & CLIENT.DEPRECATE_EOF) !== 0;
    this.sessionTrack = (capabilities & CLIENT.SESSION_TRACK) !== 0;
  }

  /**
   * Whether the next server packet, known by its first byte and length, is an OK packet (one that can
   * carry session-state information): a response's OK, or the OK (0xFE) ending rows under
   * CLIENT_DEPRECATE_EOF. Asked before the packet is fed.
   */
  isOk(head: number, length: number): boolean {
    if (!this.shape) return false;
    if (this.phase === 'first') return head === 0x00 && this.shape !== 'prepare' && this.shape !== 'single';
    return this.phase === 'rows' && this.deprecateEof && this.isEnd(head, length);
  }

  private readonly queue: ResponseShape[] = [];

  /** Responses still awaited (pipelined commands queue up in order). */
  get pending(): number {
    return this.queue.length + (this.shape ? 1 : 0);
  }

  /** A command of this shape was sent; its response follows those of earlier commands. */
  expect(shape: ResponseShape): void {
    if (this.shape) this.queue.push(shape);
    else this.begin(shape);
  }

  private begin(shape: ResponseShape): void {
    this.shape = shape;
    this.phase = shape === 'fieldlist' ? 'fieldlist' : shape === 'fetch' ? 'rows' : 'first';
    this.rows = 0;
    this.current = { results: [], ends: [], status: 0 };
  }

  /**
   * Whether `onPacket` needs this packet's payload, judged from its first byte (-1 when empty) and
   * length. Column definitions and rows only advance counters: the relay skips them with `onSkipped`
   * without cutting them out of the stream.
   */
  needsBody(head: number, length: number): boolean {
    switch (this.phase) {
      case 'first':
        return this.shape !== 'single';
      case 'columnsEof':
        return true;
      case 'rows':
      case 'fieldlist':
        return head === 0xff || this.isEnd(head, length);
      default:
        return false;
    }
  }

  /** Rows of the command being answered so far: finished result sets and the one under way. */
  get rowsSoFar(): number {
    let n = this.phase === 'rows' ? this.rows : 0;
    for (const r of this.current?.results ?? []) n += r.rows ?? 0;
    return n;
  }

  /** In the rows of a result set: packets other than 0xFE/0xFF-headed ones are rows to count (`countRows`). */
  get countingRows(): boolean {
    return this.phase === 'rows';
  }

  /** `count` rows passed (each one a packet `onSkipped` would have counted). */
  countRows(count: number): void {
    this.rows += count;
  }

  /** A packet `needsBody` said false for, known by its first byte and length only. */
  onSkipped(head: number, length: number): CommandResponse | undefined {
    if (!this.shape) throw new ProtocolError('unexpected packet from the server', 'VIGIL_MYSQL_UNSOLICITED');
    switch (this.phase) {
      case 'first': // 'single': any one packet is the whole response
        return this.finish();
      case 'columns':
        if (--this.left === 0) this.phase = this.deprecateEof ? 'rows' : 'columnsEof';
        return undefined;
      case 'rows':
        this.rows++;
        return undefined;
      case 'prepareParams':
        if (--this.left === 0) {
          if (!this.deprecateEof) this.phase = 'prepareParamsEof';
          else if (this.prepareColumns > 0) return this.enter('prepareColumns', this.prepareColumns);
          else return this.finish();
        }
        return undefined;
      case 'prepareParamsEof':
        if (this.prepareColumns > 0) return this.enter('prepareColumns', this.prepareColumns);
        return this.finish();
      case 'prepareColumns':
        if (--this.left === 0) {
          if (!this.deprecateEof) this.phase = 'prepareColumnsEof';
          else return this.finish();
        }
        return undefined;
      case 'prepareColumnsEof':
        return this.finish();
      case 'fieldlist':
        return undefined;
      case 'columnsEof':
        throw new ProtocolError(`packet 0x${head.toString(16)} of ${length} bytes needs its payload`, 'VIGIL_MYSQL_MALFORMED');
    }
  }

  /** Feed one logical server packet; returns the whole response once it is complete. */
  onPacket(p: Buffer): CommandResponse | undefined {
    const shape = this.shape;
    if (!shape) throw new ProtocolError('unexpected packet from the server', 'VIGIL_MYSQL_UNSOLICITED');
    const head = p.length > 0 ? p[0]! : -1;
    if (!this.needsBody(head, p.length)) return this.onSkipped(head, p.length);
    switch (this.phase) {
      case 'first':
        if (head === 0xff) return this.error(p);
        if (shape === 'prepare') {
          if (head !== 0x00) throw new ProtocolError('invalid prepare response', 'VIGIL_MYSQL_MALFORMED');
          const r = new Reader(p, 1);
          const stmtId = r.u32();
          const numColumns = r.u16();
          const numParams = r.u16();
          this.current!.prepared = { stmtId, numColumns, numParams };
          this.prepareColumns = numColumns;
          if (numParams > 0) return this.enter('prepareParams', numParams);
          if (numColumns > 0) return this.enter('prepareColumns', numColumns);
          return this.finish();
        }
        if (head === 0x00 || (head === 0xfe && p.length < 9)) {
          // OK (or a bare EOF, which COM_SET_OPTION gets from older servers).
          const ok = head === 0x00 ? parseOk(p) : { affectedRows: 0, lastInsertId: 0, status: p.length >= 5 ? p.readUInt16LE(3) : 0 };
          const r: ResultSummary = { affectedRows: ok.affectedRows, lastInsertId: ok.lastInsertId };
          if (this.sessionTrack && head === 0x00) {
            const changes = parseSessionChanges(p);
            if (changes) r.changes = changes;
          }
          return this.endResult(r, ok.status);
        }
        if (head === 0xfb) throw new ProtocolError('the server asked for a local file, which vigil does not allow', 'VIGIL_MYSQL_LOCAL_INFILE');
        // Column count: a result set begins.
        return this.enter('columns', new Reader(p).lenenc(), 0);
      case 'columnsEof': {
        // A statement can fail after its column definitions went out (a COM_STMT_EXECUTE that opens a
        // cursor fails while the server fills it): ERR in place of the EOF ends the response.
        if (head === 0xff) return this.error(p);
        const status = p.length >= 5 ? p.readUInt16LE(3) : 0;
        // Only a cursor request can open a cursor; elsewhere the flag may linger in the status (a
        // stored procedure's own cursors) and rows still follow.
        if (status & CURSOR_EXISTS && this.shape === 'cursor') return this.endResult({ rows: 0 }, status);
        this.phase = 'rows';
        return undefined;
      }
      case 'rows':
        if (head === 0xff) return this.error(p);
        if (this.deprecateEof) {
          const r: ResultSummary = { rows: this.rows };
          const changes = this.sessionTrack ? parseSessionChanges(p) : undefined;
          if (changes) r.changes = changes;
          return this.endResult(r, parseOk(p).status);
        }
        return this.endResult({ rows: this.rows }, p.length >= 5 ? p.readUInt16LE(3) : 0);
      case 'fieldlist':
        if (head === 0xff) return this.error(p);
        return this.finish();
      default:
        return this.onSkipped(head, p.length);
    }
  }

  /** EOF (or, with CLIENT_DEPRECATE_EOF, OK with 0xFE) that ends rows or column definitions. */
  private isEnd(head: number, length: number): boolean {
    return head === 0xfe && length < 0xffffff && (this.deprecateEof || length < 9);
  }

  private enter(phase: Phase, n: number, rows = 0): undefined {
    if (n <= 0) throw new ProtocolError('invalid column count', 'VIGIL_MYSQL_MALFORMED');
    this.phase = phase;
    this.left = n;
    this.rows = rows;
    return undefined;
  }

  private error(p: Buffer): CommandResponse | undefined {
    this.current!.results.push({ error: parseErr(p) });
    this.current!.ends.push(performance.now());
    return this.finish();
  }

  private endResult(r: ResultSummary, status: number): CommandResponse | undefined {
    const cur = this.current!;
    cur.results.push(r);
    cur.ends.push(performance.now());
    cur.status = status;
    if (status & SERVER_STATUS.MORE_RESULTS_EXISTS) {
      this.phase = 'first';
      this.rows = 0;
      return undefined;
    }
    return this.finish();
  }

  private finish(): CommandResponse {
    const cur = this.current!;
    this.shape = undefined;
    this.current = undefined;
    this.phase = 'first';
    const next = this.queue.shift();
    if (next) this.begin(next);
    return cur;
  }
}
