import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { freePort, tempDir, waitFor } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { SqliteOutbox } from '../../src/notifiers/outbox.ts';
import { httpReceiver } from '../support/http-receiver.ts';

/** Real receivers on loopback: HTTP (test/support) for webhook/Slack/PagerDuty, TCP and TLS for syslog. */
/** RFC 6587 octet-counting parser: `LEN SP MSG` repeated. */
function parseOctetCounted(buf: Buffer): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < buf.length) {
    const sp = buf.indexOf(0x20, i);
    const len = Number(buf.subarray(i, sp).toString());
    out.push(buf.subarray(sp + 1, sp + 1 + len).toString('utf8'));
    i = sp + 1 + len;
  }
  return out;
}

async function syslogReceiver(secure?: { key: Buffer; cert: Buffer }) {
  const messages: string[] = [];
  const onSocket = (s: net.Socket) => {
    const chunks: Buffer[] = [];
    s.on('data', (c) => chunks.push(c));
    s.on('end', () => {
      messages.push(...parseOctetCounted(Buffer.concat(chunks)));
      s.end();
    });
    s.on('error', () => {});
  };
  const server = secure ? tls.createServer(secure, onSocket) : net.createServer(onSocket);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, messages, close: () => new Promise<void>((r) => server.close(() => r())) };
}

