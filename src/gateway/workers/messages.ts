/**
 * What a cluster worker and the primary say to each other over the IPC channel (gateway.workers > 1).
 * JSON-serialised by Node: Dates travel as ISO strings and are rebuilt on arrival.
 */
import type { AuditEvent } from '../../events/envelope.ts';
import type { VigilConfig } from '../../config/schema.ts';
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
  /** The worker has loaded its modules and waits for the configuration to run (the primary's, not the file's). */
  | { vigil: 'config_wanted' }
  /** The worker's message handler is in place: the primary sends it what it held back until now. */
  | { vigil: 'hello' }
  | { vigil: 'ready'; ports: Record<string, number> }
  /** The start sweeper's sweep of backend accounts finished: the other workers may listen. */
  | { vigil: 'swept' }
  | { vigil: 'failed'; error: string }
  /** Events of one tick, in the order they were recorded. */
  | { vigil: 'events'; items: EventItem[] }
  | { vigil: 'session_opened'; session: SessionWire }
  | { vigil: 'session_closed'; id: string; reason: EndReason }
  | { vigil: 'refused_session' }
  | { vigil: 'drained' }
  /** The answer to a ping: the worker's event loop runs. */
  | { vigil: 'pong' }
  /** Counts of the worker's live sessions for request `r`: [id, bytesFromClient, bytesToClient, statements] flattened. */
  | { vigil: 'counts'; r: number; c: (string | number)[] }
  /**
   * Query `q`, asked under the account's server-side lock before the worker changes the roles of `user`'s
   * backend account on the target or locks it: does a session in another worker use that account, and which
   * database roles do those sessions' leases need (the account keeps them)? `lease`: session `session` of
   * this worker leases `account` with `roles` (the primary answers the other workers with them, and has a
   * live worker lock the account should this one die).
   */
  | { vigil: 'leased_elsewhere'; q: number; user: string; target: string; protocol: string; lease?: LeaseWire }
  | RelayMessage;

/** A lease of a per-engineer backend account, as a worker tells the primary of it. */
export interface LeaseWire {
  session: string;
  account: string;
  roles: readonly string[];
  /** The session's event base (actor, source, target, session id): what a lock after its worker died records. */
  base: Pick<AuditEvent, 'actor' | 'source' | 'target' | 'session_id'>;
}

/**
 * A watched session's recordings, relayed for watch `w` (src/gateway/workers/cast-relay.ts): a recording
 * being written (`cast_open`), its lines as they land (whole asciicast lines, UTF-8), its end; or the
 * relay stopped because the primary did not take the lines fast enough (`watch_dropped`).
 */
export type RelayMessage =
  | { vigil: 'cast_open'; w: number; channel: number; rid: string }
  | { vigil: 'cast_data'; w: number; channel: number; lines: string }
  | { vigil: 'cast_end'; w: number; channel: number }
  | { vigil: 'watch_dropped'; w: number };

/** What the primary asks of a worker's relay while someone watches one of its sessions. */
export type WatchRequest =
  | { vigil: 'watch'; w: number; id: string }
  | { vigil: 'follow'; w: number; channel: number; from_start: boolean }
  | { vigil: 'unfollow'; w: number; channel: number }
  | { vigil: 'unwatch'; w: number }
  /**
   * The watcher took `bytes` more of the watch's cast_data (its connection drained below its limit): the
   * relay may send that much more of a from-start catch-up (cast-relay.ts RELAY_CATCH_UP_CREDIT).
   */
  | { vigil: 'cast_credit'; w: number; bytes: number };

/** Acks of one tick: `ok` as [n, seq, hash] triples flattened, `failed` as [n, code, message]. */
export type PrimaryMessage =
  | { vigil: 'acks'; ok: (number | string)[]; failed: [number, string, string][]; healthy: boolean; failure?: string }
  | { vigil: 'health'; healthy: boolean; failure?: string }
  | { vigil: 'terminate'; id: string; reason: EndReason; message: string }
  /** Stop: close the listeners, let sessions finish for `ms`, then end them and exit (bounds: ./shutdown.ts). */
  | { vigil: 'drain'; ms: number }
  /** Open the listeners: the start sweep of backend accounts is over (or was before this worker started). */
  | { vigil: 'listen' }
  /**
   * The configuration the primary runs, in answer to config_wanted: parsed (paths absolute, secrets as their
   * references), with what a reload keeps until restart as the primary kept it.
   */
  | { vigil: 'config'; config: VigilConfig; file?: string; data_dir: string }
  /** The primary applied a reload: this is its configuration now; apply it to new sessions here too. */
  | { vigil: 'reload'; config: VigilConfig }
  /** Send the counts of the live sessions (a GET /v1/sessions is waiting for them). */
  | { vigil: 'counts'; r: number }
  /**
   * Are you alive? (a worker that stops answering is killed and replaced: pool.ts MAX_UNANSWERED_PINGS; a
   * worker that stops hearing them takes the audit log as unavailable: worker.ts PRIMARY_SILENT_TICKS)
   */
  | { vigil: 'ping' }
  /** The answer to the worker's leased_elsewhere query `q`: the other workers' live leases of the account. */
  | { vigil: 'leased_elsewhere'; q: number; held: boolean; roles: string[] }
  /**
   * A worker died (killed, hung) while its sessions leased `account` on the target: it could not lock it.
   * Lock it unless a live session still leases it (then narrow it to what those need); `worker_pid` is the dead one.
   */
  | { vigil: 'lock_orphaned'; account: string; target: string; protocol: string; base: LeaseWire['base']; worker_pid: number }
  | WatchRequest;

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
