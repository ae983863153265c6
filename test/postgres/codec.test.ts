import { describe, it, expect } from 'vitest';
import { MessageFramer, UNTYPED } from '../../proxies/postgres/framing.ts';
import {
  F, cstr, int16, int32, encodeMessage, encodeStartupMessage, encodeCancelRequest, decodeStartupPacket, decodeBind, decodeParse,
  decodeExecute, decodeQuery, decodeTarget, decodeFunctionCall, SSL_REQUEST_CODE, GSSENC_REQUEST_CODE, encodeSslRequest,
} from '../../proxies/postgres/frontend.ts';
import { ProtocolError } from '../../src/errors.ts';

const parse = (name: string, sql: string, types: number[]) =>
  encodeMessage(F.Parse, Buffer.concat([cstr(name), cstr(sql), int16(types.length), ...types.map(int32)]));
const bind = (portal: string, stmt: string, formats: number[], values: (Buffer | null)[]) =>
  encodeMessage(
    F.Bind,
    Buffer.concat([
      cstr(portal), cstr(stmt), int16(formats.length), ...formats.map(int16), int16(values.length),
      ...values.flatMap((v) => (v === null ? [int32(-1)] : [int32(v.length), v])), int16(0),
    ]),
  );
const execute = (portal: string, max: number) => encodeMessage(F.Execute, Buffer.concat([cstr(portal), int32(max)]));
const query = (sql: string) => encodeMessage(F.Query, cstr(sql));
const copyData = (n: number) => encodeMessage(F.CopyData, Buffer.alloc(n, 0x61));
const sync = () => encodeMessage(F.Sync, Buffer.alloc(0));

/** A frontend stream covering every message shape, with its expected decoding. */
function sampleStream() {
  const msgs = [
    query('SELECT 1; SELECT 2'),
    parse('s1', 'SELECT $1::int, $2', [23, 0]),
    bind('p1', 's1', [1, 0], [int32(42), null]),
    encodeMessage(F.Describe, Buffer.concat([Buffer.from('P'), cstr('p1')])),
    execute('p1', 10),
    copyData(1000),
    encodeMessage(F.CopyDone, Buffer.alloc(0)),
    encodeMessage(F.FunctionCall, Buffer.concat([int32(1598), int16(1), int16(0), int16(1), int32(2), Buffer.from('hi'), int16(0)])),
    encodeMessage(F.Close, Buffer.concat([Buffer.from('S'), cstr('s1')])),
    sync(),
  ];
  return { msgs, stream: Buffer.concat(msgs) };
}

type Seen = { type: number; msg?: string; length: number };

function frame(chunks: Buffer[], headerOnly = (t: number) => t === F.CopyData): Seen[] {
  const f = new MessageFramer({ maxLength: 1 << 20, headerOnly });
  const seen: Seen[] = [];
  for (const c of chunks) f.push(c, (type, msg, length) => seen.push({ type, msg: msg?.toString('hex'), length }));
  expect(f.atBoundary).toBe(true);
  return seen;
}

describe('MessageFramer', () => {
  it('cuts the same messages whatever the split point (every byte boundary, two pieces)', () => {
    const { stream, msgs } = sampleStream();
    const whole = frame([stream]);
    expect(whole).toHaveLength(msgs.length);
    expect(whole[0].msg).toBe(msgs[0].toString('hex'));
    expect(whole[5]).toEqual({ type: F.CopyData, msg: undefined, length: 1004 });
    for (let i = 0; i <= stream.length; i++) {
      expect(frame([stream.subarray(0, i), stream.subarray(i)])).toEqual(whole);
    }
  });

  it('cuts the same messages when fed one byte at a time and at every pair of split points of a short stream', () => {
    const { stream } = sampleStream();
    const whole = frame([stream]);
    const bytes = [...stream].map((b) => Buffer.from([b]));
    expect(frame(bytes)).toEqual(whole);
    const short = Buffer.concat([query('x'), sync(), execute('', 0)]);
    const ref = frame([short]);
    for (let i = 0; i <= short.length; i++) {
      for (let j = i; j <= short.length; j++) {
        expect(frame([short.subarray(0, i), short.subarray(i, j), short.subarray(j)])).toEqual(ref);
      }
    }
  });

  it('frames untyped startup packets', () => {
    const startup = encodeStartupMessage([['user', 'alice'], ['database', 'prod']]);
    const ssl = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    const stream = Buffer.concat([ssl, startup]);
    for (let i = 0; i <= stream.length; i++) {
      const f = new MessageFramer({ maxLength: 10000, untyped: true });
      const got: Buffer[] = [];
      f.push(stream.subarray(0, i), (t, m) => { expect(t).toBe(UNTYPED); got.push(m!); });
      f.push(stream.subarray(i), (t, m) => { expect(t).toBe(UNTYPED); got.push(m!); });
      expect(got.map((g) => decodeStartupPacket(g).kind)).toEqual(['ssl', 'startup']);
    }
  });

  it('can stop right after a message and report where', () => {
    const stream = Buffer.concat([query('a'), query('bb'), query('ccc')]);
    const f = new MessageFramer({ maxLength: 100 });
    let n = 0;
    const off = f.push(stream, () => n++, () => n === 1);
    expect(off).toBe(query('a').length);
    expect(f.atBoundary).toBe(true);
  });

  it('refuses lengths below 4 and above the limit', () => {
    const f = new MessageFramer({ maxLength: 100 });
    expect(() => f.push(Buffer.from([0x51, 0, 0, 0, 3]), () => {})).toThrow(ProtocolError);
    const g = new MessageFramer({ maxLength: 100 });
    try {
      g.push(Buffer.from([0x51, 0, 0, 1, 0]), () => {});
      expect.unreachable();
    } catch (e) {
      expect((e as ProtocolError).code).toBe('VIGIL_PG_OVERSIZED');
    }
  });
});

