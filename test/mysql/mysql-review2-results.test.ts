import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type MyWorld } from './helpers.ts';
import { rawLogin, type RawClient } from './raw-client.ts';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { COM, u32 } from '../../proxies/mysql/wire.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * A prepared CALL answers one COM_STMT_EXECUTE with the result sets of the procedure's statements and
 * then its own OK (or an ERR): the one event of that command must count the rows those result sets
 * carried to the client, not only what the final OK says.
 */
let w: MyWorld;
beforeAll(async () => {
  w = await startWorld();
  await w.db.query(`
    DELIMITER //
    CREATE PROCEDURE shop.two_sets() BEGIN SELECT id FROM shop.items; SELECT name FROM shop.items WHERE id < 3; END //
    CREATE PROCEDURE shop.set_then_fail() BEGIN SELECT id FROM shop.items; SELECT nope FROM shop.items; END //
    DELIMITER ;`);
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const detail = (e: AuditEvent | undefined) => e?.details as Record<string, any>;
const packet = (...parts: Buffer[]) => encodePacket(0, Buffer.concat(parts));
const prepare = (sql: string) => packet(Buffer.from([COM.STMT_PREPARE]), Buffer.from(sql));
const execute = (id: number) => packet(Buffer.from([COM.STMT_EXECUTE]), u32(id), Buffer.from([0]), u32(1));

async function executeEvent(c: RawClient, sql: string): Promise<AuditEvent> {
  c.send(prepare(sql));
  const prep = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).command === 'COM_STMT_PREPARE' && detail(e).query === sql, 15_000);
  // The client leaves the (small) responses unread: the events say what passed.
  c.send(execute(detail(prep).statement_id));
  return w.tg.waitForEvent((e) => e.type === 'db.query' && e.session_id === prep.session_id && detail(e).command === 'COM_STMT_EXECUTE' && detail(e).query === sql, 15_000);
}

describe('a prepared CALL with several result sets', () => {
  it('records the rows of every result set it returned', async () => {
    const c = await rawLogin(w.port, w.alice, 'db', 'shop');
    const ex = await executeEvent(c, 'CALL two_sets()');
    // Three rows, then two rows, then the CALL's own OK.
    expect([ex.outcome, detail(ex).rows_returned, detail(ex).rows_affected]).toEqual(['success', 5, undefined]);
    c.socket.destroy();
  });

  it('a CALL that fails after a result set: the error, and the rows relayed before it', async () => {
    const c = await rawLogin(w.port, w.alice, 'db', 'shop');
    const ex = await executeEvent(c, 'CALL set_then_fail()');
    expect([ex.outcome, detail(ex).error?.code, detail(ex).rows_returned]).toEqual(['failure', 1054, 3]);
    c.socket.destroy();
  });
});
