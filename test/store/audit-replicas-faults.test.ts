import fs from 'node:fs';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, PASSWORDS, type PostgresHandle } from '../support/postgres.ts';
import { startCuttableRelay, type CuttableRelay } from '../support/cuttable-relay.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { makeSigningKey, auditOptions, sampleEvent } from '../recorder/helpers.ts';
import { openStateStore, type StateStore } from '../../src/store/index.ts';
import { openAuditLog, listSegments, HEAD_FILE, type AuditLogWriter } from '../../recorder/audit/index.ts';
import { SharedIndexer, startSharedIndexFollower, type LocalChain } from '../../recorder/audit/shared-index.ts';
import { verifySharedIndex } from '../../recorder/audit/verify-shared.ts';
import { chainHeadSeq, searchIndexed } from '../../recorder/audit/search-index.ts';
import { runPurge } from '../../recorder/retention/run.ts';
import type { AuditChainStore } from '../../src/store/types.ts';

/**
 * The shared audit index when things go wrong around it: segments purged by retention before they were
 * indexed, bytes in a segment past the writer's durable head, the database away for a sync, text with
 * punctuation. One real PostgreSQL; the follower's store is reached through a relay the test cuts.
 */

let db: PostgresHandle;
let relay: CuttableRelay;
let direct: StateStore;
let viaRelay: StateStore;
const URL_ENV = 'VIGIL_TEST_AUDIT_FAULTS_URL';
const RELAY_ENV = 'VIGIL_TEST_AUDIT_FAULTS_RELAY_URL';
const SCHEMA = 'auditfaults';
const YEAR = 365 * 86_400_000;

beforeAll(async () => {
  db = await startPostgres();
  relay = await startCuttableRelay(db.port);
  process.env[URL_ENV] = `postgres://scram_user:${PASSWORDS.scram_user}@127.0.0.1:${db.port}/app?sslmode=disable`;
  process.env[RELAY_ENV] = `postgres://scram_user:${PASSWORDS.scram_user}@127.0.0.1:${relay.port}/app?sslmode=disable`;
  direct = await openStateStore(tempDir(), { kind: 'postgres', url: { env: URL_ENV }, schema: SCHEMA });
  viaRelay = await openStateStore(tempDir(), { kind: 'postgres', url: { env: RELAY_ENV }, schema: SCHEMA });
}, 120_000);

afterAll(async () => {
  await viaRelay?.close();
  await direct?.close();
  await relay?.close();
  delete process.env[URL_ENV];
  delete process.env[RELAY_ENV];
  await db?.stop();
});

const chains = (): AuditChainStore => direct.auditChains!;
let n = 0;

/** A fresh chain in a temp dir, written through the real writer: small segments, frequent checkpoints. */
async function newChain(tag: string): Promise<{ local: LocalChain; log: AuditLogWriter; keyFile: string; pubFile: string }> {
  const dir = tempDir(`vigil-auditfaults-${tag}-`);
  const key = makeSigningKey(dir);
  const local = { auditDir: path.join(dir, 'audit'), replica: `${tag}-${++n}`, publicKeyPem: key.publicPem };
  const log = await openAuditLog(local.auditDir, auditOptions(key.keyFile, { segmentMaxBytes: 4096, checkpointEvery: 7 }));
  return { local, log, keyFile: key.keyFile, pubFile: key.pubFile };
}

/** Purge every sealed segment, as the daily run would a year later; returns the last purged seq. */
async function purgeAll(local: LocalChain, log: AuditLogWriter, pubFile: string): Promise<number> {
  const res = await runPurge({
    auditDir: local.auditDir, recordingsDir: path.join(path.dirname(local.auditDir), 'recordings'), publicKeyFile: pubFile, reason: 'test',
    policy: { floorMs: 0, defaultMs: 1000, classes: {} }, holds: async () => [], now: Date.now() + YEAR,
    record: (details) => log.append(sampleEvent(0, { type: 'audit.purged', details })),
  });
  expect(res.status).toBe('purged');
  return res.status === 'purged' ? res.entry!.last_seq : 0;
}

/** Operational log lines, as JSON objects. */
function capturingLogger(): { log: Logger; lines: { level: number; msg: string; [k: string]: unknown }[] } {
  const lines: { level: number; msg: string }[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines };
}

/** The last record head.json vouches for as durable: the checkpoint after its signed head. */
const durableSignedSeq = (auditDir: string) => (JSON.parse(fs.readFileSync(path.join(auditDir, HEAD_FILE), 'utf8')) as { seq: number }).seq + 1;

const minSeq = (replica: string) => Number(db.psql(`SELECT coalesce(min(seq), 0) FROM ${SCHEMA}.audit_events WHERE replica = '${replica}'`));
const maxSeq = (replica: string) => Number(db.psql(`SELECT coalesce(max(seq), 0) FROM ${SCHEMA}.audit_events WHERE replica = '${replica}'`));

