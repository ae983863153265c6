import net from 'node:net';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, PASSWORDS, type MyWorld } from './helpers.ts';
import { rawLogin, type RawClient } from './raw-client.ts';
import { enableGeneralLog, readGeneralLog } from './general-log.ts';
import { freePort } from '../support/tmp.ts';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { COM } from '../../proxies/mysql/wire.ts';
import { SESSION_PROBE } from '../../proxies/mysql/session-query.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * vigil's own state probe reaches the server like any statement (principle 1: nothing reaches a backend
 * unrecorded). A session that ends while the probe is in flight — its answer held back on the way — must
 * still record it, as a db.session_query of unknown outcome, in the default (batched) durability too.
 */

/** A relay in front of MariaDB that can hold back what the server sends (counting what it holds). */
function holdingRelay(port: number, to: () => number) {
  const state = { hold: false, held: 0 };
  const server = net.createServer((c) => {
    const u = net.connect(to(), '127.0.0.1');
    for (const s of [c, u]) s.on('error', () => {});
    c.pipe(u);
    u.on('data', (d: Buffer) => {
      if (state.hold) state.held += d.length;
      else c.write(d);
    });
    c.on('close', () => u.destroy());
    u.on('close', () => c.destroy());
  });
  server.listen(port, '127.0.0.1');
  return { state, close: () => new Promise((r) => server.close(r)) };
}

let w: MyWorld;
let generalLog: string;
let relay: ReturnType<typeof holdingRelay>;
beforeAll(async () => {
  const port = await freePort();
  let dbPort = 0;
  relay = holdingRelay(port, () => dbPort);
  w = await startWorld((_db, secretFile) => ({
    targets: [{ name: 'db-held', protocol: 'mysql', host: '127.0.0.1', port, user: 'native_user', password: { file: secretFile('held', PASSWORDS.native) } }],
    roles: [{ name: 'dba', targets: ['db-held'], databases: ['*'] }],
  }));
  dbPort = w.db.port;
  generalLog = await enableGeneralLog(w.db);
}, 120_000);
afterAll(async () => {
  await relay?.close();
  await w?.stop();
});

const detail = (e: AuditEvent | undefined) => e?.details as Record<string, any>;
const query = (sql: string) => encodePacket(0, Buffer.concat([Buffer.from([COM.QUERY]), Buffer.from(sql)]));

async function untilErr(c: RawClient): Promise<void> {
  for (;;) if ((await c.next(10_000)).payload[0] === 0xff) return;
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
  expect(cond()).toBe(true);
}

describe("vigil's own session query in flight when the session ends", () => {
  it('is recorded (outcome unknown) though its answer never came', async () => {
    const before = new Set(w.tg.events.filter((e) => e.type === 'session.start').map((e) => e.session_id));
    const c = await rawLogin(w.port, w.alice, 'db-held', 'shop');
    const start = await w.tg.waitForEvent((e) => e.type === 'session.start' && !before.has(e.session_id), 15_000);
    // A compound statement that fails may have changed state without an OK to say so: vigil probes the
    // server before the next command.
    c.send(query('BEGIN NOT ATOMIC SELECT 1; SELECT no_such_column FROM items; END'));
    await untilErr(c);
    relay.state.hold = true;
    c.send(query('SELECT 77'));
    // The server has answered the probe (its answer is held on the way back to vigil).
    await until(() => relay.state.held > 0);
    c.socket.destroy();
    const end = await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === start.session_id, 15_000);
    relay.state.hold = false;
    const thread = detail(end).backend_thread_id as number;
    const probesRun = readGeneralLog(generalLog).filter((l) => l.id === thread && l.command === 'Query' && l.text === SESSION_PROBE).length;
    const probesRecorded = w.tg.events.filter((e) => e.type === 'db.session_query' && e.session_id === start.session_id && detail(e).query === SESSION_PROBE);
    // One at login, one after the failed block: both reached the server, both are on record.
    expect(probesRun).toBe(2);
    expect(probesRecorded.map((e) => e.outcome)).toEqual(['success', 'unknown']);
    expect(detail(probesRecorded[1]).end_reason).toBe('client_closed');
    // The client's command waited behind the probe and never reached the server.
    expect(w.tg.events.some((e) => e.type === 'db.query' && e.session_id === start.session_id && detail(e).query === 'SELECT 77')).toBe(false);
  });
});
