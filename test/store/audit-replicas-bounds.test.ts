import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { usePostgresStateStore } from '../support/pg-store.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { makeSigningKey, auditOptions, sampleEvent } from '../recorder/helpers.ts';
import { openAuditLog, type AuditLogWriter, type AuditOpenOptions } from '../../recorder/audit/index.ts';
import { CHECKPOINT_MAX_BYTES } from '../../recorder/audit/writer.ts';
import { SHIP_BATCH_BYTES, SharedIndexer, startSharedIndexFollower, streamShared, type LocalChain } from '../../recorder/audit/shared-index.ts';
import { verifySharedIndex } from '../../recorder/audit/verify-shared.ts';
import { chainHeadSeq } from '../../recorder/audit/search-index.ts';
import type { AuditChainStore, IndexedAuditRow } from '../../src/store/types.ts';

/**
 * The shared audit index's bounds: how much one shipping transaction carries (bytes, not only records),
 * how long a stop or a search waits for a backlog, and what an export reads while followers keep shipping.
 * One real PostgreSQL; real chains written by the real writer in temp dirs.
 */

const URL_ENV = 'VIGIL_TEST_AUDIT_BOUNDS_URL';
const SCHEMA = 'auditbounds';
const shared = usePostgresStateStore(URL_ENV, SCHEMA);

const chains = (): AuditChainStore => shared.store.auditChains!;
let n = 0;

async function newChain(tag: string, over: Partial<AuditOpenOptions> = {}): Promise<{ local: LocalChain; log: AuditLogWriter }> {
  const dir = tempDir(`vigil-auditbounds-${tag}-`);
  const key = makeSigningKey(dir);
  const local = { auditDir: path.join(dir, 'audit'), replica: `${tag}-${++n}`, publicKeyPem: key.publicPem };
  return { local, log: await openAuditLog(local.auditDir, auditOptions(key.keyFile, over)) };
}

/** The real store, with the rows of every appendRows call (one shipping transaction each) written down. */
function observed(real: AuditChainStore, calls: IndexedAuditRow[][]): AuditChainStore {
  return new Proxy(real, {
    get(t, k) {
      if (k === 'appendRows') {
        return (...args: Parameters<AuditChainStore['appendRows']>) => {
          calls.push(args[2]);
          return t.appendRows(...args);
        };
      }
      const v = Reflect.get(t, k) as unknown;
      return typeof v === 'function' ? v.bind(t) : v;
    },
  });
}

/** A bulk INSERT as a proxy records it: `bytes` of SQL text. */
function bulkInsert(i: number, bytes: number): string {
  const values: string[] = [];
  for (let j = 0, len = 0; len < bytes; j++) len += values[values.push(`(${i * 100_000 + j}, 'n${j}')`) - 1].length + 2;
  return `INSERT INTO orders (id, note) VALUES ${values.join(', ')}`.slice(0, bytes);
}

const bytesOf = (rows: IndexedAuditRow[]) => rows.reduce((sum, r) => sum + Buffer.byteLength(r.eventJson), 0);
const isCheckpoint = (r: IndexedAuditRow) => r.eventJson.includes('"type":"audit.checkpoint"');
const dbHead = (replica: string) => Number(shared.db.psql(`SELECT indexed_seq FROM ${SCHEMA}.audit_chains WHERE replica = '${replica}'`));
const dbCount = (replica: string) => Number(shared.db.psql(`SELECT count(*) FROM ${SCHEMA}.audit_events WHERE replica = '${replica}'`));

