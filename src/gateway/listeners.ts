import net from 'node:net';
import type { Logger } from 'pino';
import { newId } from '../ids.ts';
import type { ProxyInstance, ListenerSection, ProxyModule } from './proxy.ts';
import type { GatewayServices } from './services.ts';
import { applyKeepAlive } from './slow-clients.ts';
import { balancerCheck, readProxyHeader, recordProxyHeaderRefusal, watchForUnexpectedHeader } from './proxy-protocol.ts';

export interface ProtocolListeners {
  servers: net.Server[];
  proxies: ProxyInstance[];
  /** Bound ports by proxy name. */
  ports: Record<string, number>;
}

function listenOn(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

/**
 * Build every enabled proxy and open its listener. In a cluster worker (gateway.workers > 1) `listen` goes
 * through the primary, which shares one listening socket among the workers. On failure, what was opened
 * is pushed into `into` so the caller closes it.
 */
export async function openProtocolListeners(services: GatewayServices, mods: readonly ProxyModule<any>[], log: Logger, into: ProtocolListeners): Promise<ProtocolListeners> {
  const { config } = services;
  const { servers, proxies, ports } = into;
  for (const mod of mods) {
    const section = (config as Record<string, unknown>)[mod.name] as ListenerSection;
    if (!section?.enabled) continue;
    const proxy = await mod.create(services, section as never);
    proxies.push(proxy);
    const plog = log.child({ proxy: mod.name });
    const fromBalancer = balancerCheck(section);
    const hand = (socket: net.Socket, remote: { ip: string; port: number }) => {
      const id = newId();
      try {
        proxy.handleConnection(socket, { id, remote, log: plog.child({ conn: id }) });
      } catch (e) {
        plog.error({ err: e }, 'proxy failed to take a connection');
        socket.destroy();
      }
    };
    const server = net.createServer({ noDelay: true }, (socket) => {
      // One bad connection must never take the process down: errors are handled per socket.
      socket.on('error', (e) => plog.debug({ err: e.message }, 'socket error'));
      // A client that vanished without a FIN (half-open) is found by keepalive probes, not left forever.
      applyKeepAlive(socket, services.config.slow_clients.keepalive);
      const peer = { ip: socket.remoteAddress ?? 'unknown', port: socket.remotePort ?? 0 };
      if (!fromBalancer(peer.ip)) {
        watchForUnexpectedHeader(socket, (version) => {
          const detail = section.proxy_protocol
            ? `PROXY v${version} header from ${peer.ip}, which is not a trusted balancer (proxy_protocol.trusted): not honoured`
            : `PROXY v${version} header, but this listener has no proxy_protocol section: not honoured`;
          recordProxyHeaderRefusal(services, mod.name, peer, detail);
          plog.warn({ source: peer.ip, version }, 'PROXY protocol header from a source that is not a trusted balancer; not honoured');
        });
        return hand(socket, peer);
      }
      void readProxyHeader(socket, section.proxy_protocol!.header_timeout).then((h) => {
        if (socket.destroyed) return;
        // The listener closed (shutdown) while the header was awaited: the proxy is closed or closing, the
        // audit log may be sealed; the connection is not taken.
        if (!server.listening) return void socket.destroy();
        if (!h.ok) {
          recordProxyHeaderRefusal(services, mod.name, peer, h.reason);
          plog.info({ balancer: peer.ip, reason: h.reason }, 'PROXY protocol header refused; connection closed');
          return void socket.destroy();
        }
        hand(socket, h.source ?? peer);
      });
    });
    server.on('error', (e) => plog.error({ err: e }, 'listener error'));
    ports[mod.name] = await listenOn(server, section.listen.host, section.listen.port);
    servers.push(server);
    plog.info({ listen: `${section.listen.host}:${ports[mod.name]}` }, `${mod.name} listener ready`);
  }
  return into;
}
