import { SpanStatusCode, trace } from '@opentelemetry/api';
import type { AuditEvent } from './events/envelope.ts';
import type { EventType } from './events/catalog.ts';

/**
 * The real-time layer in traces: each alert firing, guardrail decision, live-session control and approval
 * step becomes a span named by its event type, at the event's time, with the ids an operator pivots on
 * (event id, session, rule, request). The audit log stays the record; the spans let a trace backend
 * show them next to the session spans. Sessions already have their own span (src/sessions/admit.ts).
 */
export const TRACED_EVENT_TYPES: ReadonlySet<EventType> = new Set<EventType>([
  'alert.fired',
  'alert.resolved',
  'guardrail.blocked',
  'guardrail.unparsed',
  'session.kill',
  'session.watch_started',
  'session.watch_ended',
  'access.approved',
  'access.denied',
  'access.notified',
  'access.reminded',
  'access.escalated',
  'access.progress_notified',
  'access.decision_notified',
  'access.link_used',
  'access.link_refused',
]);

/** Details copied onto the span when present (strings and numbers only; never SQL text or secrets). */
const DETAIL_ATTRIBUTES = ['rule', 'group', 'count', 'decision', 'reason', 'request_id', 'role', 'protocol'] as const;

export function traceEvent(e: AuditEvent): void {
  if (!TRACED_EVENT_TYPES.has(e.type)) return;
  const at = new Date(e.time);
  const span = trace.getTracer('vigil').startSpan(e.type, {
    startTime: at,
    attributes: {
      'vigil.event_id': e.id,
      'vigil.outcome': e.outcome,
      'vigil.user': e.actor.user,
      'vigil.target': e.target.name,
      ...(e.session_id ? { 'vigil.session_id': e.session_id } : {}),
    },
  });
  for (const k of DETAIL_ATTRIBUTES) {
    const v = e.details[k];
    if (typeof v === 'string' || typeof v === 'number') span.setAttribute(`vigil.${k}`, v);
  }
  if (e.outcome === 'failure') span.setStatus({ code: SpanStatusCode.ERROR, message: e.type });
  span.end(at);
}
