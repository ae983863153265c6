import { newId } from '../ids.ts';
import { isEventType, type EventType } from './catalog.ts';

/**
 * One envelope for every audit event. The PCI DSS 10.2.2 fields are mandatory by type:
 * user (actor.user), type, time, outcome, origin (source) and affected resource (target).
 */
export type Outcome = 'success' | 'failure' | 'unknown';

export interface AuditEvent {
  id: string;
  /** RFC 3339 UTC with microseconds. */
  time: string;
  type: EventType;
  /**
   * `unknown`: the action reached the backend but its result was never observed (the session ended while it
   * ran: client gone, backend died, limit, revocation, shutdown). Details say what was seen and why.
   */
  outcome: Outcome;
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

/**
 * The last clock reading: wall-clock milliseconds and the microseconds within that millisecond (0–999).
 * Module state rather than a returned object: one less allocation per event.
 */
let nowMs = 0;
let nowUs = 0;

function readClock(): void {
  const exact = originMs + (performance.now() - originPerf);
  const ms = Math.floor(exact);
  const wall = Date.now();
  // Never drift more than a few ms from the wall clock (NTP steps, suspend): fall back to it.
  if (Math.abs(ms - wall) > 5) {
    nowMs = wall;
    nowUs = 0;
  } else {
    nowMs = ms;
    nowUs = Math.floor((exact - ms) * 1000);
  }
}

export function nowMicros(): { date: Date; micros: number } {
  readClock();
  return { date: new Date(nowMs), micros: nowUs };
}

// Events come thousands per millisecond at peak: the `2026-11-28T16:40:19.123` prefix is formatted once per
// millisecond, and the three microsecond digits come from a table.
const MICRO_DIGITS = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0') + 'Z');
let prefixMs = NaN;
let prefix = '';

function timeString(ms: number, micros: number): string {
  if (ms !== prefixMs) {
    prefix = new Date(ms).toISOString().slice(0, 23); // 2026-11-28T16:40:19.123
    prefixMs = ms;
  }
  return prefix + MICRO_DIGITS[micros];
}

/** RFC 3339 UTC with microseconds; `micros` (0–999) extends the Date's milliseconds. */
export function formatTime(date: Date, micros = 0): string {
  const m = Math.trunc(micros);
  return timeString(date.getTime(), m >= 0 && m < 1000 ? m : m >= 1000 ? 999 : 0);
}

/**
 * Builds the envelope. actor, source, target and details are used as given, not copied: a session passes the
 * same frozen actor/source/target with each of its events, and the audit encoder reuses their JSON.
 */
export function createEvent(input: EventInput): AuditEvent {
  let time: string;
  if (input.time) {
    time = formatTime(input.time);
  } else {
    readClock();
    time = timeString(nowMs, nowUs);
  }
  return new Envelope(input, time);
}

/**
 * Events made by createEvent. The class marks them for the audit encoder's fast path (its type is from
 * the catalog, its outcome valid, its id and time made here — nothing to escape); a copy made by spreading
 * or parsing is a plain object and takes the general path.
 */
class Envelope implements AuditEvent {
  actor: AuditEvent['actor'];
  details: Record<string, unknown>;
  id: string;
  outcome: AuditEvent['outcome'];
  declare session_id?: string;
  source: AuditEvent['source'];
  target: AuditEvent['target'];
  time: string;
  type: EventType;

  constructor(input: EventInput, time: string) {
    this.actor = input.actor;
    this.details = input.details ?? {};
    this.id = newId();
    this.outcome = input.outcome;
    if (input.session_id !== undefined) this.session_id = input.session_id;
    this.source = input.source;
    this.target = input.target;
    this.time = time;
    this.type = input.type;
  }
}

/** True for events made by createEvent with a catalog type and a valid outcome. */
export function isCreatedEvent(e: AuditEvent): boolean {
  return e instanceof Envelope && isEventType(e.type) && isOutcome(e.outcome);
}

export function isOutcome(o: unknown): o is Outcome {
  return o === 'success' || o === 'failure' || o === 'unknown';
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
  if (!isOutcome(e.outcome)) missing.push('outcome');
  if (!e.source?.ip) missing.push('source.ip');
  if (!e.target?.name || !e.target?.protocol) missing.push('target');
  return missing;
}
