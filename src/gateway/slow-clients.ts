import type net from 'node:net';
import type { GatewayServices } from './services.ts';

/**
 * Slow and half-open clients (issue #16 item 4). A client that trickles one byte a second, stops reading,
 * or vanishes without a FIN must not hold gateway memory or a slot for long: each phase has a deadline,
 * a session whose client stopped reading is ended, and accepted sockets get TCP keepalive.
 */

/** Which deadline cut a connection before it authenticated. */
export type PreAuthDeadline = 'handshake_timeout' | 'auth_timeout';

export interface PreAuthCut {
  protocol: string;
  source: { ip: string; port: number };
  connId: string;
  /** Where the connection was when cut (e.g. `tls_handshake`, `startup`, `password`, `kex`). */
  phase: string;
  deadline: PreAuthDeadline;
  limitMs: number;
}

/** Who an unauthenticated connection was: enough to record a refusal of it. */
interface PreAuthConnection {
  protocol: string;
  source: { ip: string; port: number };
  connId: string;
  /** What the client asked for, when it said (target, login, database): never a credential. */
  target?: { name: string; login?: string; database?: string };
}

/**
 * An unauthenticated connection's refusal as `auth.failure`, within the per-source refusal budget (under
 * `budgetReason`): beyond it the refusal is only counted into the source's `auth.failure.summary`, so a
 * flood cannot grow the audit log at the attacker's rate.
 */
function recordPreAuthRefusal(services: GatewayServices, conn: PreAuthConnection, budgetReason: string, details: Record<string, unknown>, what: string): void {
  if (services.refusals && !services.refusals.take(conn.protocol, conn.source.ip, budgetReason)) return;
  services.events
    .emit({
      type: 'auth.failure',
      outcome: 'failure',
      actor: { user: 'unknown', roles: [] },
      source: conn.source,
      target: { ...conn.target, name: conn.target?.name || '(none)', protocol: conn.protocol },
      session_id: conn.connId,
      details,
    })
    .catch((e) => services.log.error({ err: (e as Error).message }, `could not record a pre-authentication ${what}`));
}

/** A connection cut by a pre-authentication deadline: `auth.failure`, reason `timeout` (a slowloris). */
export function recordPreAuthCut(services: GatewayServices, cut: PreAuthCut): void {
  const details = { reason: 'timeout', phase: cut.phase, deadline: cut.deadline, limit_ms: cut.limitMs };
  recordPreAuthRefusal(services, cut, `timeout_${cut.phase}`, details, 'timeout');
}

/**
 * A connection refused before authentication because what it sent could not be decoded (not the protocol,
 * a malformed or oversized handshake message): `auth.failure`, reason `protocol_error`. A scanner or a
 * client speaking the wrong protocol is on record; a flood of garbage is only counted.
 */
export function recordPreAuthProtocolError(services: GatewayServices, cut: PreAuthConnection & { phase: string; error: string }): void {
  const details = { reason: 'protocol_error', phase: cut.phase, error: cut.error.slice(0, 200) };
  recordPreAuthRefusal(services, cut, 'protocol_error', details, 'protocol error');
}

/**
 * Refusals made before any credential is checked, each with a stable `reason` (documented with
 * `auth.failure` in src/events/catalog.ts):
 * - `too_many_unauthenticated`: the listener's (`gateway.max_unauthenticated`) or the source's
 *   (`pre_auth.max_per_source`) allowance of unauthenticated connections is taken (details.limit);
 * - `replication_refused`: a PostgreSQL startup asking for a walsender (`replication=…`);
 * - `method_not_allowed`: an SSH password or keyboard-interactive attempt (only certificates are accepted);
 * - `too_many_attempts`: an SSH client past `ssh.max_auth_attempts` public keys on one connection (each
 *   earlier key has its own auth.failure; this one says why the connection was then closed).
 */
export type PreAuthRefusalReason = 'too_many_unauthenticated' | 'replication_refused' | 'method_not_allowed' | 'too_many_attempts';

