import { describe, it, expect } from 'vitest';
import { PacketFramer, PacketScanner, encodePacket, MAX_WIRE_PAYLOAD } from '../../proxies/mysql/framing.ts';
import {
  buildGreeting, parseGreeting, buildClientHandshake, parseClientHandshake, buildSslRequest, buildErr, parseErr, buildOk, parseOk, buildAuthSwitch, parseAuthSwitch,
} from '../../proxies/mysql/handshake.ts';
import { parseCommand, decodeStmtExecute, PARAMETER_COUNT_AVAILABLE } from '../../proxies/mysql/commands.ts';
import { ResponseTracker, type CommandResponse, type ResponseShape } from '../../proxies/mysql/response.ts';
import { CLIENT, COM, TYPE, lenencInt, lenencBytes, u16, u32 } from '../../proxies/mysql/wire.ts';

/** Frame `wire` split at `at` and pass each packet payload to `fn`. */
function eachSplit(wire: Buffer, fn: (payloads: Buffer[]) => void): void {
  for (let at = 0; at <= wire.length; at++) {
    const f = new PacketFramer(1 << 24);
    const payloads: Buffer[] = [];
    f.push(wire.subarray(0, at), (p) => payloads.push(Buffer.from(p.payload)));
    f.push(wire.subarray(at), (p) => payloads.push(Buffer.from(p.payload)));
    fn(payloads);
  }
}

const CAPS = CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.PLUGIN_AUTH | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT.CONNECT_WITH_DB | CLIENT.CONNECT_ATTRS | CLIENT.SSL;

describe('mysql handshake codec', () => {
  it('greeting round-trips at every split point', () => {
    const scramble = Buffer.from('abcdefghijklmnopqrst');
    const g = { serverVersion: '8.0.36-vigil', connectionId: 77, scramble, capabilities: CAPS | CLIENT.DEPRECATE_EOF, charset: 45, status: 2, authPlugin: 'mysql_native_password' };
    eachSplit(encodePacket(0, buildGreeting(g)), ([p]) => {
      expect(parseGreeting(p!)).toEqual({ protocolVersion: 10, ...g });
    });
  });

  it('parses a real MariaDB 10.11 greeting layout (13-byte second scramble part with NUL)', () => {
    const scramble = Buffer.from('12345678ABCDEFGHIJKL');
    const payload = buildGreeting({ serverVersion: '5.5.5-10.11.19-MariaDB', connectionId: 3, scramble, capabilities: CAPS, charset: 8, status: 2, authPlugin: 'mysql_native_password' });
    const g = parseGreeting(payload);
    expect(g.scramble.equals(scramble)).toBe(true);
    expect(g.serverVersion).toBe('5.5.5-10.11.19-MariaDB');
  });

  it('MariaDB extended capabilities ride in the greeting and response fillers when CLIENT_MYSQL is clear', () => {
    const scramble = Buffer.from('12345678ABCDEFGHIJKL');
    const caps = CAPS & ~CLIENT.LONG_PASSWORD;
    const g = parseGreeting(buildGreeting({ serverVersion: '5.5.5-10.11.19-MariaDB', connectionId: 3, scramble, capabilities: caps, mariadbCapabilities: 0x3f, charset: 8, status: 2, authPlugin: 'mysql_native_password' }));
    expect(g.mariadbCapabilities).toBe(0x3f);
    const h = parseClientHandshake(buildClientHandshake({ capabilities: caps, mariadbCapabilities: 8, maxPacket: 1 << 24, charset: 8, user: 'db', authResponse: Buffer.alloc(0), attributes: {} }));
    expect(h.mariadbCapabilities).toBe(8);
    expect(parseClientHandshake(buildSslRequest(caps, 1 << 24, 8, 8)).mariadbCapabilities).toBe(8);
    // A MySQL-style peer (CLIENT_MYSQL set) has no extended word: the filler stays zero.
    expect(parseGreeting(buildGreeting({ serverVersion: '8.0.36', connectionId: 3, scramble, capabilities: CAPS | CLIENT.LONG_PASSWORD, mariadbCapabilities: 8, charset: 8, status: 2, authPlugin: 'x' })).mariadbCapabilities).toBeUndefined();
  });

  it('client handshake response and SSLRequest round-trip at every split point', () => {
    const h = { capabilities: CAPS, maxPacket: 1 << 24, charset: 45, user: 'shop-db/reporting', authResponse: Buffer.from([1, 2, 3, 0, 5]), database: 'shop', authPlugin: 'mysql_native_password', attributes: { _client_name: 'libmariadb', program_name: 'mariadb' } };
    const wire = Buffer.concat([encodePacket(1, buildSslRequest(CAPS, 1 << 24, 45)), encodePacket(2, buildClientHandshake(h))]);
    eachSplit(wire, ([ssl, full]) => {
      expect(ssl!.length).toBe(32);
      expect(parseClientHandshake(ssl!).sslRequest).toBe(true);
      expect(parseClientHandshake(full!)).toEqual({ ...h, sslRequest: false });
    });
  });

  it('rejects a truncated handshake response', () => {
    const full = buildClientHandshake({ capabilities: CAPS, maxPacket: 1, charset: 45, user: 'abc', authResponse: Buffer.alloc(20), database: 'x', authPlugin: 'p', attributes: {} });
    for (let n = 33; n < 38; n++) expect(() => parseClientHandshake(full.subarray(0, n))).toThrow(/truncated|unterminated/);
  });

  it('OK, ERR and AuthSwitch packets', () => {
    expect(parseOk(buildOk({ affectedRows: 300, lastInsertId: 70000, status: 0x22, warnings: 1 }))).toEqual({ affectedRows: 300, lastInsertId: 70000, status: 0x22, warnings: 1 });
    expect(parseErr(buildErr({ code: 1146, sqlState: '42S02', message: "Table 'x.y' doesn't exist" }))).toEqual({ code: 1146, sqlState: '42S02', message: "Table 'x.y' doesn't exist" });
    expect(parseAuthSwitch(buildAuthSwitch('client_ed25519', Buffer.from('0123456789abcdef0123456789abcdef')))).toEqual({ plugin: 'client_ed25519', data: Buffer.from('0123456789abcdef0123456789abcdef') });
  });
});

