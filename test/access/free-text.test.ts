import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../app/config.ts';
import { EventBus } from '../../src/events/bus.ts';
import { openStateStore } from '../../src/store/index.ts';
import type { StoreConfig } from '../../src/store/config.ts';
import type { StateStore } from '../../src/store/types.ts';
import { AccessService } from '../../src/access/service.ts';
import { VigilError } from '../../src/errors.ts';
import { errorResponse } from '../../src/api/http.ts';
import { PASSWORDS, startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { tempDir } from '../support/tmp.ts';
import { MemorySink, POLICY, actor } from './support.ts';

/**
 * Free text people type into access decisions (reasons, comments, a locked user's name) is refused the
 * same way whatever the store: PostgreSQL rejects NUL and malformed Unicode, SQLite stores them, so the
 * check sits in the access service, before either. A store's own error never shows the caller where the
 * store is.
 */
let pg: PostgresHandle;
const URL_ENV = 'VIGIL_TEST_FREE_TEXT_URL';
beforeAll(async () => {
  pg = await startPostgres();
  process.env[URL_ENV] = `postgres://scram_user:${PASSWORDS.scram_user}@127.0.0.1:${pg.port}/app?sslmode=disable`;
});
afterAll(async () => {
  delete process.env[URL_ENV];
  await pg?.stop();
});

const STORES: [string, () => StoreConfig | undefined][] = [
  ['sqlite', () => undefined],
  ['postgres', () => ({ kind: 'postgres', url: { env: URL_ENV }, schema: 'free_text' })],
];

const alice = actor('alice', ['dev']);
const bob = actor('bob', ['sre-lead']);
const admin = actor('root-admin', ['admin']);

describe.each(STORES)('free text in access decisions (%s store)', (_kind, storeConfig) => {
  let store: StateStore;
  let access: AccessService;
  let sink: MemorySink;
  beforeAll(async () => {
    const dataDir = path.join(tempDir(), 'data');
    const config = parseConfig({ data_dir: dataDir, ...POLICY }, dataDir, false);
    const cfg = storeConfig();
    store = cfg ? await openStateStore(dataDir, cfg) : await openStateStore(dataDir);
    sink = new MemorySink();
    access = new AccessService({ config, store, events: new EventBus(sink) });
  });
  afterAll(async () => {
    await store?.close();
  });

  it.each([
    ['NUL', 'INC-1\u0000drop'],
    ['an escape sequence', 'INC-1 \u001b[2J\u001b[H'],
    ['a lone surrogate', 'INC-1 \ud800'],
    ['a lone low surrogate', '\udc00 INC-1'],
    ['a C1 control (CSI)', 'INC-1 \u009b1A'],
    ['a bidi override', 'INC-1 \u202egnp.exe'],
    ['a bidi isolate', 'INC-1 \u2067x\u2069'],
  ])('a reason with %s is refused as invalid, nothing stored', async (_what, reason) => {
    const before = (await store.listAccess()).length;
    await expect(access.request(alice, { role: 'prod-dba', reason })).rejects.toMatchObject({ code: 'VIGIL_BAD_TEXT', kind: 'invalid' });
    expect(await store.listAccess()).toHaveLength(before);
    // The refusal is recorded like any other.
    expect(sink.events.filter((e) => e.type === 'access.refused').at(-1)?.details).toMatchObject({ code: 'VIGIL_BAD_TEXT' });
  });

  it('plain text keeps tabs, line breaks and any well-formed Unicode', async () => {
    const reason = 'INC-7\tcustomer 🚒 \u00e9t\u00e9\nsecond line';
    const rec = await access.request(alice, { role: 'prod-dba', reason });
    expect((await store.getAccess(rec.id))!.reason).toBe(reason);
  });

  it('comments, denial and revocation reasons and locked user names are checked too', async () => {
    const rec = await access.request(alice, { role: 'prod-dba', reason: 'INC-8' });
    await expect(access.approve(bob, rec.id, { comment: 'ok\u0000' })).rejects.toMatchObject({ code: 'VIGIL_BAD_TEXT' });
    await expect(access.deny(bob, rec.id, { reason: 'no\u0007' })).rejects.toMatchObject({ code: 'VIGIL_BAD_TEXT' });
    expect((await store.getAccess(rec.id))!.state).toBe('pending');
    await access.approve(bob, rec.id, { comment: 'looks right' });
    await expect(access.revoke(admin, rec.id, { reason: 'done\u0000' })).rejects.toMatchObject({ code: 'VIGIL_BAD_TEXT' });
    expect((await store.getAccess(rec.id))!.state).toBe('active');
    await expect(access.lock(admin, { user: 'mallory\u0000', reason: 'x' })).rejects.toMatchObject({ code: 'VIGIL_BAD_TEXT' });
    await expect(access.lock(admin, { user: 'mallory', reason: 'phished\u0000' })).rejects.toMatchObject({ code: 'VIGIL_BAD_TEXT' });
    expect(await access.listLocks(admin)).toHaveLength(0);
  });

  it('a request an admin files for someone else names a vigil user: control characters are refused as for a lock', async () => {
    const before = (await store.listAccess()).length;
    for (const user of ['bob\u001b[2J\u0007', 'bob\u0000', 'bob \ud800']) {
      await expect(access.request(admin, { user, role: 'prod-dba', reason: 'INC-9' })).rejects.toMatchObject({ code: 'VIGIL_BAD_TEXT', kind: 'invalid' });
      expect(sink.events.filter((e) => e.type === 'access.refused').at(-1)).toMatchObject({
        outcome: 'failure',
        actor: { user: 'root-admin' },
        details: { action: 'request', code: 'VIGIL_BAD_TEXT', user },
      });
    }
    // Plain text that no certificate could ever name is refused too, for requests and locks alike.
    for (const user of ['bob smith', '-bob', 'b'.repeat(65), '']) {
      await expect(access.request(admin, { user, role: 'prod-dba', reason: 'INC-9' })).rejects.toMatchObject({ code: 'VIGIL_BAD_USER', kind: 'invalid' });
      await expect(access.lock(admin, { user, reason: 'INC-9' })).rejects.toMatchObject({ code: 'VIGIL_BAD_USER', kind: 'invalid' });
    }
    expect(await store.listAccess()).toHaveLength(before);
    expect(await access.listLocks(admin)).toHaveLength(0);
    // A real user name still works.
    const rec = await access.request(admin, { user: 'bob.smith@example.com', role: 'prod-dba', reason: 'INC-9' });
    expect(rec).toMatchObject({ user: 'bob.smith@example.com', requester: 'root-admin' });
  });
});

it("a store's own error reaches the caller as a 500 that does not say where the store is", () => {
  const r = errorResponse(new VigilError('VIGIL_STORE_ERROR', 'state store postgres://10.0.0.5:5432/vigil: invalid byte sequence for encoding "UTF8": 0x00'));
  expect(r.status).toBe(500);
  expect(r.code).toBe('VIGIL_STORE_ERROR');
  expect(r.message).not.toMatch(/postgres|10\.0\.0\.5|5432/);
});
