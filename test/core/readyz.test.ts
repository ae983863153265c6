import https from 'node:https';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { startTestGateway } from '../support/gateway.ts';

function getReady(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/readyz', rejectUnauthorized: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('readiness check timed out')));
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/**
 * Shutdown behind a load balancer: readiness turns 503 first while every listener still accepts, for
 * `gateway.drain_notice`; only then do the listeners close. Without this the balancer keeps sending new
 * connections to a replica whose listeners are already gone.
 */
describe('GET /readyz and gateway.drain_notice', () => {
  it('answers 200 without a certificate, then 503 draining while listeners still accept, then closes', async () => {
    const tg = await startTestGateway({ gateway: { drain_notice: '1500ms' }, mysql: { enabled: false } });
    const { api, postgres, ssh } = tg.ports as Record<string, number>;
    const ready = await getReady(api);
    expect(ready).toEqual({ status: 200, body: expect.stringContaining('"ready"') });

    const closed = tg.gw.close();
    const draining = await getReady(api);
    expect(draining.status).toBe(503);
    expect(JSON.parse(draining.body)).toEqual({ status: 'draining' });
    // The notice period: the balancer sees 503, and connections that still arrive are accepted.
    expect(await canConnect(postgres)).toBe(true);
    expect(await canConnect(ssh)).toBe(true);

    await closed;
    expect(await canConnect(postgres)).toBe(false);
    expect(await canConnect(ssh)).toBe(false);
  }, 30_000);

});