describe('segments purged by retention before the follower shipped them', () => {
  it('a follower standing in a purged segment continues after the anchor, drops the rows below the cut, and verify passes', async () => {
    const { local, log, pubFile } = await newChain('purge-live');
    for (let i = 0; i < 60; i++) await log.append(sampleEvent(i));
    const indexer = new SharedIndexer(chains(), local);
    // Part of the chain: the reader stops in the first segments, long before the end.
    const part = await indexer.sync(5, 10);
    expect(part.added).toBeGreaterThan(0);
    const shipped = indexer.indexedSeq;
    const through = await purgeAll(local, log, pubFile);
    expect(through).toBeGreaterThan(shipped + 7); // whole segments the follower never read are gone
    await log.close(); // signs the audit.purged event

    const after = await indexer.sync(100);
    // Before the fix: { added: 0, caughtUp: true }, for ever.
    expect(after).toMatchObject({ caughtUp: true, purged: { from: shipped + 1, through } });
    expect(after.added).toBeGreaterThan(0);
    expect(indexer.indexedSeq).toBe(chainHeadSeq(local.auditDir));
    expect(minSeq(local.replica)).toBe(through + 1);
    const check = await verifySharedIndex(chains(), local);
    expect(check.chains.find((c) => c.replica === local.replica)).toMatchObject({ ok: true, firstSeq: through + 1, lastSeq: chainHeadSeq(local.auditDir) });
    expect(check.local).toMatchObject({ ok: true, notIndexed: 0 });
  }, 60_000);

  it('a fresh follower (restart) whose indexed head was purged seeks to the anchor instead of reporting divergence', async () => {
    const { local, log, pubFile } = await newChain('purge-restart');
    for (let i = 0; i < 60; i++) await log.append(sampleEvent(i));
    await new SharedIndexer(chains(), local).sync(5, 10);
    const through = await purgeAll(local, log, pubFile);
    await log.close();

    const { log: opsLog, lines } = capturingLogger();
    const follower = startSharedIndexFollower({ ...local, chains: chains(), intervalMs: 60_000, batch: 100, log: opsLog });
    try {
      // The start-up sync, then one more: neither finds the chain diverged (before the fix: "purged before
      // it was indexed", and the replica out of the shared index until a manual reindex).
      const res = await follower.syncNow();
      expect(res.diverged).toBeUndefined();
      expect(follower.lag()).toMatchObject({ diverged: false, up: true, indexedSeq: chainHeadSeq(local.auditDir), lagEvents: 0, lagSeconds: 0 });
      // Not silent: the gap is logged, with what went.
      expect(lines.find((l) => /purged by retention before they were indexed/.test(l.msg))).toMatchObject({ level: 40, through });
    } finally {
      await follower.stop();
    }
    expect(minSeq(local.replica)).toBe(through + 1);
    const check = await verifySharedIndex(chains(), local);
    expect(check.chains.find((c) => c.replica === local.replica)).toMatchObject({ ok: true, firstSeq: through + 1 });
    expect(check.local).toMatchObject({ ok: true });
  }, 60_000);

  it('segments removed without an anchor are a divergence: logged, and visible in the lag (growing seconds)', async () => {
    const { local, log } = await newChain('purge-byhand');
    for (let i = 0; i < 60; i++) await log.append(sampleEvent(i));
    const indexer = new SharedIndexer(chains(), local);
    await indexer.sync(5, 10);
    await log.close();
    // The oldest segments deleted by hand: no audit.purged event, no anchor.json.
    const segs = listSegments(local.auditDir);
    for (const s of segs.slice(0, 4)) fs.rmSync(path.join(local.auditDir, s));

    const same = await indexer.sync(100);
    // Before the fix: { added: 0, caughtUp: true }, nothing logged.
    expect(same.caughtUp).toBe(false);
    expect(same.diverged?.problem).toMatch(/is gone .* no anchor\.json says a retention purge removed it/);

    const { log: opsLog, lines } = capturingLogger();
    const follower = startSharedIndexFollower({ ...local, chains: chains(), intervalMs: 60_000, batch: 100, log: opsLog });
    try {
      expect((await follower.syncNow()).diverged).toBeDefined();
      expect(lines.some((l) => l.level === 50 && /diverged/.test(l.msg))).toBe(true);
      const first = follower.lag();
      expect(first).toMatchObject({ diverged: true, up: false, indexedSeq: indexer.indexedSeq });
      expect(first.lagEvents).toBe(chainHeadSeq(local.auditDir) - indexer.indexedSeq);
      await new Promise((r) => setTimeout(r, 1100));
      await follower.syncNow();
      expect(follower.lag().lagSeconds).toBeGreaterThanOrEqual(1);
    } finally {
      await follower.stop();
    }
  }, 60_000);
});

