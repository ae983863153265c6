import { newId } from '../ids.ts';
import type { Principal } from '../identity/types.ts';
import type { LiveCast } from '../../recorder/types.ts';

/** Why a session ended. Recorded verbatim as `session.end` details.reason. */
/** What a client whose session a config reload (or a decision taken across one) ended is told. */
export const CONFIG_RELOAD_MESSAGE = 'The vigil configuration changed and your access to this target no longer holds; the session is closed.';

export type EndReason =
  | 'client_closed'
  | 'backend_closed'
  | 'backend_error'
  | 'cert_expired'
  | 'grant_expired'
  | 'revoked'
  | 'locked'
  | 'idle_timeout'
  /** The client stopped reading the gateway's output for slow_clients.write_stall_timeout. */
  | 'write_stall'
  /** An administrator killed the session (`vigil sessions kill`, POST /v1/sessions/:id/kill). */
  | 'terminated'
  | 'shutdown'
  /** A config reload removed the role or target the session relied on. */
  | 'config_reload'
  | 'recording_failed'
  | 'audit_unavailable'
  /** Found open (session.start without session.end) when the gateway restarted after a crash. */
  | 'gateway_crash'
  | 'protocol_error'
  | 'error';

export interface SessionInfo {
  protocol: string;
  principal: Principal;
  target: { name: string; host: string; port: number; login?: string; database?: string };
  source: { ip: string; port: number };
  /** Grants this session relies on (empty when standing roles allow it). */
  grantIds: string[];
  /** When the grant that allows this session expires (the session is cut then). */
  accessExpiresAt?: Date;
}

export interface LiveSession extends SessionInfo {
  id: string;
  startedAt: Date;
  /** The session's running byte and statement counts (set by openSession; read for `sessions list --live`). */
  stats?: { bytesFromClient: number; bytesToClient: number; statements: number };
  /** With `gateway.workers` > 1: the worker process that holds the session (the primary's view only). */
  worker?: { id: number; pid: number };
}

/**
 * What the process holding an adopted session (a cluster worker) offers besides ending it: following the
 * session's recordings there, for a live watch in this process.
 */
export interface RemoteSession {
  /**
   * Like RecordingStore.watch for this session, relayed from the holding process while the returned
   * function is not called. `onLost` runs (once, instead of further casts) if the relay had to stop.
   */
  watchCasts(onCast: (cast: LiveCast) => void, onLost: () => void): () => void;
}

/**
 * How the registry ends a session: the proxy sends `message` to the client in the protocol's own way
 * (SSH stderr + exit, Postgres FATAL ErrorResponse, MySQL ERR) and closes. Must be idempotent.
 */
export type Terminator = (reason: EndReason, message: string) => void;

export interface SessionHandle {
  readonly id: string;
  readonly session: LiveSession;
  /** Set once the session is ending, with the first reason given. */
  readonly endReason: EndReason | undefined;
  /** Set for a session adopted from another process (a cluster worker): what that process relays. */
  readonly remote?: RemoteSession;
  /** Ask the proxy to end the session (runs the terminator once). */
  terminate(reason: EndReason, message: string): void;
  /** The proxy reports the session is over (removes it from the registry, clears timers). */
  close(reason: EndReason): void;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Registry of live sessions of every protocol. Each session is killable through its handle; the
 * registry ends sessions by itself at certificate or grant expiry, and the access layer ends them on
 * revocation or lock through `terminateWhere`.
 */
export class SessionRegistry {
  private readonly live = new Map<string, Handle>();
  private readonly endListeners: ((id: string, reason: EndReason) => void)[] = [];
  private readonly lifecycle: { opened(s: LiveSession): void; closed(id: string, reason: EndReason): void }[] = [];
  private adoptedCounts: (() => Promise<void>) | undefined;

  /**
   * Hear of every session opened or adopted here and of its removal (after the proxy, or the worker holding
   * it, closed it). A cluster worker reports its own to the primary this way (src/gateway/workers); the
   * primary publishes them all to a shared store this way (src/sessions/shared-registry.ts).
   */
  observe(o: { opened(s: LiveSession): void; closed(id: string, reason: EndReason): void }): void {
    this.lifecycle.push(o);
  }

  /**
   * Track a session that lives in another process (a cluster worker): listed, found and killable here like
   * a local one; `terminator` asks its process to end it, which reports the close. No expiry timers: the
   * holding process arms its own.
   */
  adopt(session: LiveSession, terminator: Terminator, remote?: RemoteSession): SessionHandle {
    const h = new Handle(session.id, session, terminator, (x) => this.removed(x), () => {}, remote);
    this.live.set(session.id, h);
    // Observers hear of adopted sessions too: the shared registry publishes them at once, not a heartbeat later.
    this.announceOpened(h.session);
    return h;
  }

