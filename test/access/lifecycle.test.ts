import { afterEach, describe, expect, it } from 'vitest';
import { AccessRefusedError } from '../../src/access/errors.ts';
import { accessEnv, actor, type AccessEnv } from './support.ts';

const alice = actor('alice', ['dev']);
const bob = actor('bob', ['sre-lead']);
const dave = actor('dave', ['dba-lead']);
const mallory = actor('mallory', ['dev']);
const carol = actor('carol', ['dev']);
const admin = actor('root-admin', ['admin']);

let env: AccessEnv;
afterEach(async () => {
  await env?.close();
});

/** Expect `p` to be refused with `code`, and an access.refused event naming that code. */
async function expectRefused(p: Promise<unknown>, code: string, action: string) {
  const before = env.of('access.refused').length;
  const err = await p.then(
    () => undefined,
    (e) => e,
  );
  expect(err).toBeInstanceOf(AccessRefusedError);
  expect(err.code).toBe(code);
  const refusedEvents = env.of('access.refused');
  expect(refusedEvents.length).toBe(before + 1);
  const ev = refusedEvents.at(-1)!;
  expect(ev.outcome).toBe('failure');
  expect(ev.details).toMatchObject({ action, code });
  expect(ev.details.reason).toBe(err.message);
  return ev;
}

