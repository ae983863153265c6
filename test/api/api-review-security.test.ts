import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiEnv, type ApiEnv, type ClientCert } from './support.ts';

/**
 * The API as an attacker and an operator meet it, over the real HTTPS server with real client
 * certificates: what answers without a certificate, four-eyes against a user name spelled another way,
 * what an error tells the caller, and how an oversized body is refused.
 */

let env: ApiEnv;

beforeAll(async () => {
  env = await apiEnv();
});
afterAll(async () => {
  await env?.stop();
});

function send(method: string, p: string, who?: ClientCert, opts: { headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; text: string; body: any }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${env.url}${p}`, { method, ca: env.ca, cert: who?.cert, key: who?.key, agent: false, headers: opts.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode!, text, body });
      });
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

describe('without a certificate', () => {
  it('every API and console route but the health checks refuses; HEAD health probes are answered, not recorded as refusals', async () => {
    const refusedBefore = env.of('api.request').length;
    for (const p of ['/healthz', '/readyz']) {
      const r = await send('HEAD', p);
      expect(r.status, `HEAD ${p}`).toBe(200);
      expect(r.text).toBe('');
    }
    // A load balancer's probes are not refused calls.
    expect(env.of('api.request').length).toBe(refusedBefore);

    const routes: [string, string][] = [
      ['GET', '/metrics'],
      ['GET', '/v1/access/requests'],
      ['POST', '/v1/access/requests'],
      ['GET', '/v1/access/requests/x'],
      ['POST', '/v1/access/requests/x/approve'],
      ['POST', '/v1/access/requests/x/deny'],
      ['GET', '/v1/access/links/x'],
      ['POST', '/v1/access/links/x'],
      ['POST', '/v1/access/grants/x/revoke'],
      ['POST', '/v1/access/grants/x/certificate'],
      ['GET', '/v1/locks'],
      ['POST', '/v1/locks'],
      ['DELETE', '/v1/locks/user/bob'],
      ['GET', '/v1/sessions'],
      ['POST', '/v1/sessions/x/kill'],
      ['GET', '/v1/me'],
      ['POST', '/v1/me/logout'],
      ['POST', '/v1/config/reload'],
      ['GET', '/console/api/me'],
      ['GET', '/console/api/sessions'],
      ['GET', '/console/api/events'],
      ['GET', '/console/api/access/requests'],
      ['POST', '/console/api/access/requests/x/approve'],
      ['POST', '/console/api/sessions/x/kill'],
      ['GET', '/console/api/audit/status'],
      ['HEAD', '/v1/sessions'],
      ['OPTIONS', '/v1/access/requests'],
      ['GET', '/console/assets/../../v1/sessions'],
    ];
    for (const [method, p] of routes) {
      const r = await send(method, p, undefined, method === 'POST' ? { headers: { 'content-type': 'application/json' }, body: '{}' } : {});
      // 401, or 429 once this address's budget of recorded refusals is spent: never an answer with data.
      expect([401, 429], `${method} ${p}: ${r.status} ${r.text.slice(0, 120)}`).toContain(r.status);
    }
  });
});

describe('four-eyes', () => {
  it('a certificate for the beneficiary\'s name in other letter case cannot approve the request', async () => {
    // One spelling per person is enforced at issuance (test/identity/user-name-identity.test.ts), so a
    // certificate for `alice` next to `Alice`'s cannot be had any more; an admin can still file a request
    // for `alice` (the name typed), and four-eyes must hold against it on its own.
    const upper = await env.client('Alice', ['sre-lead']);
    const admin = await env.client('root-admin', ['admin']);
    const filed = await env.call('POST', '/v1/access/requests', admin, { user: 'alice', role: 'prod-ssh', reason: 'incident 42', ttl: '30m' });
    expect(filed.status).toBe(201);
    const id = filed.body.request.id as string;

    const approve = await env.call('POST', `/v1/access/requests/${id}/approve`, upper, {});
    expect(approve.status).toBe(403);
    expect(approve.body.error.code).toBe('VIGIL_SELF_APPROVAL');
    const shown = await env.call('GET', `/v1/access/requests/${id}`, admin);
    expect(shown.body.request.state).toBe('pending');
    expect(shown.body.request.approvals).toEqual([]);
  });
});

describe('errors', () => {
  it('a fault of the gateway\'s own files answers 500 without naming its paths', async () => {
    // Its own gateway: the link store opens on the first link used, which must find the key damaged.
    const own = await apiEnv();
    try {
      const eve = await own.client('eve', ['dev']);
      // The approval-link key damaged on disk (a bad restore): the link store cannot open.
      const keyFile = path.join(own.dataDir, 'ca', 'approval_links.key');
      fs.mkdirSync(path.dirname(keyFile), { recursive: true });
      fs.writeFileSync(keyFile, 'short', { mode: 0o600 });
      const r = await own.call('GET', '/v1/access/links/sometoken', eve);
      expect(r.status).toBe(500);
      expect(r.body.error.code).toBe('VIGIL_KEY_INVALID');
      expect(JSON.stringify(r.body)).not.toContain(own.dataDir);
      expect(JSON.stringify(r.body)).not.toContain('approval_links.key');
    } finally {
      await own.stop();
    }
  });

  it('an oversized body is answered 413 with a reason, not a reset connection', async () => {
    const eve = await env.client('eve2', ['dev']);
    const body = JSON.stringify({ role: 'prod-ssh', reason: 'x'.repeat(200_000) });
    const r = await send('POST', '/v1/access/requests', eve, { headers: { 'content-type': 'application/json' }, body });
    expect(r.status).toBe(413);
    expect(r.body.error.code).toBe('VIGIL_BODY_TOO_LARGE');
    expect(env.of('access.requested').filter((e) => e.actor.user === 'eve2')).toEqual([]);
  });
});
