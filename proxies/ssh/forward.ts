import type ssh2 from 'ssh2';
import type { ChannelHost } from './host.ts';
import { sshFields } from './backend.ts';
import { relay } from './relay.ts';
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
 * bytes with backpressure. One `ssh.forward` event per request: refused, failed, or finished with byte counts.
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
  host.backend.forwardOut(info.srcIP || '127.0.0.1', info.srcPort || 0, info.destIP, info.destPort, (err, remote) => {
    if (err || host.ending) {
      remote?.close();
      host.emit('ssh.forward', 'failure', { destination, reason: 'target could not open the destination', error: err?.message });
      // The target's own words (OpenSSH: "Connection refused") are about the destination, not a secret.
      return rejectChannelOpen(conn, reject, OPEN_CONNECT_FAILED, `vigil: ${host.target.name} could not open ${destination}${err?.message ? `: ${err.message}` : ''}`);
    }
    const local = accept();
    const stats = host.session.stats;
    let fromClient = 0;
    let toClient = 0;
    relay(local, remote, (c) => {
      fromClient += c.length;
      stats.bytesFromClient += c.length;
      host.touch();
    }, () => remote.end());
    relay(remote, local, (c) => {
      toClient += c.length;
      stats.bytesToClient += c.length;
      host.touch();
    }, () => local.end());
    let reported = false;
    const done = () => {
      if (reported) return;
      reported = true;
      local.close();
      remote.close();
      host.emit('ssh.forward', 'success', { destination, bytes_from_client: fromClient, bytes_to_client: toClient });
    };
    local.on('close', done);
    remote.on('close', done);
    local.on('error', () => {});
    remote.on('error', () => {});
  });
}
