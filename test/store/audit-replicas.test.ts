import { spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { clientEnv, PASSWORDS, startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { runCliCaptured } from '../support/cli.ts';
import { ConsoleClient, ensureConsole } from '../support/console.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { makeSigningKey, auditOptions, sampleEvent } from '../recorder/helpers.ts';
import { openStateStore, type StateStore } from '../../src/store/index.ts';
import { openAuditLog } from '../../recorder/audit/index.ts';
import { SharedIndexer } from '../../recorder/audit/shared-index.ts';
import { verifySharedIndex } from '../../recorder/audit/verify-shared.ts';
import { runPurge } from '../../recorder/retention/run.ts';
import { startCuttableRelay, type CuttableRelay } from '../support/cuttable-relay.ts';
import { startReplica } from '../support/replicas.ts';

/**
 * The audit log across replicas: two in-process gateways on one PostgreSQL store, each with its own chain
 * in its own data dir, each copying its signed records into the shared index. Search, verify and reindex
 * run as the CLI on each replica's data dir (and search once through B's console API). The store is
 * reached through a TCP relay the test cuts, to see the index catch up after an outage.
 */

let target: PostgresHandle;
let storeDb: PostgresHandle;
let relay: CuttableRelay;
let a: TestGateway;
let b: TestGateway;
let alice: IssuedFiles;
let ada: IssuedFiles;
let cfgA: string;
let cfgB: string;
let idA: string;
let idB: string;
let direct: StateStore;
const URL_ENV = 'VIGIL_TEST_AUDIT_REPLICA_URL';
const DIRECT_ENV = 'VIGIL_TEST_AUDIT_REPLICA_DIRECT_URL';
const SCHEMA = 'auditrep';
const storeConfig = { kind: 'postgres', url: { env: URL_ENV }, schema: SCHEMA };
const run = Math.random().toString(36).slice(2, 8);

const gatewayConfig = () => ({
  store: storeConfig,
  // Short intervals: records are signed and indexed within a fraction of a second.
  audit: { checkpoint_interval: '200ms', index: { interval: '200ms' } },
  targets: [{ name: 'pg-dev', protocol: 'postgres', host: '127.0.0.1', port: target.port, database: 'app', user: 'trust_user', labels: { env: 'dev' } }],
  roles: [{ name: 'engineer', target_labels: { env: 'dev' }, logins: ['*'] }, { name: 'auditor' }, { name: 'admin' }],
});

beforeAll(async () => {
  [target, storeDb] = await Promise.all([startPostgres(), startPostgres()]);
  relay = await startCuttableRelay(storeDb.port);
  process.env[URL_ENV] = `postgres://scram_user:${PASSWORDS.scram_user}@127.0.0.1:${relay.port}/app?sslmode=disable`;
  // The test's own connection, not through the relay (it stays up while the gateways' store is cut).
  process.env[DIRECT_ENV] = `postgres://scram_user:${PASSWORDS.scram_user}@127.0.0.1:${storeDb.port}/app?sslmode=disable`;
  const baseA = tempDir('vigil-auditrep-a-');
  a = await startTestGateway(gatewayConfig(), baseA);
  b = await startReplica(a, gatewayConfig(), 'vigil-auditrep-b-');
  const baseB = path.dirname(b.dataDir);
  [alice, ada] = await Promise.all([a.issue({ user: 'alice', roles: ['engineer'] }), a.issue({ user: 'ada', roles: ['admin'] })]);
  // The CLI on each replica's host: its own config names the same store.
  cfgA = path.join(baseA, 'cli.json');
  cfgB = path.join(baseB, 'cli.json');
  fs.writeFileSync(cfgA, JSON.stringify({ data_dir: a.dataDir, store: storeConfig }));
  fs.writeFileSync(cfgB, JSON.stringify({ data_dir: b.dataDir, store: storeConfig }));
  idA = fs.readFileSync(path.join(a.dataDir, 'replica-id'), 'utf8').trim();
  idB = fs.readFileSync(path.join(b.dataDir, 'replica-id'), 'utf8').trim();
  direct = await openStateStore(tempDir(), { kind: 'postgres', url: { env: DIRECT_ENV }, schema: SCHEMA });
}, 180_000);

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await direct?.close();
  await relay?.down();
  delete process.env[URL_ENV];
  delete process.env[DIRECT_ENV];
  await Promise.all([target?.stop(), storeDb?.stop()]);
});

