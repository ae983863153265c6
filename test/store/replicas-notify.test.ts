import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { PASSWORDS, startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { freePort, tempDir, waitFor } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { httpReceiver } from '../support/http-receiver.ts';
import { apiCall, startReplica } from '../support/replicas.ts';

/**
 * Two in-process gateways (replicas) on one PostgreSQL state store, for what used to stay in each data
 * dir: a one-time approval link minted by A works through B exactly once, and the notification outbox is
 * one for both (what A queued B delivers once A is gone; both delivering: each item once, in order).
 */

let storeDb: PostgresHandle;
let approvalsRx: Awaited<ReturnType<typeof httpReceiver>>;
let a: TestGateway;
let b: TestGateway;
let aStopped = false;
let alice: IssuedFiles, bob: IssuedFiles, carol: IssuedFiles;
/** Receivers that are down at first: only their ports are known. */
let hookPort: number;
let orderedPort: number;
const cleanups: (() => Promise<void>)[] = [];
const URL_ENV = 'VIGIL_TEST_REPLICA_NOTIFY_URL';
const storeConfig = { kind: 'postgres', url: { env: URL_ENV }, schema: 'replnotify' };
const FAST = { backoff_initial: '50ms', backoff_max: '200ms', timeout: '2s', max_attempts: 100 };

/** The same config on both replicas, but only A sends the approvers their links (so a link is always A's). */
function gatewayConfig(sendsApprovals: boolean) {
  return {
    ssh: { enabled: false },
    mysql: { enabled: false },
    postgres: { enabled: false },
    store: storeConfig,
    targets: [{ name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1', port: storeDb.port, database: 'app', user: 'trust_user', labels: { env: 'prod' } }],
    roles: [
      { name: 'engineer' },
      { name: 'prod-access', target_labels: { env: 'prod' }, approvers: ['sre-lead'], max_ttl: '1h' },
      { name: 'sre-lead' },
    ],
    notifiers: [
      { name: 'approvers', kind: 'webhook', url: approvalsRx.url('/approvals'), ...FAST },
      { name: 'hook', kind: 'webhook', url: `http://127.0.0.1:${hookPort}/hook`, ...FAST },
      { name: 'ordered', kind: 'webhook', url: `http://127.0.0.1:${orderedPort}/ordered`, ...FAST },
    ],
    alerts: [
      { name: 'takeover', match: { type: 'auth.failure', target: 'takeover-db' }, notify: ['hook'] },
      { name: 'ordered', match: { type: 'auth.failure', target: 'ordered-db' }, group_by: ['actor.user'], notify: ['ordered'] },
    ],
    ...(sendsApprovals ? { access: { approvals: { notify: ['approvers'], link_ttl: '10m' } } } : {}),
  };
}

beforeAll(async () => {
  [storeDb, approvalsRx, hookPort, orderedPort] = await Promise.all([startPostgres(), httpReceiver(), freePort(), freePort()]);
  process.env[URL_ENV] = `postgres://scram_user:${PASSWORDS.scram_user}@127.0.0.1:${storeDb.port}/app?sslmode=disable`;
  a = await startTestGateway(gatewayConfig(true), tempDir('vigil-replnotify-a-'));
  b = await startReplica(a, gatewayConfig(false), 'vigil-replnotify-b-');
  [alice, bob, carol] = await Promise.all([
    a.issue({ user: 'alice', roles: ['engineer'] }),
    a.issue({ user: 'bob', roles: ['sre-lead'] }),
    a.issue({ user: 'carol', roles: ['sre-lead'] }),
  ]);
}, 180_000);

afterAll(async () => {
  if (!aStopped) await a?.stop();
  await b?.stop();
  for (const c of cleanups) await c();
  delete process.env[URL_ENV];
  await Promise.all([storeDb?.stop(), approvalsRx?.close()]);
});

/** An event on one replica's own stream, as its listeners emit them (alert rules see only their replica's). */
const failOn = (gw: TestGateway, user: string, target: string) =>
  gw.gw.services.events.emit({ type: 'auth.failure', outcome: 'failure', actor: { user, roles: [] }, source: { ip: '192.0.2.7', port: 1 }, target: { name: target, protocol: 'postgres' } });

const linksOf = async (id: string) => {
  const m = await waitFor(() => approvalsRx.accepted.map((r) => JSON.parse(r.body)).find((x) => x.request_id === id && x.action === 'request'), 20_000, `the approvers' message for ${id}`);
  return { approve: m.approve_url as string, deny: m.deny_url as string };
};
/** The same link, opened through another replica's API (the balancer sent the approver there). */
const through = (gw: TestGateway, url: string) => `https://127.0.0.1:${gw.ports.api}${new URL(url).pathname}`;
const alertIdOf = (body: string) => JSON.parse(body).alert_id as string;

describe('approval links and notifications shared by replicas on a PostgreSQL store', () => {
  it('a link A sent is used through B exactly once; a second use is refused on either replica', async () => {
    const filed = await apiCall(a, 'POST', '/v1/access/requests', alice, { role: 'prod-access', reason: 'INC-7 shared links', ttl: '10m' });
    expect(filed.status).toBe(201);
    const id = filed.body.request.id;
    const links = await linksOf(id);
    expect(new URL(links.approve).port).toBe(String(a.ports.api)); // minted by A

    const shown = await apiCall(b, 'GET', through(b, links.approve), bob);
    expect(shown.status).toBe(200);
    expect(shown.body).toMatchObject({ link: { decision: 'approve' }, request: { id, state: 'pending' } });
    const used = await apiCall(b, 'POST', through(b, links.approve), bob);
    expect(used.status).toBe(200);
    expect(used.body.request).toMatchObject({ state: 'active', decidedBy: 'bob' });
    await b.waitForEvent((e) => e.type === 'access.link_used' && e.details.request_id === id, 20_000);

    for (const gw of [b, a]) {
      const again = await apiCall(gw, 'POST', through(gw, links.approve), carol);
      expect(again, `second use on ${gw === a ? 'A' : 'B'}`).toMatchObject({ status: 409, body: { error: { code: 'VIGIL_LINK_USED' } } });
    }
  }, 60_000);

  it('the same link used through A and B at the same moment: exactly one replica decides', async () => {
    const filed = await apiCall(a, 'POST', '/v1/access/requests', alice, { role: 'prod-access', reason: 'INC-8 race', ttl: '10m' });
    const id = filed.body.request.id;
    const links = await linksOf(id);
    const [onA, onB] = await Promise.all([apiCall(a, 'POST', through(a, links.deny), bob, { reason: 'no' }), apiCall(b, 'POST', through(b, links.deny), carol, { reason: 'no' })]);
    expect([onA.status, onB.status].sort()).toEqual([200, 409]);
    const winner = onA.status === 200 ? onA : onB;
    expect(winner.body.request.state).toBe('denied');
    const used = [...a.events, ...b.events].filter((e) => e.type === 'access.link_used' && e.details.request_id === id);
    expect(used).toHaveLength(1);
  }, 60_000);

  it('both replicas delivering one notifier: each notification once, in the order queued', async () => {
    // The receiver is down while both replicas queue (and fail to send), so all of them wait in the outbox.
    const N = 24;
    for (let i = 0; i < N; i++) await failOn(i % 2 ? b : a, `user-${String(i).padStart(2, '0')}`, 'ordered-db');
    const queued = await waitFor(async () => {
      const items = (await a.gw.services.alerts!.outbox.pending()).filter((x) => x.notifier === 'ordered');
      return items.length === N ? items : undefined;
    }, 30_000, `${N} queued notifications (from both replicas) in the shared outbox`);
    const order = queued.map((x) => (x.payload as { alert_id: string }).alert_id);
    const fired = [...a.events, ...b.events].filter((e) => e.type === 'alert.fired' && e.details.rule === 'ordered').map((e) => e.id);
    expect([...order].sort()).toEqual([...fired].sort());

    // Up, and slow to answer: a delivery is in flight while the other replica looks for work.
    const rx = await httpReceiver(() => 'ok', orderedPort, 30);
    cleanups.push(rx.close);
    await waitFor(async () => !(await b.gw.services.alerts!.outbox.depth()).ordered, 60_000, 'the ordered outbox emptied');
    // Gone from the outbox means no replica can send it again: what the receiver holds is final.
    expect(rx.accepted.map((r) => alertIdOf(r.body))).toEqual(order);
    const delivered = [a, b].map((gw) => gw.gw.services.alerts!.dispatcher.stats.get('ordered')!.delivered);
    expect(delivered[0] + delivered[1]).toBe(N);
  }, 120_000);

  it('a notification A queued while the receiver was down is delivered by B after A stopped, once; vigil alerts list on B shows it', async () => {
    await failOn(a, 'mallory', 'takeover-db');
    const alertId = (await a.waitForEvent((e) => e.type === 'alert.fired' && e.details.rule === 'takeover', 20_000)).id;
    await waitFor(async () => (await a.gw.services.alerts!.outbox.pending()).some((x) => x.notifier === 'hook' && x.attempts >= 1), 20_000, 'a failed attempt');
    expect(b.events.some((e) => e.id === alertId)).toBe(false); // the alert is A's alone

    // The CLI on B's host, on the same store, sees A's firing and its pending notification.
    const cfgB = path.join(path.dirname(b.dataDir), 'cli.json');
    fs.writeFileSync(cfgB, JSON.stringify({ data_dir: b.dataDir, store: storeConfig, notifiers: gatewayConfig(false).notifiers }));
    const listed = await runCliCaptured(['alerts', 'list', '--json', '--config', cfgB]);
    expect(listed.code).toBe(0);
    const out = JSON.parse(listed.out);
    expect(out.firings.map((f: { id: string }) => f.id)).toContain(alertId);
    expect(out.notifiers.find((n: { name: string }) => n.name === 'hook').pending).toBe(1);

    await a.stop();
    aStopped = true;
    const rx = await httpReceiver(() => 'ok', hookPort);
    cleanups.push(rx.close);
    await waitFor(() => rx.accepted.length >= 1, 30_000, 'the delivery by B');
    await waitFor(async () => !(await b.gw.services.alerts!.outbox.depth()).hook, 20_000, 'the hook outbox emptied');
    expect(rx.accepted.map((r) => alertIdOf(r.body))).toEqual([alertId]);
    expect(b.gw.services.alerts!.dispatcher.stats.get('hook')!.delivered).toBe(1);
  }, 120_000);
});
