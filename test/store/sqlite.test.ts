import path from 'node:path';
import fs from 'node:fs';
import { describe, it, expect } from 'vitest';
import { openStateStore } from '../../src/store/index.ts';
import type { AccessRecord } from '../../src/store/types.ts';
import { tempDir } from '../support/tmp.ts';

function accessRecord(id: string): AccessRecord {
  const now = new Date().toISOString();
  return { id, user: 'alice', role: 'dba', targets: [], reason: 'INC-1', ttlMs: 60_000, state: 'pending', createdAt: now, requestExpiresAt: now, approvals: [], breakGlass: false };
}

describe('SQLite state store', () => {
  it('is private to the owner and sees changes made by another connection after refresh', async () => {
    const dir = tempDir();
    const a = await openStateStore(dir);
    const b = await openStateStore(dir);
    expect(fs.statSync(path.join(dir, 'state.db')).mode & 0o777).toBe(0o600);

    expect(await a.revoke({ serial: 'abc', reason: 'lost laptop', by: 'bob', time: new Date().toISOString() })).toBe(true);
    expect(await a.revoke({ serial: 'abc', reason: 'again', by: 'bob', time: new Date().toISOString() })).toBe(false);
    expect(a.isRevoked('abc')).toBe(true);
    expect(b.isRevoked('abc')).toBe(false); // cached until refresh
    expect(await b.refresh()).toBe(true);
    expect(b.isRevoked('abc')).toBe(true);
    expect(await b.refresh()).toBe(false);

    await a.putLock({ kind: 'user', name: 'mallory', reason: 'incident', by: 'bob', createdAt: new Date().toISOString() });
    await b.refresh();
    expect(b.isLocked('user', 'mallory')?.reason).toBe('incident');
    expect(await b.deleteLock('user', 'mallory')).toBe(true);
    await a.refresh();
    expect(a.isLocked('user', 'mallory')).toBeUndefined();
    await a.close();
    await b.close();
  });

  it('serializes read-modify-write of access records and reports missing ones', async () => {
    const dir = tempDir();
    const s = await openStateStore(dir);
    await s.createAccess(accessRecord('r1'));
    const updated = await s.updateAccess('r1', (r) => ({ ...r, state: 'active', approvals: [{ by: 'bob', time: 'now' }] }));
    expect(updated.state).toBe('active');
    expect((await s.listAccess({ state: 'active' })).map((r) => r.id)).toEqual(['r1']);
    expect(await s.listAccess({ state: 'pending' })).toEqual([]);
    await expect(s.updateAccess('r1', () => { throw new Error('abort'); })).rejects.toThrow('abort');
    expect((await s.getAccess('r1'))?.state).toBe('active');
    await expect(s.updateAccess('nope', (r) => r)).rejects.toMatchObject({ code: 'VIGIL_NOT_FOUND' });
    await s.close();
  });

  it('lists the certificates valid at some time in a period, and every revocation (access-review report)', async () => {
    const store = await openStateStore(tempDir());
    const cert = (serial: string, notBefore: string, notAfter: string) =>
      store.recordIssuedCert({ serial, user: 'alice', roles: ['dba'], notBefore, notAfter, kind: 'cert' });
    await cert('before', '2026-10-01T00:00:00.000Z', '2026-10-31T23:59:59.000Z');
    await cert('overlaps-start', '2026-10-31T12:00:00.000Z', '2026-11-01T12:00:00.000Z');
    await cert('inside', '2026-11-10T00:00:00.000Z', '2026-11-10T01:00:00.000Z');
    await cert('after', '2026-12-01T00:00:01.000Z', '2026-12-02T00:00:00.000Z');
    const period = { since: '2026-11-01T00:00:00.000Z', until: '2026-12-01T00:00:00.000Z' };
    expect((await store.listIssuedCerts(period)).map((c) => c.serial)).toEqual(['overlaps-start', 'inside']);
    expect((await store.listIssuedCerts(period))[0]).toMatchObject({ user: 'alice', roles: ['dba'], kind: 'cert' });
    await store.revoke({ serial: 'inside', reason: 'lost', by: 'bob', time: '2026-11-10T00:30:00.000Z' });
    expect(await store.listRevocations()).toEqual([{ serial: 'inside', reason: 'lost', by: 'bob', time: '2026-11-10T00:30:00.000Z' }]);
    await store.close();
  });
});
