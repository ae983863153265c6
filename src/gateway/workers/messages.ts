/**
 * What a cluster worker and the primary say to each other over the IPC channel (gateway.workers > 1).
 * JSON-serialised by Node: Dates travel as ISO strings and are rebuilt on arrival.
 */
import type { AuditEvent } from '../../events/envelope.ts';
import type { EndReason, LiveSession } from '../../sessions/registry.ts';

/**
 * One event to append: `n` numbers it within its worker (for the ack); `s` marks a strict append, `l` a
 * fire-and-forget one (appendLater: acked without its receipt).
 */
export interface EventItem {
  n: number;
  e: AuditEvent;
  s?: 1;
  l?: 1;
}

/** A live session as it travels: its Dates as strings. */
export type SessionWire = Omit<LiveSession, 'startedAt' | 'accessExpiresAt' | 'principal'> & {
  startedAt: string;
  accessExpiresAt?: string;
  principal: Omit<LiveSession['principal'], 'notBefore' | 'notAfter'> & { notBefore: string; notAfter: string };
};

export type WorkerMessage =
  | { vigil: 'ready'; ports: Record<string, number> }
  | { vigil: 'failed'; error: string }
  /** Events of one tick, in the order they were recorded. */
  | { vigil: 'events'; items: EventItem[] }
  | { vigil: 'session_opened'; session: SessionWire }
  | { vigil: 'session_closed'; id: string; reason: EndReason }
  | { vigil: 'refused_session' }
  | { vigil: 'drained' };

/** Acks of one tick: `ok` as [n, seq, hash] triples flattened, `failed` as [n, code, message]. */
export type PrimaryMessage =
  | { vigil: 'acks'; ok: (number | string)[]; failed: [number, string, string][]; healthy: boolean; failure?: string }
  | { vigil: 'health'; healthy: boolean; failure?: string }
  | { vigil: 'terminate'; id: string; reason: EndReason; message: string }
  | { vigil: 'drain' }
  /** The primary reloaded its config file: apply it to new sessions here too. */
  | { vigil: 'reload' };

export function isVigilMessage(m: unknown): m is { vigil: string } {
  return typeof m === 'object' && m !== null && typeof (m as { vigil?: unknown }).vigil === 'string';
}

export function sessionToWire(s: LiveSession): SessionWire {
  const { stats: _stats, ...rest } = s;
  return {
    ...rest,
    startedAt: s.startedAt.toISOString(),
    accessExpiresAt: s.accessExpiresAt?.toISOString(),
    principal: { ...s.principal, notBefore: s.principal.notBefore.toISOString(), notAfter: s.principal.notAfter.toISOString() },
  };
}

export function sessionFromWire(w: SessionWire, worker: { id: number; pid: number }): LiveSession {
  return {
    ...w,
    startedAt: new Date(w.startedAt),
    accessExpiresAt: w.accessExpiresAt ? new Date(w.accessExpiresAt) : undefined,
    principal: { ...w.principal, notBefore: new Date(w.principal.notBefore), notAfter: new Date(w.principal.notAfter) },
    worker,
  };
}
