import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStateStore } from '../../src/store/index.ts';
import { tempDir } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { apiEnv, type ApiEnv, type ClientCert } from '../api/support.ts';
import { POLICY } from './support.ts';

/**
 * Four-eyes with a requester and a beneficiary: an admin who also holds an approver role files a request on
 * behalf of bob. Neither the admin (who filed it) nor bob (who would get the grant) may decide it, through
 * the API or the CLI; a third approver may. Rows written before requests recorded their requester are
 * migrated to requester = beneficiary = user.
 */

describe('four-eyes: requester and beneficiary', () => {
  let env: ApiEnv;
  let root: ClientCert, bob: ClientCert, dave: ClientCert;
  beforeAll(async () => {
    env = await apiEnv();
    [root, bob, dave] = await Promise.all([env.client('root', ['admin', 'sre-lead']), env.client('bob', ['sre-lead']), env.client('dave', ['sre-lead'])]);
  });
  afterAll(async () => {
    await env?.stop();
  });

  it('API: the admin who filed for bob cannot approve or deny it, bob cannot either; another approver can', async () => {
    const filed = await env.call('POST', '/v1/access/requests', root, { user: 'bob', role: 'prod-ssh', reason: 'INC-77 bob needs prod', ttl: '30m' });
    expect(filed.status).toBe(201);
    const rec = filed.body.request;
    expect(rec).toMatchObject({ user: 'bob', requester: 'root', beneficiary: 'bob', state: 'pending' });
    const requested = env.of('access.requested').find((e) => e.details.request_id === rec.id)!;
    expect(requested.details).toMatchObject({ requester: 'root', beneficiary: 'bob', user: 'bob' });

    for (const [who, verb, body] of [
      [root, 'approve', {}],
      [root, 'deny', { reason: 'no' }],
      [bob, 'approve', {}],
      [bob, 'deny', { reason: 'no' }],
    ] as const) {
      const r = await env.call('POST', `/v1/access/requests/${rec.id}/${verb}`, who, body);
      expect(r.status, `${who.user} ${verb}`).toBe(403);
      expect(r.body.error.code).toBe('VIGIL_SELF_APPROVAL');
    }
    const refusals = env.of('access.refused').filter((e) => e.details.request_id === rec.id);
    expect(refusals.map((e) => [e.actor.user, e.details.action, e.details.code])).toEqual([
      ['root', 'approve', 'VIGIL_SELF_APPROVAL'],
      ['root', 'deny', 'VIGIL_SELF_APPROVAL'],
      ['bob', 'approve', 'VIGIL_SELF_APPROVAL'],
      ['bob', 'deny', 'VIGIL_SELF_APPROVAL'],
    ]);
    expect((await env.store.getAccess(rec.id))?.state).toBe('pending');

    const ok = await env.call('POST', `/v1/access/requests/${rec.id}/approve`, dave, {});
    expect(ok.status).toBe(200);
    expect(ok.body.request).toMatchObject({ state: 'active', decidedBy: 'dave', requester: 'root', beneficiary: 'bob' });
  });

  it('the requester sees the request filed on behalf of someone else', async () => {
    const filed = await env.call('POST', '/v1/access/requests', root, { user: 'erin', role: 'prod-ssh', reason: 'INC-78', ttl: '10m' });
    const erin = await env.client('erin', ['dev']);
    expect((await env.call('GET', `/v1/access/requests/${filed.body.request.id}`, erin)).status).toBe(200);
  });
});

describe('four-eyes on the local CLI', () => {
  let config: string;
  beforeAll(() => {
    const base = tempDir();
    config = path.join(base, 'vigil.yaml');
    fs.writeFileSync(config, YAML.stringify({ data_dir: path.join(base, 'data'), ...POLICY }));
  });
  const vigil = (...args: string[]) => runCliCaptured([...args, '--config', config]);

  it('an admin approver files for bob with --user and cannot approve it; bob cannot; dave can', async () => {
    const filed = await vigil('access', 'request', '--user', 'bob', '--role', 'prod-ssh', '--reason', 'INC-79 on behalf of bob', '--ttl', '30m', '--by', 'root', '--by-roles', 'admin,sre-lead', '--json');
    expect(filed.err).toBe('');
    const rec = JSON.parse(filed.out);
    expect(rec).toMatchObject({ user: 'bob', requester: 'root', beneficiary: 'bob' });

    const self = await vigil('access', 'approve', rec.id, '--by', 'root', '--by-roles', 'admin,sre-lead');
    expect(self.code).toBe(1);
    expect(self.err).toContain('[VIGIL_SELF_APPROVAL]');
    const selfDeny = await vigil('access', 'deny', rec.id, '--reason', 'x', '--by', 'root', '--by-roles', 'admin,sre-lead');
    expect(selfDeny.err).toContain('[VIGIL_SELF_APPROVAL]');
    const beneficiary = await vigil('access', 'approve', rec.id, '--by', 'bob', '--by-roles', 'sre-lead');
    expect(beneficiary.code).toBe(1);
    expect(beneficiary.err).toContain('[VIGIL_SELF_APPROVAL]');

    const shown = await vigil('access', 'show', rec.id, '--by', 'root', '--by-roles', 'admin');
    expect(shown.out).toMatch(/requested by: root/);
    expect(shown.out).toMatch(/state: +pending/);

    const ok = await vigil('access', 'approve', rec.id, '--by', 'dave', '--by-roles', 'sre-lead');
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/approved: \S+  active  bob \(filed by root\) → prod-ssh/);
  });
});

describe('store migration', () => {
  it('rows written before requests recorded a requester get requester = beneficiary = user', async () => {
    const dir = tempDir();
    (await openStateStore(dir)).close();
    // A row exactly as the previous version wrote it: no requester, no beneficiary.
    const old = { id: 'old-1', user: 'carol', role: 'prod-ssh', targets: [], reason: 'before', ttlMs: 60_000, state: 'pending', createdAt: '2026-01-01T00:00:00.000Z', requestExpiresAt: '2026-01-01T01:00:00.000Z', approvals: [], breakGlass: false };
    const db = new Database(path.join(dir, 'state.db'));
    db.prepare('INSERT INTO access VALUES (?, ?, ?, ?, ?)').run(old.id, old.user, old.state, old.createdAt, JSON.stringify(old));
    db.close();
    const store = await openStateStore(dir);
    expect(await store.getAccess('old-1')).toMatchObject({ user: 'carol', requester: 'carol', beneficiary: 'carol' });
    await store.close();
  });
});
