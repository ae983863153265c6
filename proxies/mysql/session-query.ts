/**
 * Vigil's own queries on a backend session, answered to vigil and never relayed to the client: they
 * turn on the session-state tracking vigil needs (schema and sql_mode in OK packets) and read the state
 * the server holds (current database, sql_mode) when no OK packet told it — after login, after
 * COM_RESET_CONNECTION (which resets session variables), after an error (a failing compound statement
 * may have changed state without an OK to say so). Sent only while no client command is in flight, so
 * their responses are the only bytes on the wire.
 */
import type net from 'node:net';
import { ProtocolError } from '../../src/errors.ts';
import { PacketFramer, encodePacket } from './framing.ts';
import { ResponseTracker, type CommandResponse } from './response.ts';
import { COM, CLIENT, Reader } from './wire.ts';

/** Keep the schema tracker on and add sql_mode and character_set_client to the tracked variables (the
 *  lexer's quoting follows the one, its reading of multi-byte characters the other). */
export const SESSION_SETUP =
  "SET SESSION session_track_schema=ON, session_track_system_variables=IF(@@session.session_track_system_variables='*', '*', CONCAT_WS(',', NULLIF(@@session.session_track_system_variables, ''), 'sql_mode', 'character_set_client'))";
/** The state vigil records under: one text row (database or NULL, sql_mode, character_set_client). */
export const SESSION_PROBE = 'SELECT DATABASE(), @@session.sql_mode, @@session.character_set_client';

export interface InternalAnswer {
  sql: string;
  response: CommandResponse;
  /** Text-protocol values of the first row, when the answer was a result set. */
  row?: (string | null)[];
}

/** Values of one text-protocol row (length-encoded strings, 0xFB = NULL). Pure. */
export function parseTextRow(payload: Buffer): (string | null)[] {
  const r = new Reader(payload);
  const out: (string | null)[] = [];
  while (r.remaining > 0) {
    if (r.buf[r.pos] === 0xfb) {
      r.u8();
      out.push(null);
    } else out.push(r.lenencBytes().toString('utf8'));
  }
  return out;
}

/**
 * Send `sqls` (pipelined) and wait for their answers. The caller makes sure nothing else is in flight
 * and that its own relay ignores the socket's data meanwhile.
 */
export function internalQueries(socket: net.Socket, capabilities: number, sqls: readonly string[], timeoutMs: number): Promise<InternalAnswer[]> {
  return new Promise((resolve, reject) => {
    const responses = new ResponseTracker(capabilities);
    const framer = new PacketFramer(1 << 24);
    const answers: InternalAnswer[] = [];
    // The first row's payload: the packet after the column count, its definitions and (without
    // CLIENT_DEPRECATE_EOF) their EOF.
    const eofs = capabilities & CLIENT.DEPRECATE_EOF ? 0 : 1;
    let packets: Buffer[] = [];
    let done = false;
    const finish = (e?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      if (e) reject(e);
      else resolve(answers);
    };
    const onData = (chunk: Buffer) => {
      try {
        framer.push(chunk, (p) => {
          if (done) throw new ProtocolError('the target database sent data vigil did not ask for', 'VIGIL_MYSQL_UNSOLICITED');
          packets.push(p.payload);
          const res = responses.onPacket(p.payload);
          if (!res) return;
          const sql = sqls[answers.length]!;
          const first = res.results[0];
          let row: (string | null)[] | undefined;
          if (first?.rows !== undefined && first.rows > 0) {
            const columns = new Reader(packets[0]!).lenenc();
            row = parseTextRow(packets[1 + columns + eofs]!);
          }
          answers.push({ sql, response: res, row });
          packets = [];
          if (answers.length === sqls.length) finish();
        });
      } catch (e) {
        finish(e as Error);
      }
    };
    const onClose = () => finish(new ProtocolError('the target database closed the connection', 'VIGIL_MYSQL_UNSOLICITED'));
    const timer = setTimeout(() => finish(new ProtocolError('the target database did not answer vigil\'s session query', 'VIGIL_MYSQL_TIMEOUT')), timeoutMs);
    socket.on('data', onData);
    socket.on('close', onClose);
    const out: Buffer[] = [];
    for (const sql of sqls) {
      responses.expect('results');
      out.push(encodePacket(0, Buffer.concat([Buffer.from([COM.QUERY]), (capabilities & CLIENT.QUERY_ATTRIBUTES) ? Buffer.from([0, 1]) : Buffer.alloc(0), Buffer.from(sql, 'utf8')])));
    }
    socket.write(Buffer.concat(out));
  });
}
