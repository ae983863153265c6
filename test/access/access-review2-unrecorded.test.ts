import { afterEach, describe, expect, it } from 'vitest';
import { accessEnv, actor, type AccessEnv } from './support.ts';

/**
 * A decision stands only once its audit event is written. The final approval already takes itself back when
 * `access.approved` cannot be written; a denial and a first approval of a role needing two must do the same,
 * or the request is decided (or half-approved) with no record, while the decider is told it failed and a
 * retry is refused as already done.
 */

const alice = actor('alice', ['dev']);
const bob = actor('bob', ['sre-lead']);
const erin = actor('erin', ['sre-lead']);

let env: AccessEnv;
afterEach(async () => {
  await env?.close();
});

/** Make the audit sink refuse events of `type` until the returned function is called. */
function failWrites(type: string): () => void {
  const append = env.sink.append.bind(env.sink);
  env.sink.append = async (e) => {
    if (e.type === type) throw new Error('write failed');
    return append(e);
  };
  return () => {
    env.sink.append = append;
  };
}

describe('access review 2: decisions that cannot be recorded do not stand', () => {
  it('a denial whose access.denied event cannot be written leaves the request pending, and a retry works', async () => {
    env = await accessEnv();
    const req = await env.access.request(alice, { role: 'prod-dba', reason: 'INC-91' });
    const restore = failWrites('access.denied');
    await expect(env.access.deny(bob, req.id, { reason: 'not now' })).rejects.toThrow('write failed');
    const after = (await env.store.getAccess(req.id))!;
    expect(after.state).toBe('pending');
    expect(after.decidedBy).toBeUndefined();
    expect(after.decisionReason).toBeUndefined();

    restore();
    const denied = await env.access.deny(bob, req.id, { reason: 'not now' });
    expect(denied.state).toBe('denied');
    expect(env.of('access.denied').map((e) => [e.actor.user, e.details.request_id, e.details.denial_reason])).toEqual([['bob', req.id, 'not now']]);
  });

  it('a first approval whose access.approval event cannot be written is taken back, and the approver may approve again', async () => {
    env = await accessEnv();
    const req = await env.access.request(alice, { role: 'prod-root', reason: 'INC-93' });
    const restore = failWrites('access.approval');
    await expect(env.access.approve(bob, req.id)).rejects.toThrow('write failed');
    expect((await env.store.getAccess(req.id))!.approvals).toEqual([]);

    restore();
    const first = await env.access.approve(bob, req.id);
    expect(first.approvals.map((a) => a.by)).toEqual(['bob']);
    expect(env.of('access.approval').map((e) => e.actor.user)).toEqual(['bob']);
    const granted = await env.access.approve(erin, req.id);
    expect(granted.state).toBe('active');
  });
});
