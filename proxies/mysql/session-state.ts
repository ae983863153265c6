/**
 * Session-state tracking in OK packets (CLIENT_SESSION_TRACK): what the server says changed in the
 * session — current schema, tracked system variables (vigil tracks sql_mode) — so the recorded context
 * follows the server instead of SQL text. And the reverse: an OK packet as it would have been without
 * CLIENT_SESSION_TRACK, for clients that did not ask for it. Pure functions over payloads.
 *
 * Layout after status and warnings, with CLIENT_SESSION_TRACK: `info` as a length-encoded string (present
 * when non-empty or when state changed), then, when SERVER_SESSION_STATE_CHANGED is set, a
 * length-encoded block of entries: type (1 byte), length-encoded data. (MariaDB writes a non-empty `info`
 * length-encoded for every client.)
 */
import { Reader, lenencInt, u16 } from './wire.ts';

/** Status flag: the OK packet carries session-state information. */
export const SESSION_STATE_CHANGED = 0x4000;

/** Entry types of the session-state block. */
export const SESSION_TRACK = {
  SYSTEM_VARIABLES: 0,
  SCHEMA: 1,
  STATE_CHANGE: 2,
  GTIDS: 3,
  TRANSACTION_CHARACTERISTICS: 4,
  TRANSACTION_STATE: 5,
} as const;

export interface SessionChanges {
  /** The current schema the server switched to ('' when the session has none). */
  schema?: string;
  /** System variables the server reported (name → value), in order, last one wins. */
  variables?: Record<string, string>;
}

/** Where the fields after `warnings` start, and the status: undefined when the packet has none. */
function tail(payload: Buffer): { r: Reader; status: number } | undefined {
  const r = new Reader(payload, 1);
  r.lenencU64();
  r.lenencU64();
  if (r.remaining < 4) return undefined;
  const status = r.u16();
  r.u16();
  return { r, status };
}

/** Session changes an OK packet (0x00, or 0xFE ending a result set) of a CLIENT_SESSION_TRACK session
 *  announces; undefined when it announces none. Unknown entry types are skipped by their length. */
export function parseSessionChanges(payload: Buffer): SessionChanges | undefined {
  const t = tail(payload);
  if (!t || !(t.status & SESSION_STATE_CHANGED)) return undefined;
  const { r } = t;
  if (r.remaining === 0) return undefined;
  r.lenencBytes(); // info
  if (r.remaining === 0) return undefined;
  const block = new Reader(r.lenencBytes());
  const out: SessionChanges = {};
  while (block.remaining > 0) {
    const type = block.u8();
    const data = new Reader(block.lenencBytes());
    if (type === SESSION_TRACK.SCHEMA) out.schema = data.lenencBytes().toString('utf8');
    else if (type === SESSION_TRACK.SYSTEM_VARIABLES) {
      const name = data.lenencBytes().toString('utf8').toLowerCase();
      (out.variables ??= {})[name] = data.lenencBytes().toString('utf8');
    }
  }
  return out;
}

/**
 * The OK packet as a session without CLIENT_SESSION_TRACK gets it: no session-state block,
 * SERVER_SESSION_STATE_CHANGED cleared, and `info` kept as the server wrote it when it is not empty
 * (MariaDB writes it length-encoded for every 4.1 client; an empty one is only written because state
 * changed). Returns the payload itself when the server announced no state change.
 */
export function stripSessionTrack(payload: Buffer): Buffer {
  const t = tail(payload);
  if (!t || !(t.status & SESSION_STATE_CHANGED)) return payload;
  const statusAt = t.r.pos - 4;
  const infoAt = t.r.pos;
  const info = t.r.remaining > 0 ? t.r.lenencBytes() : Buffer.alloc(0);
  const out = Buffer.from(payload.subarray(0, info.length > 0 ? t.r.pos : infoAt));
  out.writeUInt16LE(t.status & ~SESSION_STATE_CHANGED & 0xffff, statusAt);
  return out;
}

/** Build an OK payload with session-state entries (tests, and documentation of the layout). */
export function buildTrackedOk(o: { status?: number; info?: string; schema?: string; variables?: Record<string, string>; header?: number; affectedRows?: number }): Buffer {
  const entries: Buffer[] = [];
  const str = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    return Buffer.concat([lenencInt(b.length), b]);
  };
  const entry = (type: number, data: Buffer) => Buffer.concat([Buffer.from([type]), lenencInt(data.length), data]);
  for (const [k, v] of Object.entries(o.variables ?? {})) entries.push(entry(SESSION_TRACK.SYSTEM_VARIABLES, Buffer.concat([str(k), str(v)])));
  if (o.schema !== undefined) entries.push(entry(SESSION_TRACK.SCHEMA, str(o.schema)));
  const changed = entries.length > 0;
  const status = ((o.status ?? 0) | (changed ? SESSION_STATE_CHANGED : 0)) & 0xffff;
  const parts = [Buffer.from([o.header ?? 0]), lenencInt(o.affectedRows ?? 0), lenencInt(0), u16(status), u16(0)];
  if (changed || o.info) parts.push(str(o.info ?? ''));
  if (changed) {
    const block = Buffer.concat(entries);
    parts.push(lenencInt(block.length), block);
  }
  return Buffer.concat(parts);
}
