import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openStateStore } from '../../src/store/index.ts';
import { LATEST_VERSION } from '../../src/store/postgres-schema.ts';
import type { StoreConfig } from '../../src/store/config.ts';
import type { AccessRecord, OutboxClaim, StateStore } from '../../src/store/types.ts';
import { PASSWORDS, startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * The StateStore contract, run unchanged against every implementation. A "space" is one empty shared
 * state (a data dir, a PostgreSQL schema); `open()` gives another independent store instance on it, standing
 * for another process or replica.
 */
interface Space {
  open(): Promise<StateStore>;
}

let pg: PostgresHandle;
const URL_ENV = 'VIGIL_TEST_STORE_URL';
let schemas = 0;

const opened: StateStore[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
});

beforeAll(async () => {
  pg = await startPostgres();
  // A password-protected role, so the tests can check the password never shows.
  process.env[URL_ENV] = `postgres://scram_user:${PASSWORDS.scram_user}@127.0.0.1:${pg.port}/app?sslmode=disable`;
});
afterAll(async () => {
  delete process.env[URL_ENV];
  await pg?.stop();
});

function space(config: () => StoreConfig): Space {
  const dir = tempDir();
  const cfg = config();
  return {
    async open() {
      const s = await openStateStore(dir, cfg);
      opened.push(s);
      return s;
    },
  };
}

const IMPLEMENTATIONS: [string, () => Space][] = [
  ['sqlite', () => space(() => ({ kind: 'sqlite' }))],
  ['postgres', () => space(() => ({ kind: 'postgres', url: { env: URL_ENV }, schema: `t${++schemas}` }))],
];

const iso = (ms: number) => new Date(ms).toISOString();

function accessRecord(id: string, over: Partial<AccessRecord> = {}): AccessRecord {
  const now = new Date().toISOString();
  return { id, user: 'alice', role: 'dba', targets: ['pg-prod'], reason: 'INC-1', ttlMs: 60_000, state: 'pending', createdAt: now, requestExpiresAt: now, approvals: [], breakGlass: false, ...over };
}

/** Another instance sees a change once refresh() has run; PostgreSQL learns of it by notification. */
const seen = (s: StateStore, check: () => unknown) =>
  waitFor(async () => (await s.refresh(), check()), 2000, 'the other instance to see the change');

