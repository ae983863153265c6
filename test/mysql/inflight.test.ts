import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startWorld, type MyWorld } from './helpers.ts';
import { rawLogin, type RawClient } from './raw-client.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { PacketFramer, encodePacket } from '../../proxies/mysql/framing.ts';
import { parseErr } from '../../proxies/mysql/handshake.ts';
import { COM } from '../../proxies/mysql/wire.ts';
import { waitFor } from '../support/tmp.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Commands in flight are never lost: a session that ends while a statement runs (client killed, backend
 * killed or shut down) writes that statement as db.query with outcome `unknown` before session.end, a
 * long statement gets db.query.start, and every client socket is closed with a MySQL error (hang guard:
 * 5 s) when the backend goes away.
 */
const detail = (e: AuditEvent | undefined) => e?.details as Record<string, any>;
const query = (sql: string) => encodePacket(0, Buffer.concat([Buffer.from([COM.QUERY]), Buffer.from(sql)]));

/** Resolves once the raw client's socket closed; fails after 5 s (a hang). */
async function closesWithin5s(c: RawClient): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([c.closed, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('client socket still open after 5 s')), 5000)))]);
  clearTimeout(timer);
}

/** Backend thread id of the connection running `marker` (a unique statement text). */
async function backendThread(w: MyWorld, marker: string): Promise<string> {
  let id = '';
  await waitFor(async () => {
    const rows = await w.db.query(`SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE '%${marker}%' AND INFO NOT LIKE '%PROCESSLIST%'`);
    id = rows[0]?.[0] ?? '';
    return id !== '';
  }, 10_000, `the backend to run ${marker}`);
  return id;
}

/** A logged-in raw client and the codes of the ERR packets it receives from now on. */
async function watched(w: MyWorld, creds: IssuedFiles = w.alice): Promise<RawClient & { errors: number[] }> {
  const c = await rawLogin(w.port, creds);
  const errors: number[] = [];
  const framer = new PacketFramer(1 << 30);
  c.socket.on('data', (d: Buffer) => framer.push(d, (p) => void (p.payload[0] === 0xff && errors.push(parseErr(p.payload).code))));
  return Object.assign(c, { errors });
}

function expectUnknownBeforeEnd(w: MyWorld, text: string): AuditEvent {
  const ev = w.tg.events;
  const q = ev.find((e) => e.type === 'db.query' && detail(e).query === text)!;
  expect(q, `db.query for ${text}`).toBeDefined();
  const end = ev.find((e) => e.type === 'session.end' && e.session_id === q.session_id)!;
  expect(end).toBeDefined();
  expect(ev.indexOf(q)).toBeLessThan(ev.indexOf(end));
  return q;
}

