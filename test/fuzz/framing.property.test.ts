import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { MessageFramer } from '../../proxies/postgres/framing.ts';
import { encodeMessage } from '../../proxies/postgres/frontend.ts';
import { encodePacket, PacketFramer, PacketScanner, type ScanSink } from '../../proxies/mysql/framing.ts';
import { SftpFramer } from '../../proxies/ssh/sftp/framer.ts';
import { ProtocolError } from '../../src/errors.ts';
import { SftpDecodeError } from '../../proxies/ssh/sftp/errors.ts';

/**
 * Split-invariance of the three framers that cut untrusted byte streams (Postgres messages, MySQL
 * packets, SFTP packets): the messages cut from a stream do not depend on where TCP (or SSH channel
 * data) happened to cut it. For streams built from messages, framing returns exactly those messages
 * (decode(encode(x)) = x) for a cut at every byte offset and for random multi-cuts; for arbitrary
 * bytes (bad lengths, oversized packets), the messages before the failure and the failure code are
 * the same however the stream is cut.
 */

type Result = { msgs: string[]; error?: string };

/** Every single cut, plus the stream byte by byte. */
function cutsOf(len: number): number[][] {
  const out: number[][] = [[]];
  for (let i = 1; i < len; i++) out.push([i]);
  out.push(Array.from({ length: Math.max(0, len - 1) }, (_, i) => i + 1));
  return out;
}

function chunks(data: Buffer, cuts: number[]): Buffer[] {
  const sorted = [...new Set(cuts.filter((c) => c > 0 && c < data.length))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of sorted) {
    out.push(data.subarray(prev, c));
    prev = c;
  }
  out.push(data.subarray(prev));
  return out;
}

function capture(push: (c: Buffer, out: string[]) => void, parts: Buffer[]): Result {
  const msgs: string[] = [];
  try {
    for (const p of parts) push(p, msgs);
  } catch (err) {
    if (!(err instanceof ProtocolError) && !(err instanceof SftpDecodeError)) throw err;
    return { msgs, error: err.code };
  }
  return { msgs };
}

function pgFrame(parts: Buffer[], untypedFirst = false): Result {
  const f = new MessageFramer({ maxLength: 4096, untyped: untypedFirst, headerOnly: (t) => t === 0x44 });
  return capture((c, out) => void f.push(c, (type, msg, length) => {
    out.push(`${type}:${length}:${msg?.toString('hex') ?? '-'}`);
    if (untypedFirst) f.setTyped();
  }, () => false), parts);
}

function mysqlFrame(parts: Buffer[]): Result {
  const f = new PacketFramer(4096);
  return capture((c, out) => f.push(c, (p) => out.push(`${p.seq}:${p.lastSeq}:${p.payload.toString('hex')}`)), parts);
}

function mysqlScan(parts: Buffer[]): Result {
  const s = new PacketScanner(4096);
  let out: string[] = [];
  const sink: ScanSink = {
    wants: (head) => head !== 0x03,
    packet: (payload, lastSeq) => void out.push(`${lastSeq}:${payload.toString('hex')}`),
    skipped: (head, length, lastSeq) => void out.push(`${lastSeq}:skip:${head}:${length}`),
    countingRows: () => false,
    rows: () => undefined,
  };
  return capture((c, o) => {
    out = o;
    s.push(c, sink);
  }, parts);
}

function sftpFrame(parts: Buffer[]): Result {
  let out: string[] = [];
  const f = new SftpFramer({ maxPacket: 4096, headBytes: 16, streamed: (t) => t === 6, onPacket: (body, len) => void out.push(`${len}:${body.toString('hex')}`) });
  return capture((c, o) => {
    out = o;
    f.push(c);
  }, parts);
}

const body = fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a));
const pgMessages = fc.array(fc.tuple(fc.constantFrom(0x51, 0x50, 0x42, 0x44, 0x53, 0x58, 0x70), body), { maxLength: 6 });
const mysqlPayloads = fc.array(fc.tuple(fc.integer({ min: 0, max: 255 }), body), { maxLength: 6 });
const sftpPackets = fc.array(fc.tuple(fc.constantFrom(1, 3, 5, 6, 101, 103), body), { maxLength: 6 });
const anyBytes = fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a));
const cutList = (len: number) => fc.array(fc.integer({ min: 0, max: Math.max(0, len) }), { maxLength: 8 });

