import { describe, expect, it } from 'vitest';
import { ipInBlocks, parseCidr, parseCidrList, parseIp } from '../../src/identity/cidr.ts';

describe('source-address lists', () => {
  it('parses IPv4, IPv6 (with ::, embedded IPv4, zone ids) and folds IPv4-mapped addresses', () => {
    expect(parseIp('10.1.2.3')?.toString('hex')).toBe('0a010203');
    expect(parseIp('::1')?.toString('hex')).toBe('00000000000000000000000000000001');
    expect(parseIp('2001:db8::1:2')?.toString('hex')).toBe('20010db8000000000000000000010002');
    expect(parseIp('fe80::1%eth0')?.length).toBe(16);
    expect(parseIp('::ffff:192.0.2.1')?.toString('hex')).toBe('c0000201');
    for (const bad of ['', '1.2.3', '1.2.3.256', '01.2.3.4', '1::2::3', '1:2:3:4:5:6:7:8:9', '12345::', 'localhost']) expect(parseIp(bad), bad).toBeUndefined();
  });

  it('matches blocks at every prefix length and refuses host bits beyond the prefix', () => {
    const { blocks, invalid } = parseCidrList('10.0.0.0/8,192.168.1.128/25,2001:db8::/33,127.0.0.1');
    expect(invalid).toEqual([]);
    expect(ipInBlocks('10.255.0.1', blocks)).toBe(true);
    expect(ipInBlocks('11.0.0.1', blocks)).toBe(false);
    expect(ipInBlocks('192.168.1.200', blocks)).toBe(true);
    expect(ipInBlocks('192.168.1.127', blocks)).toBe(false);
    expect(ipInBlocks('2001:db8:7fff::1', blocks)).toBe(true);
    expect(ipInBlocks('2001:db8:8000::1', blocks)).toBe(false);
    expect(ipInBlocks('::ffff:127.0.0.1', blocks)).toBe(true);
    expect(ipInBlocks('127.0.0.2', blocks)).toBe(false);
    expect(ipInBlocks('not-an-ip', blocks)).toBe(false);
    expect(parseCidr('10.0.0.1/8')).toBeUndefined();
    expect(parseCidr('10.0.0.0/33')).toBeUndefined();
    expect(parseCidr('::ffff:10.0.0.0/104')).toEqual({ bytes: Buffer.from([10, 0, 0, 0]), prefix: 8 });
    expect(parseCidrList('10.0.0.0/8,,bogus').invalid).toEqual(['', 'bogus']);
    // 0.0.0.0/len holds an address whose only set bit is the first host bit, not one whose only set bit
    // is the last prefix bit
    const withBit = (bit: number) => [0, 1, 2, 3].map((i) => (bit >> 3 === i ? 0x80 >> (bit & 7) : 0)).join('.');
    for (let len = 0; len <= 32; len++) {
      const b = parseCidr(`0.0.0.0/${len}`)!;
      if (len < 32) expect(ipInBlocks(withBit(len), [b]), `/${len} host bit`).toBe(true);
      if (len > 0) expect(ipInBlocks(withBit(len - 1), [b]), `/${len} prefix bit`).toBe(false);
    }
  });
});
