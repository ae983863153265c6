import { describe, expect, it } from 'vitest';
import { parseProxyHeader, V2_MAX } from '../../src/gateway/proxy-protocol.ts';

/** The PROXY protocol parser: the header formats of HAProxy's spec, split at every byte, and refusals. */
const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

function v2(cmd: number, fam: number, body: Buffer): Buffer {
  const h = Buffer.alloc(16);
  SIG.copy(h);
  h[12] = 0x20 | cmd;
  h[13] = fam;
  h.writeUInt16BE(body.length, 14);
  return Buffer.concat([h, body]);
}
function v4body(src: number[], dst: number[], sport: number, dport: number, tlv = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from(src).copy(b, 0);
  Buffer.from(dst).copy(b, 4);
  b.writeUInt16BE(sport, 8);
  b.writeUInt16BE(dport, 10);
  return Buffer.concat([b, tlv]);
}
const startup = Buffer.from('0000000804d2162f', 'hex'); // what follows the header: a client's first bytes

describe('PROXY protocol parser', () => {
  it.each([
    ['v1 TCP4', Buffer.from('PROXY TCP4 203.0.113.9 10.0.0.5 51234 5432\r\n'), { version: 1, source: { ip: '203.0.113.9', port: 51234 } }],
    ['v1 TCP6', Buffer.from('PROXY TCP6 2001:db8::9 2001:db8::1 40000 2222\r\n'), { version: 1, source: { ip: '2001:db8::9', port: 40000 } }],
    ['v1 UNKNOWN', Buffer.from('PROXY UNKNOWN\r\n'), { version: 1, source: undefined }],
    ['v2 TCP4', v2(1, 0x11, v4body([198, 51, 100, 7], [10, 0, 0, 5], 61000, 3306)), { version: 2, source: { ip: '198.51.100.7', port: 61000 } }],
    ['v2 TCP4 with TLVs', v2(1, 0x11, v4body([198, 51, 100, 8], [10, 0, 0, 5], 1, 3306, Buffer.from('0400050102030405', 'hex'))), { version: 2, source: { ip: '198.51.100.8', port: 1 } }],
    ['v2 LOCAL (balancer health check)', v2(0, 0x00, Buffer.alloc(0)), { version: 2, source: undefined }],
  ])('%s, whole and split at every byte', (_name, header, want) => {
    const stream = Buffer.concat([header, startup]);
    const whole = parseProxyHeader(stream);
    expect(whole).toEqual({ kind: 'ok', length: header.length, ...want });
    // Every proper prefix is incomplete, never a wrong verdict; the bytes after the header are not eaten.
    for (let i = 1; i < header.length; i++) expect(parseProxyHeader(stream.subarray(0, i)).kind).toBe('incomplete');
  });

  it('v2 TCP6, including a v4-mapped address as Node writes it', () => {
    const body = Buffer.alloc(36);
    Buffer.from('20010db8000000000000000000000009', 'hex').copy(body, 0);
    body.writeUInt16BE(443, 32);
    expect(parseProxyHeader(v2(1, 0x21, body))).toMatchObject({ kind: 'ok', source: { ip: '2001:db8::9', port: 443 } });
    Buffer.from('00000000000000000000ffff7f000001', 'hex').copy(body, 0);
    expect(parseProxyHeader(v2(1, 0x21, body))).toMatchObject({ source: { ip: '::ffff:127.0.0.1' } });
  });

  it.each([
    ['a client speaking its own protocol', startup, /no PROXY protocol header/],
    ['an SSH identification', Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'), /no PROXY protocol header/],
    ['v1 without CRLF within 107 bytes', Buffer.from('PROXY TCP4 ' + '1'.repeat(120)), /longer than 107/],
    ['v1 bad family', Buffer.from('PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n'), /TCP4\|TCP6/],
    ['v1 family and address disagree', Buffer.from('PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n'), /not TCP4/],
    ['v1 port out of range', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n'), /bad port/],
    ['v1 leading zero port', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n'), /bad port/],
    ['v2 wrong version', Buffer.concat([SIG, Buffer.from([0x11, 0x11, 0, 0])]), /version is not 2/],
    ['v2 unknown command', Buffer.concat([SIG, Buffer.from([0x22, 0x11, 0, 0])]), /unknown command/],
    ['v2 UDP', v2(1, 0x12, v4body([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)), /not a TCP stream/],
    ['v2 unix socket', v2(1, 0x31, Buffer.alloc(216)), /address family/],
    ['v2 short IPv4 block', v2(1, 0x11, Buffer.alloc(8)), /too short/],
    ['v2 longer than the limit', Buffer.concat([SIG, Buffer.from([0x21, 0x11]), Buffer.from([(V2_MAX >> 8) & 0xff, V2_MAX & 0xff])]), /longer than/],
  ])('refuses %s', (_name, bytes, reason) => {
    const r = parseProxyHeader(bytes);
    expect(r.kind).toBe('invalid');
    expect(r.kind === 'invalid' && r.reason).toMatch(reason);
  });
});
