import fs from 'node:fs';
import path from 'node:path';
import { describe, it, expect, afterAll } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { dataPaths } from '../../src/data-dir.ts';
import { openAuditLog } from '../../recorder/audit/index.ts';
import { parseConfig } from '../../app/config.ts';
import { initIdentity } from '../../src/identity/ca.ts';
import { verifyBundle } from '../../recorder/bundle/index.ts';
import type { ReportModel } from '../../recorder/reports/model.ts';
import { auditOptions, sampleEvent } from './helpers.ts';

/**
 * Period edges as auditors write them: November is `--until 2026-11-30T23:59:59Z` and December starts at
 * `--since 2026-12-01T00:00:00Z`. Event times have microseconds, so an --until read as 23:59:59.000000
 * would leave an event at 23:59:59.4 in neither period. A real audit log in a temp data dir, the vigil CLI.
 */

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

async function logWithEdgeEvents() {
  const base = tempDir('vigil-until-');
  dirs.push(base);
  const dataDir = path.join(base, 'data');
  await initIdentity(dataDir, parseConfig({ data_dir: dataDir }, base));
  const w = await openAuditLog(dataPaths(dataDir).audit, auditOptions(dataPaths(dataDir).auditSigningKey));
  // One event well inside November (the bundle's start boundary is the log's start), one in the last
  // second of November, one just after midnight.
  await w.append(sampleEvent(1, { time: new Date('2026-11-30T12:00:00.000Z'), session_id: 'S-mid' }));
  await w.append(sampleEvent(2, { type: 'ssh.exec', target: { name: 'web1', protocol: 'ssh' }, session_id: 'S-edge', time: new Date('2026-11-30T23:59:59.400Z'), details: { command: 'rm -rf /srv/old-data', exit_status: 0 } }));
  await w.append(sampleEvent(3, { time: new Date('2026-12-01T00:00:00.200Z'), session_id: 'S-dec' }));
  // Closing seals the log with a checkpoint (dated now, after both periods).
  await w.close();
  return { base, dataDir };
}

describe('an inclusive --until at second precision covers its whole last second', () => {
  it('audit bundle: the event at 23:59:59.4 is in November\'s bundle, which verifies; December\'s starts after it', async () => {
    const { base, dataDir } = await logWithEdgeEvents();
    const nov = path.join(base, 'nov.tar');
    const made = await runCliCaptured(['audit', 'bundle', '--data', dataDir, '--since', '2026-11-01T00:00:00Z', '--until', '2026-11-30T23:59:59Z', '--out', nov]);
    expect(made.code, made.err).toBe(0);
    const v = await verifyBundle(nov);
    expect(v.problems).toEqual([]);
    expect(v.manifest!.range).toEqual({ since: '2026-11-01T00:00:00.000000Z', until: '2026-11-30T23:59:59.999999Z' });
    const novSessions = v.manifest!.range_seq;
    expect(novSessions).toEqual({ first: 1, last: 2 });

    const dec = path.join(base, 'dec.tar');
    const madeDec = await runCliCaptured(['audit', 'bundle', '--data', dataDir, '--since', '2026-12-01T00:00:00Z', '--until', '2026-12-01', '--out', dec]);
    expect(madeDec.code, madeDec.err).toBe(0);
    const vd = await verifyBundle(dec);
    expect(vd.problems).toEqual([]);
    // A bare date is the whole UTC day.
    expect(vd.manifest!.range.until).toBe('2026-12-01T23:59:59.999999Z');
    expect(vd.manifest!.range_seq).toEqual({ first: 3, last: 3 });
  });

  it('report access: the change at 23:59:59.4 is in the November report', async () => {
    const { dataDir } = await logWithEdgeEvents();
    const r = await runCliCaptured(['report', 'access', '--data', dataDir, '--since', '2026-11-01T00:00:00Z', '--until', '2026-11-30T23:59:59Z', '--format', 'json']);
    expect(r.code, r.err).toBe(0);
    const model = JSON.parse(r.out) as ReportModel;
    expect(model.period.until).toBe('2026-11-30T23:59:59.999999Z');
    expect(model.changes.map((c) => [c.time, c.text])).toEqual([['2026-11-30T23:59:59.400000Z', 'rm -rf /srv/old-data']]);
    expect(model.summary.events).toBe(2);
    const dec = JSON.parse((await runCliCaptured(['report', 'access', '--data', dataDir, '--since', '2026-12-01T00:00:00Z', '--until', '2026-12-01T23:59:59Z', '--format', 'json'])).out) as ReportModel;
    expect(dec.summary.events).toBe(1);
    expect(dec.changes).toEqual([]);
  });

  it('a time of day without a zone is refused (it would be read in the host\'s zone), naming the fix', async () => {
    const { base, dataDir } = await logWithEdgeEvents();
    const out = path.join(base, 'zoneless.tar');
    const b = await runCliCaptured(['audit', 'bundle', '--data', dataDir, '--since', '2026-11-01T00:00:00', '--until', '2026-11-30T23:59:59Z', '--out', out]);
    expect(b.code).toBe(2);
    expect(b.err).toContain('--since: "2026-11-01T00:00:00" has no time zone; add Z for UTC');
    expect(fs.existsSync(out)).toBe(false);
    const r = await runCliCaptured(['report', 'access', '--data', dataDir, '--since', '2026-11-01T00:00:00Z', '--until', '2026-11-30T23:59:59', '--format', 'json']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('--until: "2026-11-30T23:59:59" has no time zone');
  });

  it('audit search and export read --since/--until the same way: the event at 23:59:59.4 is November\'s, zone-less times are refused', async () => {
    const { dataDir } = await logWithEdgeEvents();
    const times = (out: string) => out.trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { event?: { time: string }; time?: string }).event?.time ?? (JSON.parse(l) as { time: string }).time);
    for (const cmd of [['audit', 'search', '--json'], ['audit', 'export', '--format', 'jsonl']]) {
      const nov = await runCliCaptured([...cmd, '--data', dataDir, '--since', '2026-11-30T00:00:00Z', '--until', '2026-11-30T23:59:59Z']);
      expect(nov.code, nov.err).toBe(0);
      expect(times(nov.out)).toEqual(['2026-11-30T12:00:00.000000Z', '2026-11-30T23:59:59.400000Z']);
      const dec = await runCliCaptured([...cmd, '--data', dataDir, '--since', '2026-12-01T00:00:00Z', '--until', '2026-12-01']);
      expect(dec.code, dec.err).toBe(0);
      expect(times(dec.out)).toEqual(['2026-12-01T00:00:00.200000Z']);
      const zoneless = await runCliCaptured([...cmd, '--data', dataDir, '--since', '2026-11-30T00:00:00']);
      expect(zoneless.code).toBe(2);
      expect(zoneless.err).toContain('has no time zone');
    }
  });
});
