import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type MyWorld } from './helpers.ts';
import { rawLogin, rawConnect, RAW_CAPS } from './raw-client.ts';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { buildSslRequest, buildClientHandshake, parseErr } from '../../proxies/mysql/handshake.ts';
import { COM, CLIENT, lenencInt, u32 } from '../../proxies/mysql/wire.ts';
import { prng } from '../support/fuzz.ts';

let w: MyWorld;
beforeAll(async () => {
  w = await startWorld({ mysql: { listen: '127.0.0.1:0', max_packet: '1MiB' } });
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const query = (sql: string) => encodePacket(0, Buffer.concat([Buffer.from([COM.QUERY]), Buffer.from(sql)]));

describe('mysql proxy robustness', () => {
  it('answers out-of-sequence command packets with ERR 1156 and closes', async () => {
    const c = await rawLogin(w.port, w.alice);
    c.send(encodePacket(5, Buffer.from('\x03SELECT 1')));
    const err = parseErr((await c.next()).payload);
    expect(err.code).toBe(1156);
    await c.closed;
  });

  it('answers oversized packets with ERR 1153 and closes, without reading the rest', async () => {
    const c = await rawLogin(w.port, w.alice);
    const head = Buffer.alloc(4);
    head.writeUIntLE(2 * 1024 * 1024, 0, 3);
    c.send(Buffer.concat([head, Buffer.from([COM.QUERY])]));
    expect(parseErr((await c.next()).payload).code).toBe(1153);
    await c.closed;
  });

  it('answers malformed commands with ERR and closes', async () => {
    const c = await rawLogin(w.port, w.alice);
    c.send(encodePacket(0, Buffer.from([COM.STMT_CLOSE, 1])));
    expect(parseErr((await c.next()).payload).message).toMatch(/truncated/);
    await c.closed;
  });

  it('closes the connection when plaintext follows the SSLRequest (no command injection)', async () => {
    const c = await rawConnect(w.port);
    const before = w.tg.events.filter((e) => e.type === 'session.start').length;
    const handshake = buildClientHandshake({ capabilities: RAW_CAPS, maxPacket: 1 << 24, charset: 45, user: 'db', authResponse: Buffer.alloc(0), authPlugin: 'mysql_native_password', attributes: {} });
    c.send(Buffer.concat([encodePacket(1, buildSslRequest(RAW_CAPS | CLIENT.SSL, 1 << 24, 45)), encodePacket(2, handshake), query('DROP DATABASE shop')]));
    await c.closed;
    expect(w.tg.events.filter((e) => e.type === 'session.start').length).toBe(before);
    expect((await w.db.query("SHOW DATABASES LIKE 'shop'")).length).toBe(1);
  });

  it('survives truncated packets and abrupt closes', async () => {
    const c = await rawLogin(w.port, w.alice);
    c.send(query('SELECT 1').subarray(0, 6));
    c.socket.destroy();
    await c.closed;
    const end = await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id !== undefined && (e.details as { reason: string }).reason === 'client_closed');
    expect(end).toBeDefined();
  });

  it('fuzz: mutated and randomly split client packets never crash the gateway or touch another session', async () => {
    const good = await w.connect('db', { database: 'shop' });
    let goodRounds = 0;
    let stop = false;
    const goodLoop = (async () => {
      while (!stop) {
        const [rows] = await good.execute('SELECT name FROM items WHERE id = ?', [2]);
        expect(rows).toEqual([{ name: 'pear' }]);
        goodRounds++;
      }
    })();

    const seeds = Array.from({ length: 24 }, (_, i) => 1000 + i);
    const templates = [
      query('SELECT 1'),
      query('SELECT name FROM items; SELECT 2'),
      encodePacket(0, Buffer.concat([Buffer.from([COM.STMT_PREPARE]), Buffer.from('SELECT ? + ?')])),
      encodePacket(0, Buffer.concat([Buffer.from([COM.STMT_EXECUTE]), u32(1), Buffer.from([0]), u32(1), Buffer.from([0, 1, 8, 0, 8, 0]), Buffer.alloc(16, 1)])),
      encodePacket(0, Buffer.concat([Buffer.from([COM.STMT_SEND_LONG_DATA]), u32(1), Buffer.from([0, 0]), Buffer.from('data')])),
      encodePacket(0, Buffer.from([COM.INIT_DB, ...Buffer.from('shop')])),
      encodePacket(0, Buffer.from([COM.PING])),
      encodePacket(0, Buffer.from([COM.SET_OPTION, 1, 0])),
      encodePacket(0, Buffer.concat([Buffer.from([COM.QUERY]), lenencInt(300)])),
      encodePacket(0, Buffer.from([0x42, 0xff, 0xfe])),
    ];
    await Promise.all(
      seeds.map(async (seed) => {
        const rnd = prng(seed);
        const c = await rawLogin(w.port, w.alice, 'db', 'shop');
        for (let n = 0; n < 30 && !c.isClosed(); n++) {
          let bytes = Buffer.from(templates[Math.floor(rnd() * templates.length)]!);
          const mutation = rnd();
          if (mutation < 0.3) for (let k = 0; k < 1 + rnd() * 3; k++) bytes[Math.floor(rnd() * bytes.length)] = Math.floor(rnd() * 256);
          else if (mutation < 0.4) bytes = bytes.subarray(0, Math.floor(rnd() * bytes.length));
          else if (mutation < 0.5) bytes = Buffer.concat([bytes, Buffer.from(Array.from({ length: Math.floor(rnd() * 20) }, () => Math.floor(rnd() * 256)))]);
          // Random split into pieces written separately.
          let off = 0;
          while (off < bytes.length) {
            const len = 1 + Math.floor(rnd() * (bytes.length - off));
            c.send(bytes.subarray(off, off + len));
            off += len;
            if (rnd() < 0.3) await new Promise((r) => setTimeout(r, 1));
          }
          if (rnd() < 0.5) await new Promise((r) => setTimeout(r, 5));
        }
        c.socket.destroy();
      }),
    );
    stop = true;
    await goodLoop;
    expect(goodRounds).toBeGreaterThan(5);
    const [rows] = await good.query('SELECT COUNT(*) AS n FROM items');
    expect(rows).toEqual([{ n: 3 }]);
    await good.end();
    // A fresh session still works after the storm.
    const r = await w.cli(['--user=db', '-e', 'SELECT 7']);
    expect(r.stdout).toBe('7\n7\n');
    expect(w.tg.gw.services.sessions.size).toBeLessThanOrEqual(1);
  }, 60_000);
});

describe('mysql proxy fails closed', () => {
  it('ends the session when a db.query event cannot be written', async () => {
    const bus = w.tg.gw.services.events;
    const original = bus.emit.bind(bus);
    const originalRecord = bus.record.bind(bus);
    const c = await w.connect('db');
    const closed = new Promise<Error>((r) => c.on('error', r));
    // Both ways of writing an event fail for db.query, as when the audit disk is full.
    bus.emit = (input) => (input.type === 'db.query' ? Promise.reject(new Error('disk full')) : original(input));
    bus.record = (input, onFailure) => {
      if (input.type === 'db.query') setImmediate(() => onFailure?.(new Error('disk full')));
      else originalRecord(input, onFailure);
    };
    try {
      await c.query('SELECT 1');
      const err = await closed;
      expect(err.message).toMatch(/cannot write its audit log/);
      const end = await w.tg.waitForEvent((e) => e.type === 'session.end' && (e.details as { reason: string }).reason === 'audit_unavailable');
      expect(end.outcome).toBe('failure');
    } finally {
      bus.emit = original;
      bus.record = originalRecord;
      c.destroy();
    }
  });
});

describe('mysql proxy records less common commands', () => {
  it('COM_STMT_SEND_LONG_DATA, COM_STMT_RESET, COM_SET_OPTION, COM_PING and COM_QUIT', async () => {
    const c = await rawLogin(w.port, w.alice, 'db', 'shop');
    c.send(encodePacket(0, Buffer.concat([Buffer.from([COM.STMT_PREPARE]), Buffer.from('SELECT LENGTH(?), ?')])));
    const prep = (await c.next()).payload;
    expect(prep[0]).toBe(0);
    const stmtId = prep.readUInt32LE(1);
    expect([prep.readUInt16LE(5), prep.readUInt16LE(7)]).toEqual([2, 2]); // columns, params
    // two parameter and two column definitions (DEPRECATE_EOF: no EOF packets)
    for (let i = 0; i < 4; i++) await c.next();
    const chunk = Buffer.alloc(5000, 0x61);
    for (let i = 0; i < 3; i++) c.send(encodePacket(0, Buffer.concat([Buffer.from([COM.STMT_SEND_LONG_DATA]), u32(stmtId), Buffer.from([0, 0]), chunk])));
    // execute: param 0 from long data (no value), param 1 = LONGLONG 7
    const seven = Buffer.alloc(8);
    seven.writeBigInt64LE(7n);
    c.send(encodePacket(0, Buffer.concat([Buffer.from([COM.STMT_EXECUTE]), u32(stmtId), Buffer.from([0]), u32(1), Buffer.from([0, 1, 0xfc, 0, 8, 0]), seven])));
    const cols = await c.next();
    expect(cols.payload[0]).toBe(2);
    await c.next();
    await c.next();
    const row = (await c.next()).payload;
    expect(row[0]).toBe(0);
    expect(row.readInt32LE(2)).toBe(15000); // LENGTH() is a 4-byte integer column
    await c.next(); // OK closing the result set
    c.send(encodePacket(0, Buffer.concat([Buffer.from([COM.STMT_RESET]), u32(stmtId)])));
    expect((await c.next()).payload[0]).toBe(0);
    c.send(encodePacket(0, Buffer.from([COM.SET_OPTION, 1, 0])));
    await c.next();
    c.send(encodePacket(0, Buffer.from([COM.PING])));
    expect((await c.next()).payload[0]).toBe(0);
    c.send(encodePacket(0, Buffer.from([COM.QUIT])));
    await c.closed;

    const ev = await w.tg.waitForEvent((e) => e.type === 'db.query' && e.details.command === 'COM_STMT_EXECUTE' && e.details.query === 'SELECT LENGTH(?), ?');
    expect(ev.details.params).toEqual([{ hex: '61'.repeat(256), length: 15000, long_data: true, truncated: true }, 7]);
    expect(ev.details.rows_returned).toBe(1);
    const sid = ev.session_id;
    const cmds = await (async () => {
      await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === sid);
      return w.tg.events.filter((e) => e.session_id === sid && e.type === 'db.query').map((e) => e.details.command);
    })();
    expect(cmds).toEqual(['COM_STMT_PREPARE', 'COM_STMT_EXECUTE', 'COM_STMT_RESET', 'COM_SET_OPTION', 'COM_PING', 'COM_QUIT']);
    const opt = w.tg.events.find((e) => e.session_id === sid && e.details.command === 'COM_SET_OPTION');
    expect(opt!.details.multi_statements).toBe(false);
  });
});

describe('mysql proxy backpressure', () => {
  it('stops reading the server while the client does not read (bounded memory), then delivers everything', async () => {
    const c = await rawLogin(w.port, w.alice, 'db', 'shop');
    c.socket.pause();
    const rss0 = process.memoryUsage().rss;
    // ~64 MB of result rows.
    c.send(query("SELECT REPEAT('x', 1000000) AS big FROM seq_1_to_64"));
    await new Promise((r) => setTimeout(r, 1500));
    const grown = process.memoryUsage().rss - rss0;
    expect(grown).toBeLessThan(24 * 1024 * 1024);
    c.socket.resume();
    let rows = 0;
    for (;;) {
      const p = await c.next(10_000);
      if (p.payload[0] === 0xfe && p.payload.length < 0xffffff) break;
      if (p.payload.length > 900_000) rows++;
    }
    expect(rows).toBe(64);
    c.socket.destroy();
  }, 30_000);
});
