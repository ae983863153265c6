import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { startWorld, type PgWorld } from '../postgres/helpers.ts';
import { freePort, waitFor } from '../support/tmp.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * vigil behind a real HAProxy speaking the PROXY protocol (v2 and v1) to its Postgres listener. HAProxy
 * connects to vigil from 127.0.0.3 (the only trusted balancer); psql connects to HAProxy from 127.0.0.1.
 * Events must carry the client's address (127.0.0.1), not the balancer's; a header from anyone else is
 * never honoured, and a balancer connection without a header is refused and recorded.
 */
const BALANCER = '127.0.0.3';
let w: PgWorld;
let haproxy: ChildProcess;
let v2Port: number;
let v1Port: number;
let directPort: number;
let apiV2Port: number;
let apiPlainPort: number;

beforeAll(async () => {
  w = await startWorld({
    postgres: { listen: '127.0.0.1:0', proxy_protocol: { trusted: [BALANCER], header_timeout: '2s' } },
    api: { listen: '127.0.0.1:0', proxy_protocol: { trusted: [BALANCER], header_timeout: '2s' } },
  });
  [v2Port, v1Port, directPort, apiV2Port, apiPlainPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const apiPort = w.tg.ports.api;
  const cfg = path.join(w.base, 'haproxy.cfg');
  fs.writeFileSync(
    cfg,
    [
      'global',
      '  maxconn 200',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 60s',
      '  timeout server 60s',
      `frontend pg_v2`,
      `  bind 127.0.0.1:${v2Port}`,
      `  default_backend vigil_v2`,
      `backend vigil_v2`,
      `  server gw 127.0.0.1:${w.port} send-proxy-v2 source ${BALANCER}`,
      `frontend pg_v1`,
      `  bind 127.0.0.1:${v1Port}`,
      `  default_backend vigil_v1`,
      `backend vigil_v1`,
      `  server gw 127.0.0.1:${w.port} send-proxy source ${BALANCER}`,
      // The balancer forgot send-proxy: vigil must refuse, not take 127.0.0.3 for the client.
      `frontend pg_plain`,
      `  bind 127.0.0.1:${directPort}`,
      `  default_backend vigil_plain`,
      `backend vigil_plain`,
      `  server gw 127.0.0.1:${w.port} source ${BALANCER}`,
      // The HTTPS API behind the same balancer (TLS passes through; vigil terminates it).
      `frontend api_v2`,
      `  bind 127.0.0.1:${apiV2Port}`,
      `  default_backend vigil_api_v2`,
      `backend vigil_api_v2`,
      `  server gw 127.0.0.1:${apiPort} send-proxy-v2 source ${BALANCER}`,
      `frontend api_plain`,
      `  bind 127.0.0.1:${apiPlainPort}`,
      `  default_backend vigil_api_plain`,
      `backend vigil_api_plain`,
      `  server gw 127.0.0.1:${apiPort} source ${BALANCER}`,
      '',
    ].join('\n'),
  );
  haproxy = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  haproxy.stderr!.on('data', (d) => (err += d));
  await waitFor(async () => (await canConnect(v2Port)) && (await canConnect(directPort)), 10_000, `haproxy listening (${err})`);
}, 60_000);
afterAll(async () => {
  haproxy?.kill('SIGKILL');
  await w?.stop();
});

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

const viaPort = (port: number, marker: string) => w.psql(['-qAt', '-c', `SELECT '${marker}'`], { conn: w.conn('pg').replace(`port=${w.port}`, `port=${port}`) });

describe('behind HAProxy with the PROXY protocol', () => {
  it.each([
    ['v2', () => v2Port],
    ['v1', () => v1Port],
  ])('PROXY %s: psql works and every event names the client, not the balancer', async (version, port) => {
    const marker = `through-haproxy-${version}`;
    const r = await viaPort(port(), marker);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(marker);
    const q = await w.tg.waitForEvent((e) => e.type === 'db.query' && e.details.sql === `SELECT '${marker}'`);
    const session = w.tg.events.filter((e) => e.session_id === q.session_id);
    expect(session.map((e) => e.type)).toEqual(expect.arrayContaining(['auth.success', 'session.start', 'db.query']));
    for (const e of session) expect(e.source.ip).toBe('127.0.0.1');
    // HAProxy's client-side port (psql's ephemeral port), not the balancer's outgoing one.
    expect(q.source.port).toBeGreaterThan(0);
  });

  it('a balancer connection without a header is refused and recorded; nothing reaches the backend', async () => {
    const before = w.tg.events.length;
    const r = await viaPort(directPort, 'no-header');
    expect(r.code).not.toBe(0);
    // This test's own refusal, not one of the set-up's port probes (recorded with the address unknown when
    // the probe was gone before the gateway accepted its connection).
    let refusal: AuditEvent | undefined;
    await waitFor(() => (refusal = w.tg.events.slice(before).find((e) => e.type === 'auth.failure' && e.details.reason === 'proxy_protocol')) !== undefined, 10_000, 'the refusal');
    refusal = refusal!;
    expect(refusal.source.ip).toBe(BALANCER);
    expect(refusal.details.detail).toMatch(/no PROXY protocol header/);
    expect(w.tg.events.slice(before).some((e) => e.type === 'session.start' || e.details.sql === "SELECT 'no-header'")).toBe(false);
  });

  it('a header from a source that is not a trusted balancer is never honoured', async () => {
    const before = w.tg.events.length;
    // A client at 127.0.0.1 claims to be 203.0.113.66. Its bytes go to the Postgres decoder as they are.
    const s = net.connect(w.port, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    s.write('PROXY TCP4 203.0.113.66 127.0.0.1 40000 5432\r\n');
    let reply = '';
    s.on('data', (d) => (reply += d.toString('latin1')));
    const closed = await new Promise<boolean>((resolve) => {
      s.on('close', () => resolve(true));
      s.on('error', () => undefined);
      setTimeout(() => resolve(false), 10_000);
    });
    expect(closed).toBe(true);
    // The header's first four bytes read as a startup length: refused by the pre-authentication limit.
    expect(reply).toMatch(/^E[\s\S]*C54000[\s\S]*pre_auth\.max_message_size/);
    await new Promise((r) => setTimeout(r, 200));
    const after = w.tg.events.slice(before);
    expect(after.some((e) => e.source.ip === '203.0.113.66')).toBe(false);
    expect(after.some((e) => e.type === 'session.start')).toBe(false);
  });

  it('a trusted balancer that sends garbage or nothing is cut at the header deadline', async () => {
    const s = net.connect({ port: w.port, host: '127.0.0.1', localAddress: BALANCER });
    await new Promise((r) => s.once('connect', r));
    s.write('PROX'); // a prefix, then silence
    const t0 = Date.now();
    await new Promise((r) => s.on('close', r));
    expect(Date.now() - t0).toBeGreaterThan(1000);
    await w.tg.waitForEvent((e) => e.type === 'auth.failure' && e.details.reason === 'proxy_protocol' && /within 2000 ms/.test(String(e.details.detail)));
  });

  describe('the HTTPS API behind the balancer', () => {
    const get = (port: number, pathname: string, creds?: { crt: string; key: string; ca: string }) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = https.get(
          { host: '127.0.0.1', port, path: pathname, rejectUnauthorized: false, agent: false, ...(creds ? { cert: fs.readFileSync(creds.crt), key: fs.readFileSync(creds.key) } : {}) },
          (res) => {
            let body = '';
            res.on('data', (d) => (body += d));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
      });

    it('a refused call is recorded with the client address from the header, not the balancer', async () => {
      const r = await get(apiV2Port, '/v1/sessions');
      expect(r.status).toBe(401);
      const ev = await w.tg.waitForEvent((e) => e.type === 'api.request' && e.details.path === '/v1/sessions' && e.outcome === 'failure');
      expect(ev.source.ip).toBe('127.0.0.1');
    });

    it('a certificate bound to the client address works through the balancer: the check sees the client', async () => {
      const bound = await w.tg.issue({ user: 'bound', roles: ['dba'], sourceAddresses: ['127.0.0.1/32'] });
      expect((await get(apiV2Port, '/v1/sessions', bound)).status).toBe(200);
      const balancerOnly = await w.tg.issue({ user: 'balancer-only', roles: ['dba'], sourceAddresses: [`${BALANCER}/32`] });
      expect((await get(apiV2Port, '/v1/sessions', balancerOnly)).status).toBe(401);
    });

    it('a balancer connection without a header is closed and recorded', async () => {
      await expect(get(apiPlainPort, '/healthz')).rejects.toThrow();
      const refusal = await w.tg.waitForEvent((e) => e.type === 'auth.failure' && e.details.reason === 'proxy_protocol' && e.target.protocol === 'https');
      expect(refusal.source.ip).toBe(BALANCER);
    });

    it('direct clients reach the API unchanged', async () => {
      expect((await get(w.tg.ports.api, '/healthz')).status).toBe(200);
    });
  });
});