/** Build a COM_STMT_EXECUTE payload. */
function execute(stmtId: number, params: { type: number; unsigned?: boolean; value: Buffer | null }[], bound = true, flags = 0, qa?: { count: number; names: string[] }): Buffer {
  const parts: Buffer[] = [Buffer.from([COM.STMT_EXECUTE]), u32(stmtId), Buffer.from([flags]), u32(1)];
  if (qa) parts.push(lenencInt(qa.count));
  if (params.length > 0) {
    const bitmap = Buffer.alloc((params.length + 7) >> 3);
    params.forEach((p, i) => { if (p.value === null) bitmap[i >> 3]! |= 1 << (i & 7); });
    parts.push(bitmap, Buffer.from([bound ? 1 : 0]));
    if (bound) params.forEach((p, i) => { parts.push(Buffer.from([p.type, p.unsigned ? 0x80 : 0])); if (qa) parts.push(lenencBytes(Buffer.from(qa.names[i] ?? ''))); });
    for (const p of params) if (p.value) parts.push(p.value);
  }
  return Buffer.concat(parts);
}

const le = (n: bigint | number, bytes: number, signed = true) => {
  const b = Buffer.alloc(bytes);
  if (bytes === 8) signed ? b.writeBigInt64LE(BigInt(n)) : b.writeBigUInt64LE(BigInt(n));
  else signed ? b.writeIntLE(Number(n), 0, bytes) : b.writeUIntLE(Number(n), 0, bytes);
  return b;
};

