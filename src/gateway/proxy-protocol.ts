import net from 'node:net';
import { ipInBlocks, parseCidr, type CidrBlock } from '../identity/cidr.ts';
import type { ListenerSection } from './proxy.ts';
import type { GatewayServices } from './services.ts';

/**
 * The PROXY protocol (HAProxy's spec, versions 1 and 2): a load balancer in front of vigil prefixes each
 * connection with the client's real address. Parsing is pure (bytes in, verdict out); `readProxyHeader`
 * applies it to a socket. Only connections from configured load-balancer addresses are read this way:
 * from anyone else a header would be a forged source address.
 */

export type ProxyHeader =
  | { kind: 'incomplete' }
  | { kind: 'invalid'; reason: string }
  /** `source` is absent for v1 UNKNOWN and v2 LOCAL/UNSPEC (health checks of the balancer itself). */
  | { kind: 'ok'; version: 1 | 2; length: number; source?: { ip: string; port: number } };

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ');
/** v1: the spec's maximum line, CRLF included. */
const V1_MAX = 107;
/** v2: address block plus TLVs; balancers send well under this (AWS and HAProxy TLVs are small). */
export const V2_MAX = 16 + 512;

/** Does `buf` (so far) agree with the start of `sig`? */
function prefixOf(buf: Buffer, sig: Buffer): boolean {
  const n = Math.min(buf.length, sig.length);
  return buf.subarray(0, n).equals(sig.subarray(0, n));
}

export function parseProxyHeader(buf: Buffer): ProxyHeader {
  if (buf.length === 0) return { kind: 'incomplete' };
  if (prefixOf(buf, V2_SIGNATURE)) return buf.length < 16 ? { kind: 'incomplete' } : parseV2(buf);
  if (prefixOf(buf, V1_PREFIX)) return parseV1(buf);
  return { kind: 'invalid', reason: 'no PROXY protocol header' };
}

function parseV1(buf: Buffer): ProxyHeader {
  const end = buf.indexOf('\r\n');
  if (end < 0) return buf.length >= V1_MAX ? { kind: 'invalid', reason: 'v1 header longer than 107 bytes' } : { kind: 'incomplete' };
  if (end + 2 > V1_MAX) return { kind: 'invalid', reason: 'v1 header longer than 107 bytes' };
  const line = buf.subarray(0, end).toString('latin1');
  const parts = line.split(' ');
  if (parts[1] === 'UNKNOWN') return { kind: 'ok', version: 1, length: end + 2 };
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) return { kind: 'invalid', reason: 'v1 header is not "PROXY TCP4|TCP6 src dst sport dport"' };
  const [, fam, src, dst, sport, dport] = parts;
  const family = fam === 'TCP4' ? 4 : 6;
  if (net.isIP(src) !== family || net.isIP(dst) !== family) return { kind: 'invalid', reason: `v1 header: addresses are not ${fam}` };
  const port = (p: string) => (/^(0|[1-9]\d{0,4})$/.test(p) && Number(p) <= 65535 ? Number(p) : undefined);
  const sp = port(sport);
  if (sp === undefined || port(dport) === undefined) return { kind: 'invalid', reason: 'v1 header: bad port' };
  return { kind: 'ok', version: 1, length: end + 2, source: { ip: src, port: sp } };
}

function parseV2(buf: Buffer): ProxyHeader {
  const verCmd = buf[12];
  if (verCmd >> 4 !== 2) return { kind: 'invalid', reason: 'v2 header: version is not 2' };
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return { kind: 'invalid', reason: 'v2 header: unknown command' };
  const fam = buf[13];
  const len = buf.readUInt16BE(14);
  if (16 + len > V2_MAX) return { kind: 'invalid', reason: `v2 header longer than ${V2_MAX} bytes` };
  if (buf.length < 16 + len) return { kind: 'incomplete' };
  const length = 16 + len;
  // LOCAL: the balancer's own connection (health check): the peer address stands.
  if (cmd === 0) return { kind: 'ok', version: 2, length };
  const body = buf.subarray(16, length);
  switch (fam) {
    case 0x00: // UNSPEC
      return { kind: 'ok', version: 2, length };
    case 0x11: // TCP over IPv4
    case 0x12: // UDP over IPv4 — not a stream; refused
      if (fam === 0x12) return { kind: 'invalid', reason: 'v2 header: not a TCP stream' };
      if (len < 12) return { kind: 'invalid', reason: 'v2 header: IPv4 address block too short' };
      return { kind: 'ok', version: 2, length, source: { ip: [...body.subarray(0, 4)].join('.'), port: body.readUInt16BE(8) } };
    case 0x21: {
      if (len < 36) return { kind: 'invalid', reason: 'v2 header: IPv6 address block too short' };
      const words: string[] = [];
      for (let i = 0; i < 16; i += 2) words.push(body.readUInt16BE(i).toString(16));
      return { kind: 'ok', version: 2, length, source: { ip: normalizeV6(words.join(':')), port: body.readUInt16BE(32) } };
    }
    default:
      return { kind: 'invalid', reason: 'v2 header: address family is not TCP over IPv4 or IPv6' };
  }
}

