import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type MyWorld } from './helpers.ts';
import { rawLogin, type RawClient } from './raw-client.ts';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { COM, TYPE, u16, u32 } from '../../proxies/mysql/wire.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Prepared-statement state the record must take from what the server did, not from what the client
 * sent: parameter types the server refused to read, because long data had marked the statement failed.
 */
let w: MyWorld;
beforeAll(async () => {
  w = await startWorld();
  await w.db.query('CREATE TABLE shop.r2 (id INT PRIMARY KEY, v VARCHAR(100)); INSERT INTO shop.r2 VALUES (1, NULL)');
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const detail = (e: AuditEvent | undefined) => e?.details as Record<string, any>;
const packet = (...parts: Buffer[]) => encodePacket(0, Buffer.concat(parts));
const prepare = (sql: string) => packet(Buffer.from([COM.STMT_PREPARE]), Buffer.from(sql));
const longData = (id: number, param: number, data: string) => packet(Buffer.from([COM.STMT_SEND_LONG_DATA]), u32(id), u16(param), Buffer.from(data));
const reset = (id: number) => packet(Buffer.from([COM.STMT_RESET]), u32(id));
/** COM_STMT_EXECUTE of a one-parameter statement: `type` set sends new types (new_params_bound_flag 1). */
const execute = (id: number, type: number | undefined, value: Buffer) =>
  packet(Buffer.from([COM.STMT_EXECUTE]), u32(id), Buffer.from([0]), u32(1), Buffer.from([0]), type === undefined ? Buffer.from([0]) : Buffer.from([1, type, 0]), value);
const lenenc = (s: string) => Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s)]);

async function executions(session: string, n: number): Promise<AuditEvent[]> {
  let found: AuditEvent[] = [];
  await w.tg.waitForEvent(() => {
    found = w.tg.events.filter((e) => e.type === 'db.query' && e.session_id === session && detail(e).command === 'COM_STMT_EXECUTE');
    return found.length >= n;
  }, 15_000);
  return found;
}

/** Read one whole response: packets until an OK, ERR or final EOF. */
async function answer(c: RawClient): Promise<Buffer> {
  for (;;) {
    const p = await c.next();
    if (p.payload[0] === 0x00 || p.payload[0] === 0xff || (p.payload[0] === 0xfe && p.payload.length < 9)) return p.payload;
  }
}

describe('prepared statement types the server did not take', () => {
  it('an execution refused because long data named a missing parameter keeps the earlier types: later values are recorded as the server binds them', async () => {
    const c = await rawLogin(w.port, w.alice, 'db', 'shop');
    c.send(prepare('UPDATE r2 SET v = ? WHERE id = 1'));
    const prep = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).command === 'COM_STMT_PREPARE' && detail(e).query === 'UPDATE r2 SET v = ? WHERE id = 1', 15_000);
    const session = prep.session_id!;
    const id = detail(prep).statement_id as number;
    await c.next(); // prepare OK
    await c.next(); // its parameter definition
    // The first execution binds the parameter as a string; the server keeps that type.
    c.send(execute(id, TYPE.STRING, lenenc('first')));
    expect((await answer(c))[0]).toBe(0x00);
    // Long data for parameter 5 of a one-parameter statement: the server marks the statement failed...
    c.send(longData(id, 5, 'x'));
    // ...and refuses this execution before reading the LONGLONG type it carries.
    c.send(execute(id, TYPE.LONGLONG, Buffer.from('12345678')));
    expect((await answer(c)).readUInt16LE(1)).toBe(1210);
    c.send(reset(id));
    expect((await answer(c))[0]).toBe(0x00);
    // Without types: the server reads the value as the string type it kept ("99999"), the trailing bytes unread.
    c.send(execute(id, undefined, Buffer.concat([lenenc('99999'), Buffer.from([0x20, 0x20])])));
    expect((await answer(c))[0]).toBe(0x00);
    expect((await w.db.query('SELECT v FROM shop.r2 WHERE id = 1'))[0]?.[0]).toBe('99999');
    const [first, refused, last] = await executions(session, 3);
    expect([detail(first).params, refused!.outcome]).toEqual([['first'], 'failure']);
    // The record says what the server bound, not the number those bytes make as a LONGLONG.
    expect([last!.outcome, detail(last).params]).toEqual(['success', ['99999']]);
    c.socket.destroy();
  });
});
