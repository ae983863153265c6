import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { waitFor } from '../support/tmp.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * The PROXY protocol on the protocol listeners, as an attacker and an operator at shutdown see it:
 * a header from a peer that is not a trusted balancer is never honoured and is recorded with the peer's
 * own address; a balancer connection still awaiting its header when the listener closes is not taken.
 */
const BALANCER = '127.0.0.3';
const SPOOFED = '203.0.113.66';
const V1 = Buffer.from(`PROXY TCP4 ${SPOOFED} 127.0.0.1 40000 5432\r\n`);
const V2 = (() => {
  const h = Buffer.from('0d0a0d0a000d0a515549540a21110000', 'hex');
  const body = Buffer.from([203, 0, 113, 66, 127, 0, 0, 1, 0x9c, 0x40, 0x15, 0x38]);
  h.writeUInt16BE(body.length, 14);
  return Buffer.concat([h, body]);
})();
const pp = { trusted: [BALANCER], header_timeout: '20s' };

type Conn = { s: net.Socket; reply: () => Buffer; closed: () => boolean };
async function connect(port: number, localAddress: string): Promise<Conn> {
  const s = net.connect({ port, host: '127.0.0.1', localAddress });
  await new Promise((r, j) => s.once('connect', r).once('error', j));
  let reply = Buffer.alloc(0);
  let closed = false;
  s.on('data', (d) => (reply = Buffer.concat([reply, d])));
  s.on('error', () => {});
  s.on('close', () => (closed = true));
  return { s, reply: () => reply, closed: () => closed };
}

describe('a PROXY header from a peer that is not a trusted balancer', () => {
  let tg: TestGateway;
  beforeAll(async () => {
    // mysql has no proxy_protocol section: a header there is a balancer misconfiguration, also recorded.
    tg = await startTestGateway({ ssh: { listen: '127.0.0.1:0', proxy_protocol: pp }, postgres: { listen: '127.0.0.1:0', proxy_protocol: pp }, pre_auth: { handshake_timeout: '3s' } });
  }, 60_000);
  afterAll(async () => tg?.stop());

  it.each([
    ['ssh', 'v1', V1, /PROXY v1 header from 127\.0\.0\.1, which is not a trusted balancer/],
    ['ssh', 'v2', V2, /PROXY v2 header from 127\.0\.0\.1, which is not a trusted balancer/],
    ['postgres', 'v1', V1, /PROXY v1 header from 127\.0\.0\.1, which is not a trusted balancer/],
    ['postgres', 'v2', V2, /PROXY v2 header from 127\.0\.0\.1, which is not a trusted balancer/],
    ['mysql', 'v1', V1, /no proxy_protocol section/],
    ['mysql', 'v2', V2, /no proxy_protocol section/],
  ])('%s, PROXY %s: refused, recorded with the peer address, never with the claimed one', async (listener, _v, header, detail) => {
    const before = tg.events.length;
    const c = await connect(tg.ports[listener], '127.0.0.1');
    // Split at every byte boundary of the signature: the watch must still see it.
    for (let i = 0; i < 12; i++) c.s.write(header.subarray(i, i + 1));
    c.s.write(header.subarray(12));
    const isNew = (e: AuditEvent) => tg.events.indexOf(e) >= before;
    const ev = await tg.waitForEvent((e) => isNew(e) && e.type === 'auth.failure' && e.target.protocol === listener && (e.details as { reason?: string }).reason === 'proxy_protocol');
    expect(ev.source.ip).toBe('127.0.0.1');
    expect(String((ev.details as { detail?: string }).detail)).toMatch(detail);
    await waitFor(() => c.closed(), 15_000, 'the connection closed by the protocol decoder');
    expect(tg.events.slice(before).some((e) => e.source.ip === SPOOFED)).toBe(false);
  }, 30_000);

  it('ordinary clients are not taken for a header (the watch lets go at the first byte that differs)', async () => {
    const before = tg.events.length;
    const c = await connect(tg.ports.postgres, '127.0.0.1');
    c.s.write(Buffer.from('0000000804d2162f', 'hex')); // SSLRequest
    await waitFor(() => c.reply().length > 0, 10_000, 'the SSLRequest answer');
    expect(c.reply().toString('latin1')).toBe('S');
    c.s.destroy();
    expect(tg.events.slice(before).some((e) => (e.details as { reason?: string }).reason === 'proxy_protocol')).toBe(false);
  });
});

describe('shutdown while a balancer connection awaits its header', () => {
  it('is not handed to a closed proxy after the listener closed (nor answered once the audit log is sealed)', async () => {
    const tg = await startTestGateway({ ssh: { enabled: false }, postgres: { listen: '127.0.0.1:0', proxy_protocol: pp }, mysql: { listen: '127.0.0.1:0', proxy_protocol: pp }, api: { listen: '127.0.0.1:0', proxy_protocol: pp } });
    const pg = await connect(tg.ports.postgres, BALANCER);
    const my = await connect(tg.ports.mysql, BALANCER);
    const api = await connect(tg.ports.api, BALANCER);
    pg.s.write('PROXY TCP4 203.0.113.7 ');
    my.s.write('PROXY TCP4 203.0.113.8 ');
    api.s.write('PROXY TCP4 203.0.113.9 ');
    await tg.stop();
    expect(tg.events.at(-1)?.type).toBe('gateway.stopped');
    pg.s.write(Buffer.concat([Buffer.from('127.0.0.1 40000 5432\r\n'), Buffer.from('0000000804d2162f', 'hex')]));
    my.s.write('127.0.0.1 40000 3306\r\n');
    // The rest of the API header, then a TLS handshake: a stopped gateway must not answer /healthz "ok".
    api.s.write('127.0.0.1 40000 443\r\n');
    const t = tls.connect({ socket: api.s, rejectUnauthorized: false });
    let body = '';
    t.on('error', () => {});
    t.on('secureConnect', () => t.write('GET /healthz HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\n\r\n'));
    t.on('data', (d) => (body += d));
    await waitFor(() => pg.closed() && my.closed() && api.closed(), 15_000, 'every connection closed');
    expect(pg.reply().toString('latin1')).toBe('');
    expect(my.reply().length).toBe(0);
    expect(body).toBe('');
  }, 60_000);
});
