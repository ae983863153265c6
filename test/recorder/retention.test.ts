import fs from 'node:fs';
import path from 'node:path';
import { describe, it, expect, afterEach, vi } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { parseConfig } from '../../app/config.ts';
import { initIdentity } from '../../src/identity/ca.ts';
import { openAuditLog, listSegments, searchAuditLog } from '../../recorder/audit/index.ts';
import { ANCHOR_FILE, type AnchorFile } from '../../recorder/audit/anchor.ts';
import { ceilingFor, holdFor, planPurge, applyPurge, purgeEntry } from '../../recorder/retention/purge.ts';
import { startDailyPurge } from '../../src/gateway/retention.ts';
import { EventBus } from '../../src/events/bus.ts';
import { openStateStore } from '../../src/store/index.ts';
import { dataPaths } from '../../src/data-dir.ts';
import { silentLogger } from '../../src/log.ts';
import { auditOptions, sampleEvent } from './helpers.ts';
import { runCliCaptured } from '../support/cli.ts';

const DAY = 86_400_000;

const cli = (...args: string[]) => runCliCaptured(args);

/**
 * A data dir whose log holds 60 db.query events of sessions S0..S5 (ten each) over ~8 segments, and two
 * recordings. Retention: floor 90d, default 100d, db.query 30d (below the floor: the floor wins).
 */
async function setup(retention = ['  floor: 90d', '  default: 100d', '  db.query: 30d', '  recordings: 100d']) {
  const base = tempDir('vigil-retention-');
  const dataDir = path.join(base, 'data');
  const configPath = path.join(base, 'vigil.yaml');
  fs.writeFileSync(configPath, [`data_dir: ${dataDir}`, 'retention:', ...retention, ''].join('\n'));
  await initIdentity(dataDir, parseConfig({ data_dir: dataDir }, base));
  const audit = path.join(dataDir, 'audit');
  const w = await openAuditLog(audit, auditOptions(path.join(dataDir, 'ca', 'audit_signing.key'), { segmentMaxBytes: 4000 }));
  for (let i = 0; i < 60; i++) await w.append(sampleEvent(i, { session_id: `S${Math.floor(i / 10)}` }));
  await w.close();
  for (const s of ['S1', 'S3']) {
    fs.mkdirSync(path.join(dataDir, 'recordings', s), { recursive: true });
    fs.writeFileSync(path.join(dataDir, 'recordings', s, 'ch0.cast'), '{"version":2,"width":80,"height":24,"timestamp":0}\n');
  }
  return { dataDir, configPath, audit, c: (...a: string[]) => cli(...a, '--config', configPath) };
}

/** Run `fn` with the wall clock moved `days` ahead (Date only; timers keep running). */
async function later<T>(days: number, fn: () => Promise<T>): Promise<T> {
  vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + days * DAY });
  try {
    return await fn();
  } finally {
    vi.useRealTimers();
  }
}

afterEach(() => vi.useRealTimers());

async function events(audit: string, type?: string) {
  return (await searchAuditLog(audit, { type })).records.map((r) => r.event);
}

