import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { startPostgres, clientEnv, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * Approvals where people are, over real parts: a real gateway sends new requests to a real local HTTP
 * receiver (webhook, HMAC-signed, and Slack format) with one-time approve/deny links served by its API;
 * an approver uses a link with their vigil client certificate and stock psql then connects through the
 * grant. Links are refused without a certificate, with the requester's certificate (without burning
 * them), when reused, expired or forged. Reminders and escalation fire when nobody decides, and the
 * decision is posted back.
 */

const SECRET = 'approvals-hook-secret';

interface Received {
  path: string;
  body: any;
}

async function receiver() {
  const got: Received[] = [];
  const bad: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString();
      if (req.url === '/hook') {
        // Verify the signature like a real receiver does: t=<unix>,v1=<hex HMAC of "t.body">.
        const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(req.headers['x-vigil-signature'] ?? ''));
        const want = m && createHmac('sha256', SECRET).update(`${m[1]}.${raw}`).digest();
        if (!m || !timingSafeEqual(want!, Buffer.from(m[2], 'hex'))) {
          bad.push(raw);
          return void res.writeHead(401).end();
        }
      }
      got.push({ path: req.url ?? '', body: JSON.parse(raw) });
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return { got, bad, url: (p: string) => `http://127.0.0.1:${port}${p}`, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

let pg: PostgresHandle;
let rx: Awaited<ReturnType<typeof receiver>>;
let tg: TestGateway;
let alice: IssuedFiles, bob: IssuedFiles, dave: IssuedFiles, root: IssuedFiles;

beforeAll(async () => {
  [pg, rx] = await Promise.all([startPostgres(), receiver()]);
  const base = tempDir('vigil-approvals-');
  const secretFile = path.join(base, 'hook.secret');
  fs.writeFileSync(secretFile, SECRET, { mode: 0o600 });
  tg = await startTestGateway(
    {
      ssh: { enabled: false },
      mysql: { enabled: false },
      targets: [{ name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user', labels: { env: 'prod' } }],
      roles: [
        { name: 'engineer' },
        { name: 'prod-access', target_labels: { env: 'prod' }, approvers: ['sre-lead'], max_ttl: '1h' },
        { name: 'prod-two', target_labels: { env: 'prod' }, approvers: ['sre-lead'], approvals_required: 2, max_ttl: '1h' },
        { name: 'sre-lead' },
        { name: 'admin' },
      ],
      notifiers: [
        { name: 'approvers', kind: 'webhook', url: rx.url('/hook'), secret: { file: secretFile }, backoff_initial: '100ms' },
        { name: 'leads', kind: 'slack', url: rx.url('/slack'), backoff_initial: '100ms' },
      ],
      access: { approvals: { notify: ['approvers'], remind_after: '2s', escalate_after: '3s', escalate_to: ['leads'], link_ttl: '10m' } },
    },
    base,
  );
  [alice, bob, dave, root] = await Promise.all([
    tg.issue({ user: 'alice', roles: ['engineer'] }),
    tg.issue({ user: 'bob', roles: ['sre-lead'] }),
    tg.issue({ user: 'dave', roles: ['engineer'] }),
    tg.issue({ user: 'root', roles: ['admin', 'sre-lead'] }),
  ]);
}, 120_000);

afterAll(async () => {
  await tg?.stop();
  await Promise.all([pg?.stop(), rx?.close()]);
});

function call(method: string, url: string, who: IssuedFiles | undefined, body?: unknown): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(
      url,
      { method, agent: false, ca: fs.readFileSync(alice.ca), cert: who && fs.readFileSync(who.crt), key: who && fs.readFileSync(who.key), headers: payload ? { 'content-type': 'application/json' } : {} },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
/** What a browser holding the approver's certificate does: Accept text/html, the page's form posted urlencoded. */
function browser(method: string, url: string, who: IssuedFiles, form?: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const payload = form ? new URLSearchParams(form).toString() : undefined;
    const headers: Record<string, string> = { accept: 'text/html,application/xhtml+xml' };
    if (payload !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
    const req = https.request(url, { method, agent: false, ca: fs.readFileSync(alice.ca), cert: fs.readFileSync(who.crt), key: fs.readFileSync(who.key), headers }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}
const api = (method: string, p: string, who: IssuedFiles | undefined, body?: unknown) => call(method, `https://127.0.0.1:${tg.ports.api}${p}`, who, body);

const message = (pathName: string, id: string, action: string) =>
  waitFor(() => rx.got.find((m) => m.path === pathName && m.body && (m.body.request_id === id || JSON.stringify(m.body).includes(id)) && (m.body.action === action || (pathName === '/slack' && m.body.text?.startsWith(action)))), 20_000, `${action} message for ${id} on ${pathName}`);
const ev = (type: string, pred: (e: AuditEvent) => boolean = () => true) => tg.waitForEvent((e) => e.type === type && pred(e), 20_000);

function psql(who: IssuedFiles, target: string, sql: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'psql',
      ['-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-d', `host=127.0.0.1 port=${tg.ports.postgres} dbname=${target} user=${who.creds.user} sslmode=verify-full sslrootcert=${who.ca} sslcert=${who.crt} sslkey=${who.key}`, '-c', sql],
      { env: clientEnv(), timeout: 30_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('approvals through one-time links', () => {
  it('a request reaches the approvers with links; the link needs an approver certificate; approve → psql connects', async () => {
    expect((await psql(alice, 'pg-prod', 'SELECT 1')).code).not.toBe(0);
    const filed = await api('POST', '/v1/access/requests', alice, { role: 'prod-access', reason: 'INC-5100 replica lag', ttl: '30m' });
    expect(filed.status).toBe(201);
    const id = filed.body.request.id;

    const msg = (await message('/hook', id, 'request')).body;
    expect(msg).toMatchObject({ source: 'vigil', kind: 'access', action: 'request', request_id: id, reason: 'INC-5100 replica lag', requester: 'alice', beneficiary: 'alice', role: 'prod-access', duration: '30m' });
    expect(msg.approve_url).toMatch(new RegExp(`^https://127\\.0\\.0\\.1:${tg.ports.api}/v1/access/links/[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$`));
    expect(msg.deny_url).not.toBe(msg.approve_url);
    expect(rx.bad).toEqual([]);
    const notified = await ev('access.notified', (e) => e.details.request_id === id);
    expect(notified.details).toMatchObject({ notifiers: ['approvers'], requester: 'alice', beneficiary: 'alice' });
    // The event names the links, never carries them.
    const token = msg.approve_url.split('/').pop();
    expect(JSON.stringify(tg.events)).not.toContain(token);

    // No certificate: the link alone decides nothing.
    const anon = await call('POST', msg.approve_url, undefined);
    expect(anon).toMatchObject({ status: 401, body: { error: { code: 'VIGIL_NO_CLIENT_CERT' } } });
    const anonEvent = await ev('access.link_refused', (e) => e.details.code === 'VIGIL_NO_CLIENT_CERT');
    expect(anonEvent.details).toMatchObject({ request_id: id, decision: 'approve' });
    expect(anonEvent.actor.user).toBe('unknown');
    // The requester (also the beneficiary) cannot use it; nor can a non-approver.
    for (const who of [alice, dave]) {
      for (const method of ['GET', 'POST']) {
        const r = await call(method, msg.approve_url, who);
        expect(r.status, `${who.creds.user} ${method}`).toBe(403);
        expect(r.body.error.code).toBe('VIGIL_LINK_NOT_APPROVER');
      }
    }
    const refusedAlice = await ev('access.link_refused', (e) => e.actor.user === 'alice' && e.details.request_id === id);
    expect(refusedAlice.details.code).toBe('VIGIL_LINK_NOT_APPROVER');
    expect(JSON.stringify(tg.events)).not.toContain(token);

    // Those refusals did not burn it: the approver sees what it decides, then decides.
    const shown = await call('GET', msg.approve_url, bob);
    expect(shown.status).toBe(200);
    expect(shown.body).toMatchObject({ link: { decision: 'approve' }, request: { id, state: 'pending', requester: 'alice', beneficiary: 'alice', role: 'prod-access' } });
    const used = await call('POST', msg.approve_url, bob);
    expect(used.status).toBe(200);
    expect(used.body.request).toMatchObject({ state: 'active', decidedBy: 'bob' });
    const linkUsed = await ev('access.link_used', (e) => e.details.request_id === id);
    expect(linkUsed.actor.user).toBe('bob');
    expect(linkUsed.details.decision).toBe('approve');
    await ev('access.approved', (e) => e.details.request_id === id && e.actor.user === 'bob');

    // Single use.
    const again = await call('POST', msg.approve_url, root);
    expect(again).toMatchObject({ status: 409, body: { error: { code: 'VIGIL_LINK_USED' } } });

    // The grant works with stock psql.
    const ok = await psql(alice, 'pg-prod', 'SELECT 40 + 2');
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim()).toBe('42');

    // And the decision is posted back to the approvers.
    const decision = (await message('/hook', id, 'decision')).body;
    expect(decision.decision).toMatchObject({ state: 'active', by: 'bob' });
    expect(decision.approve_url).toBeUndefined();
    await ev('access.decision_notified', (e) => e.details.request_id === id && e.details.decision === 'active');
  }, 120_000);

  it('forged and expired links are refused with stable codes', async () => {
    const filed = await api('POST', '/v1/access/requests', alice, { role: 'prod-access', reason: 'INC-5200', ttl: '10m' });
    const id = filed.body.request.id;
    const msg = (await message('/hook', id, 'request')).body;
    const [head, mac] = msg.approve_url.split('/').pop().split('.');
    const forged = `https://127.0.0.1:${tg.ports.api}/v1/access/links/${head}.${mac[0] === 'A' ? 'B' : 'A'}${mac.slice(1)}`;
    expect((await call('GET', forged, bob)).body.error.code).toBe('VIGIL_LINK_INVALID');
    expect((await call('POST', `https://127.0.0.1:${tg.ports.api}/v1/access/links/nonsense`, bob)).body.error.code).toBe('VIGIL_LINK_INVALID');

    // A real link of this gateway whose time is over (minted already expired, as one left in a chat for days).
    const stale = await tg.gw.services.accessLinks!.mint(id, 'approve', Date.now() - 1000);
    const r = await call('POST', `https://127.0.0.1:${tg.ports.api}/v1/access/links/${stale.token}`, bob);
    expect(r).toMatchObject({ status: 410, body: { error: { code: 'VIGIL_LINK_EXPIRED' } } });
    const refused = await ev('access.link_refused', (e) => e.details.code === 'VIGIL_LINK_EXPIRED');
    expect(refused.details.link_id).toBe(stale.id);
    expect((await tg.gw.services.store.getAccess(id))?.state).toBe('pending');

    // The deny link with a reason.
    const denied = await call('POST', msg.deny_url, bob, { reason: 'not during the freeze' });
    expect(denied.body.request).toMatchObject({ state: 'denied', decidedBy: 'bob', decisionReason: 'not during the freeze' });
    // A request decided otherwise makes its remaining links useless.
    const late = await call('POST', msg.approve_url, root);
    expect(late.status).toBe(409);
    expect(late.body.error.code).toBe('VIGIL_ALREADY_DECIDED');
  }, 60_000);

  it('two approvers using the same link at once: exactly one decides, the other is told it was used', async () => {
    const filed = await api('POST', '/v1/access/requests', alice, { role: 'prod-access', reason: 'INC-5500 race', ttl: '5m' });
    const id = filed.body.request.id;
    const msg = (await message('/hook', id, 'request')).body;
    const results = await Promise.all([call('POST', msg.approve_url, bob), call('POST', msg.approve_url, root)]);
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 409]);
    expect(results.find((r) => r.status === 409)!.body.error.code).toBe('VIGIL_LINK_USED');
    const winner = results.find((r) => r.status === 200)!.body.request.decidedBy;
    expect(tg.events.filter((e) => e.type === 'access.approved' && e.details.request_id === id).map((e) => e.actor.user)).toEqual([winner]);
  }, 60_000);

  it('a role needing two approvals: after the first link approval the approvers get fresh links at once', async () => {
    const filed = await api('POST', '/v1/access/requests', alice, { role: 'prod-two', reason: 'INC-5600 two keys', ttl: '5m' });
    const id = filed.body.request.id;
    const msg = (await message('/hook', id, 'request')).body;
    const first = await call('POST', msg.approve_url, bob);
    expect(first.body.request).toMatchObject({ state: 'pending', approvals: [{ by: 'bob' }] });
    const progress = (await message('/hook', id, 'progress')).body;
    expect(progress.approvals).toEqual(['bob']);
    expect(progress.approve_url).not.toBe(msg.approve_url);
    const ev1 = await ev('access.progress_notified', (e) => e.details.request_id === id);
    expect(ev1.details.approvals).toEqual(['bob']);
    // bob cannot count twice; root completes it with the fresh link.
    expect((await call('POST', progress.approve_url, bob)).status).toBe(409);
    const done = await call('POST', progress.approve_url, root);
    expect(done.body.request).toMatchObject({ state: 'active', decidedBy: 'root' });
    expect(rx.got.filter((m) => m.path === '/hook' && m.body.request_id === id && m.body.action === 'progress')).toHaveLength(1);
  }, 60_000);

  it('in a browser: the link shows a page with the request and a form; the deny form takes a reason', async () => {
    const filed = await api('POST', '/v1/access/requests', alice, { role: 'prod-access', reason: 'INC-5400 <script>alert(1)</script>', ttl: '5m' });
    const id = filed.body.request.id;
    const msg = (await message('/hook', id, 'request')).body;
    const shown = await browser('GET', msg.deny_url, bob);
    expect(shown.status).toBe(200);
    expect(shown.headers['content-type']).toMatch(/^text\/html/);
    expect(shown.headers['content-security-policy']).toContain("default-src 'none'");
    expect(shown.text).toContain('Deny this access request?');
    expect(shown.text).toContain('INC-5400 &#60;script&#62;alert(1)&#60;/script&#62;');
    expect(shown.text).not.toContain('<script>');
    expect(shown.text).toMatch(/<form method="post">.*name="reason"/);
    // The requester gets a refusal page, and the link stays usable.
    const mine = await browser('GET', msg.deny_url, alice);
    expect(mine.status).toBe(403);
    expect(mine.text).toContain('VIGIL_LINK_NOT_APPROVER');
    const done = await browser('POST', msg.deny_url, bob, { reason: 'freeze week' });
    expect(done.status).toBe(200);
    expect(done.text).toContain('denied');
    expect(await tg.gw.services.store.getAccess(id)).toMatchObject({ state: 'denied', decidedBy: 'bob', decisionReason: 'freeze week' });
  }, 60_000);

  it('nobody decides: a reminder, then an escalation to the leads (Slack) whose link works; the decision goes to both', async () => {
    const filed = await api('POST', '/v1/access/requests', alice, { role: 'prod-access', reason: 'INC-5300 nobody around', ttl: '15m' });
    const id = filed.body.request.id;
    await message('/hook', id, 'request');
    const reminder = (await message('/hook', id, 'reminder')).body;
    expect(reminder).toMatchObject({ action: 'reminder', request_id: id, requester: 'alice' });
    await ev('access.reminded', (e) => e.details.request_id === id);

    const slack = (await message('/slack', id, 'Escalation')).body;
    expect(slack.text).toContain(`Escalation: nobody decided vigil access request ${id}`);
    const esc = await ev('access.escalated', (e) => e.details.request_id === id);
    expect(esc.details.notifiers).toEqual(['leads']);
    const buttons = slack.blocks.find((b: any) => b.type === 'actions').elements;
    const approveUrl = buttons.find((b: any) => b.text.text === 'Approve').url;
    const ok = await call('POST', approveUrl, root);
    expect(ok.body.request).toMatchObject({ state: 'active', decidedBy: 'root' });

    await message('/hook', id, 'decision');
    const slackDecision = (await message('/slack', id, 'vigil access request')).body;
    expect(slackDecision.text).toContain('approved by root');
    const posted = await ev('access.decision_notified', (e) => e.details.request_id === id);
    expect([...(posted.details.notifiers as string[])].sort()).toEqual(['approvers', 'leads']);
    // Exactly one reminder and one escalation.
    expect(rx.got.filter((m) => m.path === '/hook' && m.body.request_id === id && m.body.action === 'reminder')).toHaveLength(1);
    expect(tg.events.filter((e) => e.type === 'access.escalated' && e.details.request_id === id)).toHaveLength(1);
  }, 60_000);
});