describe('shipping transactions are bounded by bytes', () => {
  it('a chain of a few hundred ~200 KB events ships in several bounded transactions and completes', async () => {
    // Only the record count and the byte budget sign checkpoints here (no interval, 1000 events per count).
    const { local, log } = await newChain('bulk', { checkpointIntervalMs: 0 });
    const EVENTS = 150;
    const SIZE = 200 * 1024;
    for (let i = 0; i < EVENTS; i += 10) {
      await Promise.all(Array.from({ length: 10 }, (_, j) => log.append(sampleEvent(i + j, { details: { statement: bulkInsert(i + j, SIZE) } }))));
    }
    await log.close();
    const calls: IndexedAuditRow[][] = [];
    const indexer = new SharedIndexer(observed(chains(), calls), local);
    // The gateway's batch: 2000 records would be all 30 MB in one statement (before the fix: one call).
    const res = await indexer.sync(2000);
    expect(res.caughtUp).toBe(true);
    expect(indexer.indexedSeq).toBe(chainHeadSeq(local.auditDir));
    expect(calls.length).toBeGreaterThanOrEqual(Math.floor((EVENTS * SIZE) / SHIP_BATCH_BYTES));
    for (const rows of calls) {
      // Within the budget, ending on a checkpoint (the writer signs one every CHECKPOINT_MAX_BYTES here).
      expect(bytesOf(rows)).toBeLessThanOrEqual(SHIP_BATCH_BYTES);
      expect(isCheckpoint(rows.at(-1)!)).toBe(true);
      expect(rows.filter((r) => !isCheckpoint(r)).length).toBeGreaterThan(1);
    }
    // The writer signed a checkpoint every CHECKPOINT_MAX_BYTES or so (no interval, and far below the count).
    expect(calls.flat().filter(isCheckpoint).length).toBeGreaterThanOrEqual(Math.floor((EVENTS * SIZE) / (CHECKPOINT_MAX_BYTES + SIZE)));
    expect(calls.flat().map((r) => r.seq)).toEqual(Array.from({ length: chainHeadSeq(local.auditDir) }, (_, i) => i + 1));
    expect(dbCount(local.replica)).toBe(chainHeadSeq(local.auditDir));
    expect((await verifySharedIndex(chains(), local)).local).toMatchObject({ ok: true, notIndexed: 0 });
  }, 120_000);

  it('one event larger than the budget still ships, in a transaction of its own (with its checkpoint)', async () => {
    const { local, log } = await newChain('huge', { checkpointIntervalMs: 0 });
    for (let i = 0; i < 20; i++) await log.append(sampleEvent(i));
    await log.checkpoint();
    const big = await log.append(sampleEvent(20, { details: { statement: bulkInsert(20, SHIP_BATCH_BYTES + 512 * 1024) } }));
    for (let i = 21; i < 40; i++) await log.append(sampleEvent(i));
    await log.close();
    const calls: IndexedAuditRow[][] = [];
    const indexer = new SharedIndexer(observed(chains(), calls), local);
    expect((await indexer.sync(5000)).caughtUp).toBe(true);
    expect(indexer.indexedSeq).toBe(chainHeadSeq(local.auditDir));
    // Before the fix: all 42 records in one call.
    expect(calls.map((rows) => rows.filter((r) => !isCheckpoint(r)).map((r) => r.seq))).toContainEqual([big.seq]);
    expect(calls.length).toBe(3);
    expect(Number(shared.db.psql(`SELECT length(event) FROM ${SCHEMA}.audit_events WHERE replica = '${local.replica}' AND seq = ${big.seq}`))).toBeGreaterThan(SHIP_BATCH_BYTES);
    expect((await verifySharedIndex(chains(), local)).local).toMatchObject({ ok: true, notIndexed: 0 });
  }, 60_000);
});

/** A chain with a backlog of `events` records, signed every 7 (so small batches ship a few records each). */
async function backlog(tag: string, events: number): Promise<LocalChain> {
  const { local, log } = await newChain(tag, { checkpointEvery: 7 });
  for (let i = 0; i < events; i += 500) await Promise.all(Array.from({ length: 500 }, (_, j) => log.append(sampleEvent(i + j))));
  await log.close();
  return local;
}

const quietLog = () => pino({ level: 'silent' });