describe('retention policy', () => {
  it('longest class prefix wins, never below the floor; checkpoints follow the floor', () => {
    const p = { floorMs: 90 * DAY, defaultMs: 400 * DAY, classes: { db: 200 * DAY, 'db.query': 100 * DAY, ssh: 10 * DAY } };
    expect(ceilingFor(p, 'db.query.start')).toBe(100 * DAY);
    expect(ceilingFor(p, 'db.cancel')).toBe(200 * DAY);
    expect(ceilingFor(p, 'dbx.other')).toBe(400 * DAY);
    expect(ceilingFor(p, 'ssh.exec')).toBe(90 * DAY);
    expect(ceilingFor(p, 'audit.checkpoint')).toBe(90 * DAY);
  });

  it('a hold matches on every field it gives, the time window inclusive', () => {
    const ev = { type: 'db.query', time: '2026-03-01T12:00:00.000000Z', actor: { user: 'alice' }, target: { name: 'orders-db' }, session_id: 'S1' };
    const h = (over: object) => [{ id: 'h', ...over }];
    expect(holdFor(ev, h({ user: 'alice' }))).toBeDefined();
    expect(holdFor(ev, h({ user: 'alice', target: 'billing-db' }))).toBeUndefined();
    expect(holdFor(ev, h({ target: 'orders-db', since: '2026-03-01T12:00:00.000Z', until: '2026-03-02T00:00:00Z' }))).toBeDefined();
    expect(holdFor(ev, h({ since: '2026-03-01T12:00:00.001Z' }))).toBeUndefined();
    expect(holdFor(ev, h({ until: '2026-03-01T11:59:59Z' }))).toBeUndefined();
    expect(holdFor(ev, h({ session: 'S2' }))).toBeUndefined();
  });

  it('a hold on a user also keeps what others did to them: approvals of their requests, locks and certificates made for them', () => {
    const at = { time: '2026-03-01T12:00:00.000000Z' };
    const approved = { ...at, type: 'access.approved', actor: { user: 'bob' }, target: { name: 'grant/G1' }, details: { user: 'alice', role: 'dba' } };
    const locked = { ...at, type: 'lock.created', actor: { user: 'admin' }, target: { name: 'user/alice' }, details: { user: 'alice' } };
    const unrelated = { ...at, type: 'lock.created', actor: { user: 'admin' }, target: { name: 'user/carol' }, details: { user: 'carol' } };
    const held = [{ id: 'h', user: 'alice' }];
    expect(holdFor(approved, held)).toBeDefined();
    expect(holdFor(locked, held)).toBeDefined();
    expect(holdFor(unrelated, held)).toBeUndefined();
    // Only the exact name: user/alice2 is someone else.
    expect(holdFor({ ...locked, target: { name: 'user/alice2' }, details: { user: 'alice2' } }, held)).toBeUndefined();
  });

  it('a floor below 90d is a config error', () => {
    expect(() => parseConfig({ retention: { floor: '30d' } }, tempDir())).toThrow(/at least 90d/);
    expect(() => parseConfig({ retention: { 'db.qurey': '30d' } }, tempDir())).toThrow(/db\.qurey/);
    expect(parseConfig({ retention: { db: '120d', 'db.query': '100d' } }, tempDir()).retention).toMatchObject({ db: 120 * DAY, 'db.query': 100 * DAY, floor: 90 * DAY });
  });
});