describe('frontend decoders', () => {
  it('decode startup, SSL, GSSENC and cancel packets', () => {
    const s = decodeStartupPacket(encodeStartupMessage([['user', 'alice'], ['database', 'prod/app'], ['application_name', 'psql']]));
    expect(s).toEqual({ kind: 'startup', version: 196608, params: new Map([['user', 'alice'], ['database', 'prod/app'], ['application_name', 'psql']]) });
    expect(decodeStartupPacket(encodeSslRequest())).toEqual({ kind: 'ssl' });
    expect(encodeSslRequest().readUInt32BE(4)).toBe(SSL_REQUEST_CODE);
    expect(decodeStartupPacket(encodeSslRequest(GSSENC_REQUEST_CODE))).toEqual({ kind: 'gssenc' });
    const c = decodeStartupPacket(encodeCancelRequest(1234, int32(-5)));
    expect(c).toEqual({ kind: 'cancel', processId: 1234, secretKey: int32(-5) });
    const v2 = Buffer.alloc(8);
    v2.writeUInt32BE(8);
    v2.writeUInt32BE(2 << 16, 4);
    expect(() => decodeStartupPacket(v2)).toThrow(/unsupported frontend protocol 2.0/);
  });

  it('decode extended-protocol messages', () => {
    expect(decodeQuery(query('SELECT 1'))).toBe('SELECT 1');
    expect(decodeParse(parse('s', 'SELECT $1', [23]))).toEqual({ name: 's', query: 'SELECT $1', paramTypes: [23] });
    const b = decodeBind(bind('', 's', [1], [int32(7), int32(8)]));
    expect([b.portal, b.statement]).toEqual(['', 's']);
    expect(b.paramFormats).toEqual([1, 1]);
    expect(b.values.map((v) => v?.readInt32BE(0))).toEqual([7, 8]);
    expect(decodeBind(bind('', '', [], [null])).values).toEqual([null]);
    expect(decodeExecute(execute('p', 5))).toEqual({ portal: 'p', maxRows: 5 });
    expect(decodeExecute(execute('', 0))).toEqual({ portal: '', maxRows: 0 });
    expect(decodeTarget(encodeMessage(F.Close, Buffer.concat([Buffer.from('P'), cstr('x')])), 'Close')).toEqual({ kind: 'P', name: 'x' });
    const fc = decodeFunctionCall(encodeMessage(F.FunctionCall, Buffer.concat([int32(1598), int16(0), int16(1), int32(-1), int16(1)])));
    expect(fc).toEqual({ oid: 1598, argFormats: [0], args: [null], resultFormat: 1 });
  });

  it('reject truncated and inconsistent messages instead of reading past the end', () => {
    const good = [query('SELECT 1'), parse('s', 'q', [23, 25]), bind('p', 's', [0, 1], [Buffer.from('x'), int32(1)]), execute('p', 0)];
    const decoders = [decodeQuery, decodeParse, decodeBind, decodeExecute];
    good.forEach((m, k) => {
      for (let cut = 5; cut < m.length; cut++) {
        const t = Buffer.from(m.subarray(0, cut));
        t.writeUInt32BE(cut - 1, 1);
        expect(() => decoders[k](t), `${String.fromCharCode(m[0])} cut at ${cut}`).toThrow(ProtocolError);
      }
    });
    // Three formats for two values.
    const bad = encodeMessage(F.Bind, Buffer.concat([cstr(''), cstr(''), int16(3), int16(0), int16(0), int16(0), int16(2), int32(-1), int32(-1), int16(0)]));
    expect(() => decodeBind(bad)).toThrow(/malformed Bind/);
    const badLen = encodeMessage(F.Bind, Buffer.concat([cstr(''), cstr(''), int16(0), int16(1), int32(-7), int16(0)]));
    expect(() => decodeBind(badLen)).toThrow(/malformed Bind/);
  });
});
