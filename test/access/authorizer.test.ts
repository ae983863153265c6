import { afterEach, describe, expect, it } from 'vitest';
import { createAuthorizer, NO_SUCH_TARGET } from '../../src/authz/index.ts';
import type { AccessQuery, Authorizer } from '../../src/authz/types.ts';
import type { Principal } from '../../src/identity/types.ts';
import { accessEnv, actor, type AccessEnv } from './support.ts';

let env: AccessEnv;
let authz: Authorizer;
afterEach(async () => {
  await env?.close();
});

let serial = 1;
function principal(user: string, roles: string[], extra: Partial<Principal> = {}): Principal {
  return {
    user,
    roles,
    certSerial: (serial++).toString(16).padStart(16, '0'),
    credential: 'x509',
    notBefore: new Date(Date.now() - 1000),
    notAfter: new Date(Date.now() + 3_600_000),
    extensions: [],
    ...extra,
  };
}

const q = (p: Principal, target: string, protocol: string, more: Partial<AccessQuery> = {}): AccessQuery => ({ principal: p, target, protocol, ...more });

async function setup(overrides: Record<string, unknown> = {}) {
  env = await accessEnv(overrides);
  authz = createAuthorizer(env.config, env.store);
}

/** Approve a request for `user` through the real lifecycle. */
async function grant(user: string, role: string, targets: string[] = [], ttlMs?: number) {
  const req = await env.access.request(actor(user), { role, targets, reason: 'test', ttlMs });
  return env.access.approve(actor('bob', ['sre-lead']), req.id);
}

