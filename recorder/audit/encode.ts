import { isCreatedEvent, type AuditEvent } from '../../src/events/envelope.ts';
import { canonicalJson } from './canonical.ts';

/**
 * The canonical JSON of one event (canonical.ts: keys sorted at every level, no whitespace), as the chain
 * stores and hashes it — so the hash can be recomputed from the parsed event wherever it is stored, and
 * `type` (sorted last among the envelope's members) ends every record, which checkpoint detection uses.
 *
 * Why not canonicalJson(event) as a whole: on Node 20 serialising a typical 500-byte event costs ~4 µs,
 * the largest single cost of an append, and most of it is the who-and-where a session repeats in every
 * event. The envelope's members are in a fixed sorted order, so an event is written in five pieces:
 *
 *   {"actor":<actor>,"details":   <details>,"id":"…","outcome":"…"   ,"session_id":…,"source":…,"target":…
 *   └ head: cached bytes ┘         └ per event ┘                        └ middle: cached bytes ┘
 *   ,"time":"…","type":"…"}   (per event, ASCII)
 *
 * The cached pieces belong to a frozen actor and frozen source/target objects (session.eventBase()): a
 * frozen object cannot change after its JSON was cached. Per event only `details` is serialised.
 */
interface Parts {
  source: object;
  target: object;
  sessionId: string | undefined;
  /** UTF-8 bytes, copied into the record buffer as they are, never re-encoded. */
  head: Buffer;
  middle: Buffer;
}

/** Keyed by the frozen actor: the last (source, target, session) seen with it — one per session. */
const cache = new WeakMap<object, Parts>();

function parts(e: AuditEvent): Parts {
  const { actor, source, target, session_id: sessionId } = e;
  const cacheable = Object.isFrozen(actor) && Object.isFrozen(source) && Object.isFrozen(target);
  if (cacheable) {
    const p = cache.get(actor);
    if (p !== undefined && p.source === source && p.target === target && p.sessionId === sessionId) return p;
  }
  const p: Parts = {
    source,
    target,
    sessionId,
    head: Buffer.from('{"actor":' + canonicalJson(actor) + ',"details":'),
    middle: Buffer.from(
      (sessionId === undefined ? '' : ',"session_id":' + JSON.stringify(sessionId)) +
        ',"source":' + canonicalJson(source) + ',"target":' + canonicalJson(target),
    ),
  };
  if (cacheable) cache.set(actor, p);
  return p;
}

/**
 * An event encoded in pieces for the record writer: bytes `head`, string `body`, bytes `middle`, ASCII
 * `tail`. For an event that did not come from createEvent (e.g. parsed from the CLI spool) the whole
 * canonical JSON is `body` and the other pieces are empty.
 */
export interface EventPieces {
  head: Buffer;
  body: string;
  middle: Buffer;
  tail: string;
}

const EMPTY = Buffer.alloc(0);

export function eventPieces(e: AuditEvent): EventPieces {
  if (!isCreatedEvent(e)) return { head: EMPTY, body: canonicalJson(e), middle: EMPTY, tail: '' };
  const p = parts(e);
  // createEvent made id, time, type and outcome: ULID, formatted time, catalog type, success|failure|unknown —
  // nothing in them needs escaping.
  return {
    head: p.head,
    body: canonicalJson(e.details) + ',"id":"' + e.id + '","outcome":"' + e.outcome + '"',
    middle: p.middle,
    tail: ',"time":"' + e.time + '","type":"' + e.type + '"}',
  };
}

/** The event's canonical JSON as one string (what the pieces spell). */
export function encodeEvent(e: AuditEvent): string {
  const { head, body, middle, tail } = eventPieces(e);
  return head.toString('utf8') + body + middle.toString('utf8') + tail;
}
