import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type MyWorld } from './helpers.ts';
import { rawLogin } from './raw-client.ts';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { COM } from '../../proxies/mysql/wire.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * A database switch no OK packet reports — made inside a compound statement that then failed — is learned
 * by vigil's own state probe before the next command; it must be authorized like a reported one.
 */
let w: MyWorld;
beforeAll(async () => {
  w = await startWorld();
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const detail = (e: AuditEvent | undefined) => e?.details as Record<string, any>;
const query = (sql: string) => encodePacket(0, Buffer.concat([Buffer.from([COM.QUERY]), Buffer.from(sql)]));

describe('a database switch only the state probe sees', () => {
  it('a failed compound statement that switched to a database the role does not allow: the session is closed before the next command runs', async () => {
    // db-limited: alice's analyst role allows database shop only.
    const c = await rawLogin(w.port, w.alice, 'db-limited', 'shop');
    const sql = "BEGIN NOT ATOMIC EXECUTE IMMEDIATE 'USE other'; SELECT nope_col FROM no_such_table; END";
    c.send(query(sql));
    const failed = await c.next();
    expect(failed.payload[0]).toBe(0xff);
    const e = await w.tg.waitForEvent((x) => x.type === 'db.query' && detail(x).query === sql, 15_000);
    expect(e.outcome).toBe('failure');
    // The server is in `other` now; no OK said so. The next command is not run there.
    c.send(query('SELECT x FROM t'));
    const err = await c.next(10_000);
    expect(err.payload[0]).toBe(0xff);
    expect(err.payload.subarray(9).toString()).toContain("switched to database 'other'");
    await c.closed;
    const end = await w.tg.waitForEvent((x) => x.type === 'session.end' && x.session_id === e.session_id, 15_000);
    expect(detail(end)).toMatchObject({ error: 'database_not_allowed', database: 'other' });
    expect(w.tg.events.some((x) => x.session_id === e.session_id && detail(x).query === 'SELECT x FROM t')).toBe(false);
  });
});
