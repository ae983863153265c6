/**
 * The role statements run under (current_user), learned from the server. PostgreSQL 15 reports
 * `session_authorization` in ParameterStatus but not `role` (not GUC_REPORT), so after a statement that
 * may have changed current_user vigil asks the server itself (`SELECT current_user`) at the next safe
 * point: after the ReadyForQuery that ends the request, with nothing else in flight. Pure: the
 * connection owns the socket and the timing; this decides when a probe is due and reads its answer.
 */
import { B, errorFields } from './backend.ts';
import { encodeMessage } from './frontend.ts';

export const ROLE_PROBE_SQL = 'SELECT current_user';

/** Text naming the role settings: SET [LOCAL] ROLE, SET SESSION AUTHORIZATION, set_config('role', …),
 *  a DO block or function body running SET ROLE, … */
const NAMES_ROLE = /\brole\b|authorization/i;

/**
 * Whether a completed statement may have changed current_user (so records after it wait for a probe).
 * `touched`: a statement of this session already could have (only then can the end of a transaction —
 * COMMIT ending a SET LOCAL ROLE, ROLLBACK undoing a SET ROLE — change it back).
 */
export function mayChangeRole(command: string | undefined, sql: string | undefined, touched: boolean): boolean {
  const text = sql ?? '';
  switch (command) {
    case 'RESET':
      return NAMES_ROLE.test(text) || /\ball\b/i.test(text);
    case 'DISCARD':
      return /\ball\b/i.test(text);
    case 'COMMIT':
    case 'ROLLBACK':
    case 'PREPARE':
      return touched;
    default:
      return NAMES_ROLE.test(text);
  }
}

/** Startup parameters that can set the role before the first statement (`options=-c role=…`). */
export function startupMaySetRole(params: Iterable<[string, string]>): boolean {
  for (const [k, v] of params) if (k === 'role' || k === 'session_authorization' || (k === 'options' && NAMES_ROLE.test(v))) return true;
  return false;
}

/** The probe as a simple Query message. */
export function roleProbeMessage(): Buffer {
  return encodeMessage(0x51 /* Q */, Buffer.from(ROLE_PROBE_SQL + '\0', 'utf8'));
}

/** session_authorization from a ParameterStatus message (header included), else undefined. */
export function sessionAuthorization(msg: Buffer): string | undefined {
  const nameEnd = msg.indexOf(0, 5);
  if (nameEnd < 0 || msg.toString('latin1', 5, nameEnd) !== 'session_authorization') return undefined;
  const valueEnd = msg.indexOf(0, nameEnd + 1);
  return valueEnd < 0 ? undefined : msg.toString('utf8', nameEnd + 1, valueEnd);
}

export type ProbeStep =
  /** A message of the probe's answer, consumed. */
  | { kind: 'consumed' }
  /** An asynchronous message (notice, notification, parameter status) to relay to the client. */
  | { kind: 'relay' }
  /** ReadyForQuery: the answer is complete. */
  | { kind: 'done'; role?: string; error?: string };

/** Reads the server's answer to the probe, message by message (header included). */
export class RoleProbeReader {
  private role: string | undefined;
  private error: string | undefined;

  onMessage(type: number, msg: Buffer): ProbeStep {
    switch (type) {
      case B.RowDescription:
      case B.CommandComplete:
        return { kind: 'consumed' };
      case B.DataRow: {
        // One column: int16 count, int32 length, bytes.
        const len = msg.length >= 11 ? msg.readInt32BE(7) : -1;
        this.role = len >= 0 ? msg.toString('utf8', 11, 11 + len) : undefined;
        return { kind: 'consumed' };
      }
      case B.ErrorResponse:
        this.error = errorFields(msg).message;
        return { kind: 'consumed' };
      case B.ReadyForQuery:
        return { kind: 'done', role: this.error ? undefined : this.role, error: this.error };
      default:
        return { kind: 'relay' };
    }
  }
}
