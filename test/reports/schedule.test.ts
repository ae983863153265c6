import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseSchedule } from '../../recorder/reports/cron.ts';
import { parseConfig } from '../../app/config.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import type { ReportModel } from '../../recorder/reports/model.ts';

const at = (iso: string) => new Date(iso);
const next = (expr: string, after: string) => parseSchedule(expr).next(at(after))?.toISOString();

describe('report schedules: 5-field cron in UTC, keywords, @every', () => {
  it('finds the next run time', () => {
    expect(next('0 6 1 * *', '2026-12-06T04:00:00Z')).toBe('2027-01-01T06:00:00.000Z');
    expect(next('*/15 * * * *', '2026-12-06T04:07:30Z')).toBe('2026-12-06T04:15:00.000Z');
    expect(next('30 9 * * mon-fri', '2026-12-05T10:00:00Z')).toBe('2026-12-07T09:30:00.000Z'); // Sat → Mon
    expect(next('0 0 * * 7', '2026-12-06T00:00:00Z')).toBe('2026-12-13T00:00:00.000Z'); // 7 is Sunday; strictly after
    expect(next('0 12 13 * 5', '2026-12-01T00:00:00Z')).toBe('2026-12-04T12:00:00.000Z'); // day 13 OR Friday
    expect(next('0 0 29 feb *', '2026-03-01T00:00:00Z')).toBe('2028-02-29T00:00:00.000Z');
    expect(next('0 8-18/5 * jun,dec *', '2026-12-06T09:00:00Z')).toBe('2026-12-06T13:00:00.000Z');
    expect(next('@weekly', '2026-12-06T12:00:00Z')).toBe('2026-12-07T00:00:00.000Z');
    expect(next('@daily', '2026-12-06T12:00:00Z')).toBe('2026-12-07T00:00:00.000Z');
    expect(next('@every 90m', '2026-12-06T12:00:00Z')).toBe('2026-12-06T13:30:00.000Z');
  });

  it('refuses what it cannot read, and the config says which schedule is wrong', () => {
    for (const bad of ['0 6 1 *', '61 * * * *', '0 0 31 feb *', '@yearly', '@every 10ms', '5-1 * * * *', '*/0 * * * *']) expect(() => parseSchedule(bad), bad).toThrow();
    expect(() => parseConfig({ reports: { schedules: [{ name: 'm', schedule: '0 25 * * *' }] } }, tempDir())).toThrow(/reports\.schedules\[0\]\.schedule: hour: "25"/);
    expect(() => parseConfig({ reports: { schedules: [{ name: 'm', schedule: '@daily' }, { name: 'm', schedule: '@weekly' }] } }, tempDir())).toThrow(/used twice/);
    const ok = parseConfig({ reports: { schedules: [{ name: 'monthly', schedule: '0 6 1 * *' }] } }, tempDir());
    expect(ok.reports.schedules[0]).toEqual({ name: 'monthly', schedule: '0 6 1 * *', period: 30 * 86_400_000, format: 'html' });
  });
});

