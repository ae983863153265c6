import { describe, it, expect } from 'vitest';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { buildOk, buildErr } from '../../proxies/mysql/handshake.ts';
import { CommandTracker, type TrackerSink } from '../../proxies/mysql/tracker.ts';
import type { ResponseShape } from '../../proxies/mysql/response.ts';
import { CLIENT, TYPE, lenencBytes, lenencInt, u16, u32 } from '../../proxies/mysql/wire.ts';

const CAPS = CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.MULTI_RESULTS | CLIENT.PS_MULTI_RESULTS;
const str = (s: string) => lenencBytes(Buffer.from(s));
const colDef = (name: string) =>
  Buffer.concat([str('def'), str('db'), str('t'), str('t'), str(name), str(name), Buffer.from([0x0c]), u16(45), u32(10), Buffer.from([TYPE.LONG]), u16(0), Buffer.from([0, 0, 0])]);
const eof = (status: number) => Buffer.concat([Buffer.from([0xfe]), u16(0), u16(status)]);
const okEof = (status: number) => Buffer.concat([Buffer.from([0xfe, 0, 0]), u16(status), u16(0)]);
const row = (...cells: string[]) => Buffer.concat(cells.map(str));
const err = (code: number, message: string) => buildErr({ code, sqlState: '42S02', message });

/** One command and the server's packets for it, numbered from sequence 1 like a real server does. */
interface Exchange {
  shape: ResponseShape;
  command: string;
  packets: Buffer[];
}

/** Responses and local replies in the order the tracker hands them out, without timings. */
function run(caps: number, exchanges: (Exchange | { local: string })[], cuts: number[]): string[] {
  const events: string[] = [];
  const sink: TrackerSink<string> = {
    response: (cmd, res) => events.push(`${cmd.command}:${cmd.data} ${JSON.stringify({ ...res, ends: res.ends.length }, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))}`),
    local: (b) => events.push(`local ${b.toString()}`),
  };
  const t = new CommandTracker<string>(caps, sink);
  const wire: Buffer[] = [];
  let n = 0;
  for (const x of exchanges) {
    if ('local' in x) {
      if (t.local(Buffer.from(x.local))) events.push(`local ${x.local}`);
      continue;
    }
    t.sent(x.shape, x.command, 0, String(n++));
    x.packets.forEach((p, i) => wire.push(encodePacket(i + 1, p)));
  }
  const all = Buffer.concat(wire);
  let at = 0;
  for (const c of [...cuts, all.length]) {
    t.server(all.subarray(at, c));
    at = c;
  }
  expect(t.pending).toBe(0);
  expect(t.inFlight()).toEqual([]);
  return events;
}

const EXCHANGES: (Exchange | { local: string })[] = [
  { shape: 'results', command: 'COM_QUERY', packets: [Buffer.from([2]), colDef('a'), colDef('b'), eof(0x0a), row('1', 'x'), row('2', 'y'), eof(0x0a), buildOk({ affectedRows: 3, status: 2 })] },
  { local: 'refused-1' },
  { shape: 'results', command: 'COM_QUERY', packets: [err(1146, 'no such table')] },
  { shape: 'prepare', command: 'COM_STMT_PREPARE', packets: [Buffer.concat([Buffer.from([0]), u32(9), u16(1), u16(1), Buffer.from([0]), u16(0)]), colDef('?'), eof(2), colDef('a'), eof(2)] },
  { shape: 'results', command: 'COM_STMT_EXECUTE', packets: [Buffer.from([1]), colDef('a'), eof(2), Buffer.from([0, 0, 1, 0, 0, 0]), Buffer.from([0, 0, 2, 0, 0, 0]), eof(2)] },
  { local: 'refused-2' },
  { local: 'refused-3' },
  { shape: 'results', command: 'COM_PING', packets: [buildOk({})] },
];

