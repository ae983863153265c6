import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { usePostgresStateStore } from '../support/pg-store.ts';
import { tempDir } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { dataPaths } from '../../src/data-dir.ts';
import { makeSigningKey, auditOptions, sampleEvent } from '../recorder/helpers.ts';
import { openAuditLog } from '../../recorder/audit/index.ts';
import { SharedIndexer, reindexShared, searchShared, streamShared, type LocalChain } from '../../recorder/audit/shared-index.ts';
import { verifySharedIndex } from '../../recorder/audit/verify-shared.ts';
import type { AuditChainStore } from '../../src/store/types.ts';

/**
 * The shared audit index, reviewed adversarially: what the recovery commands an operator is told to run
 * do to records that exist nowhere else any more. One real PostgreSQL; chains written by the real writer.
 */

const URL_ENV = 'VIGIL_TEST_AUDIT_SHARED_REVIEW_URL';
const SCHEMA = 'auditreview';
const shared = usePostgresStateStore(URL_ENV, SCHEMA);

const chains = (): AuditChainStore => shared.store.auditChains!;
let n = 0;

/** A chain in a temp dir whose log can be written, backed up and restored, as an operator would. */
function newChain(tag: string) {
  const dir = tempDir(`vigil-auditreview-${tag}-`);
  const key = makeSigningKey(dir);
  const local: LocalChain = { auditDir: path.join(dir, 'audit'), replica: `${tag}-${++n}`, publicKeyPem: key.publicPem };
  const write = async (count: number, word: string) => {
    const log = await openAuditLog(local.auditDir, auditOptions(key.keyFile, { checkpointEvery: 4 }));
    for (let i = 0; i < count; i++) await log.append(sampleEvent(i, { details: { statement: `SELECT '${word}' /* ${i} */` } }));
    await log.close();
  };
  const backup = path.join(dir, 'audit-backup');
  return {
    local,
    open: () => openAuditLog(local.auditDir, auditOptions(key.keyFile, { checkpointEvery: 4 })),
    write,
    backUp: () => fs.cpSync(local.auditDir, backup, { recursive: true }),
    restore: () => {
      fs.rmSync(local.auditDir, { recursive: true, force: true });
      fs.cpSync(backup, local.auditDir, { recursive: true });
    },
  };
}

const found = async (word: string) => (await searchShared(chains(), { text: word })).records;

describe('`vigil audit reindex` on a replica whose log no longer holds what was indexed', () => {
  it('a data dir restored from an older backup and continued: the indexed records after the backup stay in the index, and verify passes', async () => {
    const c = newChain('restored');
    await c.write(10, 'kept');
    c.backUp();
    await c.write(10, 'onlyindexed');
    await new SharedIndexer(chains(), c.local).sync(100);
    expect(await found('onlyindexed')).toHaveLength(10);

    // The disk is lost; the data dir comes back from the backup and the gateway goes on writing.
    c.restore();
    await c.write(5, 'afterrestore');
    const diverged = await new SharedIndexer(chains(), c.local).sync(100);
    expect(diverged.diverged).toBeDefined();

    // What the follower's log line tells the operator to run.
    const res = await reindexShared(chains(), c.local);
    expect(res.diverged).toBeUndefined();
    expect(await found('afterrestore')).toHaveLength(5);
    // The ten records written after the backup exist nowhere but in the index (the disk that had them is
    // gone): before the fix the reindex deleted them, and every search came back without them.
    const lost = await found('onlyindexed');
    expect(lost).toHaveLength(10);
    expect(res.archived).toMatchObject({ replica: lost[0].replica, rows: expect.any(Number) });
    expect(lost[0].replica).not.toBe(c.local.replica);
    // Both chains verify: the restored one against its log, the archived one from its own rows and key.
    const check = await verifySharedIndex(chains(), c.local);
    expect(check.chains.filter((x) => x.replica.startsWith(c.local.replica)).map((x) => [x.replica, x.ok, x.firstBad])).toEqual([
      [c.local.replica, true, undefined],
      [res.archived!.replica, true, undefined],
    ]);
    expect(check.local).toMatchObject({ ok: true });
  }, 60_000);

  it('a log whose files are gone (a new, empty chain under the same replica id) keeps the indexed records too', async () => {
    const c = newChain('wiped');
    await c.write(12, 'beforewipe');
    await new SharedIndexer(chains(), c.local).sync(100);
    fs.rmSync(c.local.auditDir, { recursive: true, force: true });
    await c.write(3, 'newchain');

    const res = await reindexShared(chains(), c.local);
    expect(res.diverged).toBeUndefined();
    expect(await found('beforewipe')).toHaveLength(12);
    expect(await found('newchain')).toHaveLength(3);
    expect(res.archived).toBeDefined();
  }, 60_000);

  it('a reindex of a log that still holds every indexed record drops and copies it again, archiving nothing', async () => {
    const c = newChain('intact');
    await c.write(9, 'intactword');
    await new SharedIndexer(chains(), c.local).sync(100);
    const res = await reindexShared(chains(), c.local);
    expect(res.archived).toBeUndefined();
    const hits = await found('intactword');
    expect(hits.map((r) => r.replica)).toEqual(Array(9).fill(c.local.replica));
    expect((await chains().chains()).filter((x) => x.replica.startsWith(c.local.replica))).toHaveLength(1);
  }, 60_000);
});

