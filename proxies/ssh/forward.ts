import type ssh2 from 'ssh2';
import type { ChannelHost } from './host.ts';
import { sshFields } from './backend.ts';
import { relay } from './relay.ts';
import { newId } from '../../src/ids.ts';
import { rejectChannelOpen, OPEN_ADMINISTRATIVELY_PROHIBITED, OPEN_CONNECT_FAILED } from './wire.ts';

export interface TcpipInfo {
  srcIP: string;
  srcPort: number;
  destIP: string;
  destPort: number;
}

/** Which rule refuses a direct-tcpip request (named as in the certificate or config), and why in words. */
export interface ForwardRefusal {
  rule: string;
  reason: string;
}

/** Why a direct-tcpip request is not allowed, or undefined when the certificate, target and roles all allow it. */
export function forwardRefusal(host: Pick<ChannelHost, 'principal' | 'target'>, rolePermits: boolean, roles: readonly string[] = []): ForwardRefusal | undefined {
  if (!host.principal.extensions.includes('permit-port-forwarding')) {
    return { rule: 'certificate extension permit-port-forwarding', reason: 'certificate lacks permit-port-forwarding' };
  }
  // The target first: authz folds it into the role permission, and the message must name the real cause.
  if (!sshFields(host.target).port_forwarding) {
    return { rule: `targets.${host.target.name}.port_forwarding`, reason: `target ${host.target.name} does not allow port forwarding (port_forwarding is off)` };
  }
  if (!rolePermits) {
    const which = roles.length ? `roles ${roles.join(', ')}` : 'the roles';
    return { rule: 'roles.port_forwarding', reason: `no role allows port forwarding (${which}: port_forwarding is off)` };
  }
  return undefined;
}

/**
 * `ssh -L`: open the same destination from the target (forwardOut on the backend connection) and relay
 * bytes with backpressure. Nothing is opened while the audit log cannot be written. Each forward is on
 * record before the target is asked to connect (`ssh.forward` with `state: 'open'`, durable first in
 * strict mode), and again when it ends (`state: 'closed'`, with byte counts) or fails; a refusal by
 * policy is one `ssh.forward` failure naming the rule. From its opening record on, the forward counts as
 * open for the session: session.end waits for its outcome, also when the session ends while the target is
 * still connecting (the outcome is then a failure, "the session is ending").
 */
export function handleDirectTcpip(
  host: ChannelHost,
  conn: unknown,
  rolePermits: boolean,
  roles: readonly string[],
  accept: () => ssh2.ServerChannel,
  reject: () => void,
  info: TcpipInfo,
): void {
  const destination = `${info.destIP}:${info.destPort}`;
  const refusal: ForwardRefusal | undefined = host.ending ? { rule: 'session', reason: 'the session is ending' } : forwardRefusal(host, rolePermits, roles);
  if (refusal) {
    host.emit('ssh.forward', 'failure', { destination, reason: refusal.reason, rule: refusal.rule });
    return rejectChannelOpen(conn, reject, OPEN_ADMINISTRATIVELY_PROHIBITED, `vigil: forwarding to ${destination} refused by ${refusal.rule}: ${refusal.reason}`);
  }
  const unrecorded = (why: string) => {
    host.log.error({ destination, err: why }, 'audit log unavailable; forward not opened');
    rejectChannelOpen(conn, reject, OPEN_ADMINISTRATIVELY_PROHIBITED, `vigil: audit log unavailable, forwarding to ${destination} refused`);
    host.terminateSession('audit_unavailable', 'vigil cannot write its audit log; the session is closed.');
  };
  // Like a session channel: nothing is forwarded while the log cannot record it.
  if (!host.auditHealthy) return unrecorded('the audit log is unavailable');
  const forward = newId();
  const pending = new PendingForward(host, conn, reject, destination, forward);
  const durable = host.beforeForward('ssh.forward', { destination, forward, state: 'open' });
  const go = () => open(host, pending, accept, info);
  if (durable)
    durable.then(go, (e: Error) => {
      if (pending.settle()) unrecorded(e.message);
    });
  else go();
}

/**
 * A forward from its opening record until its outcome is recorded. Registered with the session at once:
 * the session ending meanwhile (the client gone, a terminate) records the failure and refuses the channel
 * instead of leaving an `open` record whose outcome would come after session.end, if ever.
 */
class PendingForward {
  private settled = false;
  private resolveEnded!: () => void;
  /** Set once the channel is open: cuts it (its close record follows). */
  private cut: (() => void) | undefined;

  constructor(
    private readonly host: ChannelHost,
    private readonly conn: unknown,
    private readonly reject: () => void,
    readonly destination: string,
    readonly forward: string,
  ) {
    host.forwardOpened(() => this.sessionEnding(), new Promise<void>((r) => (this.resolveEnded = r)));
  }

  get done(): boolean {
    return this.settled;
  }

