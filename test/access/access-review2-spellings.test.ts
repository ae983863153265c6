import { afterEach, describe, expect, it } from 'vitest';
import { createAuthorizer } from '../../src/authz/index.ts';
import type { Principal } from '../../src/identity/types.ts';
import { accessEnv, actor, type AccessEnv } from './support.ts';

/**
 * Four-eyes counts people, not spellings. `Dave` (an identity provider's spelling, or a user issued before one
 * spelling per person was enforced) and `dave` (a certificate's) are one person: isParty already treats them
 * so for self-approval, and a role needing two approvals must get them from two people. Likewise a request
 * filed for `Bob` when vigil knows the user as `bob` is for bob, whose credentials name `bob`.
 */

let env: AccessEnv;
afterEach(async () => {
  await env?.close();
});

describe('access review 2: four-eyes across spellings of one approver', () => {
  it('one approver under two spellings cannot give both approvals a two-approval role needs', async () => {
    env = await accessEnv();
    const req = await env.access.request(actor('alice', ['dev']), { role: 'prod-root', reason: 'INC-90 root on web-1' });
    await env.access.approve(actor('dave', ['sre-lead']), req.id);

    await expect(env.access.approve(actor('Dave', ['sre-lead']), req.id)).rejects.toMatchObject({ code: 'VIGIL_ALREADY_APPROVED' });

    const now = (await env.store.getAccess(req.id))!;
    expect(now.state).toBe('pending');
    expect(now.approvals.map((a) => a.by)).toEqual(['dave']);
    expect(env.of('access.approved')).toHaveLength(0);
    const refusal = env.of('access.refused').at(-1)!;
    expect(refusal.actor.user).toBe('Dave');
    expect(refusal.details).toMatchObject({ action: 'approve', code: 'VIGIL_ALREADY_APPROVED', request_id: req.id });

    // A second person still completes it.
    const done = await env.access.approve(actor('bob', ['sre-lead']), req.id);
    expect(done.state).toBe('active');
    expect(done.approvals.map((a) => a.by)).toEqual(['dave', 'bob']);
  });

  it('a request filed for another spelling of a known user is for that user: the grant reaches their sessions', async () => {
    env = await accessEnv();
    const now = Date.now();
    await env.store.recordIssuedCert({ serial: '00000000000000b0', user: 'bob', roles: [], notBefore: new Date(now - 1000).toISOString(), notAfter: new Date(now + 3_600_000).toISOString(), kind: 'cert' });

    const req = await env.access.request(actor('root', ['admin']), { user: 'Bob', role: 'prod-dba', reason: 'INC-95 for bob', ttlMs: 600_000 });
    expect(req).toMatchObject({ user: 'bob', beneficiary: 'bob', requester: 'root' });
    expect(env.of('access.requested').at(-1)!.details).toMatchObject({ user: 'bob', beneficiary: 'bob' });
    // Still four-eyes under either spelling.
    await expect(env.access.approve(actor('Bob', ['sre-lead']), req.id)).rejects.toMatchObject({ code: 'VIGIL_SELF_APPROVAL' });
    await env.access.approve(actor('dave', ['dba-lead']), req.id);

    const bob: Principal = { user: 'bob', roles: [], certSerial: '00000000000000b0', credential: 'x509', notBefore: new Date(now - 1000), notAfter: new Date(now + 3_600_000), extensions: [] };
    const decision = await createAuthorizer(env.config, env.store).authorize({ principal: bob, target: 'pg-prod', protocol: 'postgres', database: 'app' });
    expect(decision).toMatchObject({ allow: true, via: 'grant', grantIds: [req.id] });
  });
});