describe('filter columns of any length', () => {
  it('an event naming a user and a target of thousands of characters (an unauthenticated login can) ships, and the chain goes on', async () => {
    // Random, so PostgreSQL cannot compress it below its B-tree row limit (2704 bytes) as it would 'aaaa…'.
    const longUser = crypto.randomBytes(2500).toString('base64url');
    const longTarget = crypto.randomBytes(2500).toString('base64url');
    const c = newChain('longnames');
    const log = await c.open();
    await log.append(sampleEvent(0, { type: 'auth.failure', outcome: 'failure', actor: { user: longUser, roles: [] }, target: { name: longTarget, protocol: 'postgres' } }));
    for (let i = 1; i < 6; i++) await log.append(sampleEvent(i, { details: { statement: `SELECT 'afterlong' /* ${i} */` } }));
    await log.close();

    // Before the fix: "index row size … exceeds btree version 4 maximum 2704 for index audit_events_user",
    // on this batch and on every retry: nothing of this replica reached the index again.
    const res = await new SharedIndexer(chains(), c.local).sync(100);
    expect(res).toMatchObject({ caughtUp: true });
    expect(await found('afterlong')).toHaveLength(5);
    // The filters still find the event by its whole value, and only it.
    const byUser = (await searchShared(chains(), { user: longUser })).records;
    expect(byUser.map((r) => r.event.actor.user)).toEqual([longUser]);
    expect((await searchShared(chains(), { target: longTarget })).records.map((r) => r.event.target.name)).toEqual([longTarget]);
    expect((await searchShared(chains(), { user: longUser.slice(0, -1) + (longUser.endsWith('A') ? 'B' : 'A') })).records).toEqual([]);
    expect((await verifySharedIndex(chains(), c.local)).chains.find((x) => x.replica === c.local.replica)).toMatchObject({ ok: true });
  }, 60_000);
});

describe('`vigil audit export` from the shared index', () => {
  it('says how many rows it left out because their bytes no longer match their hash, as search does, and records it', async () => {
    const dataDir = tempDir('vigil-auditreview-export-');
    const paths = dataPaths(dataDir);
    const key = makeSigningKey(path.dirname(paths.auditSigningKey));
    const log = await openAuditLog(paths.audit, auditOptions(key.keyFile, { checkpointEvery: 4 }));
    for (let i = 0; i < 8; i++) await log.append(sampleEvent(i, { details: { statement: `SELECT 'exported${i}'` } }));
    await log.close();
    const cfg = path.join(dataDir, 'cli.json');
    fs.writeFileSync(cfg, JSON.stringify({ data_dir: dataDir, store: { kind: 'postgres', url: { env: URL_ENV }, schema: SCHEMA } }));
    const before = await runCliCaptured(['audit', 'export', '--config', cfg, '--type', 'db.query']);
    expect(before.code, before.err).toBe(0);
    const replica = (JSON.parse(before.out.split('\n')[0]) as { replica?: string }).replica ?? fs.readFileSync(path.join(dataDir, 'replica-id'), 'utf8').trim();
    expect(before.out.trim().split('\n').filter((l) => l.includes(`'exported`))).toHaveLength(8);

    // One row's bytes edited in the database (its hash kept): the export leaves it out…
    shared.db.psql(`UPDATE ${SCHEMA}.audit_events SET event = replace(event, 'exported3', 'edited3') WHERE replica = '${replica}' AND event LIKE '%exported3%'`);
    const after = await runCliCaptured(['audit', 'export', '--config', cfg, '--type', 'db.query']);
    expect(after.out).not.toContain('edited3');
    expect(after.out.trim().split('\n').filter((l) => l.includes(`'exported`))).toHaveLength(7);
    // …and says so (before the fix: nothing, and the audit.export event counted 7 as if that were all).
    expect(after.err).toMatch(/1 indexed record\(s\) left out: their bytes do not match their hash/);
    const events = await runCliCaptured(['audit', 'search', '--json', '--local', '--config', cfg, '--type', 'audit.export']);
    expect(events.out.trim().split('\n').map((l) => (JSON.parse(l) as { details: { left_out?: number } }).details.left_out)).toEqual([undefined, 1]);
  }, 60_000);
});