describe('authorizer', () => {
  it('denies by default: no roles, unknown roles and unknown targets get nothing, with the same message', async () => {
    await setup();
    const nobody = principal('nobody', []);
    const unknownTarget = await authz.authorize(q(nobody, 'pg-nope', 'postgres', { database: 'app' }));
    expect(unknownTarget).toEqual({ allow: false, reason: 'unknown_target', message: NO_SUCH_TARGET });
    const noPerm = await authz.authorize(q(nobody, 'pg-prod', 'postgres', { database: 'app' }));
    expect(noPerm).toEqual({ allow: false, reason: 'no_permission', message: NO_SUCH_TARGET });
    const ghostRole = await authz.authorize(q(principal('x', ['not-configured']), 'pg-prod', 'postgres'));
    expect(ghostRole).toMatchObject({ allow: false, reason: 'no_permission' });
    // The target name is looked up per protocol: an SSH target is not a Postgres target.
    expect(await authz.authorize(q(principal('w', ['web-ops']), 'web-2', 'postgres'))).toMatchObject({ allow: false, reason: 'unknown_target' });
  });

  it('standing roles reach targets by name, by labels, and by the target naming the role', async () => {
    await setup();
    const dev = principal('dan', ['dev']);
    expect(await authz.authorize(q(dev, 'pg-stage', 'postgres', { database: 'app' }))).toMatchObject({ allow: true, via: 'role', grantIds: [], roles: ['dev'] });
    expect(await authz.authorize(q(dev, 'pg-stage', 'postgres', { database: 'billing' }))).toMatchObject({ allow: false, reason: 'database_not_allowed' });
    expect(await authz.authorize(q(dev, 'pg-prod', 'postgres', { database: 'app' }))).toMatchObject({ allow: false, reason: 'no_permission' });

    const byLabel = principal('sam', ['prod-ssh']);
    const d = await authz.authorize(q(byLabel, 'web-1', 'ssh', { login: 'root' }));
    expect(d).toMatchObject({ allow: true, via: 'role', permissions: { portForwarding: false } });
    expect(d.allow && d.expiresAt).toBeFalsy();
    // An SSH session without a login is refused rather than left unchecked.
    expect(await authz.authorize(q(byLabel, 'web-1', 'ssh'))).toMatchObject({ allow: false, reason: 'login_not_allowed' });
    // '*' logins are limited to the logins the target allows.
    expect(await authz.authorize(q(byLabel, 'web-1', 'ssh', { login: 'postgres' }))).toMatchObject({ allow: false, reason: 'login_not_allowed' });
    // Labels must all match: pg-stage is env=stage.
    expect(await authz.authorize(q(principal('d2', ['prod-dba']), 'pg-stage', 'postgres'))).toMatchObject({ allow: false, reason: 'no_permission' });

    const webOps = principal('wes', ['web-ops']);
    expect(await authz.authorize(q(webOps, 'web-2', 'ssh', { login: 'deploy' }))).toMatchObject({ allow: true, roles: ['web-ops'] });
    expect(await authz.authorize(q(webOps, 'web-2', 'ssh', { login: 'root' }))).toMatchObject({ allow: false, reason: 'login_not_allowed' });
  });

  it('database logins: the target user is always fine, other users need the role and the target to list them', async () => {
    await setup({
      targets: [{ name: 'my-prod', protocol: 'mysql', host: '127.0.0.1', port: 3306, user: 'app', logins: { report: { env: 'X' }, admin: { env: 'Y' } }, labels: { env: 'prod', kind: 'db' } }],
      roles: [
        { name: 'prod-dba', target_labels: { env: 'prod', kind: 'db' } },
        { name: 'reporting', targets: ['my-prod'], logins: ['report'] },
      ],
    });
    const dba = principal('d', ['prod-dba']);
    expect(await authz.authorize(q(dba, 'my-prod', 'mysql', { login: 'app' }))).toMatchObject({ allow: true });
    expect(await authz.authorize(q(dba, 'my-prod', 'mysql', { login: 'report' }))).toMatchObject({ allow: false, reason: 'login_not_allowed' });
    const rep = principal('r', ['reporting']);
    expect(await authz.authorize(q(rep, 'my-prod', 'mysql', { login: 'report' }))).toMatchObject({ allow: true });
    expect(await authz.authorize(q(rep, 'my-prod', 'mysql', { login: 'admin' }))).toMatchObject({ allow: false, reason: 'login_not_allowed' });
  });

  it('port forwarding needs both a role and a target that allow it', async () => {
    await setup({
      targets: [{ name: 'bastion', protocol: 'ssh', host: '127.0.0.1', port: 22, logins: ['ops'], port_forwarding: true, labels: { env: 'prod' } }],
    });
    const d = await authz.authorize(q(principal('sam', ['prod-ssh']), 'bastion', 'ssh', { login: 'ops' }));
    expect(d).toMatchObject({ allow: true, permissions: { portForwarding: true } });
  });

  it('an active grant allows access, narrowed to its targets, and carries its id and expiry', async () => {
    await setup();
    const alice = principal('alice', ['dev']);
    expect(await authz.authorize(q(alice, 'pg-prod', 'postgres', { database: 'app' }))).toMatchObject({ allow: false, reason: 'no_permission' });
    const g = await grant('alice', 'prod-ssh', ['web-1'], 20 * 60_000);
    const d = await authz.authorize(q(alice, 'web-1', 'ssh', { login: 'deploy' }));
    expect(d).toMatchObject({ allow: true, via: 'grant', grantIds: [g.id], roles: ['prod-ssh'], permissions: { portForwarding: false } });
    expect(d.allow && d.expiresAt?.toISOString()).toBe(g.expiresAt);
    // The role reaches pg-prod by label too, but the grant is narrowed to web-1.
    expect(await authz.authorize(q(alice, 'pg-prod', 'postgres', { database: 'app' }))).toMatchObject({ allow: false, reason: 'no_permission' });
    // Someone else's grant gives bob nothing.
    expect(await authz.authorize(q(principal('mallory', []), 'web-1', 'ssh', { login: 'deploy' }))).toMatchObject({ allow: false });

    await env.access.revoke(actor('bob', ['sre-lead']), g.id, { reason: 'done' });
    expect(await authz.authorize(q(alice, 'web-1', 'ssh', { login: 'deploy' }))).toMatchObject({ allow: false, reason: 'no_permission' });
  });

  it('a grant past its expiry allows nothing even before the sweep marks it expired', async () => {
    await setup();
    await grant('alice', 'prod-dba', [], 100);
    const alice = principal('alice', []);
    expect(await authz.authorize(q(alice, 'pg-prod', 'postgres', { database: 'app' }))).toMatchObject({ allow: true, via: 'grant' });
    await new Promise((r) => setTimeout(r, 150));
    expect(await authz.authorize(q(alice, 'pg-prod', 'postgres', { database: 'app' }))).toMatchObject({ allow: false, reason: 'no_permission' });
  });

  it('a certificate issued for a grant is good only while the grant is, and its role counts as grant access', async () => {
    await setup();
    const g = await grant('alice', 'prod-dba');
    const bound = principal('alice', ['prod-dba'], { grantId: g.id });
    const d = await authz.authorize(q(bound, 'pg-prod', 'postgres', { database: 'app' }));
    expect(d).toMatchObject({ allow: true, via: 'grant', grantIds: [g.id] });
    await env.access.revoke(actor('alice'), g.id, { reason: 'done early' });
    expect(await authz.authorize(q(bound, 'pg-prod', 'postgres', { database: 'app' }))).toMatchObject({ allow: false, reason: 'revoked' });
  });

  it('a locked user and a revoked certificate are refused whatever their roles', async () => {
    await setup();
    const dev = principal('dan', ['dev']);
    await env.access.lock(actor('root', ['admin']), { user: 'dan', reason: 'investigation' });
    expect(await authz.authorize(q(dev, 'pg-stage', 'postgres', { database: 'app' }))).toMatchObject({ allow: false, reason: 'locked' });
    await env.access.unlock(actor('root', ['admin']), 'dan');
    expect(await authz.authorize(q(dev, 'pg-stage', 'postgres', { database: 'app' }))).toMatchObject({ allow: true });

    await env.store.revoke({ serial: dev.certSerial, reason: 'key compromised', by: 'root', time: new Date().toISOString() });
    expect(await authz.authorize(q(dev, 'pg-stage', 'postgres', { database: 'app' }))).toMatchObject({ allow: false, reason: 'revoked' });
  });
});