describe('mysql command tracker (pure, socket-free)', () => {
  it('gives the same events for a pipelined stream split at every byte offset', () => {
    const whole = run(CAPS, EXCHANGES, []);
    expect(whole).toHaveLength(8);
    expect(whole[0]).toContain('"rows":2');
    expect(whole[1]).toBe('local refused-1');
    expect(whole[3]).toContain('"prepared":{"stmtId":9,"numColumns":1,"numParams":1}');
    expect(whole.slice(5, 7)).toEqual(['local refused-2', 'local refused-3']);
    const wireLength = EXCHANGES.reduce((n, x) => n + ('local' in x ? 0 : x.packets.reduce((m, p) => m + 4 + p.length, 0)), 0);
    for (let at = 0; at <= wireLength; at++) expect(run(CAPS, EXCHANGES, [at])).toEqual(whole);
    // And one byte at a time.
    expect(run(CAPS, EXCHANGES, Array.from({ length: wireLength }, (_, i) => i))).toEqual(whole);
  });

  it('same events at every split with CLIENT_DEPRECATE_EOF', () => {
    const caps = CAPS | CLIENT.DEPRECATE_EOF;
    const ex: Exchange[] = [
      { shape: 'results', command: 'COM_QUERY', packets: [Buffer.from([1]), colDef('a'), row('1'), row(''), okEof(0x0a), buildOk({ affectedRows: 4, status: 0x0a }), err(1146, 'x')] },
      { shape: 'results', command: 'COM_QUERY', packets: [Buffer.concat([Buffer.from([0]), lenencInt(1), lenencInt(7), u16(2), u16(0)])] },
    ];
    const whole = run(caps, ex, []);
    expect(whole).toHaveLength(2);
    const len = ex.reduce((n, x) => n + x.packets.reduce((m, p) => m + 4 + p.length, 0), 0);
    for (let at = 0; at <= len; at++) expect(run(caps, ex, [at])).toEqual(whole);
  });

  it('knows what is in flight and how far its response got', () => {
    const got: string[] = [];
    const t = new CommandTracker<string>(CAPS, { response: (c) => got.push(c.data), local: () => {} });
    t.sent('results', 'COM_QUERY', 0, 'a');
    t.sent('results', 'COM_QUERY', 0, 'b');
    const head = Buffer.concat([encodePacket(1, Buffer.from([1])), encodePacket(2, colDef('a')), encodePacket(3, eof(2)), encodePacket(4, row('1')), encodePacket(5, row('2'))]);
    t.server(head);
    expect(t.inFlight().map((c) => c.data)).toEqual(['a', 'b']);
    expect(t.progress()).toEqual({ rows: 2, bytes: head.length });
    t.server(encodePacket(6, eof(2)));
    expect(got).toEqual(['a']);
    expect(t.inFlight().map((c) => c.data)).toEqual(['b']);
    expect(t.progress().rows).toBe(0);
  });

  it('CURSOR_EXISTS ends a result set only for a cursor request; COM_STMT_FETCH rows end at their EOF', () => {
    const cursorEof = eof(0x42);
    const res = [Buffer.from([1]), colDef('a'), cursorEof, row('1'), row('2'), eof(0x02)];
    // A plain query whose column EOF carries the flag (a procedure's own cursor): rows still follow.
    expect(run(CAPS, [{ shape: 'results', command: 'COM_QUERY', packets: res }], [])[0]).toContain('"results":[{"rows":2}]');
    const ex: Exchange[] = [
      { shape: 'cursor', command: 'COM_STMT_EXECUTE', packets: [Buffer.from([1]), colDef('a'), cursorEof] },
      { shape: 'fetch', command: 'COM_STMT_FETCH', packets: [row('1'), row('2'), eof(0x42)] },
      { shape: 'fetch', command: 'COM_STMT_FETCH', packets: [row('3'), eof(0x82)] },
    ];
    const whole = run(CAPS, ex, []);
    expect(whole.map((e) => JSON.parse(e.slice(e.indexOf(' ') + 1)).results)).toEqual([[{ rows: 0 }], [{ rows: 2 }], [{ rows: 1 }]]);
    const len = ex.reduce((n, x) => n + x.packets.reduce((m, p) => m + 4 + p.length, 0), 0);
    for (let at = 0; at <= len; at++) expect(run(CAPS, ex, [at])).toEqual(whole);
  });

  it('keeps affected rows and last insert id up to 2^64 - 1 (bigint beyond 2^53)', () => {
    const ok = Buffer.concat([Buffer.from([0]), lenencInt(1), lenencInt(18446744073709551615n), u16(2), u16(0)]);
    const [e] = run(CAPS, [{ shape: 'results', command: 'COM_QUERY', packets: [ok] }], []);
    expect(e).toContain('"lastInsertId":"18446744073709551615n"');
  });

  it('refuses server packets out of sequence', () => {
    const t = new CommandTracker<string>(CAPS, { response: () => {}, local: () => {} });
    t.sent('results', 'COM_QUERY', 0, 'a');
    expect(() => t.server(Buffer.concat([encodePacket(1, Buffer.from([1])), encodePacket(3, colDef('a'))]))).toThrow(/out of sequence/);
    const rows = new CommandTracker<string>(CAPS, { response: () => {}, local: () => {} });
    rows.sent('results', 'COM_QUERY', 0, 'a');
    rows.server(Buffer.concat([encodePacket(1, Buffer.from([1])), encodePacket(2, colDef('a')), encodePacket(3, eof(2))]));
    expect(() => rows.server(Buffer.concat([encodePacket(4, row('1')), encodePacket(6, row('2'))]))).toThrow(/out of sequence/);
    // A command of 16 MiB or more spans wire packets 0, 1, 2: its response starts at 3.
    const got: string[] = [];
    const long = new CommandTracker<string>(CAPS, { response: (c) => got.push(c.data), local: () => {} });
    long.sent('results', 'COM_QUERY', 0, 'long', 2);
    long.sent('results', 'COM_QUERY', 0, 'short', 0);
    long.server(Buffer.concat([encodePacket(3, buildOk({})), encodePacket(1, buildOk({}))]));
    expect(got).toEqual(['long', 'short']);
  });
});
