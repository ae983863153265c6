import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EndReason } from '../../src/sessions/registry.ts';
import type { Principal } from '../../src/identity/types.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { POLICY } from './support.ts';

/**
 * The running gateway sees changes the CLI makes in another process within a second: a lock or a
 * revocation made by `vigil` in a child process ends a live session registered in the gateway.
 */
const ROOT = path.resolve(import.meta.dirname, '../..');
const TSX = path.join(ROOT, 'node_modules/.bin/tsx');

let tg: TestGateway;
let configFile: string;

beforeAll(async () => {
  const base = tempDir();
  const policy = { ...POLICY, access: { ...POLICY.access, local_roles: { bob: ['sre-lead'] } } };
  // Protocol listeners are not needed here: sessions are registered the way a proxy registers them.
  tg = await startTestGateway({ ...policy, ssh: { enabled: false }, postgres: { enabled: false }, mysql: { enabled: false } }, base);
  configFile = path.join(base, 'vigil.yaml');
  fs.writeFileSync(configFile, YAML.stringify({ data_dir: tg.dataDir, ...policy }));
});
afterAll(async () => {
  await tg?.stop();
});

function vigil(args: string[]): Promise<{ code: number; stdout: string; stderr: string; exitedAt: number }> {
  return new Promise((resolve) => {
    execFile(TSX, [path.join(ROOT, 'app/main.ts'), ...args, '--config', configFile], { cwd: ROOT, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr, exitedAt: Date.now() });
    });
  });
}

function liveSession(user: string, grantIds: string[] = [], accessExpiresAt?: Date) {
  const p: Principal = { user, roles: ['dev'], certSerial: `${user}01`, credential: 'x509', notBefore: new Date(), notAfter: new Date(Date.now() + 3_600_000), extensions: [] };
  const ended: { reason?: EndReason; message?: string; at?: number } = {};
  const h = tg.gw.services.sessions.open(
    { protocol: 'postgres', principal: p, target: { name: 'pg-prod', host: '127.0.0.1', port: 5432 }, source: { ip: '127.0.0.1', port: 9 }, grantIds, accessExpiresAt },
    (reason, message) => {
      Object.assign(ended, { reason, message, at: Date.now() });
      h.close(reason);
    },
  );
  return ended;
}

describe('CLI changes reach a running gateway', () => {
  it('vigil lock user in another process cuts the live session within 1 s; unlock lets new ones in', async () => {
    const s = liveSession('alice');
    const r = await vigil(['lock', 'user', 'alice', '--reason', 'laptop stolen']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^locked: user alice/);
    await waitFor(() => s.reason, 1000, 'session cut after CLI lock');
    expect(s.reason).toBe('locked');
    expect(s.at! - r.exitedAt).toBeLessThan(1000);
    const authz = await tg.gw.services.authz.authorize({ principal: { user: 'alice', roles: ['dev'], certSerial: 'ff', credential: 'x509', notBefore: new Date(), notAfter: new Date(Date.now() + 60_000), extensions: [] }, target: 'pg-stage', protocol: 'postgres', database: 'app' });
    expect(authz).toMatchObject({ allow: false, reason: 'locked' });

    const u = await vigil(['unlock', 'user', 'alice']);
    expect(u.code).toBe(0);
    await waitFor(async () => {
      await tg.gw.services.store.refresh();
      return !tg.gw.services.store.isLocked('user', 'alice');
    }, 1000, 'unlock seen');
  }, 120_000);

  it('request, approve and revoke in CLI processes; the gateway cuts the session on the grant within 1 s', async () => {
    const req = await vigil(['access', 'request', '--user', 'dana', '--role', 'prod-dba', '--target', 'pg-prod', '--reason', 'INC-4521 replica lag', '--ttl', '30m', '--json']);
    expect(req.stderr).toBe('');
    const rec = JSON.parse(req.stdout);
    const self = await vigil(['access', 'approve', rec.id, '--by', 'dana']);
    expect(self.code).toBe(1);
    expect(self.stderr).toContain('[VIGIL_SELF_APPROVAL]');
    const ok = await vigil(['access', 'approve', rec.id, '--by', 'bob']);
    expect(ok.stdout).toMatch(/^approved: \S+  active  dana → prod-dba on pg-prod/);

    // Connect-time decision in the gateway now allows dana on pg-prod through the grant.
    await tg.gw.services.store.refresh();
    const principal: Principal = { user: 'dana', roles: [], certSerial: 'dd01', credential: 'x509', notBefore: new Date(), notAfter: new Date(Date.now() + 3_600_000), extensions: [] };
    const d = await tg.gw.services.authz.authorize({ principal, target: 'pg-prod', protocol: 'postgres', database: 'app' });
    expect(d).toMatchObject({ allow: true, via: 'grant', grantIds: [rec.id] });
    const s = liveSession('dana', [rec.id], d.allow ? d.expiresAt : undefined);

    const list = await vigil(['access', 'list', '--state', 'active']);
    expect(list.stdout).toContain(rec.id);

    const rv = await vigil(['access', 'revoke', rec.id, '--by', 'bob', '--reason', 'incident over']);
    expect(rv.code).toBe(0);
    await waitFor(() => s.reason, 1000, 'session cut after CLI revoke');
    expect(s).toMatchObject({ reason: 'revoked', message: 'Your access grant has been revoked; the session is closed.' });
    expect(s.at! - rv.exitedAt).toBeLessThan(1000);

    const show = await vigil(['access', 'show', rec.id]);
    expect(show.stdout).toMatch(/state:\s+revoked/);
    expect(show.stdout).toMatch(/why:\s+incident over/);
  }, 180_000);
});
