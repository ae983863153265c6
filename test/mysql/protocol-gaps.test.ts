import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type MyWorld } from './helpers.ts';
import { waitFor } from '../support/tmp.ts';
import { rawLogin, RAW_CAPS, type RawClient } from './raw-client.ts';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { CLIENT, COM, u32 } from '../../proxies/mysql/wire.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Protocol corners where the record must follow the server: statement ids bound at the server's
 * prepare OK only, server-side cursors (COM_STMT_FETCH, SERVER_STATUS_CURSOR_EXISTS), 64-bit
 * length-encoded integers in OK packets, stored procedures with cursors of their own.
 */
let w: MyWorld;
beforeAll(async () => {
  w = await startWorld();
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const detail = (e: AuditEvent | undefined) => e?.details as Record<string, any>;
const packet = (...parts: Buffer[]) => encodePacket(0, Buffer.concat(parts));
const prepare = (sql: string) => packet(Buffer.from([COM.STMT_PREPARE]), Buffer.from(sql));
/** COM_STMT_EXECUTE without parameters; `cursor` asks for a read-only cursor. */
const execute = (id: number, cursor = false) => packet(Buffer.from([COM.STMT_EXECUTE]), u32(id), Buffer.from([cursor ? 1 : 0]), u32(1));
const fetch = (id: number, rows: number) => packet(Buffer.from([COM.STMT_FETCH]), u32(id), u32(rows));
const query = (sql: string) => packet(Buffer.from([COM.QUERY]), Buffer.from(sql));

/** The next db.query event of `session` after `from` events. */
async function nextQuery(session: string, from: number): Promise<AuditEvent> {
  return w.tg.waitForEvent((e) => e.type === 'db.query' && e.session_id === session && w.tg.events.indexOf(e) >= from);
}

async function sessionOf(c: RawClient, marker: string): Promise<string> {
  c.send(query(`SELECT '${marker}'`));
  const e = await w.tg.waitForEvent((x) => x.type === 'db.query' && detail(x).query === `SELECT '${marker}'`);
  return e.session_id!;
}

describe('mysql protocol gaps', () => {
  it('keeps last_insert_id beyond 2^53 (AUTO_INCREMENT near 2^63 and 2^64): the INSERTs are recorded, the session lives on', async () => {
    await w.db.query(`
      CREATE TABLE shop.big63 (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, v INT) AUTO_INCREMENT=9223372036854775800;
      CREATE TABLE shop.big64 (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, v INT) AUTO_INCREMENT=18446744073709551610;`);
    const r = await w.cli(['--user=db', 'shop', '-e', 'INSERT INTO big63 (v) VALUES (1); INSERT INTO big64 (v) VALUES (2); SELECT LAST_INSERT_ID() AS after_big']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('after_big\n18446744073709551610\n');
    for (const t of ['big63', 'big64']) {
      const e = await w.tg.waitForEvent((x) => x.type === 'db.query' && detail(x).query === `INSERT INTO ${t} (v) VALUES (${t === 'big63' ? 1 : 2})`);
      expect(e.outcome).toBe('success');
      expect(detail(e).rows_affected).toBe(1);
    }
    await w.tg.waitForEvent((x) => x.type === 'db.query' && detail(x).query === 'SELECT LAST_INSERT_ID() AS after_big');
  });

  it.each([
    ['with', RAW_CAPS],
    ['without', RAW_CAPS & ~CLIENT.DEPRECATE_EOF],
  ])('server-side cursor (%s CLIENT_DEPRECATE_EOF): COM_STMT_EXECUTE with a cursor, then COM_STMT_FETCH until the last row; no desync afterwards', async (mode, caps) => {
    const c = await rawLogin(w.port, w.alice, 'db', 'shop', caps);
    const session = await sessionOf(c, `cursor-session-${mode}`);
    let from = w.tg.events.length;
    c.send(prepare('SELECT seq FROM seq_1_to_10'));
    const prep = await nextQuery(session, from);
    expect(prep.outcome).toBe('success');
    const id = detail(prep).statement_id as number;
    from = w.tg.events.length;
    c.send(execute(id, true));
    const ex = await nextQuery(session, from);
    expect(ex.outcome).toBe('success');
    expect(detail(ex)).toMatchObject({ command: 'COM_STMT_EXECUTE', query: 'SELECT seq FROM seq_1_to_10', rows_returned: 0 });
    const fetched: number[] = [];
    for (let i = 0; i < 3; i++) {
      from = w.tg.events.length;
      c.send(fetch(id, 4));
      const f = await nextQuery(session, from);
      expect(f.outcome).toBe('success');
      expect(detail(f)).toMatchObject({ command: 'COM_STMT_FETCH', fetch_rows: 4, query: 'SELECT seq FROM seq_1_to_10', statement_id: id });
      fetched.push(detail(f).rows_returned);
    }
    expect(fetched).toEqual([4, 4, 2]);
    from = w.tg.events.length;
    c.send(query("SELECT 'after-cursor'"));
    const after = await nextQuery(session, from);
    expect(detail(after)).toMatchObject({ query: "SELECT 'after-cursor'", rows_returned: 1 });
    c.socket.destroy();
  });

  it.each([
    ['with', RAW_CAPS],
    ['without', RAW_CAPS & ~CLIENT.DEPRECATE_EOF],
  ])('server-side cursor whose statement fails while the cursor opens (%s CLIENT_DEPRECATE_EOF): the ERR after the column definitions ends the response; no desync afterwards', async (mode, caps) => {
    // Found by mariadb-test-run --cursor-protocol through vigil (ps_3innodb, type_geometry_mix_int).
    const c = await rawLogin(w.port, w.alice, 'db', 'shop', caps);
    const session = await sessionOf(c, `cursor-error-session-${mode}`);
    let from = w.tg.events.length;
    c.send(prepare('SELECT 1 < (SELECT seq FROM seq_1_to_2) AS one'));
    const prep = await nextQuery(session, from);
    const id = detail(prep).statement_id as number;
    from = w.tg.events.length;
    c.send(execute(id, true));
    const ex = await nextQuery(session, from);
    expect(ex.outcome).toBe('failure');
    expect(detail(ex)).toMatchObject({ command: 'COM_STMT_EXECUTE', error: { code: 1242 } });
    from = w.tg.events.length;
    c.send(query("SELECT 'after-cursor-error'"));
    const after = await nextQuery(session, from);
    expect(detail(after)).toMatchObject({ query: "SELECT 'after-cursor-error'", rows_returned: 1 });
    expect(c.isClosed()).toBe(false);
    c.socket.destroy();
  });

  it('a refused prepare binds nothing; a prepare pipelined with "execute the last prepared" records the new text', async () => {
    const c = await rawLogin(w.port, w.alice);
    const session = await sessionOf(c, 'pipelined-session');
    let from = w.tg.events.length;
    c.send(prepare("SELECT 'first statement'"));
    await nextQuery(session, from);
    from = w.tg.events.length;
    // Prepare and execute(-1) in one write: vigil must not take -1 as the statement prepared before.
    c.send(Buffer.concat([prepare("SELECT 'second statement'"), execute(0xffffffff)]));
    await nextQuery(session, from);
    const ex = await nextQuery(session, from + 1);
    expect(detail(ex)).toMatchObject({ command: 'COM_STMT_EXECUTE', query: "SELECT 'second statement'", rows_returned: 1 });
    from = w.tg.events.length;
    c.send(prepare('SELECT nope FROM no_such_table_here'));
    const refused = await nextQuery(session, from);
    expect(refused.outcome).toBe('failure');
    expect(detail(refused).statement_id).toBeUndefined();
    from = w.tg.events.length;
    c.send(query("SELECT 'still in step'"));
    expect(detail(await nextQuery(session, from)).query).toBe("SELECT 'still in step'");
    c.socket.destroy();
  });

  it('stored procedures with open cursors of their own: results relayed and recorded, session stays in step', async () => {
    await w.db.query(`
      DELIMITER //
      CREATE PROCEDURE shop.walk()
      BEGIN
        DECLARE done INT DEFAULT 0;
        DECLARE n VARCHAR(100);
        DECLARE cur CURSOR FOR SELECT name FROM shop.items ORDER BY id;
        DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
        OPEN cur;
        FETCH cur INTO n;
        SELECT n AS first_name;
        FETCH cur INTO n;
        SELECT n AS second_name, COUNT(*) AS total FROM shop.items;
        CLOSE cur;
      END //
      DELIMITER ;`);
    const r = await w.cli(['--user=db', 'shop', '-e', "CALL walk(); SELECT 'after-call'"]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('first_name\napple\nsecond_name\ttotal\npear\t3\nafter-call\nafter-call\n');
    const call = await w.tg.waitForEvent((x) => x.type === 'db.query' && detail(x).query === 'CALL walk()' && detail(x).statement_index === undefined);
    expect(call.outcome).toBe('success');
    await w.tg.waitForEvent((x) => x.type === 'db.query' && detail(x).query === "SELECT 'after-call'");
  });
});

describe('an ERR vigil writes in the server\'s place', () => {
  it('carries the sequence id the server\'s reply would have: a statement whose backend thread is killed gets 1927 as packet 1', async () => {
    const c = await rawLogin(w.port, w.alice, 'db', 'shop');
    const killer = await w.connect('db');
    try {
      // A few round trips first, so the last server packet's seq is not the one the next reply needs.
      await sessionOf(c, 'seq-warmup');
      // Its result set: column count, column definition, row, then the final OK (0xfe, CLIENT_DEPRECATE_EOF).
      while ((await c.next()).payload[0] !== 0xfe);
      c.send(query('SELECT SLEEP(31) AS s'));
      const id = await waitFor(async () => {
        const [rows] = (await killer.query("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(31) AS s'")) as unknown as [{ ID: number }[]];
        return rows[0]?.ID;
      }, 10_000, 'the SLEEP running');
      await killer.query(`KILL CONNECTION ${id}`);
      const err = await c.next(10_000);
      expect(err.payload[0]).toBe(0xff);
      expect(err.payload.readUInt16LE(1)).toBe(1927);
      expect(err.seq).toBe(1);
      await c.closed;
    } finally {
      c.socket.destroy();
      killer.destroy();
    }
  }, 30_000);
});
