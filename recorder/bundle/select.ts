import type { AuditEvent } from '../../src/events/envelope.ts';
import { matcher } from '../audit/read.ts';
import { parseRecordLine, type ParsedRecord } from '../audit/record.ts';
import type { BundleFilter } from './format.ts';

/** A record as the bundle holds it: the line exactly as in the log, and what was parsed from it. */
export interface ChainRecord extends ParsedRecord {
  line: string;
  event: AuditEvent;
}

export function parseChainLine(line: string): ChainRecord | string {
  const rec = parseRecordLine(line);
  if (typeof rec === 'string') return rec;
  let event: AuditEvent;
  try {
    event = JSON.parse(rec.eventJson) as AuditEvent;
  } catch {
    return 'event is not valid JSON';
  }
  if (!event || typeof event !== 'object' || typeof event.time !== 'string' || typeof event.type !== 'string') return 'event has no time or type';
  return { ...rec, line, event };
}

/** Event times as the log writes them (RFC 3339, microseconds), so range bounds compare as strings. */
export function eventTime(d: Date): string {
  return d.toISOString().replace(/Z$/, '000Z');
}

const EVENT_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

/**
 * A range bound as an event time. A string is taken as it is (already at microseconds, e.g. from
 * parseIsoBound, which reads an `--until` to the end of its last unit). A Date has milliseconds only: as
 * an inclusive upper bound it covers its whole millisecond, or events in its last 999 µs would be in no range.
 */
export function boundTime(b: Date | string, edge: 'since' | 'until'): string {
  if (typeof b === 'string') {
    if (!EVENT_TIME.test(b)) throw new Error(`range bound ${JSON.stringify(b)} is not an event time (YYYY-MM-DDThh:mm:ss.ffffffZ)`);
    return b;
  }
  return edge === 'since' ? eventTime(b) : b.toISOString().replace(/Z$/, '999Z');
}

export function inRange(e: AuditEvent, range: { since: string; until: string }): boolean {
  return e.time >= range.since && e.time <= range.until;
}

/**
 * The bundle's selection: the same semantics as `audit search`/`audit export` with this filter (checkpoints
 * only when --type asks for them), over the time range. Maker and verifier both use this function.
 */
export function bundleSelects(filter: BundleFilter, range: { since: string; until: string }): (e: AuditEvent) => boolean {
  // Only the four filter fields, and only as strings: whatever else a manifest carries changes nothing.
  const pick = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const m = matcher({ user: pick(filter.user), target: pick(filter.target), type: pick(filter.type), session: pick(filter.session), hideCheckpoints: true });
  return (e) => inRange(e, range) && m('', e);
}