describe('vigil audit purge', () => {
  it('dry-run changes nothing; a purge removes old segments, anchors the rest, and verify exits as before', async () => {
    const { audit, dataDir, c } = await setup();
    const before = await c('audit', 'verify');
    expect(before.code).toBe(3);
    const segments = listSegments(audit);
    expect(segments.length).toBeGreaterThan(4);
    const snapshot = () => fs.readdirSync(audit).sort().map((n) => [n, fs.statSync(path.join(audit, n)).isFile() ? fs.readFileSync(path.join(audit, n), 'utf8') : 'dir']);
    const files = snapshot();

    const dry = await later(120, () => c('audit', 'purge', '--dry-run'));
    expect(dry.code).toBe(0);
    expect(dry.out).toMatch(/would purge \d+ segment/);
    expect(dry.out).toContain('would purge the recordings of 2 session(s)');
    expect(snapshot()).toEqual(files);
    expect(fs.existsSync(path.join(dataDir, 'recordings', 'S1'))).toBe(true);

    const res = await later(120, () => c('audit', 'purge', '--reason', 'PCI 10.5.1'));
    expect(res.err).toBe('');
    expect(res.code).toBe(0);
    const kept = listSegments(audit);
    // Everything but the newest segment of the earlier writer went; the purge's own writer added one more.
    expect(kept[0]).toBe(segments[segments.length - 1]);
    expect(fs.existsSync(path.join(dataDir, 'recordings', 'S1'))).toBe(false);
    expect(fs.existsSync(path.join(dataDir, 'recordings', 'S3'))).toBe(false);

    const after = await c('audit', 'verify');
    expect(after.err).toBe('');
    expect(after.code).toBe(before.code);

    const [purged] = await events(audit, 'audit.purged');
    const anchor = JSON.parse(fs.readFileSync(path.join(audit, ANCHOR_FILE), 'utf8')) as AnchorFile;
    expect(purged.details).toMatchObject({ reason: 'PCI 10.5.1', segments: segments.slice(0, -1), first_seq: 1, recording_sessions: ['S1', 'S3'] });
    expect(anchor.purges).toEqual([expect.objectContaining({ segments: segments.slice(0, -1), first_seq: 1, last_seq: purged.details.last_seq })]);
    expect(JSON.parse(anchor.record).seq).toBe(purged.details.last_seq);

    // A purge interrupted after anchoring leaves old segments behind: verify skips them, the next purge removes them.
    const [leftName, leftText] = files.find(([n]) => n === segments[0])!;
    fs.writeFileSync(path.join(audit, leftName), leftText);
    expect((await c('audit', 'verify')).code).toBe(before.code);
    expect((await later(120, () => c('audit', 'purge'))).code).toBe(0);
    expect(fs.existsSync(path.join(audit, leftName))).toBe(false);
    expect((await c('audit', 'verify')).code).toBe(before.code);

    // The anchor is what vouches for the kept chain: altering it is detected.
    const forged = { ...anchor, record: anchor.record.replace('"reason":"rotate"', '"reason":"count"') };
    fs.writeFileSync(path.join(audit, ANCHOR_FILE), JSON.stringify(forged));
    const tampered = await c('audit', 'verify');
    expect(tampered.code).toBe(1);
    expect(tampered.err).toContain('bad-anchor');
    // And without the anchor the kept log starts mid-chain: also invalid.
    fs.rmSync(path.join(audit, ANCHOR_FILE));
    const missing = await c('audit', 'verify');
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('segment-missing');
  });

  it('the floor wins over a shorter ceiling: nothing younger than 90d goes', async () => {
    const { audit, c } = await setup(['  floor: 90d', '  default: 1d', '  recordings: 1d']);
    const segments = listSegments(audit);
    const res = await later(60, () => c('audit', 'purge'));
    expect(res.code).toBe(0);
    expect(res.out).toContain('no audit segment is past its retention');
    expect(listSegments(audit)).toEqual(segments);
    expect(await events(audit, 'audit.purged')).toEqual([]);
  });

  it('a legal hold keeps its segments (and everything after) until released; hold events are written', async () => {
    const { audit, dataDir, c } = await setup();
    const add = await c('hold', 'add', '--session', 'S3', '--reason', 'litigation 2026-17', '--by', 'counsel');
    expect(add.code).toBe(0);
    const id = add.out.trim();
    expect((await c('hold', 'add', '--reason', 'no filter')).code).toBe(2);
    expect((await c('hold', 'add', '--user', 'alice')).code).toBe(2);
    const list = await c('hold', 'list');
    expect(list.out).toContain(`${id}  active  session=S3  by counsel`);

    const res = await later(120, () => c('audit', 'purge'));
    expect(res.code).toBe(0);
    expect(res.out).toContain(`under legal hold ${id}`);
    const held = (await events(audit)).filter((e) => e.session_id === 'S3');
    expect(held).toHaveLength(10);
    expect((await events(audit)).some((e) => e.session_id === 'S0')).toBe(false);
    expect(fs.existsSync(path.join(dataDir, 'recordings', 'S3'))).toBe(true);
    expect(fs.existsSync(path.join(dataDir, 'recordings', 'S1'))).toBe(false);
    expect((await c('audit', 'verify')).code).toBe(3);

    expect((await c('hold', 'release', id, '--reason', 'case closed', '--by', 'counsel')).code).toBe(0);
    expect((await c('hold', 'list')).out).toBe('');
    expect((await c('hold', 'list', '--all')).out).toContain(`${id}  released`);
    const again = await later(120, () => c('audit', 'purge'));
    expect(again.code).toBe(0);
    expect((await events(audit)).some((e) => e.session_id === 'S3')).toBe(false);
    expect(fs.existsSync(path.join(dataDir, 'recordings', 'S3'))).toBe(false);
    // A second purge keeps verifying from the newer anchor; the anchor keeps the history of both.
    expect((await c('audit', 'verify')).code).toBe(3);
    const anchor = JSON.parse(fs.readFileSync(path.join(audit, ANCHOR_FILE), 'utf8')) as AnchorFile;
    expect(anchor.purges).toHaveLength(2);

    const holdEvents = await events(audit, 'hold.');
    expect(holdEvents.map((e) => [e.type, e.actor.user, e.details.reason])).toEqual([
      ['hold.added', 'counsel', 'litigation 2026-17'],
      ['hold.released', 'counsel', 'litigation 2026-17'],
    ]);
    expect(holdEvents[1].details).toMatchObject({ hold_id: id, session: 'S3', release_reason: 'case closed' });
  });

  it('an anchor made from a real seal but without a recorded purge is detected (the log was cut, not purged)', async () => {
    const { audit, c } = await setup();
    const segments = listSegments(audit);
    const seal = fs.readFileSync(path.join(audit, segments[1]), 'utf8').trimEnd().split('\n').pop()!;
    fs.writeFileSync(path.join(audit, ANCHOR_FILE), JSON.stringify({ version: 1, record: seal, purges: [] }));
    for (const s of segments.slice(0, 2)) fs.rmSync(path.join(audit, s));
    const res = await c('audit', 'verify');
    expect(res.code).toBe(1);
    expect(res.err).toContain('outside vigil audit purge');
  });

  it('a hold on a user keeps their events and the recordings of their sessions', async () => {
    const { audit, dataDir, c } = await setup();
    expect((await c('hold', 'add', '--user', 'alice', '--reason', 'HR case')).code).toBe(0);
    const segments = listSegments(audit);
    const res = await later(120, () => c('audit', 'purge'));
    expect(res.code).toBe(0);
    expect(res.out).toContain('no audit segment is past its retention');
    expect(listSegments(audit)[0]).toBe(segments[0]);
    expect(fs.existsSync(path.join(dataDir, 'recordings', 'S1'))).toBe(true);
    expect(fs.existsSync(path.join(dataDir, 'recordings', 'S3'))).toBe(true);
  });

  it('a purge planned earlier with a shorter prefix never moves the anchor back', async () => {
    const { audit } = await setup();
    const policy = { floorMs: 90 * DAY, defaultMs: 100 * DAY, classes: {} };
    const now = Date.now() + 120 * DAY;
    const long = planPurge(audit, policy, [], now);
    const short = planPurge(audit, policy, [{ id: 'h', session: 'S3' }], now);
    expect(short.segments.length).toBeLessThan(long.segments.length);
    applyPurge(audit, long, purgeEntry(long, 'a', new Date(now))!);
    applyPurge(audit, short, purgeEntry(short, 'b', new Date(now))!);
    const anchor = JSON.parse(fs.readFileSync(path.join(audit, ANCHOR_FILE), 'utf8')) as AnchorFile;
    expect(JSON.parse(anchor.record).seq).toBe(long.segments[long.segments.length - 1].lastSeq);
    expect(anchor.purges.map((p) => p.reason)).toEqual(['a', 'b']);
  });

  it('refuses to purge a log that does not verify', async () => {
    const { audit, c } = await setup();
    const file = path.join(audit, listSegments(audit)[1]);
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('"outcome":"success"', '"outcome":"failure"'));
    const segments = listSegments(audit);
    const res = await later(120, () => c('audit', 'purge'));
    expect(res.code).toBe(1);
    expect(res.err).toContain('refused');
    expect(listSegments(audit)).toEqual(segments);
  });
});