describe('mysql command codec', () => {
  it('parses simple commands', () => {
    expect(parseCommand(Buffer.from('\x03SELECT 1', 'latin1'), CAPS)).toEqual({ kind: 'query', sql: 'SELECT 1', sqlBytes: Buffer.from('SELECT 1'), escaped: false });
    // Not UTF-8 (a latin1 client's é): ASCII kept, the byte written as \xE9, marked escaped.
    expect(parseCommand(Buffer.from("\x03SELECT 'caf\xe9'", 'latin1'), CAPS)).toMatchObject({ kind: 'query', sql: "SELECT 'caf\\xE9'", escaped: true });
    expect(parseCommand(Buffer.from('\x02shop', 'latin1'), CAPS)).toEqual({ kind: 'init_db', database: 'shop' });
    expect(parseCommand(Buffer.concat([Buffer.from([COM.STMT_CLOSE]), u32(9)]), CAPS)).toEqual({ kind: 'stmt_close', stmtId: 9 });
    expect(parseCommand(Buffer.concat([Buffer.from([COM.SET_OPTION]), u16(1)]), CAPS)).toEqual({ kind: 'set_option', option: 1 });
    expect(parseCommand(Buffer.concat([Buffer.from([COM.PROCESS_KILL]), u32(12)]), CAPS)).toEqual({ kind: 'process_kill', id: 12 });
    expect(parseCommand(Buffer.concat([Buffer.from([COM.STMT_SEND_LONG_DATA]), u32(2), u16(1), Buffer.from('chunk')]), CAPS)).toMatchObject({ kind: 'stmt_send_long_data', stmtId: 2, paramId: 1 });
    expect(parseCommand(Buffer.from([COM.CHANGE_USER, 1, 2]), CAPS)).toEqual({ kind: 'change_user' });
    expect(() => parseCommand(Buffer.from([COM.STMT_CLOSE, 1]), CAPS)).toThrow(/truncated/);
  });

  it('parses COM_QUERY with query attributes (CLIENT_QUERY_ATTRIBUTES)', () => {
    const qa = Buffer.concat([Buffer.from([COM.QUERY]), lenencInt(1), lenencInt(1), Buffer.from([0]), Buffer.from([1]), Buffer.from([TYPE.VAR_STRING, 0]), lenencBytes(Buffer.from('trace_id')), lenencBytes(Buffer.from('abc')), Buffer.from('SELECT 2')]);
    expect(parseCommand(qa, CAPS | CLIENT.QUERY_ATTRIBUTES)).toEqual({ kind: 'query', sql: 'SELECT 2', sqlBytes: Buffer.from('SELECT 2'), escaped: false, attributes: { trace_id: 'abc' } });
    const none = Buffer.concat([Buffer.from([COM.QUERY]), lenencInt(0), lenencInt(1), Buffer.from('SELECT 3')]);
    expect(parseCommand(none, CAPS | CLIENT.QUERY_ATTRIBUTES)).toEqual({ kind: 'query', sql: 'SELECT 3', sqlBytes: Buffer.from('SELECT 3'), escaped: false, attributes: undefined });
  });

  it('decodes COM_STMT_EXECUTE parameters of every type, split at every byte boundary', () => {
    const dt = Buffer.from([11, 0xe6, 0x07, 11, 28, 17, 5, 9, 0x40, 0xe2, 0x01, 0x00]); // 2022-11-28 17:05:09.123456
    const params = [
      { type: TYPE.LONGLONG, value: le(-42, 8) },
      { type: TYPE.LONGLONG, unsigned: true, value: le(18446744073709551615n, 8, false) },
      { type: TYPE.TINY, value: le(-1, 1) },
      { type: TYPE.TINY, unsigned: true, value: le(255, 1, false) },
      { type: TYPE.SHORT, value: le(-300, 2) },
      { type: TYPE.LONG, unsigned: true, value: le(4000000000, 4, false) },
      { type: TYPE.DOUBLE, value: (() => { const b = Buffer.alloc(8); b.writeDoubleLE(3.25); return b; })() },
      { type: TYPE.FLOAT, value: (() => { const b = Buffer.alloc(4); b.writeFloatLE(1.5); return b; })() },
      { type: TYPE.VAR_STRING, value: lenencBytes(Buffer.from('héllo')) },
      { type: TYPE.NULL, value: null },
      { type: TYPE.BLOB, value: lenencBytes(Buffer.from([0, 1, 2, 0xff])) },
      { type: TYPE.DATETIME, value: dt },
      { type: TYPE.DATE, value: Buffer.from([4, 0xe6, 0x07, 1, 2]) },
      { type: TYPE.TIME, value: Buffer.from([8, 1, 1, 0, 0, 0, 2, 3, 4]) },
      { type: TYPE.NEWDECIMAL, value: lenencBytes(Buffer.from('12.50')) },
    ];
    const payload = execute(5, params);
    eachSplit(encodePacket(0, payload), ([p]) => {
      const d = decodeStmtExecute(p!, params.length, undefined, new Set(), CAPS);
      expect(d.stmtId).toBe(5);
      expect(d.newTypes).toBe(true);
      expect(d.values).toEqual([-42, '18446744073709551615', -1, 255, -300, 4000000000, 3.25, 1.5, 'héllo', null, { hex: '000102ff', length: 4 }, '2022-11-28 17:05:09.123456', '2022-01-02', '-26:03:04', '12.50']);
    });
  });

  it('a string parameter is text only when its bytes are UTF-8: a literal U+FFFD stays text, one next to invalid bytes does not', () => {
    const fffd = Buffer.from('\ufffd');
    const binary = Buffer.concat([fffd, Buffer.from([0xff, 0x41])]);
    const params = [
      { type: TYPE.VAR_STRING, value: lenencBytes(Buffer.concat([Buffer.from('a'), fffd])) },
      { type: TYPE.VAR_STRING, value: lenencBytes(binary) },
      { type: TYPE.VAR_STRING, value: lenencBytes(Buffer.concat([Buffer.alloc(5000, 0x78), binary])) },
    ];
    const d = decodeStmtExecute(execute(6, params), params.length, undefined, new Set(), CAPS);
    expect(d.values[0]).toBe('a\ufffd');
    expect(d.values[1]).toEqual({ hex: binary.toString('hex'), length: binary.length });
    expect(d.values[2]).toMatchObject({ hex: '78'.repeat(256), length: 5000 + binary.length, truncated: true });
  });

  it('remembers the types of the first bound execution', () => {
    const first = execute(1, [{ type: TYPE.LONG, value: le(7, 4) }, { type: TYPE.VAR_STRING, value: lenencBytes(Buffer.from('a')) }]);
    const d1 = decodeStmtExecute(first, 2, undefined, new Set(), CAPS);
    const second = execute(1, [{ type: TYPE.LONG, value: le(8, 4) }, { type: TYPE.VAR_STRING, value: lenencBytes(Buffer.from('b')) }], false);
    const d2 = decodeStmtExecute(second, 2, d1.types, new Set(), CAPS);
    expect(d2.newTypes).toBe(false);
    expect(d2.values).toEqual([8, 'b']);
    expect(() => decodeStmtExecute(second, 2, undefined, new Set(), CAPS)).toThrow(/without types/);
  });

  it('skips parameters whose data came with COM_STMT_SEND_LONG_DATA', () => {
    const p = execute(1, [{ type: TYPE.BLOB, value: Buffer.alloc(0) }, { type: TYPE.LONG, value: le(9, 4) }]);
    expect(decodeStmtExecute(p, 2, undefined, new Set([0]), CAPS).values).toEqual([undefined, 9]);
  });

  it('decodes execute with query attributes beyond the statement parameters', () => {
    const p = execute(3, [{ type: TYPE.LONG, value: le(1, 4) }, { type: TYPE.VAR_STRING, value: lenencBytes(Buffer.from('t1')) }], true, PARAMETER_COUNT_AVAILABLE, { count: 2, names: ['', 'trace'] });
    const d = decodeStmtExecute(p, 1, undefined, new Set(), CAPS | CLIENT.QUERY_ATTRIBUTES);
    expect(d.values).toEqual([1]);
    expect(d.attributes).toEqual({ trace: 't1' });
  });

  it('rejects truncated execute packets at every length', () => {
    const full = execute(5, [{ type: TYPE.LONGLONG, value: le(1, 8) }, { type: TYPE.VAR_STRING, value: lenencBytes(Buffer.from('abc')) }]);
    for (let n = 1; n < full.length; n++) expect(() => decodeStmtExecute(full.subarray(0, n), 2, undefined, new Set(), CAPS)).toThrow();
  });
});

