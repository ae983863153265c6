import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { apiAccessClient } from '../../src/access/client.ts';
import { openLinkStore, type LinkStore } from '../../src/access/links.ts';
import { gatewayApi } from '../../src/cli/api-client.ts';
import type { CommandArgs } from '../../src/cli/command.ts';
import type { GatewayServices } from '../../src/gateway/services.ts';
import { apiEnv, type ApiEnv, type ClientCert } from './support.ts';

/**
 * A browser that holds a vigil client certificate presents it to any page's request to the gateway. These
 * are the requests such a page can make (what the browser would send: its Origin, Sec-Fetch-Site, the
 * content-types a form can post), made with real certificates against the real API: cross-site
 * WebSockets and state changes are refused and recorded, and nothing they asked for happens; the CLI, the
 * API clients and the approval link's own page keep working.
 */

const EVIL = 'https://evil.example';
let env: ApiEnv;
let links: LinkStore;
let alice: Awaited<ReturnType<ApiEnv['client']>>;
let bob: Awaited<ReturnType<ApiEnv['client']>>;
let root: Awaited<ReturnType<ApiEnv['client']>>;

beforeAll(async () => {
  env = await apiEnv();
  // The link store the gateway would hand the API when it sends approval links.
  links = openLinkStore(env.dataDir, env.store);
  (env.services as GatewayServices & { accessLinks?: LinkStore }).accessLinks = links;
  [alice, bob, root] = await Promise.all([env.client('alice', ['dev']), env.client('bob', ['sre-lead']), env.client('root', ['admin'])]);
});
afterAll(async () => {
  await env?.stop();
  await links?.close();
});

const own = () => env.url; // https://127.0.0.1:<port>, what a browser on the gateway's own pages sends as Origin

function send(method: string, p: string, who: ClientCert, opts: { headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; text: string; body: any }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${env.url}${p}`, { method, ca: env.ca, cert: who.cert, key: who.key, agent: false, headers: opts.headers ?? {} }, (res) => {
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

/** Open a WebSocket as `who`; resolves with 'open' or the HTTP status it was refused with. */
function openSocket(p: string, who: ClientCert, origin?: string): Promise<{ opened: true; ws: WebSocket } | { opened: false; status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${env.url.replace('https', 'wss')}${p}`, { ca: env.ca, cert: who.cert, key: who.key, ...(origin ? { origin } : {}) });
    ws.on('open', () => resolve({ opened: true, ws }));
    ws.on('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ opened: false, status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()) }));
    });
    ws.on('error', (e) => reject(e));
  });
}

const crossSiteEvents = (user: string) => env.of('api.request').filter((e) => e.actor.user === user && e.details.code === 'VIGIL_CROSS_SITE');

async function pendingRequest(): Promise<string> {
  const r = await env.call('POST', '/v1/access/requests', alice, { role: 'prod-ssh', reason: 'INC-7 disk full', ttl: '30m' });
  expect(r.status).toBe(201);
  return r.body.request.id;
}
const stateOf = async (id: string) => (await env.store.getAccess(id))!.state;

describe('cross-site WebSocket hijacking', () => {
  it('a page elsewhere cannot open the audit stream or a watch with the auditor\'s certificate; the gateway\'s own origin and the CLI (no Origin) can', async () => {
    const hijack = await openSocket('/v1/events/stream', root, EVIL);
    expect(hijack).toMatchObject({ opened: false, status: 403, body: { error: { code: 'VIGIL_CROSS_SITE' } } });
    const watch = await openSocket('/v1/sessions/S-any/watch', root, EVIL);
    expect(watch).toMatchObject({ opened: false, status: 403, body: { error: { code: 'VIGIL_CROSS_SITE' } } });
    // A sandboxed frame or a data: page says Origin: null, which proves nothing.
    expect(await openSocket('/v1/events/stream', root, 'null')).toMatchObject({ opened: false, status: 403 });
    const recorded = crossSiteEvents('root');
    expect(recorded.map((e) => e.details.path)).toEqual(['/v1/events/stream', '/v1/sessions/S-any/watch', '/v1/events/stream']);
    expect(recorded[0]).toMatchObject({ outcome: 'failure', actor: { cert_serial: root.serial }, details: { status: 403, message: expect.stringContaining(EVIL) } });

    // The gateway's own origin (a page it serves) may.
    const same = await openSocket('/v1/events/stream', root, own());
    expect(same.opened).toBe(true);
    if (same.opened) same.ws.close();
    // The CLI's own socket (`vigil watch` uses it): no Origin, and it gets events.
    const args = { values: { api: env.url, cert: root.certFile, key: root.keyFile, ca: env.caFile }, positionals: [] } as unknown as CommandArgs;
    const cli = await gatewayApi(args).socket('/v1/events/stream');
    const got = new Promise<any>((r) => cli.once('message', (d) => r(JSON.parse(d.toString()))));
    await env.call('GET', '/v1/nothing-here', alice); // a refusal: an event on the stream
    expect(await got).toMatchObject({ type: 'api.request', actor: { user: 'alice' } });
    cli.close();
  });
});

