import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type MyWorld } from './helpers.ts';
import { rawLogin, type RawClient } from './raw-client.ts';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { COM, TYPE, u16, u32 } from '../../proxies/mysql/wire.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Prepared statements where the record must follow what the server did with parameter data, whatever
 * order or flags a client uses: COM_STMT_SEND_LONG_DATA against the NULL bitmap, and MariaDB's "last
 * prepared" id (0xFFFFFFFF) after a prepare the server refused.
 */
let w: MyWorld;
beforeAll(async () => {
  w = await startWorld();
  await w.db.query('CREATE TABLE shop.ld (id INT PRIMARY KEY, v TEXT); INSERT INTO shop.ld VALUES (1, NULL), (2, NULL)');
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const LAST_PREPARED = 0xffffffff;
const detail = (e: AuditEvent | undefined) => e?.details as Record<string, any>;
const packet = (...parts: Buffer[]) => encodePacket(0, Buffer.concat(parts));
const prepare = (sql: string) => packet(Buffer.from([COM.STMT_PREPARE]), Buffer.from(sql));
const longData = (id: number, param: number, data: string) => packet(Buffer.from([COM.STMT_SEND_LONG_DATA]), u32(id), u16(param), Buffer.from(data));
/** COM_STMT_EXECUTE of a one-parameter statement bound as a STRING: `value` null sets the NULL bit. */
function executeOne(id: number, value: string | null): Buffer {
  const nullBitmap = Buffer.from([value === null ? 1 : 0]);
  const data = value === null ? Buffer.alloc(0) : Buffer.concat([Buffer.from([Buffer.byteLength(value)]), Buffer.from(value)]);
  return packet(Buffer.from([COM.STMT_EXECUTE]), u32(id), Buffer.from([0]), u32(1), nullBitmap, Buffer.from([1, TYPE.STRING, 0]), data);
}

async function queryEvent(session: string | undefined, pred: (d: Record<string, any>) => boolean): Promise<AuditEvent> {
  return w.tg.waitForEvent((e) => e.type === 'db.query' && (session === undefined || e.session_id === session) && pred(detail(e)), 15_000);
}

async function login(marker: string): Promise<{ c: RawClient; session: string }> {
  const c = await rawLogin(w.port, w.alice, 'db', 'shop');
  c.send(packet(Buffer.from([COM.QUERY]), Buffer.from(`SELECT '${marker}'`)));
  await c.next();
  const e = await queryEvent(undefined, (d) => d.query === `SELECT '${marker}'`);
  return { c, session: e.session_id! };
}

const valueOf = async (id: number) => (await w.db.query(`SELECT v FROM shop.ld WHERE id = ${id}`))[0]?.[0];

describe('prepared statement parameters as the server binds them', () => {
  it('long data wins over the NULL bit of the same parameter: the record shows the long data the server stored', async () => {
    const { c, session } = await login('review-long-data-null');
    c.send(prepare('UPDATE ld SET v = ? WHERE id = 1'));
    const prep = await queryEvent(session, (d) => d.command === 'COM_STMT_PREPARE');
    expect(prep.outcome).toBe('success');
    const id = detail(prep).statement_id as number;
    await c.next(); // prepare OK (+ parameter definition)
    c.send(longData(id, 0, 'stored-through-long-data'));
    c.send(executeOne(id, null));
    const ex = await queryEvent(session, (d) => d.command === 'COM_STMT_EXECUTE');
    expect(ex.outcome).toBe('success');
    // What the server did with the parameter...
    expect(await valueOf(1)).toBe('stored-through-long-data');
    // ...is what the record says.
    expect(detail(ex).params).toEqual([{ hex: Buffer.from('stored-through-long-data').toString('hex'), length: 24, long_data: true }]);
    c.socket.destroy();
  });

  it('a refused prepare leaves no "last prepared" statement: 0xFFFFFFFF is not recorded as an earlier statement, nor its long data', async () => {
    const { c, session } = await login('review-last-prepared');
    c.send(prepare('UPDATE ld SET v = ? WHERE id = 2'));
    const prep = await queryEvent(session, (d) => d.command === 'COM_STMT_PREPARE' && d.query === 'UPDATE ld SET v = ? WHERE id = 2');
    const id = detail(prep).statement_id as number;
    expect(id).toBeGreaterThan(0);
    c.send(prepare('SELECT nope FROM review_no_such_table WHERE x = ?'));
    await queryEvent(session, (d) => d.command === 'COM_STMT_PREPARE' && d.query?.includes('review_no_such_table'));
    // The server cleared its "last prepared" statement when it refused the second prepare: long data sent to
    // 0xFFFFFFFF reaches no statement, so the first statement, executed by its own id, binds the value of its packet.
    c.send(longData(LAST_PREPARED, 0, 'never-bound'));
    c.send(executeOne(id, 'value-in-packet'));
    const ex = await queryEvent(session, (d) => d.command === 'COM_STMT_EXECUTE');
    expect(await valueOf(2)).toBe('value-in-packet');
    expect([ex.outcome, detail(ex).query, detail(ex).params]).toEqual(['success', 'UPDATE ld SET v = ? WHERE id = 2', ['value-in-packet']]);
    // An execution of 0xFFFFFFFF runs nothing: it is not recorded as the first statement.
    c.send(executeOne(LAST_PREPARED, 'via-last-prepared'));
    const last = await w.tg.waitForEvent((e) => e !== ex && e.type === 'db.query' && e.session_id === session && detail(e).command === 'COM_STMT_EXECUTE', 15_000);
    expect([last.outcome, detail(last).query, detail(last).params]).toEqual(['failure', undefined, undefined]);
    expect(await valueOf(2)).toBe('value-in-packet');
    c.socket.destroy();
  });
});
