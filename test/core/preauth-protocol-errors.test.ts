import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * What a client sends before authentication that cannot be decoded (another protocol, a malformed or
 * oversized handshake message) is refused the protocol's way and recorded: auth.failure, reason
 * protocol_error, with the phase and the sender's address. A client that merely connects and leaves is not.
 */

/** Connect from `localAddress`, send `bytes`, and wait for the gateway to close the connection. */
async function sendAndWaitClose(port: number, bytes: Buffer, localAddress: string): Promise<void> {
  const s = net.connect({ host: '127.0.0.1', port, localAddress });
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  s.resume(); // read (and drop) what the gateway answers, or its close is never seen
  s.write(bytes);
  await new Promise((r) => s.once('close', r));
}

const protocolErrorFrom = (ip: string) => (e: AuditEvent) => e.type === 'auth.failure' && e.details.reason === 'protocol_error' && e.source.ip === ip;

describe('pre-authentication protocol errors are recorded', () => {
  let tg: TestGateway;
  beforeAll(async () => {
    tg = await startTestGateway();
  }, 60_000);
  afterAll(async () => {
    await tg?.stop();
  });

  it('ssh: another protocol, an unsupported version, a malformed packet after a good identification', async () => {
    const cases: [string, Buffer, RegExp, string][] = [
      ['127.0.9.1', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), /not an SSH identification line/, 'ident'],
      ['127.0.9.2', Buffer.from('SSH-1.5-OldClient\r\n'), /unsupported SSH identification/, 'ident'],
      // A packet length of 0xffffffff after a valid identification: ssh2 refuses it in key exchange.
      ['127.0.9.3', Buffer.concat([Buffer.from('SSH-2.0-probe\r\n'), Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 0x02, 0x03])]), /Bad packet length/, 'kex'],
    ];
    for (const [ip, bytes, error, phase] of cases) {
      await sendAndWaitClose(tg.ports.ssh!, bytes, ip);
      const ev = await tg.waitForEvent(protocolErrorFrom(ip));
      expect(ev.outcome).toBe('failure');
      expect(ev.target).toMatchObject({ protocol: 'ssh' });
      expect(ev.details).toMatchObject({ phase });
      expect(String(ev.details.error)).toMatch(error);
    }
  }, 60_000);

  it('postgres: another protocol (read as an oversized startup) and a startup packet of an unknown kind', async () => {
    await sendAndWaitClose(tg.ports.postgres!, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), '127.0.9.11');
    const http = await tg.waitForEvent(protocolErrorFrom('127.0.9.11'));
    expect(http.target).toMatchObject({ protocol: 'postgres' });
    expect(http.details).toMatchObject({ phase: 'startup' });
    // Length 8, code 1234/5555: no such request (SSLRequest is 1234/5679, GSSENCRequest 1234/5680).
    await sendAndWaitClose(tg.ports.postgres!, Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x15, 0xb3]), '127.0.9.12');
    const unknown = await tg.waitForEvent(protocolErrorFrom('127.0.9.12'));
    expect(unknown.details).toMatchObject({ reason: 'protocol_error', phase: 'startup' });
  }, 60_000);

  it('mysql: a handshake response out of sequence, and one over the pre-authentication size limit', async () => {
    // After the server's greeting (sequence 0) the client's answer is packet 1: 7 is out of sequence.
    const outOfSequence = Buffer.concat([Buffer.from([4, 0, 0, 7]), Buffer.from('junk')]);
    // A packet header announcing 16 MiB - 1 bytes before authentication (pre_auth.max_message_size).
    const oversized = Buffer.from([0xff, 0xff, 0xff, 1]);
    for (const [ip, bytes, error] of [['127.0.9.31', outOfSequence, /out-of-sequence/], ['127.0.9.32', oversized, /exceeds the limit/]] as const) {
      const s = net.connect({ host: '127.0.0.1', port: tg.ports.mysql!, localAddress: ip });
      s.on('error', () => {});
      await new Promise((r) => s.once('data', r)); // the greeting
      s.resume();
      s.write(bytes);
      await new Promise((r) => s.once('close', r));
      const ev = await tg.waitForEvent(protocolErrorFrom(ip));
      expect(ev.target).toMatchObject({ protocol: 'mysql' });
      expect(ev.details).toMatchObject({ phase: 'ssl_request' });
      expect(String(ev.details.error)).toMatch(error);
    }
  }, 60_000);

  it('a connection that opens and closes (a port check) is not recorded as a protocol error', async () => {
    for (const [port, ip] of [[tg.ports.ssh!, '127.0.9.21'], [tg.ports.postgres!, '127.0.9.22']] as const) {
      const s = net.connect({ host: '127.0.0.1', port, localAddress: ip });
      s.on('error', () => {});
      await new Promise((r) => s.once('connect', r));
      s.resume();
      s.end();
      await new Promise((r) => s.once('close', r));
    }
    // A later refusal from another address is recorded: by then the two port checks would have been too.
    await sendAndWaitClose(tg.ports.ssh!, Buffer.from('HELLO\r\n'), '127.0.9.23');
    await tg.waitForEvent(protocolErrorFrom('127.0.9.23'));
    expect(tg.events.filter((e) => e.type === 'auth.failure' && (e.source.ip === '127.0.9.21' || e.source.ip === '127.0.9.22'))).toEqual([]);
  }, 60_000);
});
