import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import YAML from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../app/config.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { runCliCaptured } from '../support/cli.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * Approval notifications are driven off the state store, not the gateway's memory: a request filed by the
 * CLI (another writer of the data dir) is sent to the approvers; a gateway restarted before the reminder
 * was due still sends it, once, and does not send the request again; links survive the restart (the HMAC
 * key is a 0600 file of the data dir).
 */

async function receiver() {
  const got: any[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      got.push(JSON.parse(Buffer.concat(chunks).toString()));
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return { got, url: `http://127.0.0.1:${port}/hook`, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

const POLICY = {
  ssh: { enabled: false },
  postgres: { enabled: false },
  mysql: { enabled: false },
  targets: [{ name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1', port: 5432, user: 'app', labels: { env: 'prod' } }],
  roles: [
    { name: 'prod-access', target_labels: { env: 'prod' }, approvers: ['sre-lead'], max_ttl: '1h' },
    { name: 'sre-lead' },
    { name: 'admin' },
  ],
};

let rx: Awaited<ReturnType<typeof receiver>> | undefined;
let tg: TestGateway | undefined;
afterAll(async () => {
  await tg?.stop();
  await rx?.close();
});

function post(url: string, who: { crt: string; key: string; ca: string }): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: 'POST', agent: false, ca: fs.readFileSync(who.ca), cert: fs.readFileSync(who.crt), key: fs.readFileSync(who.key) }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('approval notifications across processes and restarts', () => {
  it('a CLI-filed request is notified; after a restart the reminder still comes, once; old links still work', async () => {
    rx = await receiver();
    const base = tempDir('vigil-approvals-restart-');
    const config = {
      ...POLICY,
      notifiers: [{ name: 'approvers', kind: 'webhook', url: rx.url, backoff_initial: '100ms' }],
      access: { approvals: { notify: ['approvers'], remind_after: '6s' } },
    };
    tg = await startTestGateway(config, base);
    const configFile = path.join(base, 'vigil.yaml');
    fs.writeFileSync(configFile, YAML.stringify({ data_dir: tg.dataDir, ...config }));

    const filed = await runCliCaptured(['access', 'request', '--user', 'erin', '--role', 'prod-access', '--reason', 'INC-6000 from the CLI', '--ttl', '20m', '--by', 'root', '--by-roles', 'admin', '--json', '--config', configFile]);
    expect(filed.err).toBe('');
    const id = JSON.parse(filed.out).id;
    const first = await waitFor(() => rx!.got.find((m) => m.request_id === id && m.action === 'request'), 15_000, 'request message');
    expect(first).toMatchObject({ requester: 'root', beneficiary: 'erin', reason: 'INC-6000 from the CLI' });
    const mode = fs.statSync(path.join(tg.dataDir, 'ca', 'approval_links.key')).mode & 0o777;
    expect(mode).toBe(0o600);

    // Restart before the reminder is due.
    await tg.stop();
    tg = undefined;
    expect(rx.got.filter((m) => m.request_id === id && m.action === 'reminder')).toHaveLength(0);
    tg = await startTestGateway(config, base);
    const reminder = await waitFor(() => rx!.got.find((m) => m.request_id === id && m.action === 'reminder'), 20_000, 'reminder after restart');
    expect(reminder.approve_url).toContain(`:${tg.ports.api}/`);
    expect(rx.got.filter((m) => m.request_id === id && m.action === 'request')).toHaveLength(1);

    // A link sent by the first run works on the second (same key), with an approver's certificate.
    const bob = await tg.issue({ user: 'bob', roles: ['sre-lead'] });
    const oldLink = first.approve_url.replace(/:\d+\//, `:${tg.ports.api}/`);
    const r = await post(oldLink, bob);
    expect(r.status).toBe(200);
    expect(r.body.request).toMatchObject({ state: 'active', decidedBy: 'bob', user: 'erin' });
    const decision = await waitFor(() => rx!.got.find((m) => m.request_id === id && m.action === 'decision'), 15_000, 'decision message');
    expect(decision.decision).toMatchObject({ state: 'active', by: 'bob' });
    expect(rx.got.filter((m) => m.request_id === id && m.action === 'reminder')).toHaveLength(1);
  }, 120_000);

  it('after a config reload that replaces the alert service (a notifier changed), requests are still notified', async () => {
    const rx2 = await receiver();
    const base = tempDir('vigil-approvals-reload-');
    const configFile = path.join(base, 'vigil.json');
    const hook = { name: 'approvers', kind: 'webhook', url: rx2.url, backoff_initial: '100ms' };
    const config = { ...POLICY, notifiers: [hook], access: { approvals: { notify: ['approvers'] } } };
    const gw = await startTestGateway(config, base, { configFile });
    try {
      const doc = JSON.parse(fs.readFileSync(configFile, 'utf8'));
      doc.notifiers = [{ ...hook, max_attempts: 7 }];
      fs.writeFileSync(configFile, JSON.stringify(doc));
      expect(await gw.gw.reload({ via: 'test' })).toMatchObject({ ok: true, applied: ['notifiers'] });
      const filed = await runCliCaptured(['access', 'request', '--user', 'erin', '--role', 'prod-access', '--reason', 'INC-6001 after a reload', '--ttl', '20m', '--by', 'root', '--by-roles', 'admin', '--json', '--config', configFile]);
      expect(filed.err).toBe('');
      const id = JSON.parse(filed.out).id;
      const msg = await waitFor(() => rx2.got.find((m) => m.request_id === id && m.action === 'request'), 15_000, 'request message after the reload');
      expect(msg).toMatchObject({ beneficiary: 'erin', reason: 'INC-6001 after a reload' });
    } finally {
      await gw.stop();
      await rx2.close();
    }
  }, 60_000);

  it('access.approvals must name configured notifiers', () => {
    const dir = tempDir();
    expect(() => parseConfig({ data_dir: dir, ...POLICY, access: { approvals: { notify: ['nobody'] } } }, dir, false)).toThrow(/access\.approvals\.notify: no notifier named nobody/);
    expect(() => parseConfig({ data_dir: dir, ...POLICY, notifiers: [{ name: 'a', kind: 'webhook', url: 'http://127.0.0.1:9/' }], access: { approvals: { notify: ['a'], escalate_to: ['b'] } } }, dir, false)).toThrow(/escalate_to: no notifier named b/);
  });
});
