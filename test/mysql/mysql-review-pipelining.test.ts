import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type MyWorld } from './helpers.ts';
import { rawLogin } from './raw-client.ts';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { COM } from '../../proxies/mysql/wire.ts';
import { waitFor } from '../support/tmp.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Commands a client sends before reading any answer (pipelining) reach the server as a direct connection
 * would take them, and their records say what the server did.
 */
let w: MyWorld;
beforeAll(async () => {
  w = await startWorld();
  await w.db.query('CREATE TABLE shop.piped (id INT PRIMARY KEY, note TEXT)');
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const detail = (e: AuditEvent | undefined) => e?.details as Record<string, any>;
const packet = (...parts: Buffer[]) => encodePacket(0, Buffer.concat(parts));
const query = (sql: string) => packet(Buffer.from([COM.QUERY]), Buffer.from(sql));

describe('pipelined commands', () => {
  it('statements sent in the same write as COM_QUIT run, and are recorded with their outcome', async () => {
    const c = await rawLogin(w.port, w.alice, 'db', 'shop');
    const insert = "INSERT INTO piped VALUES (1, 'sent with the quit')";
    const update = "UPDATE piped SET note = 'updated before the quit' WHERE id = 1";
    // One write: two statements and the goodbye, as a fire-and-forget client sends them.
    c.send(Buffer.concat([query(insert), query(update), packet(Buffer.from([COM.QUIT]))]));
    await c.closed;
    const session = (await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).query === insert)).session_id;
    await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === session, 15_000);
    // The server ran both, as it does for a direct client that sends them before quitting...
    expect(await w.db.query('SELECT note FROM shop.piped WHERE id = 1')).toEqual([['updated before the quit']]);
    // ...and the record says so.
    const records = w.tg.events.filter((e) => e.type === 'db.query' && e.session_id === session);
    expect(records.map((e) => [detail(e).command, detail(e).query ?? null, e.outcome])).toEqual([
      ['COM_QUERY', insert, 'success'],
      ['COM_QUERY', update, 'success'],
      ['COM_QUIT', null, 'success'],
    ]);
  });

  it('a client that closes its socket right after COM_QUIT: the statements it sent before still run and are recorded', async () => {
    const c = await rawLogin(w.port, w.alice, 'db', 'shop');
    const slow = 'SELECT SLEEP(0.5) AS before_quit';
    const insert = "INSERT INTO piped VALUES (2, 'after the sleep, before the quit')";
    c.send(Buffer.concat([query(slow), query(insert), packet(Buffer.from([COM.QUIT]))]));
    c.socket.destroy();
    const session = (await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).query === slow)).session_id;
    await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === session, 15_000);
    expect(await w.db.query('SELECT note FROM shop.piped WHERE id = 2')).toEqual([['after the sleep, before the quit']]);
    const records = w.tg.events.filter((e) => e.type === 'db.query' && e.session_id === session);
    expect(records.map((e) => [detail(e).command, detail(e).query ?? null, e.outcome])).toEqual([
      ['COM_QUERY', slow, 'success'],
      ['COM_QUERY', insert, 'success'],
      ['COM_QUIT', null, 'success'],
    ]);
  });
});

describe('commands with arguments', () => {
  it('COM_FIELD_LIST is recorded with the table (and wildcard) whose columns it lists', async () => {
    const c = await rawLogin(w.port, w.alice, 'db', 'shop');
    const fieldList = (args: Buffer) => packet(Buffer.from([COM.FIELD_LIST]), args);
    c.send(fieldList(Buffer.from('items\0')));
    c.send(fieldList(Buffer.from('piped\0no%')));
    const lists = () => w.tg.events.filter((e) => e.type === 'db.query' && detail(e).command === 'COM_FIELD_LIST');
    await waitFor(() => lists().length >= 2, 15_000, 'the two COM_FIELD_LIST records');
    const events = lists();
    expect(events.map((e) => [e.outcome, detail(e).query])).toEqual([
      ['success', 'COM_FIELD_LIST items'],
      ['success', 'COM_FIELD_LIST piped no%'],
    ]);
    c.socket.destroy();
  });
});
