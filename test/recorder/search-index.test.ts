import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, it, expect, afterEach, vi } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { createEvent, type AuditEvent } from '../../src/events/envelope.ts';
import { parseConfig } from '../../app/config.ts';
import { initIdentity } from '../../src/identity/ca.ts';
import { openAuditLog, listSegments, searchAuditLog, AuditIndex, INDEX_FILE, searchIndexed, searchIndexedStream, searchableText, type AuditQuery } from '../../recorder/audit/index.ts';
import { auditOptions, makeSigningKey, sampleEvent } from './helpers.ts';
import { startIndexFollower } from '../../recorder/audit/index-follower.ts';
import { searchPlan } from '../../recorder/audit/search-index.ts';
import { Metrics } from '../../src/metrics.ts';
import { EventBus } from '../../src/events/bus.ts';
import { SessionRegistry } from '../../src/sessions/registry.ts';
import { silentLogger } from '../../src/log.ts';
import { waitFor } from '../support/tmp.ts';

const DAY = 86_400_000;
afterEach(() => vi.useRealTimers());

/** Event i of a mixed log: queries, shell commands, file operations, sessions, several users and targets. */
function mixedEvent(i: number): AuditEvent {
  const user = ['alice', 'bob', 'carol', "mallory'; DROP TABLE events; --"][i % 4];
  const base = {
    actor: { user, roles: ['dba'] },
    source: { ip: `10.0.0.${i % 5}`, port: 40000 + i },
    session_id: `S${Math.floor(i / 10)}`,
  };
  switch (i % 5) {
    case 0:
      return createEvent({ ...base, type: 'session.start', outcome: 'success', target: { name: i % 3 ? 'web-1' : 'orders-db', protocol: 'ssh' } });
    case 1:
      return createEvent({ ...base, type: 'ssh.exec', outcome: i % 7 ? 'success' : 'failure', target: { name: 'web-1', protocol: 'ssh' }, details: { command: i % 2 ? `systemctl restart nginx-${i}` : 'pg_dump -t "users" app' } });
    case 2:
      return createEvent({ ...base, type: 'ssh.sftp', outcome: 'success', target: { name: 'web-1', protocol: 'ssh' }, details: { channel: 0, op: 'rename', old_path: `/etc/app/conf-${i}.yaml`, new_path: '/etc/app/conf.yaml', result: 'ok' } });
    default:
      return sampleEvent(i, { actor: base.actor, session_id: base.session_id, details: { statement: i % 2 ? `UPDATE invoices SET paid = true WHERE id = ${i}` : `SELECT * FROM orders WHERE id = ${i}`, rows: 1 } });
  }
}

async function writeLog(audit: string, keyFile: string, from: number, to: number, over = {}) {
  const w = await openAuditLog(audit, auditOptions(keyFile, { segmentMaxBytes: 6000, ...over }));
  for (let i = from; i < to; i++) await w.append(mixedEvent(i));
  await w.close();
}

/** Every filter the CLI offers, alone and together, with and without limits. */
function queries(events: AuditEvent[]): AuditQuery[] {
  const times = events.map((e) => e.time).sort();
  const at = (f: number) => new Date(times[Math.floor(times.length * f)].replace(/(\.\d{3})\d{3}Z$/, '$1Z'));
  const qs: AuditQuery[] = [
    {},
    { hideCheckpoints: true },
    { type: 'audit' },
    { type: 'ssh.' },
    { type: 'ssh.exec' },
    { type: 'db.query', user: 'alice' },
    { user: 'bob' },
    { user: "mallory'; DROP TABLE events; --" },
    { user: 'nobody' },
    { target: 'web-1' },
    { target: 'orders-db', type: 'session.' },
    { session: 'S3' },
    { session: 'S7', user: 'carol' },
    { since: at(0.3) },
    { until: at(0.6) },
    { since: at(0.2), until: at(0.4), target: 'web-1' },
    { limit: 7 },
    { limit: 3, user: 'alice', hideCheckpoints: true },
    { limit: 1000 },
  ];
  return qs;
}

async function expectSameAsScan(audit: string, qs: AuditQuery[]) {
  for (const q of qs) {
    const scan = (await searchAuditLog(audit, q)).records;
    const indexed = searchIndexed(audit, q);
    expect(indexed, JSON.stringify(q)).toEqual(scan);
  }
}

