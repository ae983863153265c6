import fs from 'node:fs';
import path from 'node:path';
import { describe, it, expect } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { createEvent } from '../../src/events/envelope.ts';
import { openAuditLog, listSegments, searchAuditLog, verifyAuditLog } from '../../recorder/audit/index.ts';
import { streamAuditRecords } from '../../recorder/export/stream.ts';
import { auditOptions, makeSigningKey } from './helpers.ts';

const T0 = Date.parse('2026-03-01T10:00:00Z');
/** The query of a time-bounded search, export or report that must find mallory's statement. */
const MARCH_1 = { user: 'mallory', since: new Date('2026-03-01T00:00:00Z'), until: new Date('2026-03-02T00:00:00Z') };

/**
 * A log of 30 statements on 2026-03-01, one a minute, over several sealed segments (each with its `.meta`);
 * statement 12 is mallory's. Returns the data dir, the audit dir and the sealed segment holding it.
 */
async function writtenLog(): Promise<{ data: string; audit: string; pub: Buffer; segment: string }> {
  const data = tempDir();
  const key = makeSigningKey(path.join(data, 'ca'));
  const audit = path.join(data, 'audit');
  const w = await openAuditLog(audit, auditOptions(key.keyFile, { segmentMaxBytes: 3000 }));
  for (let i = 0; i < 30; i++) {
    await w.append(createEvent({
      type: 'db.query', outcome: 'success', time: new Date(T0 + i * 60_000),
      actor: { user: i === 12 ? 'mallory' : 'alice', roles: [] }, source: { ip: '10.0.0.1' },
      target: { name: 'db', protocol: 'postgres' }, details: { sql: i === 12 ? 'DROP TABLE payroll' : 'SELECT 1' },
    }));
  }
  await w.close();
  const segments = listSegments(audit);
  const segment = segments.find((n) => fs.readFileSync(path.join(audit, n), 'utf8').includes('"mallory"'))!;
  expect(segments.indexOf(segment)).toBeLessThan(segments.length - 1); // sealed: it has a .meta
  expect(fs.existsSync(path.join(audit, `${segment}.meta`))).toBe(true);
  return { data, audit, pub: fs.readFileSync(key.pubFile), segment };
}

function editMeta(audit: string, segment: string, change: Record<string, unknown>): void {
  const file = path.join(audit, `${segment}.meta`);
  fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), ...change }) + '\n');
}

async function exported(audit: string, q: typeof MARCH_1): Promise<string[]> {
  const users: string[] = [];
  for await (const r of streamAuditRecords(audit, q)) users.push(r.event.actor.user);
  return users;
}

describe('a segment .meta edited to hide its events', () => {
  it('is reported by verify as bad-meta naming the segment (API and CLI exit 1)', async () => {
    const { data, audit, pub, segment } = await writtenLog();
    expect(verifyAuditLog(audit, pub)).toMatchObject({ ok: true, status: 'unwitnessed' });
    editMeta(audit, segment, { min_time: '2020-01-01T00:00:00.000000Z', max_time: '2020-01-01T00:00:00.000000Z' });
    const res = verifyAuditLog(audit, pub);
    expect(res).toMatchObject({ ok: false, status: 'invalid', firstBad: { kind: 'bad-meta', segment } });
    expect(res.firstBad!.problem).toContain(`${segment}.meta`);
    expect(res.firstBad!.problem).toContain('min_time "2020-01-01T00:00:00.000000Z"');
    const cli = await runCliCaptured(['audit', 'verify', '--data', data]);
    expect(cli.code).toBe(1);
    expect(cli.err).toMatch(/audit log INVALID: .*\.meta does not describe segment/);
    expect(cli.err).toContain('[bad-meta]');
  });

  it('is reported by verify when only its seq range is wrong', async () => {
    const { audit, pub, segment } = await writtenLog();
    editMeta(audit, segment, { last_seq: 1 });
    expect(verifyAuditLog(audit, pub).firstBad).toMatchObject({ kind: 'bad-meta', segment });
  });

  it('does not hide the events from a time-bounded scan search, export or report stream', async () => {
    const { data, audit, segment } = await writtenLog();
    expect((await searchAuditLog(audit, MARCH_1)).records.map((r) => r.event.actor.user)).toEqual(['mallory']);
    editMeta(audit, segment, { min_time: '2020-01-01T00:00:00.000000Z', max_time: '2020-01-01T00:00:00.000000Z' });
    const found = await searchAuditLog(audit, MARCH_1);
    expect(found.records.map((r) => r.event.details?.sql)).toEqual(['DROP TABLE payroll']);
    // streamAuditRecords is what `audit export` and the access report (reports/source.ts) read with.
    expect(await exported(audit, MARCH_1)).toEqual(['mallory']);
    const cli = await runCliCaptured(['audit', 'search', '--data', data, '--scan', '--json', '--user', 'mallory', '--since', '2026-03-01', '--until', '2026-03-01']);
    expect(cli.code).toBe(0);
    expect(cli.out).toContain('DROP TABLE payroll');
    const exp = await runCliCaptured(['audit', 'export', '--data', data, '--format', 'jsonl', '--user', 'mallory', '--since', '2026-03-01', '--until', '2026-03-01']);
    expect(exp.code).toBe(0);
    expect(exp.out).toContain('DROP TABLE payroll');
    // Moved later instead: the first record's time is before the claimed span, so the sidecar is not used.
    editMeta(audit, segment, { min_time: '2030-01-01T00:00:00.000000Z', max_time: '2030-01-01T00:00:00.000000Z' });
    expect((await searchAuditLog(audit, MARCH_1)).records).toHaveLength(1);
    expect(await exported(audit, MARCH_1)).toEqual(['mallory']);
  });

  it('an honest .meta still lets readers skip segments outside the range, with the same answer', async () => {
    const { audit, pub } = await writtenLog();
    // Every sealed segment ends with its seal (a checkpoint written now): only a range before all of a
    // segment's events lets it be skipped, so ask for the first minutes.
    const early = { since: new Date('2026-03-01T09:00:00Z'), until: new Date('2026-03-01T10:03:00Z') };
    const skipped = await searchAuditLog(audit, early);
    expect(skipped.segmentsSkipped).toBeGreaterThan(0);
    const all = (await searchAuditLog(audit, {})).records.filter((r) => r.event.time >= '2026-03-01T09:00:00' && r.event.time <= '2026-03-01T10:03:00.000999Z');
    expect(skipped.records.map((r) => r.seq)).toEqual(all.map((r) => r.seq));
    expect(skipped.records).toHaveLength(4);
    expect(verifyAuditLog(audit, pub)).toMatchObject({ ok: true, status: 'unwitnessed' });
  });
});
