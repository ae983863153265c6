/**
 * Prepared statements of one session, as the proxy must know them to record executions: the text and
 * its analysis, the parameter count from the prepare response, the parameter types of the first bound
 * execution (clients omit them afterwards), and data sent with COM_STMT_SEND_LONG_DATA. Pure.
 */
import { decodeStmtExecute, BLOB_PREVIEW_BYTES, type ParamType, type ParamValue } from './commands.ts';
import type { SqlAnalysis } from './sql.ts';

interface PreparedStatement {
  analysis: SqlAnalysis;
  numParams: number;
  /** Which parameters are bound to secret-named columns (masked); undefined when none is. Worked out
   *  once at prepare time rather than matching the redaction patterns at every execution. */
  secret?: boolean[];
  types?: ParamType[];
  /** Long data since the last execute/reset: a preview and the total size per parameter. */
  longData: Map<number, { preview: Buffer; total: number }>;
  /** Long data named a parameter the statement does not have: MariaDB marks the statement failed
   *  (mysql_stmt_get_longdata, STMT_ERROR) and refuses every execution, before it reads the types they
   *  carry, until COM_STMT_RESET. */
  failed?: true;
}

export interface RecordedExecute {
  statementId: number;
  /** Undefined when the statement is unknown to vigil (the server will answer with an error). */
  analysis?: SqlAnalysis;
  params?: unknown[];
  attributes?: Record<string, ParamValue>;
}

const NO_LONG_DATA: ReadonlySet<number> = new Set();

export class PreparedStatements {
  private readonly byId = new Map<number, PreparedStatement>();
  private last: number | undefined;

  /** `secretName` masks parameters bound to columns named like secrets. */
  constructor(private readonly secretName: (name: string) => boolean) {}

  /** MariaDB: statement id 0xFFFFFFFF means "the statement prepared last". */
  resolve(id: number): number {
    return id === 0xffffffff && this.last !== undefined ? this.last : id;
  }

  prepared(id: number, analysis: SqlAnalysis, numParams: number): void {
    const secret = analysis.paramNames.map((name) => name !== undefined && this.secretName(name));
    this.byId.set(id, { analysis, numParams, secret: secret.includes(true) ? secret : undefined, longData: new Map() });
    this.last = id;
  }

  /** The server refused a prepare: like MariaDB, which clears its "last prepared" statement then, 0xFFFFFFFF
   *  names no statement until the next successful prepare (else long data and executions sent to it would
   *  be recorded against an earlier statement the server does not use). */
  refused(): void {
    this.last = undefined;
  }

  /** The server confirmed this id (or, for 0xFFFFFFFF, some statement) to the session and has not closed it. */
  known(id: number): boolean {
    return this.byId.has(this.resolve(id));
  }

  analysisOf(id: number): SqlAnalysis | undefined {
    return this.byId.get(this.resolve(id))?.analysis;
  }

  longData(id: number, paramId: number, data: Buffer): void {
    const stmt = this.byId.get(this.resolve(id));
    if (!stmt) return;
    if (paramId >= stmt.numParams) {
      stmt.failed = true;
      return;
    }
    const ld = stmt.longData.get(paramId) ?? { preview: Buffer.alloc(0), total: 0 };
    if (ld.preview.length < BLOB_PREVIEW_BYTES) ld.preview = Buffer.concat([ld.preview, data.subarray(0, BLOB_PREVIEW_BYTES - ld.preview.length)]);
    ld.total += data.length;
    stmt.longData.set(paramId, ld);
  }

  /** Decode a COM_STMT_EXECUTE for recording (throws ProtocolError when malformed). */
  execute(payload: Buffer, rawId: number, capabilities: number): RecordedExecute {
    const statementId = this.resolve(rawId);
    const stmt = this.byId.get(statementId);
    if (!stmt) return { statementId };
    const d = decodeStmtExecute(payload, stmt.numParams, stmt.types, stmt.longData.size === 0 ? NO_LONG_DATA : new Set(stmt.longData.keys()), capabilities);
    // A failed statement's executions are refused before the server reads their types: it keeps the
    // earlier ones, which the executions after COM_STMT_RESET use (recording those with types the server
    // never took would show values it did not bind).
    if (d.newTypes && !stmt.failed) stmt.types = d.types;
    // The decoded values are this execution's own array: masked and long-data parameters replace their
    // entries in place (nothing to do for the common statement without either).
    const params: unknown[] = d.values;
    const secret = stmt.secret;
    if (secret !== undefined || stmt.longData.size > 0) {
      for (let i = 0; i < params.length; i++) {
        if (secret?.[i]) params[i] = '***';
        else if (params[i] === undefined) {
          const ld = stmt.longData.get(i)!;
          params[i] = { hex: ld.preview.toString('hex'), length: ld.total, long_data: true, ...(ld.total > ld.preview.length ? { truncated: true } : {}) };
        }
      }
      stmt.longData.clear();
    }
    return { statementId, analysis: stmt.analysis, params, attributes: d.attributes };
  }

  reset(id: number): void {
    const stmt = this.byId.get(this.resolve(id));
    if (!stmt) return;
    stmt.longData.clear();
    stmt.failed = undefined;
  }

  close(id: number): void {
    this.byId.delete(this.resolve(id));
  }

  clear(): void {
    this.byId.clear();
    this.last = undefined;
  }
}