describe.each(IMPLEMENTATIONS)('StateStore contract: %s', (_name, makeSpace) => {
  it('records, replaces and lists issued certificates by validity period', async () => {
    const s = await makeSpace().open();
    const cert = (serial: string, notBefore: string, notAfter: string, grantId?: string) =>
      s.recordIssuedCert({ serial, user: 'alice', roles: ['dba', 'dev'], notBefore, notAfter, grantId, kind: 'cert' });
    await cert('before', '2026-10-01T00:00:00.000Z', '2026-10-31T23:59:59.000Z');
    await cert('overlaps', '2026-10-31T12:00:00.000Z', '2026-11-01T12:00:00.000Z');
    await cert('inside', '2026-11-10T00:00:00.000Z', '2026-11-10T01:00:00.000Z', 'g1');
    await cert('after', '2026-12-01T00:00:01.000Z', '2026-12-02T00:00:00.000Z');
    expect(await s.getIssuedCert('inside')).toEqual({ serial: 'inside', user: 'alice', roles: ['dba', 'dev'], notBefore: '2026-11-10T00:00:00.000Z', notAfter: '2026-11-10T01:00:00.000Z', grantId: 'g1', kind: 'cert' });
    expect(await s.getIssuedCert('nope')).toBeUndefined();
    const period = { since: '2026-11-01T00:00:00.000Z', until: '2026-12-01T00:00:00.000Z' };
    expect((await s.listIssuedCerts(period)).map((c) => c.serial)).toEqual(['overlaps', 'inside']);
    await s.recordIssuedCert({ serial: 'inside', user: 'bob', roles: [], notBefore: '2026-11-10T00:00:00.000Z', notAfter: '2026-11-10T01:00:00.000Z', kind: 'token' });
    expect(await s.getIssuedCert('inside')).toMatchObject({ user: 'bob', roles: [], kind: 'token', grantId: undefined });
  });

  it('revokes once, lists revocations oldest first, and another instance sees them after refresh', async () => {
    const sp = makeSpace();
    const [a, b] = [await sp.open(), await sp.open()];
    expect(await a.revoke({ serial: 'ab', reason: 'lost laptop', by: 'bob', time: iso(2000) })).toBe(true);
    expect(await a.revoke({ serial: 'ab', reason: 'again', by: 'bob', time: iso(3000) })).toBe(false);
    expect(await a.revoke({ serial: 'aa', reason: 'left', by: 'carol', time: iso(1000) })).toBe(true);
    expect(a.isRevoked('ab')).toBe(true); // own writes are visible at once
    expect(await a.getRevocation('ab')).toEqual({ serial: 'ab', reason: 'lost laptop', by: 'bob', time: iso(2000) });
    expect(await a.getRevocation('zz')).toBeUndefined();
    expect((await b.listRevocations()).map((r) => r.serial)).toEqual(['aa', 'ab']);
    await seen(b, () => b.isRevoked('ab') && b.isRevoked('aa'));
    expect(b.isRevoked('other')).toBe(false);
  });

  it('refresh() reports a change once, and nothing when nothing changed', async () => {
    const sp = makeSpace();
    const [a, b] = [await sp.open(), await sp.open()];
    await b.refresh();
    expect(await b.refresh()).toBe(false);
    await a.putLock({ kind: 'user', name: 'mallory', reason: 'incident', by: 'bob', createdAt: iso(0) });
    await waitFor(() => b.refresh(), 2000, 'refresh to report the lock');
    expect(b.isLocked('user', 'mallory')?.reason).toBe('incident');
    expect(await b.refresh()).toBe(false);
  });

  it('creates, reads, updates and lists access records; an aborted or missing update changes nothing', async () => {
    const s = await makeSpace().open();
    await s.createAccess(accessRecord('r2', { createdAt: iso(2000), user: 'bob' }));
    await s.createAccess(accessRecord('r1', { createdAt: iso(1000), requester: 'root' }));
    // Records are always stored with who filed them and who benefits.
    expect(await s.getAccess('r2')).toMatchObject({ requester: 'bob', beneficiary: 'bob' });
    expect(await s.getAccess('r1')).toMatchObject({ requester: 'root', beneficiary: 'alice' });
    expect(await s.getAccess('none')).toBeUndefined();
    const next = await s.updateAccess('r1', (r) => ({ ...r, state: 'active', approvals: [{ by: 'carol', time: iso(1500) }], expiresAt: iso(9000) }));
    expect(next).toMatchObject({ state: 'active', expiresAt: iso(9000) });
    expect(await s.getAccess('r1')).toEqual(next);
    await expect(s.updateAccess('r1', () => { throw new Error('abort'); })).rejects.toThrow('abort');
    expect(await s.getAccess('r1')).toEqual(next);
    await expect(s.updateAccess('nope', (r) => r)).rejects.toMatchObject({ code: 'VIGIL_NOT_FOUND' });
    expect((await s.listAccess()).map((r) => r.id)).toEqual(['r1', 'r2']);
    expect((await s.listAccess({ state: 'active' })).map((r) => r.id)).toEqual(['r1']);
    expect((await s.listAccess({ state: 'pending', user: 'bob' })).map((r) => r.id)).toEqual(['r2']);
    expect(await s.listAccess({ state: 'pending', user: 'alice' })).toEqual([]);
  });

  it('concurrent updateAccess from two instances loses no update', async () => {
    const sp = makeSpace();
    const [a, b] = [await sp.open(), await sp.open()];
    await a.createAccess(accessRecord('four-eyes'));
    const N = 25;
    const approve = (s: StateStore, who: string) =>
      s.updateAccess('four-eyes', (r) => ({ ...r, approvals: [...r.approvals, { by: who, time: new Date().toISOString() }] }));
    await Promise.all(Array.from({ length: N }, (_, i) => [approve(a, `a${i}`), approve(b, `b${i}`)]).flat());
    const final = await b.getAccess('four-eyes');
    expect(final!.approvals).toHaveLength(2 * N);
    expect(new Set(final!.approvals.map((x) => x.by)).size).toBe(2 * N);
  });

  it('the second of two concurrent decisions sees the first (only one may activate a request)', async () => {
    const sp = makeSpace();
    const [a, b] = [await sp.open(), await sp.open()];
    await a.createAccess(accessRecord('once'));
    const decide = (s: StateStore, who: string) =>
      s.updateAccess('once', (r) => {
        if (r.state !== 'pending') throw new Error('already decided');
        return { ...r, state: 'active', decidedBy: who };
      });
    const results = await Promise.allSettled([decide(a, 'bob'), decide(b, 'carol'), decide(a, 'dan'), decide(b, 'erin')]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason.message)).toEqual(Array(3).fill('already decided'));
  });

  it('locks and unlocks users; an expired lock no longer locks; another instance follows', async () => {
    const sp = makeSpace();
    const [a, b] = [await sp.open(), await sp.open()];
    await a.putLock({ kind: 'user', name: 'mallory', reason: 'incident', by: 'bob', createdAt: iso(0) });
    await a.putLock({ kind: 'user', name: 'old', reason: 'was', by: 'bob', createdAt: iso(0), expiresAt: iso(Date.now() - 1000) });
    expect(a.isLocked('user', 'mallory')?.by).toBe('bob');
    expect(a.isLocked('user', 'old')).toBeUndefined();
    expect((await b.listLocks()).map((l) => l.name).sort()).toEqual(['mallory', 'old']);
    await seen(b, () => b.isLocked('user', 'mallory'));
    await a.putLock({ kind: 'user', name: 'mallory', reason: 'still', by: 'carol', createdAt: iso(1) });
    await seen(b, () => b.isLocked('user', 'mallory')?.reason === 'still');
    expect(await b.deleteLock('user', 'mallory')).toBe(true);
    expect(await b.deleteLock('user', 'mallory')).toBe(false);
    expect(b.isLocked('user', 'mallory')).toBeUndefined();
    await seen(a, () => !a.isLocked('user', 'mallory'));
  });

  it('keeps legal holds, released ones too, oldest first', async () => {
    const s = await makeSpace().open();
    await s.putHold({ id: 'h2', user: 'alice', reason: 'case 2', by: 'legal', createdAt: iso(2000) });
    await s.putHold({ id: 'h1', target: 'pg-prod', since: iso(0), reason: 'case 1', by: 'legal', createdAt: iso(1000) });
    expect(await s.getHold('h2')).toEqual({ id: 'h2', user: 'alice', reason: 'case 2', by: 'legal', createdAt: iso(2000) });
    expect(await s.getHold('none')).toBeUndefined();
    const released = { by: 'legal', time: iso(3000), reason: 'closed' };
    await s.putHold({ ...(await s.getHold('h1'))!, released });
    expect((await s.listHolds()).map((h) => [h.id, h.released])).toEqual([['h1', released], ['h2', undefined]]);
  });

  it('binds a user name to one IdP subject and a subject to one name, for every instance; of two first binds at once one wins', async () => {
    const sp = makeSpace();
    const [a, b] = [await sp.open(), await sp.open()];
    const iss = 'https://idp.example';
    const alice = { user: 'alice', issuer: iss, subject: 'sub-alice', boundAt: iso(1000) };
    expect(await a.bindIdentity(alice)).toBeUndefined();
    // Signing in again as the same account is fine, from any instance; the first binding time stays.
    expect(await b.bindIdentity({ ...alice, boundAt: iso(2000) })).toBeUndefined();
    expect(await b.getIdentityBinding('alice')).toEqual(alice);
    expect(await b.getIdentityBinding('nobody')).toBeUndefined();
    // Another account claiming the name gets the binding in its way, and binds nothing.
    expect(await b.bindIdentity({ user: 'alice', issuer: iss, subject: 'sub-mallory', boundAt: iso(3000) })).toEqual(alice);
    // The same subject under another issuer is another account.
    expect(await b.bindIdentity({ user: 'alice', issuer: 'https://other.example', subject: 'sub-alice', boundAt: iso(3000) })).toEqual(alice);
    // An account bound to one name cannot take a second one.
    expect(await a.bindIdentity({ user: 'alice2', issuer: iss, subject: 'sub-alice', boundAt: iso(3000) })).toEqual(alice);
    expect(await a.getIdentityBinding('alice2')).toBeUndefined();
    // Two first sign-ins as `bob` at once, on two instances: exactly one account gets the name.
    const racers = ['s1', 's2', 's3', 's4'].map((subject, i) => ({ user: 'bob', issuer: iss, subject, boundAt: iso(4000 + i) }));
    const results = await Promise.all(racers.map((r, i) => (i % 2 ? a : b).bindIdentity(r)));
    expect(results.filter((r) => r === undefined)).toHaveLength(1);
    const winner = racers[results.indexOf(undefined)];
    for (const r of results) if (r) expect(r).toEqual(winner);
    expect(await a.getIdentityBinding('bob')).toEqual(winner);
  });

  it('finds the spellings of a user name that differ only in case: certificates, SSO bindings and user locks, for every instance', async () => {
    const sp = makeSpace();
    const [a, b] = [await sp.open(), await sp.open()];
    expect(await b.userSpellings('alice')).toEqual([]);
    await a.recordIssuedCert({ serial: 'c1', user: 'Alice', roles: [], notBefore: iso(0), notAfter: iso(1000), kind: 'cert' });
    await a.recordIssuedCert({ serial: 'c2', user: 'Alice', roles: [], notBefore: iso(0), notAfter: iso(1000), kind: 'token' });
    await a.bindIdentity({ user: 'ALICE', issuer: 'https://idp.example', subject: 's1', boundAt: iso(0) });
    await a.putLock({ kind: 'user', name: 'aLice', reason: 'r', by: 'admin', createdAt: iso(0) });
    await a.recordIssuedCert({ serial: 'c3', user: 'alicex', roles: [], notBefore: iso(0), notAfter: iso(1000), kind: 'cert' });
    // Each known spelling once, sorted; a longer name is not a spelling of the user.
    expect(await b.userSpellings('alice')).toEqual(['ALICE', 'Alice', 'aLice']);
    expect(await b.userSpellings('ALICE')).toEqual(['ALICE', 'Alice', 'aLice']);
    expect(await b.userSpellings('bob')).toEqual([]);
  });
});