describe('access lifecycle', () => {
  it('request → approve makes an active grant with its expiry, recorded with reason and approver', async () => {
    env = await accessEnv();
    const req = await env.access.request(alice, { role: 'prod-dba', targets: ['pg-prod'], reason: 'INC-4521 replica lag', ttlMs: 30 * 60_000 });
    expect(req.state).toBe('pending');
    const requested = env.of('access.requested');
    expect(requested).toHaveLength(1);
    expect(requested[0].actor.user).toBe('alice');
    expect(requested[0].target).toEqual({ name: `grant/${req.id}`, protocol: 'vigil' });
    expect(requested[0].details).toMatchObject({ request_id: req.id, role: 'prod-dba', targets: ['pg-prod'], reason: 'INC-4521 replica lag', ttl_ms: 1_800_000 });

    const t0 = Date.now();
    const granted = await env.access.approve(bob, req.id, { comment: 'go' });
    expect(granted.state).toBe('active');
    const expires = Date.parse(granted.expiresAt!);
    expect(expires).toBeGreaterThanOrEqual(t0 + 1_800_000 - 5);
    expect(expires).toBeLessThanOrEqual(Date.now() + 1_800_000);
    const approved = env.of('access.approved');
    expect(approved).toHaveLength(1);
    expect(approved[0].actor).toMatchObject({ user: 'bob', roles: ['sre-lead'] });
    expect(approved[0].details).toMatchObject({ request_id: req.id, expires_at: granted.expiresAt, break_glass: false, approvals: ['bob'], comment: 'go' });
    expect((await env.store.getAccess(req.id))!.state).toBe('active');
  });

  it('a reason is mandatory', async () => {
    env = await accessEnv();
    await expectRefused(env.access.request(alice, { role: 'prod-dba', reason: '   ' }), 'VIGIL_REASON_REQUIRED', 'request');
    expect(await env.store.listAccess()).toHaveLength(0);
  });

  it('unknown roles, roles nobody can approve, too long TTLs and targets outside the role are refused', async () => {
    env = await accessEnv();
    await expectRefused(env.access.request(alice, { role: 'nope', reason: 'x' }), 'VIGIL_UNKNOWN_ROLE', 'request');
    await expectRefused(env.access.request(alice, { role: 'admin', reason: 'x' }), 'VIGIL_NOT_REQUESTABLE', 'request');
    await expectRefused(env.access.request(alice, { role: 'prod-dba', reason: 'x', ttlMs: 2 * 3_600_000 }), 'VIGIL_TTL_TOO_LONG', 'request');
    await expectRefused(env.access.request(alice, { role: 'prod-dba', reason: 'x', targets: ['pg-stage'] }), 'VIGIL_TARGET_NOT_IN_ROLE', 'request');
    await expectRefused(env.access.request(alice, { role: 'prod-dba', reason: 'x', targets: ['pg-nope'] }), 'VIGIL_UNKNOWN_TARGET', 'request');
    await expectRefused(env.access.request(alice, { user: 'bob', role: 'prod-dba', reason: 'x' }), 'VIGIL_FORBIDDEN', 'request');
    expect(await env.store.listAccess()).toHaveLength(0);
  });

  it('self-approval is refused, with an event', async () => {
    env = await accessEnv();
    const selfApprover = actor('bob', ['sre-lead']);
    const req = await env.access.request(selfApprover, { role: 'prod-dba', reason: 'need it' });
    const ev = await expectRefused(env.access.approve(selfApprover, req.id), 'VIGIL_SELF_APPROVAL', 'approve');
    expect(ev.actor.user).toBe('bob');
    expect(ev.target.name).toBe(`grant/${req.id}`);
    expect((await env.store.getAccess(req.id))!.state).toBe('pending');
    expect(env.of('access.approved')).toHaveLength(0);
  });

  it('a non-approver is refused, with an event', async () => {
    env = await accessEnv();
    const req = await env.access.request(alice, { role: 'prod-dba', reason: 'need it' });
    await expectRefused(env.access.approve(mallory, req.id), 'VIGIL_NOT_APPROVER', 'approve');
    await expectRefused(env.access.deny(mallory, req.id, { reason: 'no' }), 'VIGIL_NOT_APPROVER', 'deny');
    expect((await env.store.getAccess(req.id))!.state).toBe('pending');
  });

  it('a second decision on a decided request is refused, with an event', async () => {
    env = await accessEnv();
    const req = await env.access.request(alice, { role: 'prod-dba', reason: 'need it' });
    await env.access.approve(bob, req.id);
    await expectRefused(env.access.approve(dave, req.id), 'VIGIL_ALREADY_DECIDED', 'approve');
    await expectRefused(env.access.deny(dave, req.id, { reason: 'too late' }), 'VIGIL_ALREADY_DECIDED', 'deny');

    const other = await env.access.request(alice, { role: 'prod-dba', reason: 'again' });
    const denied = await env.access.deny(bob, other.id, { reason: 'use the runbook' });
    expect(denied).toMatchObject({ state: 'denied', decidedBy: 'bob', decisionReason: 'use the runbook' });
    expect(env.of('access.denied')[0].details).toMatchObject({ request_id: other.id, denial_reason: 'use the runbook' });
    await expectRefused(env.access.approve(dave, other.id), 'VIGIL_ALREADY_DECIDED', 'approve');
    await expectRefused(env.access.deny(bob, req.id, { reason: '' }), 'VIGIL_REASON_REQUIRED', 'deny');
  });

  it('approving a request past its decision window is refused, with an event', async () => {
    env = await accessEnv({ access: { on_call: [], request_ttl: '50ms' } });
    const req = await env.access.request(alice, { role: 'prod-dba', reason: 'need it' });
    await new Promise((r) => setTimeout(r, 80));
    await expectRefused(env.access.approve(bob, req.id), 'VIGIL_REQUEST_EXPIRED', 'approve');
    expect((await env.store.getAccess(req.id))!.state).toBe('pending');
  });

  it('a request never decided within its window is expired by the sweep, recorded once, and stays unapprovable', async () => {
    env = await accessEnv({ access: { on_call: [], request_ttl: '50ms' } });
    const stale = await env.access.request(alice, { role: 'prod-dba', reason: 'need it' });
    const decided = await env.access.request(alice, { role: 'prod-dba', reason: 'and this' });
    await env.access.deny(bob, decided.id, { reason: 'no' });
    expect(await env.access.expireDue({ ip: 'local' })).toEqual([]); // not due yet
    await new Promise((r) => setTimeout(r, 80));
    const swept = await Promise.all([env.access.expireDue({ ip: 'local' }), env.access.expireDue({ ip: 'local' })]);
    expect(swept.flat().map((r) => r.id)).toEqual([stale.id]);
    expect(await env.store.getAccess(stale.id)).toMatchObject({ state: 'expired', expiryRecorded: true });
    expect(await env.store.getAccess(decided.id)).toMatchObject({ state: 'denied' });
    const events = env.of('access.request_expired');
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ actor: { user: 'vigil' }, target: { name: `grant/${stale.id}` }, details: { request_id: stale.id, user: 'alice', role: 'prod-dba', approvals: [] } });
    await expectRefused(env.access.approve(bob, stale.id), 'VIGIL_REQUEST_EXPIRED', 'approve');
  });

  it('an unknown request id is refused as not found', async () => {
    env = await accessEnv();
    await expectRefused(env.access.approve(bob, '01HNOPE'), 'VIGIL_NOT_FOUND', 'approve');
  });

  it('a role needing two approvals becomes active only with two distinct approvers', async () => {
    env = await accessEnv();
    const bob2 = actor('erin', ['sre-lead']);
    const req = await env.access.request(alice, { role: 'prod-root', reason: 'kernel upgrade' });
    const first = await env.access.approve(bob, req.id);
    expect(first.state).toBe('pending');
    expect(env.of('access.approval')).toHaveLength(1);
    expect(env.of('access.approved')).toHaveLength(0);
    await expectRefused(env.access.approve(bob, req.id), 'VIGIL_ALREADY_APPROVED', 'approve');
    const second = await env.access.approve(bob2, req.id);
    expect(second.state).toBe('active');
    expect(second.approvals.map((a) => a.by)).toEqual(['bob', 'erin']);
    expect(env.of('access.approved')[0].details).toMatchObject({ approvals: ['bob', 'erin'], approvals_required: 2 });
  });

  it('break-glass: an on-call user self-grants, flagged; others and a disabled policy are refused', async () => {
    env = await accessEnv();
    const g = await env.access.request(carol, { role: 'prod-ssh', reason: 'INC-9 site down', ttlMs: 15 * 60_000, breakGlass: true });
    expect(g).toMatchObject({ state: 'active', breakGlass: true, decidedBy: 'carol' });
    const ev = env.of('access.approved')[0];
    expect(ev.actor.user).toBe('carol');
    expect(ev.details).toMatchObject({ break_glass: true, reason: 'INC-9 site down', request_id: g.id });
    expect(env.of('access.requested')).toHaveLength(0);

    await expectRefused(env.access.request(alice, { role: 'prod-ssh', reason: 'me too', breakGlass: true }), 'VIGIL_NOT_ON_CALL', 'break_glass');
    await expectRefused(env.access.request(carol, { role: 'prod-ssh', reason: '', breakGlass: true }), 'VIGIL_REASON_REQUIRED', 'break_glass');
    await expectRefused(env.access.request(carol, { user: 'alice', role: 'prod-ssh', reason: 'for a friend', breakGlass: true }), 'VIGIL_FORBIDDEN', 'break_glass');
    await env.close();

    env = await accessEnv({ access: { on_call: ['carol'], break_glass: false } });
    await expectRefused(env.access.request(carol, { role: 'prod-ssh', reason: 'INC-9', breakGlass: true }), 'VIGIL_BREAK_GLASS_DISABLED', 'break_glass');
    expect(await env.store.listAccess()).toHaveLength(0);
  });

  it('revoke ends an active grant; only the holder, an approver or an admin may', async () => {
    env = await accessEnv();
    const req = await env.access.request(alice, { role: 'prod-dba', reason: 'need it' });
    await expectRefused(env.access.revoke(bob, req.id, { reason: 'x' }), 'VIGIL_NOT_ACTIVE', 'revoke');
    await env.access.approve(bob, req.id);
    await expectRefused(env.access.revoke(mallory, req.id, { reason: 'x' }), 'VIGIL_FORBIDDEN', 'revoke');
    await expectRefused(env.access.revoke(bob, req.id, { reason: '' }), 'VIGIL_REASON_REQUIRED', 'revoke');
    const r = await env.access.revoke(admin, req.id, { reason: 'incident closed' });
    expect(r).toMatchObject({ state: 'revoked', decidedBy: 'root-admin', decisionReason: 'incident closed' });
    expect(env.of('access.revoked')[0].details).toMatchObject({ request_id: req.id, revoke_reason: 'incident closed' });
    await expectRefused(env.access.revoke(admin, req.id, { reason: 'again' }), 'VIGIL_NOT_ACTIVE', 'revoke');
  });

  it('locks: admins only, reason mandatory, unlock of an unlocked user refused', async () => {
    env = await accessEnv();
    await expectRefused(env.access.lock(bob, { user: 'alice', reason: 'x' }), 'VIGIL_NOT_ADMIN', 'lock');
    await expectRefused(env.access.lock(admin, { user: 'alice', reason: '' }), 'VIGIL_REASON_REQUIRED', 'lock');
    await env.access.lock(admin, { user: 'alice', reason: 'laptop stolen' });
    expect(env.store.isLocked('user', 'alice')).toMatchObject({ reason: 'laptop stolen', by: 'root-admin' });
    expect(env.of('lock.created')[0]).toMatchObject({ target: { name: 'user/alice' }, details: { user: 'alice', reason: 'laptop stolen' } });
    await env.access.unlock(admin, 'alice');
    expect(env.store.isLocked('user', 'alice')).toBeUndefined();
    expect(env.of('lock.deleted')).toHaveLength(1);
    await expectRefused(env.access.unlock(admin, 'alice'), 'VIGIL_NOT_FOUND', 'unlock');
    // A local operator (data-dir access) is admin-equivalent.
    await env.access.lock({ ...actor('ops'), local: true }, { user: 'mallory', reason: 'offboarded' });
    expect(env.store.isLocked('user', 'mallory')).toBeTruthy();
  });

  it('list and show: users see their own and what they may approve; admins and auditors see everything', async () => {
    env = await accessEnv();
    const a = await env.access.request(alice, { role: 'prod-dba', reason: 'a' });
    const c = await env.access.request(carol, { role: 'prod-ssh', reason: 'c' });
    expect((await env.access.list(alice)).map((r) => r.id)).toEqual([a.id]);
    expect((await env.access.list(bob)).map((r) => r.id)).toEqual([a.id, c.id]);
    expect((await env.access.list(dave)).map((r) => r.id)).toEqual([a.id]);
    expect((await env.access.list(actor('aud', ['auditor']))).map((r) => r.id)).toEqual([a.id, c.id]);
    await env.access.approve(bob, a.id);
    expect((await env.access.list(admin, { state: 'active' })).map((r) => r.id)).toEqual([a.id]);
    expect((await env.access.show(alice, a.id)).state).toBe('active');
    await expect(env.access.show(alice, c.id)).rejects.toMatchObject({ code: 'VIGIL_NOT_FOUND' });
  });

  it('refuses state changes while the audit log cannot be written (fail closed)', async () => {
    env = await accessEnv();
    env.sink.healthy = false;
    env.sink.failure = new Error('disk full');
    await expect(env.access.request(alice, { role: 'prod-dba', reason: 'x' })).rejects.toMatchObject({ code: 'VIGIL_AUDIT_UNAVAILABLE' });
    expect(await env.store.listAccess()).toHaveLength(0);
  });

  it('a grant whose approval cannot be recorded does not stay active', async () => {
    env = await accessEnv();
    const req = await env.access.request(alice, { role: 'prod-dba', reason: 'x' });
    const append = env.sink.append.bind(env.sink);
    env.sink.append = async (e) => {
      if (e.type === 'access.approved') throw new Error('write failed');
      return append(e);
    };
    await expect(env.access.approve(bob, req.id)).rejects.toThrow('write failed');
    expect((await env.store.getAccess(req.id))!.state).toBe('pending');
  });

  it('taking back an approval that could not be recorded keeps what others did meanwhile (a revocation stays)', async () => {
    env = await accessEnv();
    const req = await env.access.request(alice, { role: 'prod-dba', reason: 'x' });
    const append = env.sink.append.bind(env.sink);
    let failApproved!: (e: Error) => void;
    let approvedPending!: () => void;
    const approvedSeen = new Promise<void>((r) => (approvedPending = r));
    env.sink.append = async (e) => {
      if (e.type !== 'access.approved') return append(e);
      approvedPending();
      return new Promise((_, reject) => (failApproved = reject));
    };
    const approving = env.access.approve(bob, req.id);
    await approvedSeen;
    // While bob's approval waits for the log, the grant is revoked (another replica, an admin).
    await env.access.revoke(admin, req.id, { reason: 'incident over' });
    failApproved(new Error('write failed'));
    await expect(approving).rejects.toThrow('write failed');
    const now = (await env.store.getAccess(req.id))!;
    expect(now.state).toBe('revoked');
    expect(env.of('access.revoked')).toHaveLength(1);
  });

  it('taking back the approval that could not be recorded removes only that approval', async () => {
    env = await accessEnv();
    const req = await env.access.request(alice, { role: 'prod-root', reason: 'x' });
    await env.access.approve(bob, req.id);
    const append = env.sink.append.bind(env.sink);
    env.sink.append = async (e) => {
      if (e.type === 'access.approved') throw new Error('write failed');
      return append(e);
    };
    const erin = actor('erin', ['sre-lead']);
    await expect(env.access.approve(erin, req.id)).rejects.toThrow('write failed');
    const now = (await env.store.getAccess(req.id))!;
    expect(now.state).toBe('pending');
    expect(now.approvals.map((a) => a.by)).toEqual(['bob']);
    expect(now.grantedAt).toBeUndefined();
    expect(now.expiresAt).toBeUndefined();
  });
});
