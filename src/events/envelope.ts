import { newId } from '../ids.ts';
import type { EventType } from './catalog.ts';

/**
 * One envelope for every audit event. The PCI DSS 10.2.2 fields are mandatory by type:
 * user (actor.user), type, time, outcome, origin (source) and affected resource (target).
 */
export interface AuditEvent {
  id: string;
  /** RFC 3339 UTC with microseconds. */
  time: string;
  type: EventType;
  outcome: 'success' | 'failure';
  actor: { user: string; roles: string[]; cert_serial?: string };
  /** Where the action came from: client address for sessions; `local` plus the process for CLI actions. */
  source: { ip: string; port?: number; via?: string };
  /** Affected resource: the target for sessions, or a vigil object (`cert/SERIAL`, `grant/ID`, `user/NAME`). */
  target: { name: string; protocol: string; host?: string; login?: string; database?: string };
  session_id?: string;
  details: Record<string, unknown>;
}

export type EventInput = Omit<AuditEvent, 'id' | 'time' | 'details'> & { details?: Record<string, unknown>; time?: Date };

// Microsecond timestamps: Date has milliseconds; the sub-millisecond part comes from the monotonic clock
// so that events within one millisecond keep their order in `time` as well as in `id`.
const originMs = Date.now();
const originPerf = performance.now();

export function nowMicros(): { date: Date; micros: number } {
  const exact = originMs + (performance.now() - originPerf);
  const ms = Math.floor(exact);
  const wall = Date.now();
  // Never drift more than a few ms from the wall clock (NTP steps, suspend): fall back to it.
  const base = Math.abs(ms - wall) > 5 ? wall : ms;
  const micros = base === ms ? Math.floor((exact - ms) * 1000) : 0;
  return { date: new Date(base), micros };
}

export function formatTime(date: Date, micros = 0): string {
  const iso = date.toISOString(); // 2026-11-28T16:40:19.123Z
  return `${iso.slice(0, 23)}${String(micros).padStart(3, '0').slice(0, 3)}Z`;
}

export function createEvent(input: EventInput): AuditEvent {
  let time: string;
  if (input.time) {
    time = formatTime(input.time);
  } else {
    const { date, micros } = nowMicros();
    time = formatTime(date, micros);
  }
  const { time: _t, details, ...rest } = input;
  return { id: newId(), time, ...rest, details: details ?? {} };
}

/** The system actor, for events the gateway itself causes (expiry, checkpoints). */
export const SYSTEM_ACTOR = { user: 'vigil', roles: ['system'] } as const;
export const LOCAL_SOURCE = { ip: 'local', via: 'gateway' } as const;

/** Returns the missing PCI DSS 10.2.2 fields of an event (empty when complete). */
export function missingRequiredFields(e: AuditEvent): string[] {
  const missing: string[] = [];
  if (!e.actor?.user) missing.push('actor.user');
  if (!e.type) missing.push('type');
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(e.time ?? '')) missing.push('time');
  if (e.outcome !== 'success' && e.outcome !== 'failure') missing.push('outcome');
  if (!e.source?.ip) missing.push('source.ip');
  if (!e.target?.name || !e.target?.protocol) missing.push('target');
  return missing;
}