describe('PostgreSQL state store specifics', () => {
  const cfg = (schema: string): StoreConfig => ({ kind: 'postgres', url: { env: URL_ENV }, schema });

  it('replicas starting together migrate the schema once', async () => {
    const stores = await Promise.all([1, 2, 3, 4].map(() => openStateStore(tempDir(), cfg('race'))));
    opened.push(...stores);
    expect(pg.psql('SELECT version FROM race.schema_migrations ORDER BY 1')).toBe(Array.from({ length: LATEST_VERSION }, (_, i) => i + 1).join('\n'));
    // And a restart finds nothing to do.
    opened.push(await openStateStore(tempDir(), cfg('race')));
    expect(pg.psql('SELECT count(*) FROM race.schema_migrations')).toBe(String(LATEST_VERSION));
  });

  it('the outbox: a notifier head is held by one replica at a time; a run-out hold passes on and its late outcome changes nothing', async () => {
    const [s1, s2] = await Promise.all([openStateStore(tempDir(), cfg('lease')), openStateStore(tempDir(), cfg('lease'))]);
    opened.push(s1, s2);
    const o1 = s1.outbox!;
    const o2 = s2.outbox!;
    await o1.add('n', { k: 1 });
    await o2.add('n', { k: 2 });
    const c1 = await o1.claim('n', 60_000);
    expect(c1).toMatchObject({ item: { payload: { k: 1 }, attempts: 0 } });
    // Nobody else gets the head, nor what is behind it.
    expect(await o2.claim('n', 60_000)).toBe('held');
    expect(await o1.claim('n', 60_000)).toBe('held');
    await (c1 as OutboxClaim).failed('receiver down', Date.now(), false);
    const c2 = (await o2.claim('n', 1)) as OutboxClaim; // held for 1 ms: as if replica 2 died delivering it
    expect(c2.item).toMatchObject({ payload: { k: 1 }, attempts: 1, last_error: 'receiver down' });
    const c3 = await waitFor(async () => {
      const c = await o1.claim('n', 60_000);
      return typeof c === 'object' ? c : undefined;
    }, 5000, 'the head passing on');
    expect(c3.item.id).toBe(c2.item.id);
    await c2.delivered(); // too late: not its hold any more
    expect((await o1.pending()).map((i) => i.payload)).toEqual([{ k: 1 }, { k: 2 }]);
    await c3.delivered();
    expect((await o2.pending()).map((i) => i.payload)).toEqual([{ k: 2 }]);
    expect(await o2.depth()).toEqual({ n: 1 });
  });

  it('approval links: one key for every replica; of two replicas claiming a link at once exactly one gets it', async () => {
    const [s1, s2] = await Promise.all([openStateStore(tempDir(), cfg('links')), openStateStore(tempDir(), cfg('links'))]);
    opened.push(s1, s2);
    const [k1, k2] = await Promise.all([s1.links!.key(), s2.links!.key()]);
    expect(k1.length).toBe(32);
    expect(k2.equals(k1)).toBe(true);
    for (let i = 0; i < 20; i++) {
      await s1.links!.add({ hash: `h${i}`, request_id: 'r', decision: 'approve', created_at: iso(0), expires_at: Date.now() + 60_000 });
      const won = await Promise.all([s1.links!.claim(`h${i}`, 'bob', Date.now()), s2.links!.claim(`h${i}`, 'carol', Date.now())]);
      expect(won.filter(Boolean)).toHaveLength(1);
    }
    expect((await s2.links!.get('h0'))?.used_by).toMatch(/^(bob|carol)$/);
  });

  it('a change written by anyone (plain SQL) reaches the cache by notification, well before the reconcile', async () => {
    const s = await openStateStore(tempDir(), cfg('bysql'));
    opened.push(s);
    const t0 = Date.now();
    pg.psql(`INSERT INTO bysql.revocations VALUES ('s-sql', 'manual', 'dba', '${iso(0)}')`);
    await waitFor(() => s.isRevoked('s-sql'), 2000, 'revocation by notification');
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('never shows the password: wrong port, wrong password', async () => {
    const pass = PASSWORDS.scram_user;
    process.env.VIGIL_TEST_BAD_URL = `postgres://scram_user:${pass}@127.0.0.1:1/app?sslmode=disable`;
    const down = await openStateStore(tempDir(), { kind: 'postgres', url: { env: 'VIGIL_TEST_BAD_URL' }, schema: 'x' }).catch((e: Error & { code: string }) => e);
    expect(down).toMatchObject({ code: 'VIGIL_STORE_UNAVAILABLE' });
    expect((down as Error).message).toMatch(/state store postgres:\/\/127\.0\.0\.1:1\/app is unavailable/);
    process.env.VIGIL_TEST_BAD_URL = `postgres://scram_user:${pass}x@127.0.0.1:${pg.port}/app?sslmode=disable`;
    const denied = await openStateStore(tempDir(), { kind: 'postgres', url: { env: 'VIGIL_TEST_BAD_URL' }, schema: 'x' }).catch((e: Error) => e);
    expect((denied as Error).message).toMatch(/password authentication failed/);
    for (const e of [down, denied] as Error[]) {
      expect(e.message).not.toContain(pass);
      expect(String(e.stack)).not.toContain(pass);
    }
    delete process.env.VIGIL_TEST_BAD_URL;
  });
});

describe('vigil doctor on a PostgreSQL store', () => {
  it('says whether it is reachable and how far the schema is, read-only and without the password', async () => {
    const { checkPostgresStore } = await import('../../src/store/postgres-check.ts');
    const before = await checkPostgresStore({ url: { env: URL_ENV }, schema: 'doc' }, 3000);
    expect(before).toMatchObject({ ok: true, detail: expect.stringMatching(/not created yet/) });
    expect(pg.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'doc'")).toBe('0');
    opened.push(await openStateStore(tempDir(), { kind: 'postgres', url: { env: URL_ENV }, schema: 'doc' }));
    expect((await checkPostgresStore({ url: { env: URL_ENV }, schema: 'doc' }, 3000)).detail).toMatch(new RegExp(`version ${LATEST_VERSION}, up to date`));
    process.env.VIGIL_TEST_BAD_URL = `postgres://scram_user:${PASSWORDS.scram_user}x@127.0.0.1:${pg.port}/app?sslmode=disable`;
    const bad = await checkPostgresStore({ url: { env: 'VIGIL_TEST_BAD_URL' }, schema: 'doc' }, 3000);
    expect(bad).toMatchObject({ ok: false, name: `store postgres://127.0.0.1:${pg.port}/app`, detail: expect.stringMatching(/password authentication failed/) });
    expect(JSON.stringify(bad)).not.toContain(PASSWORDS.scram_user);
    process.env.VIGIL_TEST_BAD_URL = `mysql://scram_user:${PASSWORDS.scram_user}@127.0.0.1/app`;
    const wrong = await checkPostgresStore({ url: { env: 'VIGIL_TEST_BAD_URL' }, schema: 'doc' }, 3000);
    expect(wrong).toMatchObject({ ok: false, detail: expect.stringMatching(/not a PostgreSQL URL/) });
    expect(JSON.stringify(wrong)).not.toContain(PASSWORDS.scram_user);
    delete process.env.VIGIL_TEST_BAD_URL;
  });
});