  private announceOpened(s: LiveSession): void {
    for (const o of this.lifecycle) o.opened(s);
  }

  private removed(x: Handle): void {
    this.live.delete(x.id);
    for (const o of this.lifecycle) {
      try {
        o.closed(x.id, x.endReason ?? 'error');
      } catch {
        // An observer failing must not keep a session from ending.
      }
    }
  }

  /**
   * How the counts (`stats`) of adopted sessions are brought up to date before a listing: their holding
   * processes count, not this one (src/gateway/workers/pool.ts).
   */
  countAdoptedWith(fetch: () => Promise<void>): void {
    this.adoptedCounts = fetch;
  }

  /** Like list(), with the byte and statement counts of adopted sessions fetched first (GET /v1/sessions). */
  async listCounted(): Promise<LiveSession[]> {
    await this.adoptedCounts?.().catch(() => {});
    return this.list();
  }

  /**
   * Call `fn` once per session as soon as it is ending: when it is cut (terminate) or, if never cut, when
   * the proxy closes it. Backend accounts are released through this (src/accounts).
   */
  onEnd(fn: (id: string, reason: EndReason) => void): void {
    this.endListeners.push(fn);
  }

  open(info: SessionInfo, terminator: Terminator, id: string = newId()): SessionHandle {
    const ended = (x: Handle, reason: EndReason) => {
      for (const fn of this.endListeners) {
        try {
          fn(x.id, reason);
        } catch {
          // A listener failing must not keep a session from ending.
        }
      }
    };
    const h = new Handle(id, { ...info, id, startedAt: new Date() }, terminator, (x) => this.removed(x), ended);
    this.live.set(id, h);
    this.announceOpened(h.session);
    h.arm('cert_expired', info.principal.notAfter, 'Your vigil certificate has expired; the session is closed. Request a new certificate.');
    if (info.accessExpiresAt) {
      h.arm('grant_expired', info.accessExpiresAt, 'Your access grant has expired; the session is closed.');
    }
    return h;
  }

  get(id: string): SessionHandle | undefined {
    return this.live.get(id);
  }

  list(): LiveSession[] {
    return [...this.live.values()].map((h) => h.session);
  }

  get size(): number {
    return this.live.size;
  }

  /** Terminate every live session matching `pred`. Returns how many were asked to end. */
  terminateWhere(pred: (s: LiveSession) => boolean, reason: EndReason, message: string): number {
    let n = 0;
    for (const h of [...this.live.values()]) {
      if (pred(h.session)) {
        h.terminate(reason, message);
        n++;
      }
    }
    return n;
  }

  /** Wait until all sessions closed or `ms` elapsed. */
  async drain(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.live.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  }
}

class Handle implements SessionHandle {
  endReason: EndReason | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  constructor(
    readonly id: string,
    readonly session: LiveSession,
    private readonly terminator: Terminator,
    private readonly onClose: (h: Handle) => void,
    private readonly onEnding: (h: Handle, reason: EndReason) => void,
    readonly remote?: RemoteSession,
  ) {}
  private endingReported = false;

  private reportEnding(reason: EndReason): void {
    if (this.endingReported) return;
    this.endingReported = true;
    this.onEnding(this, reason);
  }

  /** Terminate at `at`; long delays are re-armed in steps because timers cap at ~24.8 days. */
  arm(reason: EndReason, at: Date, message: string): void {
    const delay = at.getTime() - Date.now();
    if (delay <= 0) {
      queueMicrotask(() => this.terminate(reason, message));
      return;
    }
    const t = setTimeout(() => {
      if (delay > MAX_TIMER_MS) this.arm(reason, at, message);
      else this.terminate(reason, message);
    }, Math.min(delay, MAX_TIMER_MS));
    t.unref();
    this.timers.push(t);
  }

  terminate(reason: EndReason, message: string): void {
    if (this.endReason) return;
    this.endReason = reason;
    this.clearTimers();
    try {
      this.terminator(reason, message);
    } catch {
      // The proxy's terminator must not throw; if it does the session is still considered ending.
    }
    this.reportEnding(reason);
  }

  close(reason: EndReason): void {
    if (!this.endReason) this.endReason = reason;
    this.clearTimers();
    this.onClose(this);
    this.reportEnding(this.endReason);
  }

  private clearTimers(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.length = 0;
  }
}