function splitInvariant(frame: (parts: Buffer[]) => Result, data: Buffer, extraCuts: number[]): Result {
  const whole = frame([data]);
  for (const cuts of [...cutsOf(data.length), extraCuts]) expect(frame(chunks(data, cuts)), `cut at ${cuts.slice(0, 8).join(',')}`).toEqual(whole);
  return whole;
}

describe('framers are split-invariant (fast-check)', () => {
  it('Postgres: messages built by encodeMessage come back exactly, however the stream is cut', () => {
    fc.assert(
      fc.property(pgMessages, fc.array(fc.integer({ min: 0, max: 2000 }), { maxLength: 8 }), (msgs, cuts) => {
        const stream = Buffer.concat(msgs.map(([t, b]) => encodeMessage(t, b)));
        const got = splitInvariant((p) => pgFrame(p), stream, cuts);
        expect(got.error).toBeUndefined();
        expect(got.msgs).toEqual(msgs.map(([t, b]) => `${t}:${b.length + 4}:${t === 0x44 ? '-' : encodeMessage(t, b).toString('hex')}`));
      }),
      { numRuns: 150 },
    );
  });

  it('Postgres: arbitrary bytes (startup phase, then typed) give the same messages and the same error wherever cut', () => {
    fc.assert(fc.property(anyBytes, (data) => void splitInvariant((p) => pgFrame(p, true), data, [])), { numRuns: 150 });
  });

  it('MySQL: payloads built by encodePacket come back with their sequence ids, in the framer and the scanner', () => {
    fc.assert(
      fc.property(mysqlPayloads, fc.array(fc.integer({ min: 0, max: 2000 }), { maxLength: 8 }), (packets, cuts) => {
        const stream = Buffer.concat(packets.map(([seq, b]) => encodePacket(seq, b)));
        const framed = splitInvariant(mysqlFrame, stream, cuts);
        expect(framed.error).toBeUndefined();
        expect(framed.msgs).toEqual(packets.map(([seq, b]) => `${seq}:${seq}:${b.toString('hex')}`));
        const scanned = splitInvariant(mysqlScan, stream, cuts);
        expect(scanned.msgs).toEqual(packets.map(([seq, b]) => (b[0] === 0x03 ? `${seq}:skip:3:${b.length}` : `${seq}:${b.toString('hex')}`)));
      }),
      { numRuns: 150 },
    );
  });

  it('MySQL: arbitrary bytes give the same packets and the same error wherever cut', () => {
    fc.assert(
      fc.property(anyBytes, (data) => {
        splitInvariant(mysqlFrame, data, []);
        splitInvariant(mysqlScan, data, []);
      }),
      { numRuns: 150 },
    );
  });

  it('SFTP: packets come back whole (streamed WRITE as its head), however the stream is cut', () => {
    fc.assert(
      fc.property(sftpPackets, cutList(2000), (packets, cuts) => {
        const stream = Buffer.concat(
          packets.map(([type, b]) => {
            const h = Buffer.alloc(5);
            h.writeUInt32BE(b.length + 1, 0);
            h[4] = type;
            return Buffer.concat([h, b]);
          }),
        );
        const got = splitInvariant(sftpFrame, stream, cuts);
        expect(got.error).toBeUndefined();
        expect(got.msgs).toEqual(packets.map(([type, b]) => `${b.length + 1}:${Buffer.concat([Buffer.from([type]), b]).subarray(0, type === 6 ? 16 : undefined).toString('hex')}`));
      }),
      { numRuns: 150 },
    );
  });

  it('SFTP: arbitrary bytes give the same packets and the same error wherever cut', () => {
    fc.assert(fc.property(anyBytes, (data) => void splitInvariant(sftpFrame, data, [])), { numRuns: 150 });
  });
});
