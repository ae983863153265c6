import type { Actor } from '../access/service.ts';
import { AccessRefusedError } from '../access/errors.ts';
import type { EventBus } from '../events/bus.ts';
import type { AuditEvent, EventInput } from '../events/envelope.ts';
import { VigilError } from '../errors.ts';
import type { LiveSession, SessionRegistry } from './registry.ts';
import { sessionView } from './view.ts';
export { sessionView };
import type { ListedSession, SharedSessions } from './shared-registry.ts';

/**
 * Acting on other people's live sessions: killing them (this module) and watching them (src/api/watch.ts).
 * Watching is for administrators and auditors; killing for administrators only (reviewing sessions must
 * not come with ending them). Everyone else is refused, and the refusal is recorded like the action would
 * have been (same event type, outcome failure), so "who tried to watch or kill what" is in the log next to
 * "who did".
 */

export interface SessionControlDeps {
  sessions: SessionRegistry;
  events: EventBus;
  /** Whether `actor` may act on every session (admin or auditor role). */
  seesEverything(actor: Actor): boolean;
  /** Whether `actor` is an administrator (access.admin_roles): only they end other people's sessions. */
  isAdmin(actor: Actor): boolean;
  /** Replicas on a shared store: the sessions the other replicas hold, killed through them. */
  elsewhere?: SharedSessions;
}

/** A session that is not (or no longer) live. */
export class SessionNotFoundError extends VigilError {
  constructor(id: string) {
    super('VIGIL_NOT_FOUND', `No live session "${id}".`);
  }
}

/** Envelope of an event about acting on session `s` (or on an unknown id): the actor is the admin/auditor. */
export function controlEvent(
  type: 'session.kill' | 'session.watch_started' | 'session.watch_ended',
  actor: Actor,
  sessionId: string,
  s: LiveSession | undefined,
  outcome: AuditEvent['outcome'],
  details: Record<string, unknown>,
): EventInput {
  return {
    type,
    outcome,
    actor: { user: actor.user, roles: actor.roles, ...(actor.certSerial ? { cert_serial: actor.certSerial } : {}) },
    source: actor.source,
    // The affected resource is the watched/killed session; its user and target are in the details.
    target: { name: `session/${sessionId}`, protocol: 'vigil' },
    details: {
      session_id: sessionId,
      ...(s ? { session_user: s.principal.user, session_target: s.target.name, session_protocol: s.protocol } : {}),
      ...details,
    },
  };
}

/** Refuse `action` on a session to someone without an admin/auditor role; the refusal is recorded. */
export async function refuseUnlessPrivileged(
  deps: SessionControlDeps,
  actor: Actor,
  type: 'session.kill' | 'session.watch_started',
  sessionId: string,
  what: string,
): Promise<void> {
  if (deps.seesEverything(actor)) return;
  const message = `Only administrators and auditors may ${what}.`;
  await deps.events.emit(controlEvent(type, actor, sessionId, deps.sessions.get(sessionId)?.session, 'failure', { code: 'VIGIL_FORBIDDEN', message }));
  throw new AccessRefusedError('VIGIL_FORBIDDEN', 'forbidden', message);
}

/** How long kill waits for the proxy to report the session closed before answering anyway. */
const KILL_SETTLE_MS = 5000;

/**
 * Kill a live session: `session.kill` is written (durably) first, then the proxy ends the session the
 * protocol's own way with "terminated by <actor>: <reason>" (SSH: on the terminal then close; Postgres:
 * FATAL 57P01; MySQL: ERR 1927), and session.end records reason `terminated`. Resolves once the session
 * is gone from the registry (or after KILL_SETTLE_MS: `ended` false).
 */
export async function killSession(deps: SessionControlDeps, actor: Actor, id: string, reason: string): Promise<{ session: ReturnType<typeof sessionView>; ended: boolean }> {
  const handle = deps.sessions.get(id);
  if (!deps.isAdmin(actor)) {
    const message = 'Only administrators may terminate sessions.';
    // Another replica's session: named in the refusal too when the store can tell whose it is.
    const other = !handle && deps.elsewhere ? await deps.elsewhere.find(id).catch(() => undefined) : undefined;
    await deps.events.emit(controlEvent('session.kill', actor, id, handle?.session, 'failure', { code: 'VIGIL_FORBIDDEN', message, ...(other ? elsewhereDetails(other) : {}) }));
    throw new AccessRefusedError('VIGIL_FORBIDDEN', 'forbidden', message);
  }
  if (!handle && deps.elsewhere) return killElsewhere(deps.events, deps.elsewhere, actor, id, reason);
  if (!handle) throw new SessionNotFoundError(id);
  const view = sessionView(handle.session);
  await deps.events.emit(controlEvent('session.kill', actor, id, handle.session, 'success', { reason }));
  handle.terminate('terminated', `terminated by ${actor.user}: ${reason}`);
  const deadline = Date.now() + KILL_SETTLE_MS;
  while (deps.sessions.get(id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return { session: view, ended: !deps.sessions.get(id) };
}

/** The details a session.kill names for a session held by another replica (as controlEvent does for a local one). */
function elsewhereDetails(s: ListedSession): Record<string, unknown> {
  return { session_user: s.user, session_target: s.target.name, session_protocol: s.protocol, replica: s.replica };
}

/**
 * Kill a session another replica holds: authorised here (killSession), `session.kill` recorded here, then
 * the holder ends it through its registry with the same message as a local kill (its session.end records
 * reason `terminated`). StoreUnavailableError when the store cannot be asked.
 */
async function killElsewhere(events: EventBus, elsewhere: SharedSessions, actor: Actor, id: string, reason: string): Promise<{ session: ListedSession; ended: boolean }> {
  const other = await elsewhere.find(id);
  if (!other) throw new SessionNotFoundError(id);
  await events.emit(controlEvent('session.kill', actor, id, undefined, 'success', { reason, ...elsewhereDetails(other) }));
  const r = await elsewhere.kill(id, `terminated by ${actor.user}: ${reason}`, KILL_SETTLE_MS);
  return { session: other, ended: r.ended };
}
