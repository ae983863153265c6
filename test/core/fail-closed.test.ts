import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, it, expect, afterAll } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { segmentName } from '../../recorder/audit/record.ts';
import { searchAuditLog, verifyAuditLog } from '../../recorder/audit/index.ts';
import { run } from '../postgres/helpers.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { fillFileSystem, healthStatus } from '../support/disk.ts';

const isRoot = process.getuid?.() === 0;


/**
 * No session runs unrecorded: once the audit log cannot be written, the gateway refuses new sessions with a
 * clear error instead of serving them (health 503) — and once it can write again it recovers by itself,
 * without a restart, writing an audit.outage event for the window.
 */
describe('gateway fails closed when the audit log cannot be written, and recovers by itself', () => {
  let pg: PostgresHandle;
  const stops: (() => Promise<void> | void)[] = [];
  afterAll(async () => {
    for (const s of stops.reverse()) await s();
    await pg?.stop();
  });

  async function gateway(base?: string): Promise<{ tg: TestGateway; psql: (sql: string) => ReturnType<typeof run> }> {
    pg ??= await startPostgres();
    const tg = await startTestGateway(
      {
        audit: { segment_max_bytes: 4096 },
        targets: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user' }],
        roles: [{ name: 'dba', targets: ['pg'] }],
      },
      base,
    );
    stops.push(() => tg.stop());
    const alice = await tg.issue({ user: 'alice', roles: ['dba'] });
    const conn = `host=127.0.0.1 port=${tg.ports.postgres} dbname=pg user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}`;
    return { tg, psql: (sql) => run('psql', ['-X', '-At', '-d', conn, '-c', sql]) };
  }

  async function expectRefusedThenRecovered(tg: TestGateway, psql: (sql: string) => ReturnType<typeof run>, freeSpace: () => void): Promise<void> {
    // Keep sessions coming until the writer fails.
    await waitFor(async () => {
      await psql(`select '${'x'.repeat(2000)}'`);
      return !tg.gw.services.events.healthy;
    }, 30_000, 'the audit log to fail');

    const refused = await psql('select 1');
    expect(refused.code).not.toBe(0);
    expect(refused.stdout).not.toContain('1');
    expect(refused.stderr).toMatch(/audit log/i);
    expect(tg.gw.services.sessions.size).toBe(0);
    expect(await healthStatus(tg)).toBe(503);

    freeSpace();
    await waitFor(() => tg.gw.services.events.healthy, 30_000, 'the audit log to recover without a restart');
    expect(await healthStatus(tg)).toBe(200);
    const ok = await psql('select 40 + 2');
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim()).toBe('42');

    const auditDir = path.join(tg.dataDir, 'audit');
    const { records } = await searchAuditLog(auditDir, { type: 'audit.outage' });
    expect(records).toHaveLength(1);
    const d = records[0].event.details;
    expect(d.reason).toMatch(/ENOSPC/);
    // The refused psql above never reached a backend and has no event of its own (the log was down): the
    // outage record counts it. events_refused is what failed in the write that started the outage; that
    // write can be the writer's own (a segment seal), so it may be 0.
    expect(d.sessions_refused).toBeGreaterThanOrEqual(1);
    expect(Date.parse(d.ended as string)).toBeGreaterThanOrEqual(Date.parse(d.started as string));
    expect(tg.events.some((e) => e.type === 'audit.outage')).toBe(true); // live observers hear of it too
    // The query after recovery is in the log, after the outage.
    const last = await waitFor(async () => (await searchAuditLog(auditDir, { type: 'db.query' })).records.find((r) => r.event.details.sql === 'select 40 + 2'), 10_000, 'the query to be durable');
    expect(last.seq).toBeGreaterThan(records[0].seq);
  }

  it('a segment on /dev/full (ENOSPC on every write): refuses psql, health 503; recovers once it is gone', async () => {
    const { tg, psql } = await gateway();
    const ok = await psql('select 41 + 1');
    expect(ok.stdout.trim()).toBe('42');
    // Every segment the writer could rotate to next is a link to a full device.
    const auditDir = path.join(tg.dataDir, 'audit');
    const links: string[] = [];
    for (let seq = 2; seq < 2000; seq++) {
      const p = path.join(auditDir, segmentName(seq, new Date()));
      if (!fs.existsSync(p)) fs.symlinkSync('/dev/full', p), links.push(p);
    }
    await expectRefusedThenRecovered(tg, psql, () => {
      for (const l of links) fs.rmSync(l, { force: true });
    });
  });

  it.skipIf(!isRoot)('a real full file system (tmpfs, size=1m; needs root to mount): refused, health 503, then recovery without restart', async () => {
    const base = tempDir();
    const auditDir = path.join(base, 'data', 'audit');
    fs.mkdirSync(auditDir, { recursive: true, mode: 0o700 });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', auditDir]);
    stops.unshift(() => void execFileSync('umount', ['-l', auditDir])); // after the gateway has stopped
    const { tg, psql } = await gateway(base);
    expect((await psql('select 41 + 1')).stdout.trim()).toBe('42');
    const filler = fillFileSystem(auditDir);
    await expectRefusedThenRecovered(tg, psql, () => fs.rmSync(filler));
    await tg.stop();
    expect(verifyAuditLog(auditDir, fs.readFileSync(path.join(tg.dataDir, 'ca', 'audit_signing.pub'))).firstBad).toBeUndefined();
  });
});