describe('scheduled reports in a running gateway', () => {
  let tg: TestGateway;
  afterAll(async () => {
    await tg?.stop();
  });

  it('a schedule that fires writes the report into data/reports and records report.generated with its hash', async () => {
    tg = await startTestGateway({
      ssh: { enabled: false }, postgres: { enabled: false }, mysql: { enabled: false },
      reports: { schedules: [{ name: 'review', schedule: '@every 2s', period: '1d', format: 'json' }] },
    });
    const alice = await tg.issue({ user: 'alice', roles: [] });
    // The first run is due two seconds after start; alice's certificate was issued before it.
    const ev = await tg.waitForEvent((e) => e.type === 'report.generated' && e.outcome === 'success' && Date.parse(e.details.until as string) > alice.creds.notBefore.getTime() + 1000, 90_000);
    expect(ev.actor.user).toBe('vigil');
    const file = ev.details.out as string;
    expect(path.dirname(file)).toBe(path.join(tg.dataDir, 'reports'));
    expect(path.basename(file)).toMatch(/^review-\d{8}T\d{6}Z\.json$/);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const text = fs.readFileSync(file, 'utf8');
    expect(crypto.createHash('sha256').update(text).digest('hex')).toBe(ev.details.sha256);
    const model = JSON.parse(text) as ReportModel;
    expect(model.kind).toBe('vigil.access-review');
    expect(Date.parse(model.period.until) - Date.parse(model.period.since)).toBe(86_400_000);
    expect(model.period).toEqual({ since: ev.details.since, until: ev.details.until });
    expect(model.certificates.map((c) => c.serial)).toContain(alice.creds.serial);
    // Reading a log that its own writer is appending to: signed up to the last checkpoint, honest about the rest.
    expect(['unsealed-tail', 'unwitnessed']).toContain(model.verification.status);
    expect(model.verification.checkpoint?.seq).toBeGreaterThan(0);
    // And it keeps firing.
    await tg.waitForEvent((e) => e.type === 'report.generated' && e.outcome === 'success' && e.details.out !== file, 90_000);
    expect(fs.readdirSync(path.join(tg.dataDir, 'reports')).filter((f) => f.startsWith('review-')).length).toBeGreaterThanOrEqual(2);
  }, 240_000);

  it('vigil report access while the gateway holds the log: the file, and its report.generated through the spool', async () => {
    const bad = await runCliCaptured(['report', 'access', '--format', 'pdf', '--data', tg.dataDir]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--format: expected html, md, json');
    const backwards = await runCliCaptured(['report', 'access', '--since', '1h', '--until', '2h', '--data', tg.dataDir]);
    expect(backwards.code).toBe(2);

    const out = path.join(tempDir(), 'review.md');
    const r = await runCliCaptured(['report', 'access', '--since', '1d', '--format', 'md', '--out', out, '--data', tg.dataDir]);
    expect(r.code, r.err).toBe(0);
    expect(fs.statSync(out).mode & 0o777).toBe(0o600);
    const text = fs.readFileSync(out, 'utf8');
    expect(text).toMatch(/^# Access review /);
    const ev = await tg.waitForEvent((e) => e.type === 'report.generated' && e.details.out === out, 15_000);
    expect(ev.details).toMatchObject({ format: 'md', sha256: crypto.createHash('sha256').update(text).digest('hex'), bytes: Buffer.byteLength(text) });
    expect(ev.source.via).toMatch(/^cli:/);
  }, 60_000);
});

/**
 * A scheduled report's period ends at the time its run was due, not when its timer fired or the previous
 * run finished: anchored on either, each window slid by the timer's lateness and the run's duration, and
 * consecutive reports left gaps between them.
 */
describe('scheduled reports: consecutive periods meet', () => {
  let tg: TestGateway;
  afterAll(async () => {
    await tg?.stop();
  });

  it('with a period equal to the interval, each report starts where the one before ended', async () => {
    tg = await startTestGateway({
      ssh: { enabled: false }, postgres: { enabled: false }, mysql: { enabled: false },
      reports: { schedules: [{ name: 'contiguous', schedule: '@every 2s', period: '2s', format: 'json' }] },
    });
    const runs = await waitFor(() => {
      const done = tg.events.filter((e) => e.type === 'report.generated' && e.details.name === 'contiguous');
      return done.length >= 3 ? done.slice(0, 3) : undefined;
    }, 120_000, 'three scheduled reports');
    for (const r of runs) expect(r.outcome, String(r.details.error)).toBe('success');
    const periods = runs.map((r) => ({ since: r.details.since as string, until: r.details.until as string, out: r.details.out as string }));
    for (const p of periods) expect(Date.parse(p.until) - Date.parse(p.since)).toBe(2000);
    expect(periods[1].since).toBe(periods[0].until);
    expect(periods[2].since).toBe(periods[1].until);
    // The file is named after the time the run was due.
    for (const p of periods) expect(path.basename(p.out)).toBe(`contiguous-${p.until.replace(/[-:]/g, '').replace(/\.\d{3}/, '')}.json`);
    const model = JSON.parse(fs.readFileSync(periods[2].out, 'utf8')) as ReportModel;
    expect(model.period).toEqual({ since: periods[2].since, until: periods[2].until });
  }, 180_000);
});
