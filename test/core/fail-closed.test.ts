import fs from 'node:fs';
import path from 'node:path';
import { describe, it, expect, afterAll } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { segmentName } from '../../recorder/audit/record.ts';
import { run } from '../postgres/helpers.ts';
import { waitFor } from '../support/tmp.ts';

/**
 * No session runs unrecorded: once the audit log cannot be written (here: the next segment file lands on
 * /dev/full, so every write fails with ENOSPC, as on a full disk), the gateway refuses new sessions
 * with a clear error instead of serving them.
 */
describe('gateway fails closed when the audit log cannot be written', () => {
  let pg: PostgresHandle;
  let tg: TestGateway;
  afterAll(async () => {
    await tg?.stop();
    await pg?.stop();
  });

  it('refuses a new psql session with a clear error once the log is unwritable', async () => {
    pg = await startPostgres();
    tg = await startTestGateway({
      audit: { segment_max_bytes: 4096 },
      targets: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user' }],
      roles: [{ name: 'dba', targets: ['pg'] }],
    });
    const alice = await tg.issue({ user: 'alice', roles: ['dba'] });
    const conn = `host=127.0.0.1 port=${tg.ports.postgres} dbname=pg user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}`;

    const ok = await run('psql', ['-X', '-At', '-d', conn, '-c', 'select 41 + 1']);
    expect(ok.stdout.trim()).toBe('42');

    // Every segment the writer could rotate to next is a link to a full device.
    const auditDir = path.join(tg.dataDir, 'audit');
    for (let seq = 2; seq < 2000; seq++) {
      const p = path.join(auditDir, segmentName(seq, new Date()));
      if (!fs.existsSync(p)) fs.symlinkSync('/dev/full', p);
    }
    // Keep sessions coming until the writer has to rotate onto the full device.
    await waitFor(async () => {
      await run('psql', ['-X', '-At', '-d', conn, '-c', `select '${'x'.repeat(2000)}'`]);
      return !tg.gw.services.events.healthy;
    }, 30_000, 'the audit log to fail');

    const refused = await run('psql', ['-X', '-At', '-d', conn, '-c', 'select 1']);
    expect(refused.code).not.toBe(0);
    expect(refused.stdout).not.toContain('1');
    expect(refused.stderr).toMatch(/audit log/i);
    expect(tg.gw.services.sessions.size).toBe(0);
  });
});