/**
 * A connection refused before authentication for what it asked, not for a bad credential: `auth.failure`
 * with `reason`, within the same per-source budget as protocol errors, so a flood (the very thing that
 * fills the unauthenticated allowance) is counted into `auth.failure.summary`, not written one by one.
 */
export function recordPreAuthRefused(services: GatewayServices, conn: PreAuthConnection & { phase: string }, reason: PreAuthRefusalReason, details: Record<string, unknown> = {}): void {
  recordPreAuthRefusal(services, conn, reason, { ...details, reason, phase: conn.phase }, `refusal (${reason})`);
}

/**
 * The two deadlines of an unauthenticated connection: `pre_auth.handshake_timeout` until the protocol's
 * handshake is done, `gateway.auth_timeout` for the whole unauthenticated phase. Both are deadlines, not
 * idle timers: a byte now and then does not extend them. On expiry the cut is recorded (budgeted) and
 * `onCut` closes the connection the protocol's way.
 */
export class PreAuthDeadlines {
  /** Updated by the proxy as the connection moves on (reported in the event). */
  phase: string;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private authTimer: NodeJS.Timeout | undefined;
  private done = false;

  constructor(
    private readonly services: GatewayServices,
    private readonly who: { protocol: string; source: { ip: string; port: number }; connId: string },
    firstPhase: string,
    private readonly onCut: (message: string, deadline: PreAuthDeadline) => void,
  ) {
    this.phase = firstPhase;
    const { pre_auth, gateway } = services.config;
    this.handshakeTimer = this.arm('handshake_timeout', pre_auth.handshake_timeout, 'handshake');
    this.authTimer = this.arm('auth_timeout', gateway.auth_timeout, 'authentication');
  }

  /** The protocol handshake completed: only the whole-phase deadline runs on. */
  handshakeDone(): void {
    clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
  }

  /** Authenticated, refused or closed: no more deadlines. */
  clear(): void {
    this.done = true;
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.authTimer);
  }

  private arm(deadline: PreAuthDeadline, ms: number, what: string): NodeJS.Timeout {
    const t = setTimeout(() => {
      if (this.done) return;
      this.clear();
      recordPreAuthCut(this.services, { ...this.who, phase: this.phase, deadline, limitMs: ms });
      this.onCut(`${what} timed out`, deadline);
    }, ms);
    t.unref();
    return t;
  }
}

/**
 * Watch a session's client socket for a stalled reader: output is pending and none of it has reached the
 * kernel for `ms`. The proxies already pause the backend while the client's buffer is over its high-water
 * mark, so memory stays bounded; this ends a session whose client will never read again. `onStall` is
 * called once. Returns a stop function.
 */
export function watchWriteStall(socket: net.Socket, ms: number, onStall: () => void): () => void {
  if (!(ms > 0)) return () => {};
  // Bytes handed to the kernel: bytesWritten counts what is still queued in the socket too.
  const handed = () => socket.bytesWritten - socket.writableLength;
  let last = handed();
  let stalledSince: number | undefined;
  const period = Math.max(50, Math.min(1000, Math.floor(ms / 4)));
  const timer = setInterval(() => {
    if (socket.destroyed) return stop();
    const now = Date.now();
    const h = handed();
    if (socket.writableLength === 0 || h !== last) {
      last = h;
      stalledSince = undefined;
      return;
    }
    stalledSince ??= now;
    if (now - stalledSince >= ms) {
      stop();
      onStall();
    }
  }, period);
  timer.unref();
  const stop = () => clearInterval(timer);
  socket.once('close', stop);
  return stop;
}

/** TCP keepalive on an accepted socket, so a peer that vanished without a FIN is found (config slow_clients.keepalive). */
export function applyKeepAlive(socket: net.Socket, ms: number): void {
  if (ms > 0) socket.setKeepAlive(true, ms);
}