describe('an export or report read page by page', () => {
  it('a row whose event time was edited in the database neither repeats the pages before it nor skips the rows after it', async () => {
    const c = newChain('paged');
    await c.write(12, 'pagedword');
    await new SharedIndexer(chains(), c.local).sync(100);
    const q = { replica: c.local.replica, hideCheckpoints: true };
    const all: number[] = [];
    for await (const r of streamShared(chains(), q, 4)) all.push(r.seq);
    expect(all).toHaveLength(12);
    // The last row of the first page: its bytes say another time than its (indexed) time column.
    const edited = all[3];
    const read = async () => {
      const seen: number[] = [];
      for await (const r of streamShared(chains(), q, 4)) if (seen.push(r.seq) > 100) break; // a loop would never end
      return seen;
    };
    for (const time of ['2000-01-01T00:00:00.000000Z', '2999-01-01T00:00:00.000000Z']) {
      shared.db.psql(`UPDATE ${SCHEMA}.audit_events SET event = regexp_replace(event, '"time":"[^"]*"', '"time":"${time}"') WHERE replica = '${c.local.replica}' AND seq = ${edited}`);
      // Before the fix the next page started after the edited time: from 2000 the first page again, for ever;
      // from 2999 nothing, and the export ended at the fourth record.
      expect(await read()).toEqual(all.filter((s) => s !== edited));
    }
  }, 60_000);
});

describe('`vigil audit verify --shared` while the replica goes on indexing', () => {
  it('rows indexed after the head was read (a live gateway) are checked against the head as it stands, not reported as added', async () => {
    const c = newChain('live');
    await c.write(8, 'beforeverify');
    const indexer = new SharedIndexer(chains(), c.local);
    await indexer.sync(100);
    // The replica's next batch lands between the verification reading its head and reading its rows, as
    // it does when a report runs next to a busy gateway.
    let interleaved = false;
    const real = chains();
    const live = new Proxy(real, {
      get(target, prop) {
        if (prop === 'rows') {
          return async (replica: string, after: number, limit: number) => {
            if (!interleaved && replica === c.local.replica) {
              interleaved = true;
              await c.write(8, 'duringverify');
              await indexer.sync(100);
            }
            return target.rows(replica, after, limit);
          };
        }
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const check = await verifySharedIndex(live, c.local);
    expect(interleaved).toBe(true);
    const mine = check.chains.find((x) => x.replica === c.local.replica)!;
    // Before the fix: "the rows end at seq 20, the replica recorded its indexed head at seq 10 (rows removed or added)".
    expect([mine.ok, mine.firstBad, mine.lastSeq]).toEqual([true, undefined, (await real.chain(c.local.replica))!.indexedSeq]);
    expect(check.local).toMatchObject({ ok: true });

    // Rows really added behind the replica's back still fail, live or not.
    const last = (await real.rows(c.local.replica, mine.lastSeq - 1, 1))[0];
    shared.db.psql(`INSERT INTO ${SCHEMA}.audit_events (replica, seq, prev, hash, event) SELECT replica, seq + 1, hash, hash, event FROM ${SCHEMA}.audit_events WHERE replica = '${c.local.replica}' AND seq = ${last.seq}`);
    const tampered = (await verifySharedIndex(real, c.local)).chains.find((x) => x.replica === c.local.replica)!;
    expect(tampered.ok).toBe(false);
  }, 60_000);
});