// ---- server responses ----
const colDef = (name: string) => Buffer.concat([lenencBytes(Buffer.from('def')), lenencBytes(Buffer.from('db')), lenencBytes(Buffer.from('t')), lenencBytes(Buffer.from('t')), lenencBytes(Buffer.from(name)), lenencBytes(Buffer.from(name)), Buffer.from([0x0c]), u16(45), u32(10), Buffer.from([TYPE.LONG]), u16(0), Buffer.from([0, 0, 0])]);
const eof = (status: number) => Buffer.concat([Buffer.from([0xfe]), u16(0), u16(status)]);
const okEof = (status: number) => Buffer.concat([Buffer.from([0xfe, 0, 0]), u16(status), u16(0)]);
const row = (...cells: string[]) => Buffer.concat(cells.map((c) => lenencBytes(Buffer.from(c))));

/** The relay's scanner sink over a response tracker (as the relay wires it): every finished response goes to `onResponse`. */
function scannerSink(t: ResponseTracker, onResponse: (r: CommandResponse) => void, onRows: (count: number) => void = (count) => t.countRows(count)) {
  const done = (r: CommandResponse | undefined) => void (r !== undefined && onResponse(r));
  return {
    wants: (head: number, length: number) => t.needsBody(head, length),
    packet: (p: Buffer) => done(t.onPacket(p)),
    skipped: (head: number, length: number) => done(t.onSkipped(head, length)),
    countingRows: () => t.countingRows,
    rows: onRows,
  };
}

