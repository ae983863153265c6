import type net from 'node:net';

/**
 * The client's address for a connection to the API. Normally the socket's peer; behind a trusted load
 * balancer speaking the PROXY protocol it is the address from the header, remembered here against the raw
 * TCP socket. The HTTPS server wraps that socket in a TLSSocket whose `_parent` is the raw one (Node has
 * done so since TLS sockets wrap net sockets; test/core/haproxy.test.ts would catch a change).
 */
const fromHeader = new WeakMap<net.Socket, { ip: string; port: number }>();

export function rememberClientAddress(raw: net.Socket, client: { ip: string; port: number }): void {
  fromHeader.set(raw, client);
}

export function clientAddress(socket: net.Socket): { ip: string; port: number } {
  const raw = (socket as net.Socket & { _parent?: net.Socket })._parent;
  return fromHeader.get(socket) ?? (raw && fromHeader.get(raw)) ?? { ip: socket.remoteAddress ?? 'unknown', port: socket.remotePort ?? 0 };
}