function psql(gw: TestGateway, who: IssuedFiles, sql: string): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(
    'psql',
    ['-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-d', `host=127.0.0.1 port=${gw.ports.postgres} dbname=pg-dev user=${who.creds.user} sslmode=verify-full sslrootcert=${who.ca} sslcert=${who.crt} sslkey=${who.key}`, '-c', sql],
    { stdio: ['ignore', 'pipe', 'pipe'], env: clientEnv() },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((r) => child.once('close', (code) => (clearTimeout(timer), r({ code, out, err }))));
}

interface Found {
  replica: string;
  type: string;
  details: Record<string, unknown>;
  [k: string]: unknown;
}

async function search(cfg: string, ...filters: string[]): Promise<Found[]> {
  const r = await runCliCaptured(['audit', 'search', '--json', '--config', cfg, ...filters]);
  expect(r.code, r.err).toBe(0);
  return r.out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Found);
}

function metrics(gw: TestGateway): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.request(`https://127.0.0.1:${gw.ports.api}/metrics`, { ca: fs.readFileSync(ada.ca), cert: fs.readFileSync(ada.crt), key: fs.readFileSync(ada.key), agent: false }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end();
  });
}

const sqlOf = (f: Found) => String(f.details.sql ?? f.details.statement ?? '');

describe('the audit log across replicas on one PostgreSQL store', () => {
  it('events of sessions on A and on B are found by search on A and on B (CLI and console API), by replica too', async () => {
    const onA = await psql(a, alice, `SELECT 'marka${run}'`);
    const onB = await psql(b, alice, `SELECT 'markb${run}'`);
    expect(onA.code, onA.err).toBe(0);
    expect(onB.code, onB.err).toBe(0);
    for (const cfg of [cfgA, cfgB]) {
      // Each replica's statement, found on both replicas: by full text, and by filters.
      for (const [mark, id] of [[`marka${run}`, idA], [`markb${run}`, idB]]) {
        const hits = await waitFor(async () => {
          const r = await search(cfg, '--text', mark);
          return r.length > 0 ? r : undefined;
        }, 20_000, `${mark} found through ${cfg}`);
        expect(hits.map((h) => [h.replica, h.type])).toEqual([[id, 'db.query']]);
        expect(sqlOf(hits[0])).toContain(mark);
      }
      const both = await search(cfg, '--user', 'alice', '--type', 'db.query');
      expect(new Set(both.map((h) => h.replica))).toEqual(new Set([idA, idB]));
    }
    const onlyA = await search(cfgB, '--user', 'alice', '--type', 'db.query', '--replica', idA);
    expect(onlyA.length).toBeGreaterThan(0);
    expect(onlyA.every((h) => h.replica === idA)).toBe(true);
    // --local: only the data dir's own log, as without replicas.
    const localB = await search(cfgB, '--user', 'alice', '--type', 'db.query', '--local');
    expect(localB.some((h) => sqlOf(h).includes(`markb${run}`)) && !localB.some((h) => sqlOf(h).includes(`marka${run}`))).toBe(true);

    // Export on B and the access report on A cover both replicas too.
    const exp = await runCliCaptured(['audit', 'export', '--format', 'jsonl', '--user', 'alice', '--type', 'db.query', '--config', cfgB]);
    expect(exp.code, exp.err).toBe(0);
    expect(exp.out).toContain(`marka${run}`);
    expect(exp.out).toContain(`markb${run}`);
    const rep = await runCliCaptured(['report', 'access', '--format', 'json', '--since', '1h', '--config', cfgA]);
    expect(rep.code, rep.err).toBe(0);
    const model = JSON.parse(rep.out) as { summary: { sessions: number }; verification: { shared_index?: { chains: string[]; ok: boolean; problem?: string } } };
    expect(model.verification.shared_index, model.verification.shared_index?.problem).toMatchObject({ ok: true, chains: expect.arrayContaining([idA, idB]) });
    expect(model.summary.sessions).toBe(2); // alice's psql session on A and the one on B
    // The console's report (run in a worker thread, like the scheduled ones) reads the same store and index.
    const { accessReport } = await import('../../src/console/report.ts');
    const viaConsole = await waitFor(async () => {
      const r = JSON.parse((await accessReport(a.gw.services, new Date(Date.now() - 3600_000), new Date(), 'json')).text) as typeof model;
      return r.summary.sessions === 2 ? r : undefined; // B's session reaches the index within about a second
    }, 20_000, "the console report to include B's session");
    expect(viaConsole.verification.shared_index).toMatchObject({ ok: true, chains: expect.arrayContaining([idA, idB]) });

    // The console API of B answers with A's events too, each naming its replica.
    await ensureConsole();
    const c = new ConsoleClient(`https://127.0.0.1:${b.ports.api}`, ada.creds.caCertificate, { cert: ada.creds.x509Certificate, key: ada.creds.x509PrivateKey });
    expect((await c.signIn()).status).toBe(200);
    const r = await c.get('/console/api/events?user=alice&type=db.query');
    expect(r.status).toBe(200);
    const events = r.body.events as { replica: string; details: Record<string, unknown> }[];
    expect(events.find((e) => String(e.details.sql).includes(`marka${run}`))?.replica).toBe(idA);
    expect(events.find((e) => String(e.details.sql).includes(`markb${run}`))?.replica).toBe(idB);

    // Lag on /metrics, per replica.
    const m = await metrics(a);
    expect(m).toMatch(new RegExp(`vigil_audit_shared_index_lag_events\\{replica="${idA}"\\} \\d+`));
    expect(m).toMatch(new RegExp(`vigil_audit_shared_index_up\\{replica="${idA}"\\} 1`));
  }, 60_000);

  it('verify checks every registered chain, and detects a tampered row, a removed row and a chain that diverged', async () => {
    await psql(b, alice, `SELECT 'tamper${run}'`);
    await waitFor(async () => (await search(cfgA, '--text', `tamper${run}`)).length === 1, 20_000, 'B statement indexed');
    const ok = await runCliCaptured(['audit', 'verify', '--config', cfgA]);
    expect(ok.code, ok.err + ok.out).toBe(3); // local chain intact, completeness not witnessed; every shared chain ok
    expect(ok.out).toContain(`shared index ok: chain ${idA}`);
    expect(ok.out).toContain(`shared index ok: chain ${idB}`);
    expect(ok.out).toMatch(/matches this replica's log/);

    // A row of B's chain edited in the database: found from A.
    storeDb.psql(`UPDATE ${SCHEMA}.audit_events SET event = replace(event, 'tamper${run}', 'tamperX${run}') WHERE replica = '${idB}' AND event LIKE '%tamper${run}%'`);
    const tampered = await runCliCaptured(['audit', 'verify', '--config', cfgA]);
    expect(tampered.code).toBe(1);
    expect(tampered.err).toMatch(new RegExp(`shared index INVALID: chain ${idB}[^\\n]*\\n[^\\n]*hash-mismatch`));
    // …and the search, which still finds the row by its (unchanged) text column, leaves it out rather than
    // show edited bytes.
    const s = await runCliCaptured(['audit', 'search', '--json', '--config', cfgA, '--text', `tamper${run}`]);
    expect(s.out).toBe('');
    expect(s.err).toMatch(/1 indexed record\(s\) left out/);
    storeDb.psql(`UPDATE ${SCHEMA}.audit_events SET event = replace(event, 'tamperX${run}', 'tamper${run}') WHERE replica = '${idB}' AND event LIKE '%tamperX${run}%'`);
    expect((await runCliCaptured(['audit', 'verify', '--config', cfgA])).code).toBe(3);

    // A row of A's chain removed: found from B; A's reindex restores it.
    storeDb.psql(`DELETE FROM ${SCHEMA}.audit_events WHERE replica = '${idA}' AND seq = (SELECT min(seq) + 2 FROM ${SCHEMA}.audit_events WHERE replica = '${idA}')`);
    const removed = await runCliCaptured(['audit', 'verify', '--config', cfgB]);
    expect(removed.code).toBe(1);
    expect(removed.err).toMatch(new RegExp(`shared index INVALID: chain ${idA}[^\\n]*\\n[^\\n]*records-missing`));
    const re = await runCliCaptured(['audit', 'reindex', '--config', cfgA]);
    expect(re.code, re.err).toBe(0);
    expect(re.out).toMatch(new RegExp(`shared index rebuilt for replica ${idA}: \\d+ signed record`));
    expect((await runCliCaptured(['audit', 'verify', '--config', cfgB])).code).toBe(3);

    // A chain that diverges: a data dir indexed, then replaced by another chain under the same replica id
    // (restored from elsewhere and continued). Its indexer stops and marks it; verify names it.
    const dir = tempDir('vigil-auditrep-d-');
    const key = makeSigningKey(dir);
    const writeChain = async (n: number, tag: string) => {
      fs.rmSync(path.join(dir, 'audit'), { recursive: true, force: true });
      const log = await openAuditLog(path.join(dir, 'audit'), auditOptions(key.keyFile));
      for (let i = 0; i < n; i++) await log.append(sampleEvent(i, { details: { statement: `${tag} ${i}` } }));
      await log.close();
    };
    const local = { auditDir: path.join(dir, 'audit'), replica: `restored-${run}`, publicKeyPem: key.publicPem };
    await writeChain(5, 'first');
    const first = await new SharedIndexer(direct.auditChains!, local).sync(100);
    expect(first.added).toBeGreaterThan(5);
    expect((await verifySharedIndex(direct.auditChains!, local)).ok).toBe(true);
    await writeChain(8, 'second');
    expect((await verifySharedIndex(direct.auditChains!, local)).local).toMatchObject({ ok: false, firstBad: { kind: 'diverged' } });
    const again = await new SharedIndexer(direct.auditChains!, local).sync(100);
    expect(again.diverged?.seq).toBeGreaterThan(0);
    const diverged = await runCliCaptured(['audit', 'verify', '--config', cfgA]);
    expect(diverged.code).toBe(1);
    expect(diverged.err).toMatch(new RegExp(`shared index INVALID: chain restored-${run}[^\\n]*\\n[^\\n]*diverged`));
    expect(diverged.out).toContain(`shared index ok: chain ${idA}`);
    // Rebuilt from the chain it has now, it verifies again.
    storeDb.psql(`DELETE FROM ${SCHEMA}.audit_events WHERE replica = 'restored-${run}'; DELETE FROM ${SCHEMA}.audit_chains WHERE replica = 'restored-${run}'`);
  }, 60_000);

  it('the index catches up after the store was cut and restored, resuming from its head in the database', async () => {
    const follower = a.gw.services.sharedAuditIndex!;
    await waitFor(() => follower.lag().up, 20_000, 'A indexing');
    await relay.down();
    try {
      // Sessions are refused while the store is away: each refusal is an event of A's chain.
      const refused = await psql(a, alice, `SELECT 'outage${run}'`);
      expect(refused.code).not.toBe(0);
      await a.waitForEvent((e) => e.type === 'auth.failure' && e.details.reason === 'store_unavailable', 15_000);
      await waitFor(() => !follower.lag().up && follower.lag().lagEvents > 0, 20_000, 'lag reported while the store is away');
      // Search on A still answers from A's own log, and says that is all it is.
      const alone = await runCliCaptured(['audit', 'search', '--json', '--type', 'auth.failure', '--config', cfgA]);
      expect(alone.code, alone.err).toBe(0);
      expect(alone.err).toMatch(/shared index is unavailable.*searching this replica's log only/);
      expect(alone.out).toContain('store_unavailable');
    } finally {
      await relay.up();
    }
    const failure = await waitFor(async () => {
      const r = await search(cfgB, '--type', 'auth.failure', '--replica', idA);
      return r.find((e) => e.details.reason === 'store_unavailable');
    }, 30_000, "A's outage events found on B");
    expect(failure.replica).toBe(idA);
    await waitFor(() => follower.lag().up, 20_000, 'A indexing again');
    const m = await metrics(a);
    expect(m).toMatch(new RegExp(`vigil_audit_shared_index_up\\{replica="${idA}"\\} 1`));
    const ok = await runCliCaptured(['audit', 'verify', '--config', cfgB]);
    expect(ok.code, ok.err).toBe(3);
    const status = await runCliCaptured(['audit', 'index', 'status', '--config', cfgB]);
    expect(status.out).toMatch(new RegExp(`shared index: chain ${idA} on .*: indexed up to seq \\d+`));
    expect(status.out).toContain(`shared index: chain ${idB} (this data dir)`);
  }, 60_000);

  it('a chain over many rotated segments is copied whole, in batches, resuming where it stopped across writer restarts', async () => {
    const dir = tempDir('vigil-auditrep-rot-');
    const key = makeSigningKey(dir);
    const auditDir = path.join(dir, 'audit');
    const local = { auditDir, replica: `rotating-${run}`, publicKeyPem: key.publicPem };
    const chains = direct.auditChains!;
    const indexer = new SharedIndexer(chains, local);
    for (let round = 0; round < 3; round++) {
      // Small segments: the chain continues through several seals (next_segment) per round.
      const log = await openAuditLog(auditDir, auditOptions(key.keyFile, { segmentMaxBytes: 4096, checkpointEvery: 7 }));
      for (let i = 0; i < 60; i++) await log.append(sampleEvent(round * 100 + i));
      // Part of it while the writer is open (signed so far), in batches of 10; a fresh indexer in round 1
      // (finds its place from the head stored in the database), the same one otherwise.
      const part = await (round === 1 ? new SharedIndexer(chains, local) : indexer).sync(10, 25);
      expect(part.added).toBeGreaterThan(0);
      await log.close();
    }
    expect(fs.readdirSync(auditDir).filter((n) => n.endsWith('.jsonl')).length).toBeGreaterThan(10);
    const rest = await indexer.sync(10);
    expect(rest.caughtUp).toBe(true);
    const check = await verifySharedIndex(chains, local);
    const mine = check.chains.find((c) => c.replica === local.replica)!;
    expect(mine).toMatchObject({ ok: true, firstSeq: 1 });
    // Every record of the chain, the closing checkpoint last: the same seqs and hashes as on disk.
    expect(check.local).toMatchObject({ ok: true, notIndexed: 0 });
    expect(check.local!.compared).toBe(mine.lastSeq);
    expect(mine.rows).toBe(mine.lastSeq);
    storeDb.psql(`DELETE FROM ${SCHEMA}.audit_events WHERE replica = 'rotating-${run}'; DELETE FROM ${SCHEMA}.audit_chains WHERE replica = 'rotating-${run}'`);
  }, 60_000);

  it('a retention purge leaves the index too: its rows go with the audit.purged event; rows removed without one are found', async () => {
    const dir = tempDir('vigil-auditrep-purge-');
    const key = makeSigningKey(dir);
    const auditDir = path.join(dir, 'audit');
    const local = { auditDir, replica: `purging-${run}`, publicKeyPem: key.publicPem };
    const chains = direct.auditChains!;
    const log = await openAuditLog(auditDir, auditOptions(key.keyFile, { segmentMaxBytes: 4096, checkpointEvery: 7 }));
    for (let i = 0; i < 60; i++) await log.append(sampleEvent(i, { details: { statement: `SELECT 'old${run}' /* ${i} */` } }));
    const indexer = new SharedIndexer(chains, local);
    await indexer.sync(100);
    const oldSeqs = async () => (await chains.search({ replica: local.replica, text: `old${run}` })).map((r) => r.seq);
    expect(Math.min(...(await oldSeqs()))).toBe(1);
    // A year later (every sealed segment past its retention): the purge records audit.purged, then cuts.
    const res = await runPurge({
      auditDir, recordingsDir: path.join(dir, 'recordings'), publicKeyFile: key.pubFile, reason: 'test',
      policy: { floorMs: 0, defaultMs: 1000, classes: {} }, holds: async () => [], now: Date.now() + 365 * 86_400_000,
      record: (details) => log.append(sampleEvent(0, { type: 'audit.purged', details })),
    });
    expect(res.status).toBe('purged');
    const through = res.status === 'purged' ? res.entry!.last_seq : 0;
    expect(through).toBeGreaterThan(10);
    await log.close(); // signs the audit.purged event
    await indexer.sync(100);
    // The purged records are gone from the database as from the chain; what is left verifies.
    expect(Number(storeDb.psql(`SELECT min(seq) FROM ${SCHEMA}.audit_events WHERE replica = 'purging-${run}'`))).toBe(through + 1);
    const after = await verifySharedIndex(chains, local);
    expect(after.chains.find((c) => c.replica === local.replica)).toMatchObject({ ok: true, firstSeq: through + 1 });
    expect(after.local).toMatchObject({ ok: true });
    expect((await oldSeqs()).filter((seq) => seq <= through)).toEqual([]);
    // The same cut made in the database without a purge (the oldest rows of a chain deleted): found.
    const other = { auditDir: path.join(dir, 'audit2'), replica: `cut-${run}`, publicKeyPem: key.publicPem };
    const log2 = await openAuditLog(other.auditDir, auditOptions(key.keyFile, { checkpointEvery: 7 }));
    for (let i = 0; i < 30; i++) await log2.append(sampleEvent(i));
    await log2.close();
    await new SharedIndexer(chains, other).sync(100);
    expect((await verifySharedIndex(chains)).chains.find((c) => c.replica === other.replica)?.ok).toBe(true);
    storeDb.psql(`DELETE FROM ${SCHEMA}.audit_events WHERE replica = 'cut-${run}' AND seq <= 8`);
    expect((await verifySharedIndex(chains)).chains.find((c) => c.replica === other.replica)).toMatchObject({
      ok: false, firstSeq: 9, firstBad: { kind: 'records-missing', problem: 'rows 1..8 are missing from the index, and no audit.purged event says a retention purge removed them' },
    });
    storeDb.psql(`DELETE FROM ${SCHEMA}.audit_events WHERE replica IN ('cut-${run}', 'purging-${run}'); DELETE FROM ${SCHEMA}.audit_chains WHERE replica IN ('cut-${run}', 'purging-${run}')`);
  }, 60_000);

  it('a rebuild from the chains gives the same search results', async () => {
    await psql(a, alice, `SELECT 'rebuild${run}'`);
    await waitFor(async () => (await search(cfgB, '--text', `rebuild${run}`)).length === 1, 20_000, 'indexed');
    const until = new Date(Date.now() - 1).toISOString();
    // Everything written up to then signed and indexed on both replicas (a search on one replica sees the
    // other's records once signed): then the results before and after the rebuild can be compared.
    const heads = [a, b].map((g) => ({ f: g.gw.services.sharedAuditIndex!, seq: g.gw.services.sharedAuditIndex!.lag().chainSeq }));
    await waitFor(() => heads.every((h) => h.f.lag().indexedSeq >= h.seq), 20_000, 'both chains indexed up to now');
    const before = await search(cfgA, '--until', until);
    expect(new Set(before.map((e) => e.replica))).toEqual(new Set([idA, idB]));
    const rowsBefore = storeDb.psql(`SELECT count(*) FROM ${SCHEMA}.audit_events WHERE "time" <= '${until.replace('Z', '000Z')}'`);
    for (const cfg of [cfgA, cfgB]) {
      const r = await runCliCaptured(['audit', 'reindex', '--config', cfg]);
      expect(r.code, r.err).toBe(0);
    }
    expect(await search(cfgA, '--until', until)).toEqual(before);
    expect(await search(cfgB, '--until', until)).toEqual(before);
    expect(storeDb.psql(`SELECT count(*) FROM ${SCHEMA}.audit_events WHERE "time" <= '${until.replace('Z', '000Z')}'`)).toBe(rowsBefore);
  }, 60_000);
});
