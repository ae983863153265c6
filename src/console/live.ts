import type http from 'node:http';
import type { Actor } from '../access/service.ts';
import type { GatewayServices } from '../gateway/services.ts';
import { beginWatch, ndjsonSink, streamSession } from '../api/watch.ts';
import { killSession, type SessionControlDeps } from '../sessions/control.ts';

/**
 * The console's live view and terminate action on a running session, over the same code as the mTLS API
 * (src/api/watch.ts, src/sessions/control.ts): the watcher sees exactly what `vigil watch` shows, and the
 * audit events are the same (session.watch_started / watch_ended / kill), with source.via 'console'.
 *
 * The live view is NDJSON on a chunked response rather than a WebSocket: the upgrade path of the API
 * authenticates client certificates, while a console session is a cookie (and may come from OIDC).
 */

/** How soon a live view notices that its console session ended. */
const SIGNED_IN_CHECK_MS = 1000;

export type LiveDeps = SessionControlDeps;

export function liveDeps(services: GatewayServices, access: { isAdmin(a: Actor): boolean; seesEverything(a: Actor): boolean }): LiveDeps {
  return { sessions: services.sessions, events: services.events, seesEverything: (a) => access.seesEverything(a), isAdmin: (a) => access.isAdmin(a) };
}

/** Stream session `id` to `res` until it ends or the browser leaves; refusals throw before any byte. */
export async function watchInConsole(
  services: GatewayServices,
  deps: LiveDeps,
  actor: Actor,
  id: string,
  fromStart: boolean,
  res: http.ServerResponse,
  headers: Record<string, string>,
  stillSignedIn: () => Promise<boolean>,
): Promise<void> {
  const session = await beginWatch(deps, actor, id, fromStart);
  const sink = ndjsonSink(res, headers);
  const watch = streamSession(sink, { events: services.events, sessions: services.sessions, recordings: services.recordings, log: services.log }, actor, session, fromStart);
  // The check may ask the store (the grant of a certificate sign-in): one at a time; one that fails ends
  // the view, as access that cannot be confirmed is not kept.
  let busy = false;
  const check = setInterval(() => {
    if (busy) return;
    busy = true;
    stillSignedIn()
      .then((ok) => ok || watch.end(1008, 'console session ended', 'console_session_ended'))
      .catch(() => watch.end(1013, 'console session cannot be checked now', 'check_failed'))
      .finally(() => (busy = false));
  }, SIGNED_IN_CHECK_MS);
  check.unref();
  res.on('close', () => clearInterval(check));
}

/** Terminate from the console: killSession's own rule (administrators only; refusals recorded as session.kill failures). */
export async function killInConsole(deps: LiveDeps, actor: Actor, id: string, reason: string) {
  return killSession(deps, actor, id, reason);
}

/**
 * The live-view link of a running session, on its page (which only auditors and admins see); the
 * terminate button is on the live view, for admins.
 */
export function liveLinks(id: string, live: boolean) {
  return live ? [{ rel: 'live', href: `#/sessions/${encodeURIComponent(id)}/live`, method: 'GET' as const, label: 'Watch live' }] : [];
}
