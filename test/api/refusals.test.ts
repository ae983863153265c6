import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RefusalBudget, OVERFLOW_SOURCE, type RefusalSummary } from '../../src/api/refusals.ts';
import WebSocket from 'ws';
import { apiEnv, type ApiEnv } from './support.ts';

describe('refused-call budget (unit, with a fake clock)', () => {
  it('records the first N per source and minute, counts the rest, and summarises each source once per minute', () => {
    let now = 1_000_000;
    const summaries: RefusalSummary[] = [];
    const b = new RefusalBudget(3, (s) => summaries.push(s), () => now);
    expect([1, 2, 3, 4, 5].map(() => b.take('10.0.0.1'))).toEqual([true, true, true, false, false]);
    expect(b.take('10.0.0.2')).toBe(true); // another source has its own budget
    expect(b.retryAfter('10.0.0.1')).toBe(60);
    now += 30_000;
    expect(b.retryAfter('10.0.0.1')).toBe(30);
    expect(b.take('10.0.0.1')).toBe(false);
    expect(summaries).toEqual([]);
    now += 30_000; // the minute is over: the next call starts a new one and the old one is summarised
    expect(b.take('10.0.0.1')).toBe(true);
    expect(summaries).toEqual([{ ip: '10.0.0.1', suppressed: 3, since: new Date(1_000_000) }]);
    b.take('10.0.0.1');
    b.take('10.0.0.1');
    b.take('10.0.0.1');
    b.close(); // closing summarises what is still open
    expect(summaries.at(-1)).toEqual({ ip: '10.0.0.1', suppressed: 1, since: new Date(1_060_000) });
    expect(summaries).toHaveLength(2); // 10.0.0.2 never went over: no summary
  });

  it('bounds the number of sources it tracks: beyond the limit new sources share one bucket', () => {
    const summaries: RefusalSummary[] = [];
    const b = new RefusalBudget(1, (s) => summaries.push(s), () => 0);
    for (let i = 0; i < 10_000; i++) b.take(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
    expect(b.take('192.0.2.1')).toBe(true); // first in the shared bucket
    expect(b.take('192.0.2.2')).toBe(false);
    expect(b.take('192.0.2.3')).toBe(false);
    b.close();
    expect(summaries).toEqual([{ ip: OVERFLOW_SOURCE, suppressed: 2, since: new Date(0) }]);
  });
});

describe('API: refused calls without a certificate cannot flood the audit log', () => {
  let env: ApiEnv;
  beforeAll(async () => {
    env = await apiEnv({ api: { refused_calls_per_minute: 3 } });
  });
  afterAll(async () => {
    await env?.stop();
  });

  it('records three refusals, answers the rest 429 with Retry-After, and one summary counts them', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await env.call('GET', '/v1/sessions')).status);
    expect(statuses).toEqual([401, 401, 401, 429, 429, 429]);
    const r = await env.call('GET', '/v1/sessions');
    expect(r.body.error.code).toBe('VIGIL_RATE_LIMITED');
    const retryAfter = Number(r.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // The live-stream upgrade without a certificate is refused the same way, Retry-After included.
    const ws = new WebSocket(`${env.url.replace('https', 'wss')}/v1/events/stream`, { ca: env.ca });
    const refused = await new Promise<{ status?: number; retryAfter?: string }>((resolve, reject) => {
      ws.on('unexpected-response', (_req, res) => resolve({ status: res.statusCode, retryAfter: res.headers['retry-after'] as string | undefined }));
      ws.on('open', () => reject(new Error('the upgrade was accepted')));
      ws.on('error', () => {});
    });
    ws.terminate();
    expect(refused.status).toBe(429);
    expect(Number(refused.retryAfter)).toBeGreaterThan(0);
    // The health check stays open and is not counted.
    expect((await env.call('GET', '/healthz')).status).toBe(200);
    const individual = () => env.of('api.request').filter((e) => e.details.code === 'VIGIL_NO_CLIENT_CERT');
    expect(individual()).toHaveLength(3);
    await env.stop();
    const summary = env.of('api.request').filter((e) => e.details.code === 'VIGIL_RATE_LIMITED');
    expect(summary).toHaveLength(1);
    expect(summary[0]).toMatchObject({ outcome: 'failure', actor: { user: 'unknown' }, source: { ip: '127.0.0.1', via: 'api' }, details: { status: 429, suppressed: 5 } });
  });
});

describe('API: an allow-listed source (budgets.allow) is never limited', () => {
  let env: ApiEnv;
  beforeAll(async () => {
    env = await apiEnv({ api: { refused_calls_per_minute: 2 }, budgets: { allow: ['127.0.0.0/8'] } });
  });
  afterAll(async () => {
    await env?.stop();
  });

  it('every refused call is answered 401 and recorded, none 429', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await env.call('GET', '/v1/sessions')).status);
    expect(statuses).toEqual([401, 401, 401, 401, 401]);
  });
});
