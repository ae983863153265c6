import type { GatewayServices } from '../gateway/services.ts';
import type { AccessRecord } from '../store/types.ts';
import type { EndReason, LiveSession } from '../sessions/registry.ts';
import { LOCAL_SOURCE } from '../events/envelope.ts';
import { AccessService } from './service.ts';

/** How often the gateway looks for changes (CLI in another process, expiries): well inside the 1 s promise. */
export const ENFORCEMENT_INTERVAL_MS = 250;

export const END_MESSAGES = {
  certRevoked: 'Your vigil certificate has been revoked; the session is closed.',
  certExpired: 'Your vigil certificate has expired; the session is closed. Request a new certificate.',
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
  let sweeping: Promise<void> | undefined;
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
      // The registry's timer cuts at notAfter; this catches what it missed (a wall clock stepped past the
      // expiry while the monotonic timer still waits, a session handed over from a worker). new Date():
      // a session listed from another process may carry its time as text; an unreadable time is no time left.
      if (!(new Date(s.principal.notAfter).getTime() > now)) return ['cert_expired', END_MESSAGES.certExpired];
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

  /** Logs a loop's failures at once, then every 30 s while they last (a store gone away fails 4 times a second). */
  function failures(what: { failed: string; recovered: string }) {
    let failingSince: number | undefined;
    let lastWarned = 0;
    return {
      ok() {
        if (failingSince !== undefined) log.info({ failed_for_ms: Date.now() - failingSince }, what.recovered);
        failingSince = undefined;
      },
      failed(e: unknown) {
        const now = Date.now();
        failingSince ??= now;
        if (now - lastWarned >= 30_000 || failingSince === now) {
          lastWarned = now;
          log.warn({ err: (e as Error).message, failing_for_ms: now - failingSince }, what.failed);
        }
      },
    };
  }
  const passFailures = failures({ failed: 'access enforcement pass failed; retrying', recovered: 'access enforcement passes succeed again' });
  const sweepFailures = failures({ failed: 'access expiry sweep failed; retrying', recovered: 'access expiry sweeps succeed again' });

  async function sweep(): Promise<void> {
    try {
      await access.expireDue(LOCAL_SOURCE);
      sweepFailures.ok();
    } catch (e) {
      sweepFailures.failed(e);
    }
  }

  async function pass(): Promise<void> {
    try {
      await store.refresh();
      // The sweep runs beside the cut, never before it: it waits on row locks (another replica or an open
      // psql transaction may hold one, up to the store's lock timeout), and cutting a revoked or locked
      // session must not wait for that. A session on an ended grant is cut by its time, swept or not.
      if (expire) sweeping ??= sweep().finally(() => (sweeping = undefined));
      await cutSessions();
      passFailures.ok();
    } catch (e) {
      passFailures.failed(e);
    }
  }

  /** One pass (and one sweep) at a time: a tick while one is in flight joins it. */
  async function tick(): Promise<void> {
    if (stopped) return;
    running ??= pass().finally(() => {
      running = undefined;
    });
    await running;
    await sweeping;
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
      await sweeping;
    },
    tick,
  };
}