  /** The outcome is (about to be) on record: true the first time only. */
  settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.resolveEnded();
    return true;
  }

  /** The channel is open: the session ending now cuts it. */
  opened(cut: () => void): void {
    this.cut = cut;
  }

  /** Not opened: the failure on record, the client told (when it still listens). */
  fail(reason: string, code: number, text: string, error?: string): void {
    if (this.settled) return;
    this.host.emit('ssh.forward', 'failure', { destination: this.destination, forward: this.forward, reason, ...(error ? { error } : {}) });
    this.settle();
    try {
      rejectChannelOpen(this.conn, this.reject, code, text);
    } catch {
      // The client connection is already gone.
    }
  }

  private sessionEnding(): void {
    if (this.cut) return this.cut();
    this.fail('the session is ending', OPEN_ADMINISTRATIVELY_PROHIBITED, `vigil: forwarding to ${this.destination} refused: the session is ending`);
  }
}

function open(host: ChannelHost, pending: PendingForward, accept: () => ssh2.ServerChannel, info: TcpipInfo): void {
  const { destination, forward } = pending;
  if (pending.done) return;
  if (host.ending) return pending.fail('the session is ending', OPEN_ADMINISTRATIVELY_PROHIBITED, `vigil: forwarding to ${destination} refused: the session is ending`);
  host.backend.forwardOut(info.srcIP || '127.0.0.1', info.srcPort || 0, info.destIP, info.destPort, (err, remote) => {
    // The session ended while the target was connecting: that outcome is already on record.
    if (pending.done) return void remote?.close();
    if (err || host.ending) {
      remote?.close();
      if (!err) return pending.fail('the session is ending', OPEN_ADMINISTRATIVELY_PROHIBITED, `vigil: forwarding to ${destination} refused: the session is ending`);
      // The target's own words (OpenSSH: "Connection refused") are about the destination, not a secret.
      return pending.fail('target could not open the destination', OPEN_CONNECT_FAILED, `vigil: ${host.target.name} could not open ${destination}${err.message ? `: ${err.message}` : ''}`, err.message);
    }
    const local = accept();
    const stats = host.session.stats;
    let fromClient = 0;
    let toClient = 0;
    let lost = false;
    /** The audit log failed: this forward relays nothing more, and the session ends (as sessions do). */
    const healthy = (): boolean => {
      if (host.auditHealthy) return true;
      if (!lost) {
        lost = true;
        done();
        host.terminateSession('audit_unavailable', 'vigil cannot write its audit log; the session is closed.');
      }
      return false;
    };
    relay(local, remote, (c) => {
      if (!healthy()) return 'drop';
      fromClient += c.length;
      stats.bytesFromClient += c.length;
      host.touch();
    }, () => remote.end());
    // A client that stopped reading: the destination is not read meanwhile (bounded memory); after
    // slow_clients.write_stall_timeout this forward is closed (as a session channel's session would be).
    const stallMs = host.services.config.slow_clients.write_stall_timeout;
    let stallTimer: NodeJS.Timeout | undefined;
    const onBlocked = (blocked: boolean) => {
      clearTimeout(stallTimer);
      stallTimer = undefined;
      if (blocked && stallMs > 0) {
        stallTimer = setTimeout(() => done('write_stall'), stallMs);
        stallTimer.unref();
      }
    };
    relay(remote, local, (c) => {
      if (!healthy()) return 'drop';
      toClient += c.length;
      stats.bytesToClient += c.length;
      host.touch();
    }, () => local.end(), undefined, onBlocked);
    let reported = false;
    const done = (reason?: 'write_stall') => {
      if (reported) return;
      reported = true;
      clearTimeout(stallTimer);
      local.close();
      remote.close();
      host.emit('ssh.forward', 'success', { destination, forward, state: 'closed', bytes_from_client: fromClient, bytes_to_client: toClient, ...(reason ? { reason } : {}) });
      pending.settle();
    };
    // session.end waits for the close record; the session ending closes the forward.
    pending.opened(done);
    local.on('close', () => done());
    remote.on('close', () => done());
    local.on('error', () => {});
    remote.on('error', () => {});
  });
}

/** Client-given names go on record bounded: a socket path or address is short, a flood is not. */
const recorded = (s: string): string => s.slice(0, 256);

/**
 * What a refused remote forward (`ssh -R`: tcpip-forward, streamlocal-forward@openssh.com) asked vigil to
 * listen on, for its `ssh.request` event: `bind` is `ADDR:PORT` or the socket path.
 */
export function remoteForwardDetails(info: unknown): { bind?: string } {
  const i = (info ?? {}) as { bindAddr?: unknown; bindPort?: unknown; socketPath?: unknown };
  if (typeof i.socketPath === 'string') return { bind: recorded(i.socketPath) };
  if (typeof i.bindAddr === 'string') return { bind: recorded(`${i.bindAddr}:${String(i.bindPort)}`) };
  return {};
}

/** The socket a refused unix socket forward (`ssh -L PORT:/path`, direct-streamlocal) asked for. */
export function streamlocalDestination(info: unknown): string {
  const path = (info as { socketPath?: unknown } | undefined)?.socketPath;
  return typeof path === 'string' ? recorded(path) : 'unix socket';
}
