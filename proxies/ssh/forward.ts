import type ssh2 from 'ssh2';
import type { ChannelHost } from './host.ts';
import { sshFields } from './backend.ts';
import { relay } from './relay.ts';

export interface TcpipInfo {
  srcIP: string;
  srcPort: number;
  destIP: string;
  destPort: number;
}

/** Why a direct-tcpip request is not allowed, or undefined when the certificate, role and target all allow it. */
export function forwardRefusal(host: Pick<ChannelHost, 'principal' | 'target'>, rolePermits: boolean): string | undefined {
  if (!host.principal.extensions.includes('permit-port-forwarding')) return 'certificate lacks permit-port-forwarding';
  if (!rolePermits) return 'no role allows port forwarding';
  if (!sshFields(host.target).port_forwarding) return 'target does not allow port forwarding';
  return undefined;
}

/**
 * `ssh -L`: open the same destination from the target (forwardOut on the backend connection) and relay
 * bytes with backpressure. One `ssh.forward` event per request: refused, failed, or finished with byte counts.
 */
export function handleDirectTcpip(
  host: ChannelHost,
  rolePermits: boolean,
  accept: () => ssh2.ServerChannel,
  reject: () => void,
  info: TcpipInfo,
): void {
  const destination = `${info.destIP}:${info.destPort}`;
  const refusal = host.ending ? 'session ending' : forwardRefusal(host, rolePermits);
  if (refusal) {
    host.emit('ssh.forward', 'failure', { destination, reason: refusal });
    return reject();
  }
  host.backend.forwardOut(info.srcIP || '127.0.0.1', info.srcPort || 0, info.destIP, info.destPort, (err, remote) => {
    if (err || host.ending) {
      remote?.close();
      host.emit('ssh.forward', 'failure', { destination, reason: 'target could not open the destination', error: err?.message });
      return reject();
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
