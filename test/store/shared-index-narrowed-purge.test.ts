import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { usePostgresStateStore } from '../support/pg-store.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { makeSigningKey, auditOptions, sampleEvent } from '../recorder/helpers.ts';
import { openAuditLog, searchAuditLog, type AuditLogWriter } from '../../recorder/audit/index.ts';
import { SharedIndexer, type LocalChain } from '../../recorder/audit/shared-index.ts';
import { verifySharedIndex } from '../../recorder/audit/verify-shared.ts';
import { runPurge } from '../../recorder/retention/run.ts';
import type { HoldFilter } from '../../recorder/retention/purge.ts';
import type { AuditChainStore } from '../../src/store/types.ts';

/**
 * The shared audit index against retention purges whose `audit.purged` event is indexed before the purge
 * is done: a legal hold placed while the event was written narrows the purge (a second, narrower event
 * vouches for the anchor), and the index must keep every record the local chain still holds. One real
 * PostgreSQL; chains written by the real writer, purged by the real retention run.
 */

const URL_ENV = 'VIGIL_TEST_SHARED_NARROWED_PURGE_URL';
const SCHEMA = 'narrowedpurge';
const shared = usePostgresStateStore(URL_ENV, SCHEMA);
const chains = (): AuditChainStore => shared.store.auditChains!;
const YEAR = 365 * 86_400_000;
let n = 0;

/** 60 events of sessions S0..S5 (ten each) over several small segments, all of them indexed. */
async function indexedChain(tag: string): Promise<{ local: LocalChain; log: AuditLogWriter; pubFile: string; indexer: SharedIndexer }> {
  const dir = tempDir(`vigil-narrowed-${tag}-`);
  const key = makeSigningKey(dir);
  const local = { auditDir: path.join(dir, 'audit'), replica: `${tag}-${++n}`, publicKeyPem: key.publicPem };
  const log = await openAuditLog(local.auditDir, auditOptions(key.keyFile, { segmentMaxBytes: 4096, checkpointEvery: 7, checkpointIntervalMs: 0 }));
  for (let i = 0; i < 60; i++) await log.append(sampleEvent(i, { session_id: `S${Math.floor(i / 10)}` }));
  await log.checkpoint();
  const indexer = new SharedIndexer(chains(), local);
  await indexer.sync(100);
  return { local, log, pubFile: key.pubFile, indexer };
}

/**
 * A year later, purge every sealed segment. The first `audit.purged` event is signed and indexed (the
 * gateway's follower is that quick) before the purge removes anything; `onFirstIndexed` runs then.
 */
async function purgeIndexingEarly(c: { local: LocalChain; log: AuditLogWriter; pubFile: string; indexer: SharedIndexer }, holds: () => HoldFilter[], onFirstIndexed: () => void) {
  const claims: number[] = [];
  const res = await runPurge({
    auditDir: c.local.auditDir, recordingsDir: path.join(path.dirname(c.local.auditDir), 'recordings'), publicKeyFile: c.pubFile, reason: 'test',
    policy: { floorMs: 0, defaultMs: 1000, classes: {} }, holds: async () => holds(), now: Date.now() + YEAR,
    record: async (details) => {
      const { seq } = await c.log.append(sampleEvent(0, { type: 'audit.purged', details }));
      claims.push(details.last_seq as number);
      if (claims.length === 1) {
        await c.log.checkpoint();
        await waitFor(async () => (await c.indexer.sync(100), c.indexer.indexedSeq > seq), 20_000, 'the first audit.purged event indexed');
        onFirstIndexed();
      }
    },
  });
  expect(res.status).toBe('purged');
  return { claims, cut: res.status === 'purged' ? res.entry!.last_seq : 0 };
}

const rowSeqs = async (replica: string, q: { session?: string } = {}) => (await chains().search({ replica, ...q })).map((r) => r.seq);

describe('shared index and retention purges indexed before they are done', () => {
  it('a purge narrowed by a hold placed meanwhile: the index keeps the held records, and prunes by the narrower event once it is in', async () => {
    const c = await indexedChain('narrowed');
    let held = false;
    const { claims, cut } = await purgeIndexingEarly(c, () => (held ? [{ id: 'H-LATE', session: 'S3' }] : []), () => (held = true));
    // The first event claimed more than the purge removed: the hold on S3 narrowed it.
    expect(claims).toHaveLength(2);
    expect(claims[0]).toBeGreaterThan(cut);
    const s3Local = (await searchAuditLog(c.local.auditDir, { session: 'S3' })).records.map((r) => r.seq);
    expect(s3Local).toHaveLength(10);
    expect(Math.min(...s3Local)).toBeLessThanOrEqual(claims[0]);

    // The wider event is indexed, the narrower one not yet signed: held records are still searchable.
    // Before the fix the rows through the first claim were gone here (S3: []).
    expect(await rowSeqs(c.local.replica, { session: 'S3' })).toEqual(s3Local);
    await c.indexer.sync(100);
    expect(await rowSeqs(c.local.replica, { session: 'S3' })).toEqual(s3Local);

    // The narrower event signed and indexed (a later batch): the index drops what the chain dropped, no more.
    await c.log.close();
    await c.indexer.sync(100);
    expect(Math.min(...(await rowSeqs(c.local.replica)))).toBe(cut + 1);
    expect(await rowSeqs(c.local.replica, { session: 'S3' })).toEqual(s3Local);
    const check = await verifySharedIndex(chains(), c.local);
    expect(check.chains.find((x) => x.replica === c.local.replica)).toMatchObject({ ok: true, firstSeq: cut + 1 });
    expect(check.local).toMatchObject({ ok: true, notIndexed: 0 });
  }, 60_000);

  it('an ordinary purge indexed before its segments went: the rows go once they are gone, with nothing new to ship, after a restart too', async () => {
    const c = await indexedChain('early');
    const { claims, cut } = await purgeIndexingEarly(c, () => [], () => {});
    expect(claims).toEqual([cut]);
    // The follower restarted (its memory of the claim gone); nothing new is signed: the cut is made anyway.
    const restarted = new SharedIndexer(chains(), c.local);
    const res = await restarted.sync(100);
    expect(res).toMatchObject({ added: 0, caughtUp: true });
    expect(Math.min(...(await rowSeqs(c.local.replica)))).toBe(cut + 1);
    await c.log.close();
    await restarted.sync(100);
    const check = await verifySharedIndex(chains(), c.local);
    expect(check.chains.find((x) => x.replica === c.local.replica)).toMatchObject({ ok: true, firstSeq: cut + 1 });
    expect(check.local).toMatchObject({ ok: true, notIndexed: 0 });
  }, 60_000);
});
