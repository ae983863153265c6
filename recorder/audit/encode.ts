import { isCreatedEvent, type AuditEvent } from '../../src/events/envelope.ts';

/**
 * The JSON of one event as stored in the chain. The hash covers these bytes exactly as written, so the
 * encoding only has to be valid JSON that parses back to the event; it need not be canonical.
 *
 * Why not plain JSON.stringify: on Node 20 it costs ~4 µs for a typical 500-byte event, the largest single
 * cost of an append. Here the envelope is assembled in a fixed member order — who and where first
 * (actor, source, target, session_id), then details, id, outcome, time, and `type` last (checkpoint
 * detection relies on that) — and the who-and-where prefix, which a session repeats in every event, is
 * encoded once and reused while the event carries the same frozen actor, source and target objects (a
 * frozen object cannot change after its JSON was cached). Per event, only `details` is serialised.
 */
interface Prefix {
  source: object;
  target: object;
  sessionId: string | undefined;
  /** UTF-8 of the prefix: copied into the record buffer as bytes, never re-encoded. */
  bytes: Buffer;
}

/** Keyed by the frozen actor; one entry per (actor, source, target, session) — the last one seen. */
const prefixes = new WeakMap<object, Prefix>();

const EMPTY = Buffer.alloc(0);

/**
 * The event's JSON is `eventPrefix(e)` (bytes) followed by `eventBody(e)` (a string); `encodeEvent` joins
 * them. The writer copies the prefix bytes and encodes only the body.
 */
export function eventPrefix(e: AuditEvent): Buffer {
  if (!isCreatedEvent(e)) return EMPTY;
  const { actor, source, target, session_id: sessionId } = e;
  const cacheable = Object.isFrozen(actor) && Object.isFrozen(source) && Object.isFrozen(target);
  if (cacheable) {
    const p = prefixes.get(actor);
    if (p !== undefined && p.source === source && p.target === target && p.sessionId === sessionId) return p.bytes;
  }
  const bytes = Buffer.from(
    '{"actor":' + stringifyData(actor) +
    ',"source":' + stringifyData(source) +
    ',"target":' + stringifyData(target) +
    (sessionId === undefined ? '' : ',"session_id":' + JSON.stringify(sessionId)),
  );
  if (cacheable) prefixes.set(actor, { source, target, sessionId, bytes });
  return bytes;
}

const bigintAsString = (_key: string, v: unknown): unknown => (typeof v === 'bigint' ? v.toString() : v);

/** JSON.stringify, with bigint written as a decimal string instead of throwing. */
function stringifyData(value: unknown): string {
  try {
    return JSON.stringify(value) ?? 'null';
  } catch (e) {
    if (e instanceof TypeError && /BigInt/i.test(e.message)) return JSON.stringify(value, bigintAsString) ?? 'null';
    throw e;
  }
}

/** The rest of the event's JSON after eventPrefix(e) (all of it when the prefix is empty). */
export function eventBody(e: AuditEvent): string {
  if (!isCreatedEvent(e)) return stringifyData(normalised(e));
  // createEvent made id, time, type and outcome: ULID, formatted time, catalog type, success|failure —
  // nothing in them needs escaping.
  return (
    ',"details":' + stringifyData(e.details) +
    ',"id":"' + e.id +
    '","outcome":"' + e.outcome +
    '","time":"' + e.time +
    '","type":"' + e.type +
    '"}'
  );
}

export function encodeEvent(e: AuditEvent): string {
  const body = eventBody(e);
  const head = eventPrefix(e);
  return head.length === 0 ? body : head.toString('utf8') + body;
}

const ORDER = ['actor', 'source', 'target', 'session_id', 'details', 'id', 'outcome', 'time'];

/**
 * An event that did not come from createEvent (e.g. parsed from the CLI spool): the same member order,
 * members beyond the envelope kept (before `type`), `type` last.
 */
function normalised(e: AuditEvent): Record<string, unknown> {
  const src = e as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of ORDER) if (k in src) out[k] = src[k];
  for (const k of Object.keys(src)) if (!(k in out) && k !== 'type') out[k] = src[k];
  if ('type' in src) out.type = src.type;
  return out;
}
