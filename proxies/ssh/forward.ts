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
 * policy is one `ssh.forward` failure naming the rule.
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
  const durable = host.beforeForward('ssh.forward', { destination, forward, state: 'open' });
  if (durable) durable.then(() => open(host, conn, accept, reject, info, destination, forward), (e: Error) => unrecorded(e.message));
  else open(host, conn, accept, reject, info, destination, forward);
}

function open(host: ChannelHost, conn: unknown, accept: () => ssh2.ServerChannel, reject: () => void, info: TcpipInfo, destination: string, forward: string): void {
  if (host.ending) {
    host.emit('ssh.forward', 'failure', { destination, forward, reason: 'the session is ending' });
    return rejectChannelOpen(conn, reject, OPEN_ADMINISTRATIVELY_PROHIBITED, `vigil: forwarding to ${destination} refused: the session is ending`);
  }
  host.backend.forwardOut(info.srcIP || '127.0.0.1', info.srcPort || 0, info.destIP, info.destPort, (err, remote) => {
    if (err || host.ending) {
      remote?.close();
      host.emit('ssh.forward', 'failure', { destination, forward, reason: err ? 'target could not open the destination' : 'the session is ending', error: err?.message });
      // The target's own words (OpenSSH: "Connection refused") are about the destination, not a secret.
      return rejectChannelOpen(conn, reject, OPEN_CONNECT_FAILED, `vigil: ${host.target.name} could not open ${destination}${err?.message ? `: ${err.message}` : ''}`);
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
    relay(remote, local, (c) => {
      if (!healthy()) return 'drop';
      toClient += c.length;
      stats.bytesToClient += c.length;
      host.touch();
    }, () => local.end());
    let reported = false;
    let ended!: () => void;
    const done = () => {
      if (reported) return;
      reported = true;
      local.close();
      remote.close();
      host.emit('ssh.forward', 'success', { destination, forward, state: 'closed', bytes_from_client: fromClient, bytes_to_client: toClient });
      ended();
    };
    // session.end waits for the close record; the session ending closes the forward.
    host.forwardOpened(done, new Promise<void>((r) => (ended = r)));
    local.on('close', done);
    remote.on('close', done);
    local.on('error', () => {});
    remote.on('error', () => {});
  });
}