describe('mysql commands in flight when the session ends', () => {
  let w: MyWorld;
  beforeAll(async () => {
    w = await startWorld({ audit: { long_running_after: '300ms' } });
  }, 120_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('a statement running longer than audit.long_running_after gets db.query.start; a quick one does not', async () => {
    const r = await w.cli(['--user=db', '-e', "SELECT SLEEP(0.8) AS slow; SELECT 'quick-one'"]);
    expect(r.code).toBe(0);
    const done = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).query === 'SELECT SLEEP(0.8) AS slow');
    const start = w.tg.events.find((e) => e.type === 'db.query.start' && e.session_id === done.session_id);
    expect(start?.outcome).toBe('unknown');
    expect(detail(start)).toMatchObject({ command: 'COM_QUERY', query: 'SELECT SLEEP(0.8) AS slow' });
    expect(w.tg.events.indexOf(start!)).toBeLessThan(w.tg.events.indexOf(done));
    expect(w.tg.events.filter((e) => e.type === 'db.query.start' && e.session_id === done.session_id)).toHaveLength(1);
  });

  it('client killed (-9) during SELECT SLEEP: the statement is recorded with outcome unknown before session.end', async () => {
    const c = spawn('mariadb', ['--no-defaults', '--host=127.0.0.1', `--port=${w.port}`, '--user=db', `--ssl-ca=${w.alice.ca}`, `--ssl-cert=${w.alice.crt}`, `--ssl-key=${w.alice.key}`, '-e', 'SELECT SLEEP(20) AS killed_client'], { stdio: 'ignore' });
    await backendThread(w, 'killed_client');
    c.kill('SIGKILL');
    const q = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).query === 'SELECT SLEEP(20) AS killed_client');
    expect(q.outcome).toBe('unknown');
    expect(detail(q)).toMatchObject({ command: 'COM_QUERY', end_reason: 'client_closed', rows_returned: 0, bytes_relayed: 0 });
    expect(detail(q).duration_ms).toBeGreaterThan(0);
    await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === q.session_id);
    expectUnknownBeforeEnd(w, 'SELECT SLEEP(20) AS killed_client');
  });

  it('KILL CONNECTION of the backend thread: the client gets an error and its socket closes', async () => {
    const c = await watched(w);
    c.send(query('SELECT SLEEP(20) AS killed_backend_thread'));
    const id = await backendThread(w, 'killed_backend_thread');
    await w.db.query(`KILL CONNECTION ${id}`);
    await closesWithin5s(c);
    expect(c.errors.length).toBeGreaterThan(0);
    const q = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).query === 'SELECT SLEEP(20) AS killed_backend_thread');
    await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === q.session_id);
    expectUnknownBeforeEnd(w, 'SELECT SLEEP(20) AS killed_backend_thread');
  });

  it('a session ended by revocation records its running statement as unknown', async () => {
    const bob = await w.tg.issue({ user: 'bob-inflight', roles: ['dba'] });
    const c = await watched(w, bob);
    c.send(query('SELECT SLEEP(20) AS revoked_midway'));
    await backendThread(w, 'revoked_midway');
    const s = w.tg.events.find((e) => e.type === 'session.start' && e.actor.user === 'bob-inflight')!;
    w.tg.gw.services.sessions.get(s.session_id!)!.terminate('revoked', 'revoked by test');
    await closesWithin5s(c);
    const q = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).query === 'SELECT SLEEP(20) AS revoked_midway');
    expect(q.outcome).toBe('unknown');
    expect(detail(q).end_reason).toBe('revoked');
    await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === q.session_id);
    expectUnknownBeforeEnd(w, 'SELECT SLEEP(20) AS revoked_midway');
  });
});

describe('mysql backend dies: every client socket closes with an error', () => {
  for (const how of ['kill -9', 'SHUTDOWN'] as const) {
    it(`${how} of the server: busy and idle clients get an ERR and are closed within 5 s; the running statement is unknown`, async () => {
      const w = await startWorld();
      try {
        const busy = await watched(w);
        const idle = await watched(w);
        const marker = `backend_dies_${how === 'kill -9' ? 'kill' : 'shutdown'}`;
        busy.send(query(`SELECT SLEEP(20) AS ${marker}`));
        await backendThread(w, marker);
        if (how === 'kill -9') process.kill(Number(fs.readFileSync(path.join(w.db.dir, 'mariadbd.pid'), 'utf8').trim()), 'SIGKILL');
        else await w.db.query('SHUTDOWN');
        await closesWithin5s(busy);
        await closesWithin5s(idle);
        expect(busy.errors.length).toBeGreaterThan(0);
        expect(idle.errors.length).toBeGreaterThan(0);
        const q = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).query === `SELECT SLEEP(20) AS ${marker}`);
        if (how === 'kill -9') {
          expect(q.outcome).toBe('unknown');
          expect(['backend_closed', 'backend_error']).toContain(detail(q).end_reason);
        }
        await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === q.session_id);
        expectUnknownBeforeEnd(w, `SELECT SLEEP(20) AS ${marker}`);
        await waitFor(() => w.tg.gw.services.sessions.size === 0, 5000, 'every session to end');
      } finally {
        await w.stop();
      }
    }, 60_000);
  }
});
