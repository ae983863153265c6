import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startTestGateway } from '../support/gateway.ts';
import { runCliCaptured } from '../support/cli.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * access.approvals follows a config reload: renamed approval notifiers get the next request, and approval
 * notifications start when a reload first names notifiers for them.
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
  roles: [{ name: 'prod-access', target_labels: { env: 'prod' }, approvers: ['sre-lead'], max_ttl: '1h' }, { name: 'sre-lead' }, { name: 'admin' }],
};

async function fileRequest(configFile: string, reason: string): Promise<string> {
  const filed = await runCliCaptured(['access', 'request', '--user', 'erin', '--role', 'prod-access', '--reason', reason, '--ttl', '20m', '--by', 'root', '--by-roles', 'admin', '--json', '--config', configFile]);
  expect(filed.err).toBe('');
  return JSON.parse(filed.out).id;
}

describe('approval notifications after a config reload', () => {
  it('a reload renaming the approval notifier ops → oncall sends the next request to oncall', async () => {
    const [ops, oncall] = await Promise.all([receiver(), receiver()]);
    const base = tempDir('vigil-reload-approvals-');
    const configFile = path.join(base, 'vigil.json');
    const tg = await startTestGateway({ ...POLICY, notifiers: [{ name: 'ops', kind: 'webhook', url: ops.url, backoff_initial: '100ms' }], access: { approvals: { notify: ['ops'] } } }, base, { configFile });
    try {
      const doc = JSON.parse(fs.readFileSync(configFile, 'utf8'));
      doc.notifiers = [{ name: 'oncall', kind: 'webhook', url: oncall.url, backoff_initial: '100ms' }];
      doc.access.approvals.notify = ['oncall'];
      fs.writeFileSync(configFile, JSON.stringify(doc));
      expect(await tg.gw.reload({ via: 'test' })).toMatchObject({ ok: true, applied: expect.arrayContaining(['access', 'notifiers']) });
      const id = await fileRequest(configFile, 'INC-7001 after the rename');
      const msg = await waitFor(() => oncall.got.find((m) => m.request_id === id && m.action === 'request'), 15_000, 'request message to oncall');
      expect(msg).toMatchObject({ beneficiary: 'erin', reason: 'INC-7001 after the rename' });
      expect(ops.got).toEqual([]);
    } finally {
      await tg.stop();
      await Promise.all([ops.close(), oncall.close()]);
    }
  }, 60_000);

  it('a reload that first names approval notifiers starts the notifications', async () => {
    const rx = await receiver();
    const base = tempDir('vigil-reload-approvals-start-');
    const configFile = path.join(base, 'vigil.json');
    const tg = await startTestGateway({ ...POLICY }, base, { configFile });
    try {
      const doc = JSON.parse(fs.readFileSync(configFile, 'utf8'));
      doc.notifiers = [{ name: 'approvers', kind: 'webhook', url: rx.url, backoff_initial: '100ms' }];
      doc.access = { ...doc.access, approvals: { ...doc.access?.approvals, notify: ['approvers'] } };
      fs.writeFileSync(configFile, JSON.stringify(doc));
      expect(await tg.gw.reload({ via: 'test' })).toMatchObject({ ok: true });
      const id = await fileRequest(configFile, 'INC-7002 after enabling');
      const msg = await waitFor(() => rx.got.find((m) => m.request_id === id && m.action === 'request'), 15_000, 'request message after enabling');
      expect(msg).toMatchObject({ beneficiary: 'erin' });
      expect(tg.gw.services.accessLinks).toBeDefined();
    } finally {
      await tg.stop();
      await rx.close();
    }
    // Stopped with the gateway: the link store is closed and unset.
    expect(tg.gw.services.accessLinks).toBeUndefined();
  }, 60_000);
});