/** `0:0:0:0:0:ffff:7f00:1` → `::ffff:127.0.0.1` as Node writes peer addresses; others via URL canonical form. */
function normalizeV6(full: string): string {
  const canon = new URL(`http://[${full}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canon);
  if (!mapped) return canon;
  const a = parseInt(mapped[1], 16);
  const b = parseInt(mapped[2], 16);
  return `::ffff:${a >> 8}.${a & 255}.${b >> 8}.${b & 255}`;
}

export type HeaderOutcome = { ok: true; source?: { ip: string; port: number } } | { ok: false; reason: string };

/**
 * Read a PROXY header from the start of `socket` (within `timeoutMs`), leaving the bytes after it unread
 * for the proxy that takes the connection over. Resolves `{ok: false}` on a bad or missing header, a
 * timeout or a closed socket; the caller closes the socket.
 */
export function readProxyHeader(socket: net.Socket, timeoutMs: number): Promise<HeaderOutcome> {
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    let settled = false;
    const finish = (r: HeaderOutcome, rest?: Buffer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('readable', onReadable);
      socket.removeListener('close', onClose);
      if (rest && rest.length) socket.unshift(rest);
      resolve(r);
    };
    const onReadable = () => {
      let chunk: Buffer | null;
      while (!settled && (chunk = socket.read() as Buffer | null) !== null) {
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        const h = parseProxyHeader(buf);
        if (h.kind === 'incomplete') continue;
        if (h.kind === 'invalid') return finish({ ok: false, reason: h.reason });
        return finish({ ok: true, source: h.source }, buf.subarray(h.length));
      }
    };
    const onClose = () => finish({ ok: false, reason: 'closed before the PROXY header was complete' });
    const timer = setTimeout(() => finish({ ok: false, reason: `no complete PROXY header within ${timeoutMs} ms` }), timeoutMs);
    timer.unref();
    socket.on('readable', onReadable);
    socket.once('close', onClose);
  });
}

/**
 * Watch the first bytes of a connection that is not read as a balancer's: a PROXY header there is a forged
 * (or misdirected) client address, never honoured. `onHeader` is told so the attempt is recorded; the
 * bytes flow on unchanged, and the protocol's own decoder refuses them with its native error. The tap sits
 * on `push` (below the stream's flowing/paused state) so the proxy reads exactly as it would without it,
 * and it removes itself as soon as the first bytes cannot be a header.
 */
export function watchForUnexpectedHeader(socket: net.Socket, onHeader: (version: 1 | 2) => void): void {
  let seen: Buffer = Buffer.alloc(0);
  const stop = () => delete (socket as { push?: unknown }).push;
  socket.push = function (this: net.Socket, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk === null || chunk === undefined) stop();
    else {
      const bytes = Buffer.isBuffer(chunk) ? chunk : typeof chunk === 'string' ? Buffer.from(chunk, encoding) : Buffer.from(chunk as Uint8Array);
      seen = Buffer.concat([seen, bytes.subarray(0, V2_SIGNATURE.length - seen.length)]);
      const v1 = prefixOf(seen, V1_PREFIX);
      const v2 = prefixOf(seen, V2_SIGNATURE);
      const version = v1 && seen.length >= V1_PREFIX.length ? 1 : v2 && seen.length >= V2_SIGNATURE.length ? 2 : undefined;
      // Decided (a header, or bytes that cannot start one): the tap goes; still a prefix of one: it stays.
      if (version || (!v1 && !v2)) stop();
      if (version) onHeader(version);
    }
    return net.Socket.prototype.push.call(this, chunk, encoding);
  };
}

/** Do these first bytes begin (or could they begin) a PROXY protocol header, v1 or v2? */
export function startsLikeProxyHeader(first: Buffer): boolean {
  return first.length > 0 && (prefixOf(first, V1_PREFIX) || prefixOf(first, V2_SIGNATURE));
}

/** Does a connection from `ip` come from a configured load balancer (and so must start with a header)? */
export function balancerCheck(section: ListenerSection): (ip: string) => boolean {
  const blocks = (section.proxy_protocol?.trusted ?? []).map((c) => parseCidr(c)).filter((b): b is CidrBlock => !!b);
  if (!blocks.length) return () => false;
  return (ip) => ipInBlocks(ip, blocks);
}

/** A trusted balancer's connection without a usable header: an unauthenticated refusal (budgeted like the others). */
export function recordProxyHeaderRefusal(services: GatewayServices, protocol: string, peer: { ip: string; port: number }, detail: string): void {
  const reason = 'proxy_protocol';
  if (services.refusals && !services.refusals.take(protocol, peer.ip, reason)) return;
  services.events
    .emit({ type: 'auth.failure', outcome: 'failure', actor: { user: 'unknown', roles: [] }, source: peer, target: { name: '(none)', protocol }, details: { reason, detail } })
    .catch((e) => services.log.error({ err: (e as Error).message }, 'could not record a PROXY protocol refusal'));
}