function selfSignedCert(dir: string) {
  const key = path.join(dir, 'syslog.key');
  const cert = path.join(dir, 'syslog.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  return { key, cert };
}

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const FAST = { backoff_initial: '50ms', backoff_max: '200ms', timeout: '500ms' };
const gatewayBase = { ssh: { enabled: false }, mysql: { enabled: false }, postgres: { enabled: false } };

async function gateway(config: Record<string, unknown>, base = tempDir()): Promise<TestGateway> {
  const tg = await startTestGateway({ ...gatewayBase, ...config }, base);
  cleanups.push(() => tg.stop());
  return tg;
}

const fail = (tg: TestGateway, user: string) =>
  tg.gw.services.events.emit({ type: 'auth.failure', outcome: 'failure', actor: { user, roles: [] }, source: { ip: '192.0.2.9', port: 1 }, target: { name: 'db', protocol: 'postgres' } });

describe('notifiers', () => {
  it('webhook (HMAC verified by the receiver), Slack, PagerDuty, syslog over TCP and TLS', async () => {
    const dir = tempDir();
    const hook = await httpReceiver();
    cleanups.push(hook.close);
    const tcp = await syslogReceiver();
    cleanups.push(tcp.close);
    const { key, cert } = selfSignedCert(dir);
    const tlsRx = await syslogReceiver({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) });
    cleanups.push(tlsRx.close);
    process.env.VIGIL_TEST_HOOK_SECRET = 'hook-secret-' + Math.random();
    const slackUrlFile = path.join(dir, 'slack-url');
    fs.writeFileSync(slackUrlFile, hook.url('/slack') + '\n', { mode: 0o600 });
    const pdKeyFile = path.join(dir, 'pd-key');
    fs.writeFileSync(pdKeyFile, 'R0UTINGKEY\n', { mode: 0o600 });
    const tg = await gateway({
      notifiers: [
        { name: 'hook', kind: 'webhook', url: hook.url('/hook'), secret: { env: 'VIGIL_TEST_HOOK_SECRET' } },
        { name: 'chat', kind: 'slack', url: { file: slackUrlFile } },
        { name: 'pd', kind: 'pagerduty', url: hook.url('/pd'), routing_key: { file: pdKeyFile } },
        { name: 'siem', kind: 'syslog', host: '127.0.0.1', port: tcp.port },
        { name: 'siem-tls', kind: 'syslog', host: '127.0.0.1', port: tlsRx.port, tls: { ca: cert } },
      ],
      alerts: [{ name: 'failed-logins', match: { type: 'auth.failure' }, group_by: ['actor.user'], threshold: 2, window: '1m', notify: ['hook', 'chat', 'pd', 'siem', 'siem-tls'] }],
    });
    await fail(tg, 'mallory');
    await fail(tg, 'mallory');
    await waitFor(() => hook.accepted.length === 3 && tcp.messages.length === 1 && tlsRx.messages.length === 1, 10_000, 'deliveries');
    const alert = tg.events.find((e) => e.type === 'alert.fired')!;

    const h = hook.accepted.find((r) => r.path === '/hook')!;
    const sig = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(h.headers['x-vigil-signature']))!;
    expect(sig).not.toBeNull();
    const expected = createHmac('sha256', process.env.VIGIL_TEST_HOOK_SECRET!).update(`${sig[1]}.${h.body}`).digest();
    expect(timingSafeEqual(expected, Buffer.from(sig[2], 'hex'))).toBe(true);
    expect(Math.abs(Number(sig[1]) - Date.now() / 1000)).toBeLessThan(300);
    expect(JSON.parse(h.body)).toMatchObject({ action: 'trigger', alert_id: alert.id, rule: 'failed-logins', group: { 'actor.user': 'mallory' }, count: 2, event_ids: alert.details.event_ids });

    const slack = JSON.parse(hook.accepted.find((r) => r.path === '/slack')!.body);
    expect(slack.text).toContain('failed-logins');
    expect(slack.blocks[0].type).toBe('section');

    const pd = JSON.parse(hook.accepted.find((r) => r.path === '/pd')!.body);
    expect(pd).toMatchObject({ routing_key: 'R0UTINGKEY', event_action: 'trigger', dedup_key: 'vigil/failed-logins/actor.user=mallory', payload: { severity: 'error', class: 'failed-logins' } });

    for (const m of [tcp.messages[0], tlsRx.messages[0]]) {
      expect(m).toMatch(/^<108>1 \d{4}-\d\d-\d\dT[\d:.]+Z \S+ vigil \d+ alert\.fired \[vigil@32473 rule="failed-logins" alert_id="[^"]+" count="2" threshold="2" actor\.user="mallory"\] \ufeffvigil alert failed-logins fired/);
    }
    // No secret reaches the audit log.
    const secrets = [process.env.VIGIL_TEST_HOOK_SECRET!, 'R0UTINGKEY'];
    for (const e of tg.events) for (const s of secrets) expect(JSON.stringify(e)).not.toContain(s);
  });

  it('PagerDuty: trigger, then resolve with the same dedup key once the group is quiet for a window', async () => {
    const dir = tempDir();
    const pdRx = await httpReceiver();
    cleanups.push(pdRx.close);
    const keyFile = path.join(dir, 'pd-key');
    fs.writeFileSync(keyFile, 'RK', { mode: 0o600 });
    const tg = await gateway({
      notifiers: [{ name: 'pd', kind: 'pagerduty', url: pdRx.url('/pd'), routing_key: { file: keyFile }, ...FAST }],
      alerts: [{ name: 'burst', match: { type: 'auth.failure' }, group_by: ['actor.user'], window: '300ms', notify: ['pd'] }],
    });
    await fail(tg, 'quinn');
    await waitFor(() => pdRx.accepted.length === 2, 10_000, 'trigger and resolve');
    const [t, r] = pdRx.accepted.map((x) => JSON.parse(x.body));
    expect(t).toMatchObject({ event_action: 'trigger', dedup_key: 'vigil/burst/actor.user=quinn' });
    expect(r).toEqual({ routing_key: 'RK', event_action: 'resolve', dedup_key: t.dedup_key });
    const resolved = tg.events.find((e) => e.type === 'alert.resolved')!;
    expect(resolved.details).toMatchObject({ rule: 'burst', group: { 'actor.user': 'quinn' }, window_ms: 300 });
  });

  it('a receiver that fails (500), times out and recovers: nothing lost, failures counted', async () => {
    // Attempts 0–1 answer 500, attempt 2 never answers (times out), then the receiver is healthy.
    const hook = await httpReceiver((n) => (n < 2 ? 'fail' : n === 2 ? 'hang' : 'ok'));
    cleanups.push(hook.close);
    const tg = await gateway({
      notifiers: [{ name: 'hook', kind: 'webhook', url: hook.url('/hook'), max_attempts: 10, ...FAST }],
      alerts: [{ name: 'any-failure', match: { type: 'auth.failure' }, notify: ['hook'] }],
    });
    for (const u of ['a', 'b', 'c']) await fail(tg, u);
    await waitFor(() => hook.accepted.length === 3, 15_000, 'three deliveries');
    const ids = tg.events.filter((e) => e.type === 'alert.fired').map((e) => e.id);
    expect(hook.accepted.map((r) => JSON.parse(r.body).alert_id)).toEqual(ids);
    // The receiver counts a delivery before vigil reads its answer: wait for vigil to clear its outbox.
    await waitFor(async () => Object.keys(await tg.gw.services.alerts!.outbox.depth()).length === 0, 5000, 'empty outbox');
    const lines: string[] = [];
    // The depth in the metrics is the dispatcher's, as of its pass after the last delivery.
    await waitFor(() => {
      lines.length = 0;
      tg.gw.services.alerts!.renderMetrics(lines);
      return lines.includes('vigil_notifier_queue_depth{notifier="hook"} 0');
    }, 5000, 'depth 0 in the metrics');
    expect(lines).toContain('vigil_notifier_deliveries_total{notifier="hook"} 3');
    expect(lines).toContain('vigil_notifier_failures_total{notifier="hook"} 3');
    expect(lines).toContain('vigil_notifier_queue_depth{notifier="hook"} 0');
  });

  it('a gateway restart with a pending outbox resends', async () => {
    const base = tempDir();
    const port = await freePort(); // nothing listens yet: connection refused
    const config = {
      notifiers: [{ name: 'hook', kind: 'webhook', url: `http://127.0.0.1:${port}/hook`, max_attempts: 50, ...FAST }],
      alerts: [{ name: 'any-failure', match: { type: 'auth.failure' }, notify: ['hook'] }],
    };
    const first = await startTestGateway({ ...gatewayBase, ...config }, base);
    await fail(first, 'zed');
    await waitFor(async () => (await first.gw.services.alerts!.outbox.pending()).some((i) => i.attempts >= 1), 10_000, 'a failed attempt');
    const alertId = first.events.find((e) => e.type === 'alert.fired')!.id;
    await first.stop();
    const left = new SqliteOutbox(path.join(base, 'data'));
    expect((await left.pending()).map((i) => (i.payload as { alert_id: string }).alert_id)).toEqual([alertId]);
    await left.close();

    const hook = await httpReceiver(() => 'ok', port);
    cleanups.push(hook.close);
    const second = await gateway(config, base);
    await waitFor(() => hook.accepted.length === 1, 10_000, 'the resend');
    expect(JSON.parse(hook.accepted[0].body).alert_id).toBe(alertId);
    await waitFor(async () => (await second.gw.services.alerts!.outbox.pending()).length === 0, 5000, 'empty outbox');
  });

  it('after max_attempts a notification is a dead letter, shown by vigil alerts list', async () => {
    const hook = await httpReceiver(() => 'fail');
    cleanups.push(hook.close);
    const base = tempDir();
    const config = {
      ...gatewayBase,
      notifiers: [{ name: 'hook', kind: 'webhook', url: hook.url('/hook'), max_attempts: 2, ...FAST }],
      alerts: [{ name: 'any-failure', match: { type: 'auth.failure' }, notify: ['hook'] }],
    };
    const tg = await gateway(config, base);
    await fail(tg, 'yves');
    await waitFor(async () => (await tg.gw.services.alerts!.outbox.deadLetters()).length === 1, 10_000, 'a dead letter');
    expect(hook.attempts()).toBe(2);
    const configFile = path.join(base, 'vigil.yaml');
    fs.writeFileSync(configFile, JSON.stringify({ ...config, data_dir: tg.dataDir }));
    const res = await runCliCaptured(['alerts', 'list', '--json', '--config', configFile]);
    expect(res.code).toBe(0);
    const out = JSON.parse(res.out);
    const alertId = tg.events.find((e) => e.type === 'alert.fired')!.id;
    expect(out.rules.map((r: { name: string }) => r.name)).toEqual(['any-failure']);
    expect(out.firings.map((f: { id: string }) => f.id)).toEqual([alertId]);
    expect(out.notifiers).toEqual([{ name: 'hook', kind: 'webhook', pending: 0 }]);
    expect(out.dead_letters).toHaveLength(1);
    expect(out.dead_letters[0]).toMatchObject({ notifier: 'hook', attempts: 2, last_error: expect.stringContaining('HTTP 500'), payload: { alert_id: alertId } });
    const text = await runCliCaptured(['alerts', 'list', '--config', configFile]);
    expect(text.out).toContain('Dead letters (1):');
  });
});
