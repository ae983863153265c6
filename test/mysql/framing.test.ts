import { describe, it, expect } from 'vitest';
import { PacketFramer, encodePacket, MAX_WIRE_PAYLOAD, type Packet } from '../../proxies/mysql/framing.ts';

/** Feed `bytes` to a fresh framer split into two pieces at `at`, return the packets. */
function frameSplit(bytes: Buffer, at: number, max = 1 << 26): Packet[] {
  const f = new PacketFramer(max);
  const out: Packet[] = [];
  f.push(bytes.subarray(0, at), (p) => out.push({ ...p, payload: Buffer.from(p.payload) }));
  f.push(bytes.subarray(at), (p) => out.push({ ...p, payload: Buffer.from(p.payload) }));
  return out;
}

describe('mysql framing', () => {
  it('frames packets identically at every split point', () => {
    const wire = Buffer.concat([encodePacket(0, Buffer.from('\x03SELECT 1')), encodePacket(1, Buffer.alloc(0)), encodePacket(7, Buffer.from([0x0e]))]);
    for (let at = 0; at <= wire.length; at++) {
      const got = frameSplit(wire, at);
      expect(got.map((p) => [p.seq, p.payload.toString('latin1')])).toEqual([
        [0, '\x03SELECT 1'],
        [1, ''],
        [7, '\x0e'],
      ]);
    }
  });

  it('feeds byte by byte', () => {
    const wire = encodePacket(3, Buffer.from('hello'));
    const f = new PacketFramer(100);
    const out: Packet[] = [];
    for (const b of wire) f.push(Buffer.from([b]), (p) => out.push(p));
    expect(out).toHaveLength(1);
    expect(out[0]!.payload.toString()).toBe('hello');
    expect(f.pendingBytes).toBe(0);
  });

  it('reassembles payloads of 16 MiB and more from continuation packets, at split points around the boundaries', () => {
    const payload = Buffer.alloc(MAX_WIRE_PAYLOAD * 2 + 10);
    for (let i = 0; i < payload.length; i += 4096) payload[i] = (i / 4096) & 0xff;
    const wire = encodePacket(0, payload);
    expect(wire.length).toBe(payload.length + 12);
    expect(wire[3]).toBe(0);
    expect(wire[4 + MAX_WIRE_PAYLOAD + 3]).toBe(1);
    const points = [0, 1, 3, 4, 5, MAX_WIRE_PAYLOAD + 3, MAX_WIRE_PAYLOAD + 4, MAX_WIRE_PAYLOAD + 6, MAX_WIRE_PAYLOAD + 8, MAX_WIRE_PAYLOAD * 2 + 8, wire.length - 1, wire.length];
    for (const at of points) {
      const got = frameSplit(wire, at);
      expect(got).toHaveLength(1);
      expect(got[0]!.seq).toBe(0);
      expect(got[0]!.lastSeq).toBe(2);
      expect(got[0]!.payload.equals(payload)).toBe(true);
    }
  });

  it('an exact multiple of 16 MiB - 1 ends with an empty packet', () => {
    const payload = Buffer.alloc(MAX_WIRE_PAYLOAD, 7);
    const wire = encodePacket(5, payload);
    expect(wire.length).toBe(MAX_WIRE_PAYLOAD + 8);
    const got = frameSplit(wire, 100);
    expect(got[0]!.payload.length).toBe(MAX_WIRE_PAYLOAD);
    expect(got[0]!.lastSeq).toBe(6);
  });

  it('refuses out-of-sequence continuation packets', () => {
    const first = Buffer.alloc(4 + MAX_WIRE_PAYLOAD);
    first.writeUIntLE(MAX_WIRE_PAYLOAD, 0, 3);
    first[3] = 0;
    const bad = encodePacket(5, Buffer.from('x'));
    const f = new PacketFramer(1 << 26);
    expect(() => f.push(Buffer.concat([first, bad]), () => {})).toThrow(/out-of-sequence/);
  });

  it('refuses oversized packets as soon as the header says so', () => {
    const f = new PacketFramer(1000);
    const head = Buffer.from([0xe9, 0x03, 0x00, 0x00]); // 1001 bytes announced
    expect(() => f.push(head, () => {})).toThrow(expect.objectContaining({ code: 'VIGIL_MYSQL_OVERSIZED' }));
  });

  it('keeps a truncated packet pending', () => {
    const f = new PacketFramer(100);
    let n = 0;
    f.push(encodePacket(0, Buffer.from('abcdef')).subarray(0, 7), () => n++);
    expect(n).toBe(0);
    expect(f.pendingBytes).toBe(7);
  });

  it('hands out the original wire bytes of single packets, at every split point', () => {
    const a = encodePacket(0, Buffer.from('\x03SELECT 1'));
    const b = encodePacket(4, Buffer.from('\x0e'));
    const wire = Buffer.concat([a, b]);
    for (let at = 0; at <= wire.length; at++) {
      const f = new PacketFramer(100);
      const got: Packet[] = [];
      f.push(wire.subarray(0, at), (p) => got.push(p));
      f.push(wire.subarray(at), (p) => got.push(p));
      // Whatever path framed them, re-encoding gives the same bytes the wire view (when present) shows.
      expect(got.map((p) => (p.wire ?? encodePacket(p.seq, p.payload)).toString('latin1'))).toEqual([a.toString('latin1'), b.toString('latin1')]);
    }
    const f = new PacketFramer(100);
    f.push(wire, (p) => expect(p.wire).toBeDefined());
  });

  it('takeRemainder inside the callback returns the bytes after the packet and stops framing', () => {
    const hello = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]);
    const wire = Buffer.concat([encodePacket(1, Buffer.from('ssl-request')), hello]);
    const f = new PacketFramer(100);
    let rest: Buffer | undefined;
    let n = 0;
    f.push(wire, () => {
      n++;
      rest = f.takeRemainder();
    });
    expect(n).toBe(1);
    expect(rest!.equals(hello)).toBe(true);
    expect(f.pendingBytes).toBe(0);
  });
});