function track(shape: ResponseShape, caps: number, payloads: Buffer[]): { done: CommandResponse | undefined; at: number } {
  const t = new ResponseTracker(caps);
  t.expect(shape);
  for (let i = 0; i < payloads.length; i++) {
    const r = t.onPacket(payloads[i]!);
    if (r) return { done: r, at: i };
  }
  return { done: undefined, at: -1 };
}

describe('mysql response tracking', () => {
  it('counts rows of a result set with EOF packets, at every split point', () => {
    const packets = [Buffer.from([2]), colDef('a'), colDef('b'), eof(2), row('1', 'x'), row('2', 'y'), row('3', 'z'), eof(2)];
    const wire = Buffer.concat(packets.map((p, i) => encodePacket(i + 1, p)));
    eachSplit(wire, (ps) => {
      const { done, at } = track('results', CAPS, ps);
      expect(at).toBe(packets.length - 1);
      expect(done!.results).toEqual([{ rows: 3 }]);
    });
  });

  it('CLIENT_DEPRECATE_EOF: OK with 0xFE ends the rows; multi-statement results each recorded', () => {
    const caps = CAPS | CLIENT.DEPRECATE_EOF;
    const packets = [
      Buffer.from([1]), colDef('a'), row('1'), okEof(0x0a), // result set 1, MORE_RESULTS_EXISTS
      buildOk({ affectedRows: 4, status: 0x0a }), // an UPDATE, more follow
      Buffer.concat([Buffer.from([0xff]), u16(1146), Buffer.from('#42S02no such table')]),
    ];
    const { done, at } = track('results', caps, packets);
    expect(at).toBe(packets.length - 1);
    expect(done!.results).toEqual([{ rows: 1 }, { affectedRows: 4, lastInsertId: 0 }, { error: { code: 1146, sqlState: '42S02', message: 'no such table' } }]);
  });

  it('binary rows starting with 0x00 are rows, not OK packets', () => {
    const { done } = track('results', CAPS | CLIENT.DEPRECATE_EOF, [Buffer.from([1]), colDef('a'), Buffer.from([0, 0, 1, 0, 0, 0]), Buffer.from([0, 0, 2, 0, 0, 0]), okEof(2)]);
    expect(done!.results).toEqual([{ rows: 2 }]);
  });

  it('prepare responses: parameter and column definitions with and without EOF', () => {
    const prepOk = Buffer.concat([Buffer.from([0]), u32(7), u16(1), u16(2), Buffer.from([0]), u16(0)]);
    const withEof = [prepOk, colDef('?'), colDef('?'), eof(2), colDef('a'), eof(2)];
    const r1 = track('prepare', CAPS, withEof);
    expect(r1.at).toBe(withEof.length - 1);
    expect(r1.done!.prepared).toEqual({ stmtId: 7, numColumns: 1, numParams: 2 });
    const noEof = [prepOk, colDef('?'), colDef('?'), colDef('a')];
    const r2 = track('prepare', CAPS | CLIENT.DEPRECATE_EOF, noEof);
    expect(r2.at).toBe(noEof.length - 1);
  });

  it('queues pipelined commands and answers them in order', () => {
    const t = new ResponseTracker(CAPS);
    t.expect('results');
    t.expect('results');
    expect(t.pending).toBe(2);
    expect(t.onPacket(buildOk({ affectedRows: 1 }))!.results[0]).toMatchObject({ affectedRows: 1 });
    expect(t.onPacket(buildOk({ affectedRows: 2 }))!.results[0]).toMatchObject({ affectedRows: 2 });
    expect(t.pending).toBe(0);
    expect(() => t.onPacket(buildOk())).toThrow(/unexpected/);
  });

  it('refuses a LOCAL INFILE request from the server', () => {
    expect(() => track('results', CAPS, [Buffer.from('\xfb/etc/passwd', 'latin1')])).toThrow(/local file/);
  });

  it('the relay path (scanner + needsBody/onSkipped) reaches the same results as whole packets, at every split point', () => {
    const caps = CAPS | CLIENT.DEPRECATE_EOF;
    const bigRow = Buffer.alloc(MAX_WIRE_PAYLOAD + 5, 0x61); // a row continued over two wire packets
    const prepOk = Buffer.concat([Buffer.from([0]), u32(9), u16(1), u16(1), Buffer.from([0]), u16(0)]);
    const responses: [ResponseShape, Buffer[]][] = [
      ['results', [Buffer.from([2]), colDef('a'), colDef('b'), row('1', 'x'), Buffer.alloc(0), row('3', 'z'), okEof(0x0a), buildOk({ affectedRows: 3, status: 2 })]],
      ['prepare', [prepOk, colDef('?'), colDef('a')]],
      ['single', [Buffer.from('Uptime: 5')]],
      ['results', [Buffer.concat([Buffer.from([0xff]), u16(1146), Buffer.from('#42S02no such table')])]],
    ];
    const wire = Buffer.concat(responses.flatMap(([, ps]) => ps.map((p, i) => encodePacket(i + 1, p))));
    const expected = (() => {
      const t = new ResponseTracker(caps);
      for (const [shape] of responses) t.expect(shape);
      return responses.flatMap(([, ps]) => ps.map((p) => t.onPacket(p))).filter((r) => r !== undefined);
    })();
    expect(expected.map((r) => r.results.length)).toEqual([2, 0, 0, 1]);
    const scan = (pieces: Buffer[]) => {
      const t = new ResponseTracker(caps);
      for (const [shape] of responses) t.expect(shape);
      const got: CommandResponse[] = [];
      const s = new PacketScanner(1 << 20);
      const sink = scannerSink(t, (r) => got.push(r));
      for (const piece of pieces) s.push(piece, sink);
      return got;
    };
    const strip = (rs: CommandResponse[]) => rs.map((r) => ({ ...r, ends: r.ends.length }));
    for (let at = 0; at <= wire.length; at += at < 200 || at > wire.length - 200 ? 1 : 997) {
      expect(strip(scan([wire.subarray(0, at), wire.subarray(at)]))).toEqual(strip(expected));
    }
    // The big row: rows are counted once however many wire packets carry them; its bytes are never copied.
    const big = Buffer.concat([Buffer.from([1]), colDef('a'), bigRow, okEof(2)].map((p, i) => encodePacket(i + 1, p)));
    const t = new ResponseTracker(caps);
    t.expect('results');
    let done: CommandResponse | undefined;
    new PacketScanner(1 << 20).push(big, scannerSink(t, (r) => (done = r)));
    expect(done!.results).toEqual([{ rows: 1 }]);
  });

  it('counts the rows of a result set in runs, with the same counts at every split point (EOF and OK endings)', () => {
    for (const caps of [CAPS, CAPS | CLIENT.DEPRECATE_EOF]) {
      const deprecateEof = (caps & CLIENT.DEPRECATE_EOF) !== 0;
      // 60 rows; row 20 begins with 0xFE but is 20 bytes long: a row, not an EOF, without DEPRECATE_EOF.
      const rows = Array.from({ length: 60 }, (_, i) => (i === 20 && !deprecateEof ? Buffer.concat([Buffer.from([0xfe]), Buffer.alloc(19, 0x31)]) : row(String(i), 'x'.repeat(i % 7))));
      const end = deprecateEof ? okEof(2) : Buffer.from([0xfe, 0, 0, 2, 0]);
      const head = [Buffer.from([1]), colDef('a'), ...(deprecateEof ? [] : [Buffer.from([0xfe, 0, 0, 2, 0])])];
      const wire = Buffer.concat([...head, ...rows, end, buildOk({ affectedRows: 1, status: 2 })].map((p, i, all) => encodePacket(i < all.length - 1 ? i + 1 : 1, p)));
      for (let at = 0; at <= wire.length; at++) {
        const t = new ResponseTracker(caps);
        t.expect('results');
        t.expect('results');
        const got: CommandResponse[] = [];
        let runs = 0;
        const s = new PacketScanner(1 << 20);
        const sink = scannerSink(t, (r) => got.push(r), (count) => {
          runs++;
          t.countRows(count);
        });
        s.push(wire.subarray(0, at), sink);
        s.push(wire.subarray(at), sink);
        expect(got.map((r) => r.results)).toEqual([[{ rows: 60 }], [{ affectedRows: 1, lastInsertId: 0 }]]);
        // Whole rows in one chunk: counted in one or two runs (row 20 takes the per-packet path), not one by one.
        if (at === 0) expect([1, 2]).toContain(runs);
      }
    }
  });
});