describe('cross-site request forgery of state changes', () => {
  it('a text/plain form that spells JSON, posted to approve from another site, is refused and recorded; the request stays pending', async () => {
    const id = await pendingRequest();
    // <form enctype="text/plain" action=".../approve"><input name='{"comment":"' value='"}'> as a browser posts it.
    const form = { 'content-type': 'text/plain', origin: EVIL, 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' };
    const r = await send('POST', `/v1/access/requests/${id}/approve`, bob, { headers: form, body: '{"comment":"="}' });
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe('VIGIL_CROSS_SITE');
    // A browser too old to send Origin or Sec-Fetch-Site: the type alone is refused.
    const old = await send('POST', `/v1/access/requests/${id}/approve`, bob, { headers: { 'content-type': 'text/plain' }, body: '{"comment":"="}' });
    expect(old.status).toBe(415);
    expect(old.body.error.code).toBe('VIGIL_CONTENT_TYPE');
    // A form-urlencoded post, a body without a type (fetch of a Blob), JSON from another origin, and a
    // bodyless fetch marked cross-site: all refused.
    expect((await send('POST', `/v1/access/requests/${id}/approve`, bob, { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'comment=x' })).status).toBe(415);
    expect((await send('POST', `/v1/access/requests/${id}/approve`, bob, { headers: { 'content-length': '15' }, body: '{"comment":"="}' })).status).toBe(415);
    expect((await send('POST', `/v1/access/requests/${id}/approve`, bob, { headers: { 'content-type': 'application/json', origin: EVIL }, body: '{}' })).status).toBe(403);
    expect((await send('POST', `/v1/access/requests/${id}/approve`, bob, { headers: { 'sec-fetch-site': 'cross-site' } })).status).toBe(403);
    expect((await send('POST', `/v1/access/requests/${id}/approve`, bob, { headers: { origin: 'null' } })).status).toBe(403);
    // A sibling host is another site too.
    expect((await send('POST', `/v1/access/requests/${id}/approve`, bob, { headers: { 'content-type': 'application/json', 'sec-fetch-site': 'same-site' }, body: '{}' })).status).toBe(403);

    expect(await stateOf(id)).toBe('pending');
    expect(env.of('access.approved').filter((e) => e.details.request_id === id)).toEqual([]);
    const refusals = env.of('api.request').filter((e) => e.actor.user === 'bob' && e.details.path === `/v1/access/requests/${id}/approve`);
    expect(refusals.map((e) => [e.details.status, e.details.code])).toEqual([
      [403, 'VIGIL_CROSS_SITE'],
      [415, 'VIGIL_CONTENT_TYPE'],
      [415, 'VIGIL_CONTENT_TYPE'],
      [415, 'VIGIL_CONTENT_TYPE'],
      [403, 'VIGIL_CROSS_SITE'],
      [403, 'VIGIL_CROSS_SITE'],
      [403, 'VIGIL_CROSS_SITE'],
      [403, 'VIGIL_CROSS_SITE'],
    ]);
    expect(refusals.every((e) => e.outcome === 'failure' && e.actor.cert_serial === bob.serial)).toBe(true);

    // The CLI's client (application/json) approves; four-eyes still holds for the requester.
    const cli = apiAccessClient({ url: env.url, certFile: bob.certFile, keyFile: bob.keyFile, caFile: env.caFile });
    expect((await cli.approve(id, { comment: 'checked the incident' })).state).toBe('active');
  });

  it('logout, locks, revocation and kill from another site are refused and nothing changes', async () => {
    const hdr = { 'content-type': 'text/plain', origin: EVIL, 'sec-fetch-site': 'cross-site' };
    const before = crossSiteEvents('root').length;
    expect((await send('POST', '/v1/me/logout', root, { headers: hdr, body: '{}' })).status).toBe(403);
    expect((await send('POST', '/v1/me/logout', root, { headers: { origin: EVIL } })).status).toBe(403); // fetch, no body
    expect((await send('POST', '/v1/locks', root, { headers: hdr, body: '{"user":"bob","reason":"x"}' })).status).toBe(403);
    expect((await send('DELETE', '/v1/locks/user/bob', root, { headers: { origin: EVIL } })).status).toBe(403);
    expect((await send('POST', '/v1/sessions/S-any/kill', root, { headers: hdr, body: '{"reason":"x"}' })).status).toBe(403);
    expect((await send('POST', '/v1/locks', root, { headers: { 'content-type': 'text/plain' }, body: '{"user":"bob","reason":"x"}' })).status).toBe(415);
    expect(crossSiteEvents('root').length - before).toBe(5);
    expect(env.store.isRevoked(root.serial)).toBe(false);
    expect(env.store.isLocked('user', 'bob')).toBeFalsy();
    expect(env.of('lock.created')).toEqual([]);
    // The API's own clients: JSON with no Origin, and a call from the gateway's own origin.
    const lock = await send('POST', '/v1/locks', root, { headers: { 'content-type': 'application/json; charset=utf-8', origin: own() }, body: '{"user":"bob","reason":"drill","ttl":"1m"}' });
    expect(lock.status).toBe(201);
    expect(env.store.isLocked('user', 'bob')).toBeTruthy();
    const cli = apiAccessClient({ url: env.url, certFile: root.certFile, keyFile: root.keyFile, caFile: env.caFile });
    await cli.unlock('bob');
    expect(env.store.isLocked('user', 'bob')).toBeFalsy();
  });

  it('an approval link\'s own page posts its form (Origin: null under its no-referrer policy, Sec-Fetch-Site: same-origin) and decides; the same form from elsewhere does not, and the link stays usable', async () => {
    const id = await pendingRequest();
    const { token } = await links.mint(id, 'approve', Date.now() + 600_000);
    const p = `/v1/access/links/${token}`;
    const page = await send('GET', p, bob, { headers: { accept: 'text/html', 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' } });
    expect(page.status).toBe(200); // opened from the mail or chat: a cross-site navigation is a GET and decides nothing
    expect(page.text).toContain('<form method="post">');
    const form = { accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded' };
    for (const headers of [
      { ...form, origin: EVIL, 'sec-fetch-site': 'cross-site' },
      { ...form, origin: 'null', 'sec-fetch-site': 'cross-site' }, // a foreign page with its own no-referrer policy
      { ...form, origin: 'null' }, // no proof of where it came from
    ]) {
      const r = await send('POST', p, bob, { headers, body: '' });
      expect(r.status).toBe(403);
    }
    expect(await stateOf(id)).toBe('pending');
    expect(crossSiteEvents('bob').filter((e) => e.details.path === '/v1/access/links/(token)')).toHaveLength(3);
    // The page's own post.
    const done = await send('POST', p, bob, { headers: { ...form, origin: 'null', 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'navigate' }, body: '' });
    expect(done.status).toBe(200);
    expect(done.text).toContain('approved: alice holds role prod-ssh');
    expect(await stateOf(id)).toBe('active');
    expect(JSON.stringify(env.sink.events)).not.toContain(token);
  });
});

describe('approval-link tokens stay out of the audit log', () => {
  it('a 405 or 404 on a link path is recorded without the token', async () => {
    const id = await pendingRequest();
    const { token } = await links.mint(id, 'deny', Date.now() + 600_000);
    const head = await send('HEAD', `/v1/access/links/${token}`, bob);
    expect(head.status).toBe(405);
    const deeper = await send('GET', `/v1/access/links/${token}/x`, bob);
    expect(deeper.status).toBe(404);
    expect(deeper.body.error.message).not.toContain(token);
    const recorded = env.of('api.request').filter((e) => e.actor.user === 'bob' && e.details.path === '/v1/access/links/(token)' && (e.details.status === 405 || e.details.status === 404));
    expect(recorded.map((e) => e.details.code)).toEqual(['VIGIL_BAD_METHOD', 'VIGIL_NO_ROUTE']);
    expect(JSON.stringify(env.sink.events)).not.toContain(token);
    expect(await stateOf(id)).toBe('pending');
  });
});

describe('refusals are audit events', () => {
  it('/metrics refused to a non-auditor is recorded', async () => {
    const r = await send('GET', '/metrics', alice);
    expect(r.status).toBe(403);
    expect(env.of('api.request').filter((e) => e.actor.user === 'alice' && e.details.path === '/metrics')).toMatchObject([{ outcome: 'failure', actor: { cert_serial: alice.serial }, details: { status: 403, code: 'VIGIL_FORBIDDEN' } }]);
  });
});
