import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiEnv, type ApiEnv, type ClientCert } from './support.ts';

let env: ApiEnv;
let admin: ClientCert, alice: ClientCert;
beforeAll(async () => {
  env = await apiEnv();
  [admin, alice] = await Promise.all([env.client('root', ['admin']), env.client('alice', ['dev'])]);
});
afterAll(async () => {
  await env?.stop();
});

function scrape(who?: ClientCert): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${env.url}/metrics`, { ca: env.ca, cert: who?.cert, key: who?.key, agent: false }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, text }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('GET /metrics', () => {
  it('serves Prometheus text to admins, counting audit events by type and outcome', async () => {
    await env.call('GET', '/v1/sessions'); // refused without a certificate: one api.request failure
    const r = await scrape(admin);
    expect(r.status).toBe(200);
    expect(r.text).toContain('# TYPE vigil_events_total counter');
    expect(r.text).toMatch(/vigil_events_total\{type="api\.request",outcome="failure"\} [1-9]/);
    expect(r.text).toContain('vigil_audit_healthy 1');
  });

  it('is not open: 401 without a certificate, 403 for ordinary users', async () => {
    expect((await scrape()).status).toBe(401);
    expect((await scrape(alice)).status).toBe(403);
  });
});