describe('waiting for a backlog is bounded', () => {
  it('stop({ flushWithinMs }) resolves with the backlog still shipping, and the running sync stops between transactions', async () => {
    const local = await backlog('stop', 4000);
    const head = chainHeadSeq(local.auditDir);
    const follower = startSharedIndexFollower({ ...local, chains: chains(), intervalMs: 60_000, batch: 5, log: quietLog() });
    await waitFor(() => dbHead(local.replica) > 0, 10_000, 'the first batch shipped');
    await follower.stop({ flushWithinMs: 100 });
    // Before the fix: stop waited for the whole backlog (hundreds of transactions).
    const atStop = dbHead(local.replica);
    expect(atStop).toBeLessThan(head);
    // At most the transaction in flight commits after that; nothing more ships once stopped.
    await new Promise((r) => setTimeout(r, 500));
    const later = dbHead(local.replica);
    expect(later).toBeLessThanOrEqual(atStop + 8);
    // The rest ships from where it stopped: nothing lost or doubled.
    const indexer = new SharedIndexer(chains(), local);
    expect((await indexer.sync(5000)).caughtUp).toBe(true);
    expect(dbCount(local.replica)).toBe(head);
  }, 60_000);

  it('catchUp(ms) answers with the lag while the backlog ships, and the follower goes on to catch up', async () => {
    const local = await backlog('catchup', 4000);
    const head = chainHeadSeq(local.auditDir);
    const follower = startSharedIndexFollower({ ...local, chains: chains(), intervalMs: 60_000, batch: 5, log: quietLog() });
    try {
      const lag = await follower.catchUp(50);
      // What a search or export says of the index it answers from: behind, by this much.
      expect(lag.chainSeq).toBe(head);
      expect(lag.indexedSeq).toBeLessThan(head);
      expect(lag.lagEvents).toBe(head - lag.indexedSeq);
      await waitFor(() => follower.lag().lagEvents === 0, 60_000, 'the backlog shipped');
      expect(dbCount(local.replica)).toBe(head);
      expect(await follower.catchUp(50)).toMatchObject({ indexedSeq: head, lagEvents: 0, up: true });
    } finally {
      await follower.stop();
    }
  }, 90_000);
});

describe('an export is a snapshot of the index at its start', () => {
  it('rows a replica ships between pages (timed before and after the cursor) are not in it, so no replica has a hole', async () => {
    const t0 = Date.UTC(2001, 0, 1);
    const at = (s: number) => new Date(t0 + s * 1000);
    const a = await newChain('snap-a', { checkpointIntervalMs: 0 });
    const b = await newChain('snap-b', { checkpointIntervalMs: 0 });
    for (const s of [1, 3, 5, 7, 9]) await a.log.append(sampleEvent(s, { time: at(s) }));
    for (const s of [2, 4]) await b.log.append(sampleEvent(s, { time: at(s) }));
    await a.log.close();
    await b.log.checkpoint();
    await new SharedIndexer(chains(), a.local).sync(100);
    const bIndexer = new SharedIndexer(chains(), b.local);
    // checkpoint() resolves once the checkpoint is durable; head.json, which bounds what is shipped,
    // follows in the background: sync until B's two events and that checkpoint are in.
    await waitFor(async () => (await bIndexer.sync(100), bIndexer.indexedSeq >= 3), 10_000, "B's first records shipped");
    const q = { since: at(0).toISOString(), until: at(100).toISOString(), hideCheckpoints: true };
    const key = (r: { replica: string; seq: number }) => `${r.replica}#${r.seq}`;
    const atStart = (await chains().search(q)).map(key);
    expect(atStart).toHaveLength(7);

    const stream = streamShared(chains(), q, 2);
    const out: string[] = [];
    for (let i = 0; i < 2; i++) out.push(key((await stream.next()).value!));
    // Page one read (cursor at second 2): B ships a record timed before the cursor and two after it.
    for (const s of [0.5, 6, 8]) await b.log.append(sampleEvent(s, { time: at(s) }));
    await b.log.close();
    expect((await bIndexer.sync(100)).added).toBe(4);
    for await (const r of stream) out.push(key(r));
    // Before the fix: B's seqs 1, 2, 5, 6 (not 4, timed before the cursor): a hole in B's chain.
    expect(out).toEqual(atStart);
  }, 60_000);
});
