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
 * whose grant was revoked or has ended. Revocations and locks are cut from the store's in-memory caches at
 * once; grants are read from the store beside that, so a busy or unreachable store delays only grant cuts.
 * Grant and certificate expiry of a live session are also cut at the exact time by the session registry's
 * own timers; this loop is the backstop.
 */
export function startAccessEnforcement(services: GatewayServices, opts: { expire?: boolean } = {}): { stop(): Promise<void>; tick(): Promise<void> } {
  // A cluster worker (gateway.workers > 1) only cuts its own sessions: the primary alone writes access.expired.
  const expire = opts.expire ?? true;
  const { store, sessions, log } = services;
  const access = new AccessService({ config: services.config, store, events: services.events });
  let running: Promise<void> | undefined;
  let sweeping: Promise<void> | undefined;
  let checkingGrants: Promise<void> | undefined;
  let stopped = false;

  /** Why this session must end, by the revocation and lock caches and the clock alone (no store round trip). */
  function withdrawnByCache(s: LiveSession, now: number): [EndReason, string] | undefined {
    if (store.isRevoked(s.principal.certSerial)) return ['revoked', END_MESSAGES.certRevoked];
    // The registry's timer cuts at notAfter; this catches what it missed (a wall clock stepped past the
    // expiry while the monotonic timer still waits, a session handed over from a worker). new Date():
    // a session listed from another process may carry its time as text; an unreadable time is no time left.
    if (!(new Date(s.principal.notAfter).getTime() > now)) return ['cert_expired', END_MESSAGES.certExpired];
    if (store.isLocked('user', s.principal.user)) return ['locked', END_MESSAGES.locked];
    return undefined;
  }

  function end(s: LiveSession, why: [EndReason, string]): void {
    const handle = sessions.get(s.id);
    if (!handle || handle.endReason) return;
    log.info({ session: s.id, user: s.principal.user, reason: why[0] }, 'ending live session: access withdrawn');
    handle.terminate(why[0], why[1]);
  }

  /** Synchronous: a revocation or lock this replica knows is applied even while the store is busy or gone. */
  function cutFromCaches(): void {
    const now = Date.now();
    for (const s of sessions.list()) {
      const why = withdrawnByCache(s, now);
      if (why) end(s, why);
    }
  }

  /** Sessions on a revoked or ended grant: one store read per grant; a read that fails spares only its grant's sessions. */
  async function cutEndedGrants(): Promise<void> {
    const live = sessions.list().filter((s) => s.grantIds.length > 0);
    if (live.length === 0) return;
    const now = Date.now();
    const ends = new Map<string, EndReason | undefined>();
    const failed: { grant: string; err: string }[] = [];
    await Promise.all(
      [...new Set(live.flatMap((s) => s.grantIds))].map(async (id) => {
        try {
          ends.set(id, grantEnd(await store.getAccess(id), now));
        } catch (e) {
          failed.push({ grant: id, err: (e as Error).message });
        }
      }),
    );
    if (failed.length) grantFailures.failed(new Error(failed[0].err), { failed_grants: failed });
    else grantFailures.ok();

    const grantReason = (s: LiveSession): [EndReason, string] | undefined => {
      for (const id of s.grantIds) {
        const end = ends.get(id);
        if (end === 'revoked') return ['revoked', END_MESSAGES.grantRevoked];
        if (end === 'grant_expired') return ['grant_expired', END_MESSAGES.grantExpired];
      }
      return undefined;
    };
    for (const s of live) {
      // The caches may have learned more while the grants were read; their reason says more than the grant's.
      const why = withdrawnByCache(s, Date.now()) ?? grantReason(s);
      if (why) end(s, why);
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
      failed(e: unknown, details: Record<string, unknown> = {}) {
        const now = Date.now();
        failingSince ??= now;
        if (now - lastWarned >= 30_000 || failingSince === now) {
          lastWarned = now;
          log.warn({ ...details, err: (e as Error).message, failing_for_ms: now - failingSince }, what.failed);
        }
      },
    };
  }
  const passFailures = failures({ failed: 'access enforcement pass failed; retrying', recovered: 'access enforcement passes succeed again' });
  const sweepFailures = failures({ failed: 'access expiry sweep failed; retrying', recovered: 'access expiry sweeps succeed again' });
  const grantFailures = failures({
    failed: 'access enforcement could not read grants; sessions on them are checked again on the next pass',
    recovered: 'access enforcement reads grants again',
  });

  async function sweep(): Promise<void> {
    try {
      await access.expireDue(LOCAL_SOURCE);
      sweepFailures.ok();
    } catch (e) {
      sweepFailures.failed(e);
    }
  }

  async function checkGrants(): Promise<void> {
    try {
      await cutEndedGrants();
    } catch (e) {
      grantFailures.failed(e);
    }
  }

  async function pass(): Promise<void> {
    try {
      await store.refresh();
      cutFromCaches();
      // The sweep and the grant reads run beside the passes, never inside them: each waits on the store's
      // pool (up to its connection timeout when the pool is busy or the store gone) or on row locks, and the
      // next pass must still cut a revocation or lock from the caches at once, not join a pass stuck there.
      // A session on an ended grant is cut by its time, swept or not.
      if (expire) sweeping ??= sweep().finally(() => (sweeping = undefined));
      checkingGrants ??= checkGrants().finally(() => (checkingGrants = undefined));
      passFailures.ok();
    } catch (e) {
      passFailures.failed(e);
    }
  }

  /** One pass (and one sweep, one grant check) at a time: a tick while one is in flight joins it. */
  async function tick(): Promise<void> {
    if (stopped) return;
    running ??= pass().finally(() => {
      running = undefined;
    });
    await running;
    await sweeping;
    await checkingGrants;
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
      await checkingGrants;
    },
    tick,
  };
}
