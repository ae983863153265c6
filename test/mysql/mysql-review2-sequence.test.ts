import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type MyWorld } from './helpers.ts';
import { rawLogin } from './raw-client.ts';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { COM, u32 } from '../../proxies/mysql/wire.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * A command larger than 16 MiB arrives as several wire packets (sequence ids 0, 1, ...); its reply starts
 * one after the last of them. An ERR vigil writes itself in the server's place must do the same, or the
 * client reads "packets out of order" instead of vigil's refusal.
 */
let w: MyWorld;
beforeAll(async () => {
  w = await startWorld();
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const detail = (e: AuditEvent | undefined) => e?.details as Record<string, any>;

describe('local replies to commands spanning several wire packets', () => {
  it('a 17 MiB COM_STMT_EXECUTE of a statement the server never confirmed gets its ERR with sequence id 2, and the session goes on', async () => {
    const c = await rawLogin(w.port, w.alice, 'db', 'shop');
    // 17 MiB of parameter bytes: two wire packets, sequence ids 0 and 1.
    c.send(encodePacket(0, Buffer.concat([Buffer.from([COM.STMT_EXECUTE]), u32(4242), Buffer.from([0]), u32(1), Buffer.alloc(17 * 1024 * 1024, 0x41)])));
    const err = await c.next(30_000);
    expect(err.payload[0]).toBe(0xff);
    expect(err.payload.readUInt16LE(1)).toBe(1243); // ER_UNKNOWN_STMT_HANDLER
    expect(err.seq).toBe(2);
    const refused = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).command === 'COM_STMT_EXECUTE' && detail(e).statement_id === 4242, 15_000);
    expect(detail(refused).unknown_statement).toBe(true);
    // A one-packet command after it is answered from sequence id 1 again.
    c.send(encodePacket(0, Buffer.concat([Buffer.from([COM.STMT_EXECUTE]), u32(4243), Buffer.from([0]), u32(1)])));
    const next = await c.next(15_000);
    expect([next.payload[0], next.seq]).toEqual([0xff, 1]);
    c.send(encodePacket(0, Buffer.concat([Buffer.from([COM.QUERY]), Buffer.from("SELECT 'still in step'")])));
    expect((await c.next(15_000)).seq).toBe(1);
    await w.tg.waitForEvent((e) => e.type === 'db.query' && e.session_id === refused.session_id && detail(e).query === "SELECT 'still in step'", 15_000);
    c.socket.destroy();
  }, 60_000);
});