describe('the durable head', () => {
  it('records in a segment past head.json are not shipped until head.json covers them', async () => {
    const { local, log, keyFile } = await newChain('durable');
    for (let i = 0; i < 20; i++) await log.append(sampleEvent(i));
    await log.close();
    const headFile = path.join(local.auditDir, HEAD_FILE);
    const durableHead = fs.readFileSync(headFile, 'utf8');
    const durable = durableSignedSeq(local.auditDir);
    // More complete, signed lines in the segment files, while head.json still names the earlier head: what
    // a write the disk did not make durable leaves behind before the writer cuts it back.
    const more = await openAuditLog(local.auditDir, auditOptions(keyFile, { segmentMaxBytes: 4096, checkpointEvery: 7 }));
    for (let i = 0; i < 20; i++) await more.append(sampleEvent(100 + i));
    await more.close();
    expect(chainHeadSeq(local.auditDir)).toBeGreaterThan(durable + 10);
    const latestHead = fs.readFileSync(headFile, 'utf8');
    fs.writeFileSync(headFile, durableHead);

    const indexer = new SharedIndexer(chains(), local);
    const first = await indexer.sync(100);
    expect(first.caughtUp).toBe(true);
    // Before the fix: everything on disk, up to the last checkpoint line.
    expect(indexer.indexedSeq).toBe(durable);
    expect(maxSeq(local.replica)).toBe(durable);

    fs.writeFileSync(headFile, latestHead);
    const second = await indexer.sync(100);
    expect(second.added).toBeGreaterThan(0);
    expect(indexer.indexedSeq).toBe(chainHeadSeq(local.auditDir));
    expect((await verifySharedIndex(chains(), local)).local).toMatchObject({ ok: true, notIndexed: 0 });
  }, 60_000);
});

describe('the lag metric', () => {
  it('a sync that fails (store cut) keeps the indexed head; a stalled follower shows growing lag seconds', async () => {
    const { local, log } = await newChain('lag');
    for (let i = 0; i < 200; i++) await log.append(sampleEvent(i));
    await log.checkpoint();
    await waitFor(() => durableSignedSeq(local.auditDir) === chainHeadSeq(local.auditDir), 10_000, 'head.json at the last checkpoint');
    const follower = startSharedIndexFollower({ ...local, chains: viaRelay.auditChains!, intervalMs: 60_000, batch: 50, log: capturingLogger().log });
    try {
      await follower.syncNow();
      const before = follower.lag();
      expect(before).toMatchObject({ up: true, lagEvents: 0, lagSeconds: 0 });
      expect(before.indexedSeq).toBeGreaterThan(200);

      await relay.down();
      try {
        for (let i = 0; i < 5; i++) await log.append(sampleEvent(300 + i));
        await log.checkpoint();
        await waitFor(() => durableSignedSeq(local.auditDir) === chainHeadSeq(local.auditDir), 10_000, 'head.json at the new checkpoint');
        await expect(follower.syncNow()).rejects.toThrow();
        const during = follower.lag();
        // Before the fix: indexedSeq 0, the whole chain as lag.
        expect(during).toMatchObject({ up: false, indexedSeq: before.indexedSeq, lagEvents: chainHeadSeq(local.auditDir) - before.indexedSeq });
        expect(during.lagEvents).toBeLessThan(10);
        await new Promise((r) => setTimeout(r, 1100));
        await expect(follower.syncNow()).rejects.toThrow();
        expect(follower.lag().lagSeconds).toBeGreaterThanOrEqual(1);
      } finally {
        await relay.up();
      }
      await follower.syncNow();
      expect(follower.lag()).toMatchObject({ up: true, lagEvents: 0, lagSeconds: 0 });
    } finally {
      await follower.stop();
      await log.close();
    }
  }, 60_000);
});

describe('text search', () => {
  it('splits words on punctuation as the local index does: `users` finds `public.users`, `passwd` finds `/etc/passwd`', async () => {
    const { local, log } = await newChain('text');
    await log.append(sampleEvent(1, { details: { statement: 'SELECT * FROM public.users WHERE id = 1' } }));
    await log.append(sampleEvent(2, { type: 'ssh.sftp', details: { path: '/etc/passwd', command: 'cat /etc/shadow' } }));
    await log.append(sampleEvent(3, { details: { statement: 'SELECT 1 FROM usersettings' } }));
    await log.close();
    await new SharedIndexer(chains(), local).sync(100);
    const shared = async (text: string) => (await chains().search({ replica: local.replica, text })).map((r) => r.seq).sort();
    const here = (text: string) => searchIndexed(local.auditDir, { text }).map((r) => r.seq).sort();
    // The same answers from both indexes (before the fix, the shared one found nothing for `users`/`passwd`).
    for (const [q, seqs] of [['users', [1]], ['passwd', [2]], ['etc passwd', [2]], ['"public.users"', [1]], ['"users public"', []], ['users*', [1, 3]], ['shadow OR users', [1, 2]], ['public NOT users', []]] as const) {
      expect(await shared(q), q).toEqual(seqs);
      expect(here(q), q).toEqual(seqs);
    }
    // Punctuation inside a word, unquoted: the phrase of its parts (FTS5 wants it quoted).
    expect(await shared('public.users')).toEqual([1]);
    expect(await shared('/etc/passwd')).toEqual([2]);
    expect(await shared('-users passwd')).toEqual([2]);
    expect(await shared('...')).toEqual([]);
  }, 60_000);
});