describe('the gateway daily purge', () => {
  it('purges through the running writer, records audit.purged, and the log still verifies', async () => {
    const { audit, dataDir, configPath, c } = await setup();
    const before = await c('audit', 'verify');
    const config = parseConfig({ data_dir: dataDir, retention: { floor: '90d', default: '100d', auto_purge: true } }, path.dirname(configPath));
    expect(config.retention.auto_purge).toBe(true);
    const writer = await openAuditLog(audit, auditOptions(path.join(dataDir, 'ca', 'audit_signing.key'), { segmentMaxBytes: 4000 }));
    const store = await openStateStore(dataDir);
    const job = startDailyPurge({ config, store, events: new EventBus(writer), log: silentLogger(), paths: dataPaths(dataDir) }, { firstAfterMs: 3_600_000 });
    const segments = listSegments(audit);
    const res = await later(120, () => job.runOnce());
    await job.stop();
    await writer.close();
    await store.close();
    expect(res?.status).toBe('purged');
    expect(listSegments(audit)[0]).toBe(segments[segments.length - 1]);
    const [purged] = await events(audit, 'audit.purged');
    expect(purged).toMatchObject({ actor: { user: 'vigil' }, details: { reason: 'retention (daily)', first_seq: 1 } });
    expect((await c('audit', 'verify')).code).toBe(before.code);
  });
});