async function allEvents(audit: string): Promise<AuditEvent[]> {
  return (await searchAuditLog(audit, {})).records.map((r) => r.event);
}

function indexDb(audit: string) {
  return new Database(path.join(audit, INDEX_FILE), { readonly: true });
}

describe('audit search index', () => {
  it('answers every filter exactly as the linear scan, and the CLI prints the same either way', async () => {
    const dir = tempDir('vigil-index-');
    const { keyFile } = makeSigningKey(path.join(dir, 'ca'));
    const audit = path.join(dir, 'audit');
    await writeLog(audit, keyFile, 0, 300);
    expect(listSegments(audit).length).toBeGreaterThan(5);
    const qs = queries(await allEvents(audit));
    await expectSameAsScan(audit, qs);
    // The plans a big log takes (newest N of a broad filter by walking seqs) give the same answers.
    const saved = { ...searchPlan };
    try {
      Object.assign(searchPlan, { broad: 5, probe: 5 });
      await expectSameAsScan(audit, qs);
    } finally {
      Object.assign(searchPlan, saved);
    }
    // Non-empty answers for the filters that should match something (an empty == empty check proves little).
    expect(searchIndexed(audit, { user: "mallory'; DROP TABLE events; --" }).length).toBe(75);
    expect(searchIndexed(audit, { session: 'S3' }).length).toBe(10);
    expect(fs.statSync(path.join(audit, INDEX_FILE)).mode & 0o777).toBe(0o600);

    fs.writeFileSync(path.join(dir, 'vigil.yaml'), `data_dir: ${dir}\n`);
    for (const args of [['--user', 'alice', '--type', 'db.'], ['--target', 'web-1', '--limit', '5'], ['--session', 'S2'], ['--type', 'audit']]) {
      const viaIndex = await runCliCaptured(['audit', 'search', '--json', ...args, '--config', path.join(dir, 'vigil.yaml')]);
      const viaScan = await runCliCaptured(['audit', 'search', '--json', '--scan', ...args, '--config', path.join(dir, 'vigil.yaml')]);
      expect(viaIndex.err).toBe('');
      expect(viaIndex.out.length).toBeGreaterThan(0);
      expect(viaIndex.out).toBe(viaScan.out);
    }
  });

  it('an index of schema 2 (one-column filter indexes) is upgraded in place to covering indexes, rows kept', async () => {
    const dir = tempDir('vigil-index-v2-');
    const { keyFile } = makeSigningKey(path.join(dir, 'ca'));
    const audit = path.join(dir, 'audit');
    await writeLog(audit, keyFile, 0, 120);
    const expected = searchIndexed(audit, { user: 'alice' }).map((r) => r.seq);
    expect(expected.length).toBeGreaterThan(0);
    // Turn it back into what schema 2 wrote.
    const db = new Database(path.join(audit, INDEX_FILE));
    for (const c of ['time', 'type', 'user', 'target', 'session']) db.exec(`DROP INDEX events_${c}; CREATE INDEX events_${c} ON events(${c});`);
    db.exec("UPDATE meta SET value = '2' WHERE key = 'version'");
    const rows = db.prepare('SELECT count(*) FROM events').pluck().get();
    db.close();

    expect(searchIndexed(audit, { user: 'alice' }).map((r) => r.seq)).toEqual(expected);
    const after = indexDb(audit);
    try {
      expect(after.prepare("SELECT value FROM meta WHERE key = 'version'").pluck().get()).toBe('3');
      expect(after.prepare('SELECT count(*) FROM events').pluck().get()).toBe(rows);
      for (const c of ['time', 'type', 'user', 'target', 'session']) {
        expect((after.prepare(`PRAGMA index_info(events_${c})`).all() as { name: string }[]).map((r) => r.name)).toEqual([c, 'seq', 'seg', 'off', 'len']);
      }
      // Answered from the index alone: no lookup in the events table.
      const plan = (after.prepare("EXPLAIN QUERY PLAN SELECT seq, seg, off, len FROM events WHERE user = 'alice' ORDER BY seq").all() as { detail: string }[]).map((r) => r.detail).join('; ');
      expect(plan).toContain('USING COVERING INDEX events_user');
      expect(plan).not.toContain('TEMP B-TREE');
    } finally {
      after.close();
    }
  });

  it('catches up incrementally from the last indexed record while the writer is still appending', async () => {
    const dir = tempDir('vigil-index-');
    const { keyFile } = makeSigningKey(path.join(dir, 'ca'));
    const audit = path.join(dir, 'audit');
    const w = await openAuditLog(audit, auditOptions(keyFile, { segmentMaxBytes: 6000, checkpointIntervalMs: 0, checkpointEvery: 1000 }));
    for (let i = 0; i < 40; i++) await w.append(mixedEvent(i));
    const index = AuditIndex.open(audit);
    const first = index.catchUp();
    expect(first.added).toBeGreaterThanOrEqual(40);
    expect(index.catchUp().added).toBe(0);
    for (let i = 40; i < 65; i++) await w.append(mixedEvent(i));
    const before = index.status();
    expect(before.chainSeq - before.indexedSeq).toBeGreaterThanOrEqual(25); // the lag
    // Only what was appended since is read (plus the checkpoints of the rotations in between).
    const second = index.catchUp({ maxRecords: 10 });
    expect(second.done).toBe(false);
    const rest = index.catchUp();
    expect(rest.done).toBe(true);
    expect(second.added + rest.added).toBe(before.chainSeq - before.indexedSeq);
    expect(index.status().indexedSeq).toBe(index.status().chainSeq);
    // A search from another process's point of view (a fresh open) sees the newest records without waiting.
    await w.append(mixedEvent(65));
    const hits = index.search({ session: 'S6' });
    expect(hits.map((r) => r.event.id)).toContain(hits.find((r) => r.seq === index.status().chainSeq)?.event.id);
    expect(hits.length).toBe(6);
    index.close();
    await w.close();
    await expectSameAsScan(audit, queries(await allEvents(audit)));
  });

  it('records indexed again over rows already there (the progress of a segment lost) replace them: no error, nothing doubled', async () => {
    // New records go in with a plain INSERT (no statement journal); ones whose seq the index already
    // holds must still take the replacing path, text included.
    const dir = tempDir('vigil-index-');
    const { keyFile } = makeSigningKey(path.join(dir, 'ca'));
    const audit = path.join(dir, 'audit');
    await writeLog(audit, keyFile, 0, 60);
    const index = AuditIndex.open(audit);
    index.catchUp();
    const total = index.status().records;
    const db = new Database(path.join(audit, INDEX_FILE));
    const textRows = () => db.prepare("SELECT count(*) FROM event_text WHERE event_text MATCH 'nginx OR orders OR invoices OR conf'").pluck().get() as number;
    const texts = textRows();
    expect(texts).toBeGreaterThan(10);
    // Every segment's progress forgotten: the next catch-up reads them all again from their first byte.
    db.prepare("UPDATE segments SET bytes = 0, last_line_start = 0, last_seq = 0, last_hash = ''").run();
    const again = index.catchUp();
    expect(again.added).toBe(total);
    expect(index.status().records).toBe(total);
    expect(textRows()).toBe(texts);
    db.close();
    index.close();
    await expectSameAsScan(audit, queries(await allEvents(audit)));
  });

  it('a deleted or damaged index is rebuilt from the chain; `audit index rebuild` and `status` report it', async () => {
    const dir = tempDir('vigil-index-');
    const { keyFile } = makeSigningKey(path.join(dir, 'ca'));
    const audit = path.join(dir, 'audit');
    await writeLog(audit, keyFile, 0, 120);
    const want = (await searchAuditLog(audit, { user: 'bob' })).records;
    expect(searchIndexed(audit, { user: 'bob' })).toEqual(want);
    AuditIndex.remove(audit);
    expect(fs.existsSync(path.join(audit, INDEX_FILE))).toBe(false);
    expect(searchIndexed(audit, { user: 'bob' })).toEqual(want);
    // Not a database at all.
    AuditIndex.remove(audit);
    fs.writeFileSync(path.join(audit, INDEX_FILE), 'this is not sqlite'.repeat(500));
    expect(searchIndexed(audit, { user: 'bob' })).toEqual(want);
    // Rows altered behind the index's back (offsets pointing at other records): the chain-side check
    // notices, and the answer still comes from the chain.
    const db = new Database(path.join(audit, INDEX_FILE));
    db.exec('UPDATE events SET off = (SELECT off FROM events e2 WHERE e2.seq = events.seq + 1) WHERE seq % 2 = 0 AND seq < (SELECT max(seq) FROM events)');
    db.close();
    expect(searchIndexed(audit, { user: 'bob' })).toEqual(want);
    const config = path.join(dir, 'vigil.yaml');
    fs.writeFileSync(config, `data_dir: ${dir}\n`);
    const rebuilt = await runCliCaptured(['audit', 'index', 'rebuild', '--config', config]);
    expect(rebuilt.err).toBe('');
    expect(rebuilt.out).toMatch(/search index rebuilt: \d+ records from \d+ segment\(s\)/);
    expect(searchIndexed(audit, { user: 'bob' })).toEqual(want);
    const status = await runCliCaptured(['audit', 'index', 'status', '--json', '--config', config]);
    const s = JSON.parse(status.out);
    expect(s).toMatchObject({ lag: 0 });
    expect(s.indexedSeq).toBe(s.chainSeq);
    expect(s.records).toBe(s.indexedSeq);
  });

  it('after a crash that cut back what the index had already read, the index follows the recovered chain', async () => {
    const dir = tempDir('vigil-index-');
    const { keyFile } = makeSigningKey(path.join(dir, 'ca'));
    const audit = path.join(dir, 'audit');
    const w = await openAuditLog(audit, auditOptions(keyFile, { segmentMaxBytes: 1 << 20, checkpointIntervalMs: 0 }));
    for (let i = 0; i < 50; i++) await w.append(mixedEvent(i));
    await w.checkpoint();
    for (let i = 50; i < 60; i++) await w.append(mixedEvent(i));
    // The index reads records the writer has written…
    expect(searchIndexed(audit, {}).length).toBe(61);
    // …then the machine crashes before some of them reached the disk: the file is shorter, a torn line at its end.
    const seg = path.join(audit, listSegments(audit).at(-1)!);
    const lines = fs.readFileSync(seg, 'utf8').split('\n');
    fs.writeFileSync(seg, lines.slice(0, 55).join('\n') + '\n' + lines[55].slice(0, 40));
    (w as unknown as { releaseLock(): void }).releaseLock?.();
    fs.rmSync(path.join(audit, 'writer.lock'), { force: true });
    // The next start quarantines the torn line, ends the crashed sessions and writes new records with the
    // seqs the index saw for the lost ones.
    const w2 = await openAuditLog(audit, auditOptions(keyFile, { segmentMaxBytes: 1 << 20, checkpointIntervalMs: 0 }));
    for (let i = 100; i < 104; i++) await w2.append(mixedEvent(i));
    await w2.close();
    const qs = queries(await allEvents(audit));
    await expectSameAsScan(audit, [...qs, { type: 'session.end' }]);
    expect(searchIndexed(audit, { type: 'session.end' }).some((r) => r.event.details.reason === 'gateway_crash')).toBe(true);
  });

  it('streamed: a segment cut back while a search is being read is followed, nothing given twice or out of order', async () => {
    const dir = tempDir('vigil-index-stream-');
    const { keyFile } = makeSigningKey(path.join(dir, 'ca'));
    const audit = path.join(dir, 'audit');
    await writeLog(audit, keyFile, 0, 200);
    const whole = searchIndexed(audit, {}).map((r) => r.seq);
    const saved = { ...searchPlan };
    Object.assign(searchPlan, { streamSlice: 16 });
    try {
      expect([...searchIndexedStream(audit, {})].map((r) => r.seq)).toEqual(whole);
      const stream = searchIndexedStream(audit, {});
      const got: number[] = [];
      for (let i = 0; i < 20; i++) got.push(stream.next().value!.seq);
      // The newest segment loses its second half (a crash cut it back) while the reader is at seq 20.
      const last = path.join(audit, listSegments(audit).at(-1)!);
      const lines = fs.readFileSync(last, 'utf8').split('\n').filter(Boolean);
      const kept = lines.slice(0, Math.ceil(lines.length / 2));
      fs.writeFileSync(last, kept.join('\n') + '\n');
      for (const r of { [Symbol.iterator]: () => stream }) got.push(r.seq);
      const lastKept = (JSON.parse(kept.at(-1)!) as { seq: number }).seq;
      expect(got).toEqual(whole.filter((seq) => seq <= lastKept));
    } finally {
      Object.assign(searchPlan, saved);
    }
  });

  it('full text: words, phrases, prefixes, boolean operators, combined with filters; bad syntax is a clear usage error', async () => {
    const dir = tempDir('vigil-index-');
    const { keyFile } = makeSigningKey(path.join(dir, 'ca'));
    const audit = path.join(dir, 'audit');
    await writeLog(audit, keyFile, 0, 200);
    const all = await allEvents(audit);
    const textOf = (e: AuditEvent) => [e.details.statement, e.details.command, e.details.old_path, e.details.new_path].filter((x) => typeof x === 'string').join('\n');
    const expectText = (text: string, pred: (t: string, e: AuditEvent) => boolean, q: AuditQuery = {}) => {
      const got = searchIndexed(audit, { ...q, text }).map((r) => r.event.id);
      const want = all.filter((e) => textOf(e) && pred(textOf(e), e) && (q.user === undefined || e.actor.user === q.user)).map((e) => e.id);
      expect(want.length, text).toBeGreaterThan(0);
      expect(got, text).toEqual(want);
    };
    expectText('invoices', (t) => /invoices/.test(t));
    expectText('"pg_dump -t"', (t) => t.includes('pg_dump -t'));
    expectText('nginx*', (t) => /nginx-/.test(t));
    expectText('orders OR invoices', (t) => /orders|invoices/.test(t));
    expectText('orders NOT "id = 3"', (t) => /orders/.test(t) && !/id = 3\b/.test(t));
    expectText('"conf.yaml"', (t) => t.includes('conf.yaml'));
    expectText('invoices', (t) => /invoices/.test(t), { user: 'bob' });
    // Text with a filter leaving many records: the text matches are walked instead of probed.
    const saved = { ...searchPlan };
    try {
      Object.assign(searchPlan, { probe: 3, broad: 3 });
      expectText('invoices', (t) => /invoices/.test(t), { user: 'bob' });
      expectText('nginx* OR "pg_dump"', (t) => /nginx-|pg_dump/.test(t), { user: 'alice' });
    } finally {
      Object.assign(searchPlan, saved);
    }
    expectText('nginx* OR "pg_dump"', (t) => /nginx-|pg_dump/.test(t), { user: 'alice' });

    const config = path.join(dir, 'vigil.yaml');
    fs.writeFileSync(config, `data_dir: ${dir}\n`);
    const ok = await runCliCaptured(['audit', 'search', '--text', 'restart nginx*', '--user', 'bob', '--config', config]);
    expect(ok.code).toBe(0);
    expect(ok.out.split('\n').filter((l) => l.includes('ssh.exec')).length).toBeGreaterThan(0);
    for (const bad of ['"unterminated', 'AND', 'orders NEAR(', "x'); DROP TABLE events; --", 'body:', '*']) {
      const r = await runCliCaptured(['audit', 'search', '--text', bad, '--config', config]);
      expect(r.code, bad).toBe(2);
      expect(r.err, bad).toMatch(/invalid --text query .*FTS5 syntax/);
      expect(r.err, bad).not.toMatch(/\n\s+at /); // no stack trace
    }
    // Quoted, the same characters are just text to look for; the index is intact after all of it.
    expect((await runCliCaptured(['audit', 'search', '--text', '"DROP TABLE events"', '--config', config])).code).toBe(0);
    expect(searchIndexed(audit, { text: 'invoices' }).length).toBeGreaterThan(0);
    expect((await runCliCaptured(['audit', 'search', '--text', 'x', '--scan', '--config', config])).code).toBe(2);
  });

  it('a retention purge removes the purged segments from the index too (rows and text), and search still equals the scan', async () => {
    const base = tempDir('vigil-index-purge-');
    const dataDir = path.join(base, 'data');
    const config = path.join(base, 'vigil.yaml');
    fs.writeFileSync(config, [`data_dir: ${dataDir}`, 'retention:', '  floor: 90d', '  default: 100d', ''].join('\n'));
    await initIdentity(dataDir, parseConfig({ data_dir: dataDir }, base));
    const audit = path.join(dataDir, 'audit');
    await writeLog(audit, path.join(dataDir, 'ca', 'audit_signing.key'), 0, 120);
    const segments = listSegments(audit);
    expect(searchIndexed(audit, { text: 'invoices' }).length).toBeGreaterThan(0);
    const purgedSeqs = searchIndexed(audit, {}).filter((r) => r.seq < Number(segments.at(-1)!.slice(4, 20)));
    expect(purgedSeqs.length).toBeGreaterThan(50);

    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 120 * DAY });
    const res = await runCliCaptured(['audit', 'purge', '--reason', 'test', '--config', config]);
    vi.useRealTimers();
    expect(res.err).toBe('');
    expect(listSegments(audit)[0]).toBe(segments.at(-1));
    // Straight after the purge (before any search): the index no longer holds the purged records or their text.
    const db = indexDb(audit);
    const maxPurged = purgedSeqs.at(-1)!.seq;
    expect(db.prepare('SELECT count(*) FROM events WHERE seq <= ?').pluck().get(maxPurged)).toBe(0);
    expect(db.prepare("SELECT count(*) FROM event_text WHERE event_text MATCH 'invoices' AND rowid <= ?").pluck().get(maxPurged)).toBe(0);
    db.close();
    // Nor in the file: terms only purged records had are gone from the full-text index's b-trees (checked
    // once newer records are indexed too, so the index is not simply empty).
    await writeLog(audit, path.join(dataDir, 'ca', 'audit_signing.key'), 300, 330);
    expect(searchIndexed(audit, { text: 'invoices' }).length).toBeGreaterThan(0);
    const v = new Database(path.join(audit, INDEX_FILE));
    v.exec('CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, event_text, row)');
    const terms = new Set(v.prepare('SELECT term FROM temp.vocab').pluck().all() as string[]);
    v.close();
    const tokens = (evs: AuditEvent[]) => new Set(evs.flatMap((e) => (searchableText(e) ?? '').toLowerCase().split(/[^a-z0-9]+/)));
    const kept = tokens(await allEvents(audit));
    const purgedOnly = [...tokens(purgedSeqs.map((r) => r.event))].filter((t) => t && !kept.has(t));
    expect(purgedOnly.length).toBeGreaterThan(10);
    for (const t of purgedOnly) expect(terms.has(t), t).toBe(false);
    const keptTerms = [...kept].filter((t) => t);
    expect(keptTerms.length).toBeGreaterThan(5);
    for (const t of keptTerms) expect(terms.has(t), t).toBe(true); // still there for the kept records
    await expectSameAsScan(audit, queries(await allEvents(audit)));
  });

  it('the gateway-side follower indexes committed records in the background, and /metrics shows its lag', async () => {
    const dir = tempDir('vigil-index-');
    const { keyFile } = makeSigningKey(path.join(dir, 'ca'));
    const audit = path.join(dir, 'audit');
    const w = await openAuditLog(audit, auditOptions(keyFile, { segmentMaxBytes: 6000 }));
    const follower = startIndexFollower({ auditDir: audit, intervalMs: 20, batch: 7, log: silentLogger() });
    const metrics = new Metrics(new EventBus(w, 'batched'), new SessionRegistry(), undefined, follower);
    try {
      for (let i = 0; i < 80; i++) await w.append(mixedEvent(i));
      await w.checkpoint();
      expect(follower.lag().chainSeq).toBeGreaterThan(80);
      await waitFor(() => follower.lag().lag === 0, 20_000, 'the follower to catch up');
      // Indexed without any search having run: the rows are in the file.
      const db = indexDb(audit);
      expect(db.prepare('SELECT max(seq) FROM events').pluck().get()).toBe(follower.lag().chainSeq);
      db.close();
      const text = metrics.render();
      expect(text).toContain('vigil_audit_index_lag_records 0');
      expect(text).toContain(`vigil_audit_index_seq ${follower.lag().chainSeq}`);
    } finally {
      await follower.stop();
      await w.close();
    }
    await expectSameAsScan(audit, queries(await allEvents(audit)));
  });
});
