/**
 * The shared audit index (PostgreSQL store) against its baselines, measured in the same run:
 *   1. append throughput of the real writer with the shared-index follower copying concurrently vs
 *      without it (ratio: the follower is off the hot path, so it should cost the append side only the
 *      CPU the two share on this machine);
 *   2. how fast a chain is copied into PostgreSQL (records/s, `vigil audit reindex`'s rate);
 *   3. a filtered search over the shared index vs the same search over the local index.
 *
 *   npx tsx bench/audit-shared-index.ts [--events 100000] [--rounds 2]
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createEvent, type AuditEvent } from '../src/events/envelope.ts';
import { silentLogger } from '../src/log.ts';
import { openAuditLog, searchIndexed } from '../recorder/audit/index.ts';
import { SharedIndexer, startSharedIndexFollower, searchShared } from '../recorder/audit/shared-index.ts';
import { openStateStore } from '../src/store/index.ts';
import { PASSWORDS, startPostgres } from '../test/support/postgres.ts';
import { tempDir } from '../test/support/tmp.ts';
import { makeSigningKey, auditOptions } from '../test/recorder/helpers.ts';
import { median } from './stats.ts';

const { values } = parseArgs({ options: { events: { type: 'string', default: '100000' }, rounds: { type: 'string', default: '2' } } });
const N = Number(values.events);
const ROUNDS = Number(values.rounds);

function event(i: number): AuditEvent {
  return createEvent({
    type: 'db.query',
    outcome: 'success',
    actor: { user: `user${i % 100}`, roles: ['dba'] },
    source: { ip: '10.0.0.7', port: 40000 + (i % 64) },
    target: { name: `db${i % 20}`, protocol: 'postgres', host: '10.1.2.3', database: 'orders' },
    session_id: `sess-${Math.floor(i / 100)}`,
    details: { duration_ms: 1.5, rows_returned: i % 50, sql: `SELECT * FROM orders WHERE id = ${i}` },
  });
}

async function appendAll(dir: string, keyFile: string, withFollower: ((auditDir: string) => { stop(): Promise<void> }) | undefined): Promise<number> {
  const auditDir = path.join(dir, 'audit');
  const log = await openAuditLog(auditDir, auditOptions(keyFile, { checkpointIntervalMs: 200 }));
  const follower = withFollower?.(auditDir);
  const t0 = performance.now();
  const WINDOW = 4096;
  for (let i = 0; i < N; i += WINDOW) {
    const batch: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(N, i + WINDOW); j++) batch.push(log.append(event(j)));
    await Promise.all(batch);
  }
  const secs = (performance.now() - t0) / 1000;
  await log.close();
  await follower?.stop();
  return N / secs;
}

const pg = await startPostgres();
process.env.VIGIL_BENCH_STORE_URL = `postgres://scram_user:${PASSWORDS.scram_user}@127.0.0.1:${pg.port}/app?sslmode=disable`;
try {
  const base = tempDir('vigil-bench-shared-');
  const key = makeSigningKey(path.join(base, 'key'));
  const store = await openStateStore(base, { kind: 'postgres', url: { env: 'VIGIL_BENCH_STORE_URL' }, schema: 'bench' });
  const chains = store.auditChains!;
  const without: number[] = [];
  const withF: number[] = [];
  const copy: number[] = [];
  let lastDir = '';
  for (let r = 0; r < ROUNDS; r++) {
    const d1 = path.join(base, `plain-${r}`);
    without.push(await appendAll(d1, key.keyFile, undefined));
    const d2 = path.join(base, `follow-${r}`);
    withF.push(await appendAll(d2, key.keyFile, (auditDir) => startSharedIndexFollower({ chains, auditDir, replica: `live-${r}`, publicKeyPem: key.publicPem, intervalMs: 200, batch: 2000, log: silentLogger() })));
    // Copy a whole chain (as reindex does): records/s.
    const t0 = performance.now();
    const res = await new SharedIndexer(chains, { auditDir: path.join(d1, 'audit'), replica: `copy-${r}`, publicKeyPem: key.publicPem }).sync(5000);
    copy.push(res.added / ((performance.now() - t0) / 1000));
    lastDir = d1;
  }
  // One filtered search, shared (every chain indexed above) vs local index of one chain.
  const auditDir = path.join(lastDir, 'audit');
  searchIndexed(auditDir, { user: 'user7' }); // build the local index first
  const tl = performance.now();
  const local = searchIndexed(auditDir, { user: 'user7', target: 'db7', limit: 1000 });
  const localMs = performance.now() - tl;
  const ts = performance.now();
  const shared = await searchShared(chains, { user: 'user7', target: 'db7', replica: `copy-${ROUNDS - 1}`, limit: 1000 });
  const sharedMs = performance.now() - ts;
  const f = (x: number) => Math.round(x).toLocaleString('en');
  console.log(`events per run: ${N}, rounds: ${ROUNDS}`);
  console.log(`append rate without follower: ${f(median(without))}/s; with the shared-index follower copying meanwhile: ${f(median(withF))}/s; ratio ${(median(withF) / median(without)).toFixed(3)}`);
  console.log(`copy into PostgreSQL (reindex rate): ${f(median(copy))} records/s`);
  console.log(`search user+target, newest 1000: local index ${local.length} records in ${localMs.toFixed(0)} ms; shared index ${shared.records.length} records in ${sharedMs.toFixed(0)} ms`);
  await store.close();
  fs.rmSync(base, { recursive: true, force: true });
} finally {
  delete process.env.VIGIL_BENCH_STORE_URL;
  await pg.stop();
}
