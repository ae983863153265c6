import type { GatewayServices } from '../gateway/services.ts';
import type { AccessRecord } from '../store/types.ts';
import type { EndReason, LiveSession } from '../sessions/registry.ts';
import { LOCAL_SOURCE } from '../events/envelope.ts';
import { AccessService } from './service.ts';

/** How often the gateway looks for changes (CLI in another process, expiries): well inside the 1 s promise. */
export const ENFORCEMENT_INTERVAL_MS = 250;

export const END_MESSAGES = {
  certRevoked: 'Your vigil certificate has been revoked; the session is closed.',
  locked: 'Your vigil user has been locked by an administrator; the session is closed.',
  grantRevoked: 'Your access grant has been revoked; the session is closed.',
  grantExpired: 'Your access grant has expired; the session is closed.',
} as const;

/** Why a session relying on this grant must end now, if it must. */
function grantEnd(g: AccessRecord | undefined, now: number): EndReason | undefined {
  if (!g || g.state === 'revoked' || g.state === 'denied' || g.state === 'pending') return 'revoked';
  if (g.state === 'expired' || Date.parse(g.expiresAt ?? '') <= now) return 'grant_expired';
  return undefined;
}

/**
 * Live enforcement of access changes. Every ~250 ms: reload the store if anything changed (another process
 * such as the CLI included), write `access.expired` for grants whose time has come (also those that expired
 * while no gateway ran), and end live sessions whose certificate was revoked, whose user was locked, or
 * whose grant was revoked or has ended. Grant and certificate expiry of a live session are also cut at the
 * exact time by the session registry's own timers; this loop is the backstop.
 */
export function startAccessEnforcement(services: GatewayServices, opts: { expire?: boolean } = {}): { stop(): Promise<void>; tick(): Promise<void> } {
  // A cluster worker (gateway.workers > 1) only cuts its own sessions: the primary alone writes access.expired.
  const expire = opts.expire ?? true;
  const { store, sessions, log } = services;
  const access = new AccessService({ config: services.config, store, events: services.events });
  let running: Promise<void> | undefined;
  let stopped = false;

  async function cutSessions(): Promise<void> {
    const live = sessions.list();
    if (live.length === 0) return;
    const now = Date.now();
    const grantIds = new Set(live.flatMap((s) => s.grantIds));
    const ends = new Map<string, EndReason | undefined>();
    for (const id of grantIds) ends.set(id, grantEnd(await store.getAccess(id), now));

    const reasonFor = (s: LiveSession): [EndReason, string] | undefined => {
      if (store.isRevoked(s.principal.certSerial)) return ['revoked', END_MESSAGES.certRevoked];
      if (store.isLocked('user', s.principal.user)) return ['locked', END_MESSAGES.locked];
      for (const id of s.grantIds) {
        const end = ends.get(id);
        if (end === 'revoked') return ['revoked', END_MESSAGES.grantRevoked];
        if (end === 'grant_expired') return ['grant_expired', END_MESSAGES.grantExpired];
      }
      return undefined;
    };
    for (const s of live) {
      const why = reasonFor(s);
      if (!why) continue;
      const handle = sessions.get(s.id);
      if (!handle || handle.endReason) continue;
      log.info({ session: s.id, user: s.principal.user, reason: why[0] }, 'ending live session: access withdrawn');
      handle.terminate(why[0], why[1]);
    }
  }

  /** Since when passes have been failing (a shared store that went away fails every pass, 4 a second). */
  let failingSince: number | undefined;
  let lastWarned = 0;

  async function pass(): Promise<void> {
    try {
      await store.refresh();
      if (expire) await access.expireDue(LOCAL_SOURCE);
      await cutSessions();
      if (failingSince !== undefined) log.info({ failed_for_ms: Date.now() - failingSince }, 'access enforcement passes succeed again');
      failingSince = undefined;
    } catch (e) {
      const now = Date.now();
      failingSince ??= now;
      // Say it at once, then every 30 s while it lasts, not on every retry.
      if (now - lastWarned >= 30_000 || failingSince === now) {
        lastWarned = now;
        log.warn({ err: (e as Error).message, failing_for_ms: now - failingSince }, 'access enforcement pass failed; retrying');
      }
    }
  }

  /** One pass at a time: a tick while a pass is in flight joins it. */
  function tick(): Promise<void> {
    if (stopped) return Promise.resolve();
    running ??= pass().finally(() => {
      running = undefined;
    });
    return running;
  }

  const timer = setInterval(() => void tick(), ENFORCEMENT_INTERVAL_MS);
  timer.unref();
  void tick(); // catch up at once on grants that expired while the gateway was down

  return {
    /** Stop the loop; resolves once a pass in flight has finished (so nothing is written after the audit log closes). */
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
    tick,
  };
}
