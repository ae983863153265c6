import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { describe, it, expect, afterAll } from 'vitest';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { searchAuditLog } from '../../recorder/audit/index.ts';

const VIGIL = path.resolve(import.meta.dirname, '../../bin/vigil.js');

describe('crash recovery of sessions', () => {
  let pg: PostgresHandle;
  const gateways: GatewayProcess[] = [];
  let psql: ChildProcess | undefined;
  afterAll(async () => {
    for (const g of gateways) await g.kill('SIGKILL');
    psql?.kill('SIGKILL');
    await pg?.stop();
  });

  it('kill -9 with a psql session open: after the restart the session has session.end reason gateway_crash', async () => {
    pg = await startPostgres();
    const dir = tempDir();
    const config = {
      ssh: { enabled: false },
      mysql: { enabled: false },
      targets: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user' }],
      roles: [{ name: 'dba', targets: ['pg'] }],
    };
    const serve = async () => {
      const g = await startGatewayProcess(config, dir);
      gateways.push(g);
      return g;
    };
    const first = await serve();
    const cfg = first.configFile;
    const out = path.join(dir, 'creds');
    const issued = spawnSync(process.execPath, [VIGIL, 'cert', 'issue', '--config', cfg, '--user', 'alice', '--roles', 'dba', '--out', out], { encoding: 'utf8' });
    expect(issued.stderr).toBe('');
    const conn = `host=127.0.0.1 port=${first.ports.postgres} dbname=pg user=alice sslmode=verify-full sslrootcert=${out}/ca.crt sslcert=${out}/alice.crt sslkey=${out}/alice.key`;
    psql = spawn('psql', ['-X', '-At', '-d', conn, '-c', 'select pg_sleep(600)'], { stdio: 'ignore' });
    const auditDir = path.join(dir, 'data', 'audit');
    const start = await waitFor(async () => (await searchAuditLog(auditDir, { type: 'session.start', user: 'alice' })).records[0], 30_000, 'session.start');

    expect(await first.kill('SIGKILL')).toBe('SIGKILL');
    psql.kill('SIGKILL');

    const second = await serve();
    const { records } = await searchAuditLog(auditDir, { session: start.event.session_id });
    const end = records.find((r) => r.event.type === 'session.end');
    expect(end?.event).toMatchObject({ outcome: 'failure', actor: { user: 'alice' }, target: { name: 'pg' }, details: { reason: 'gateway_crash' } });
    // Written at startup, before the gateway accepted anything, and exactly once.
    const started = (await searchAuditLog(auditDir, { type: 'gateway.started' })).records.at(-1)!;
    expect(end!.seq).toBeLessThan(started.seq);
    expect(records.filter((r) => r.event.type === 'session.end')).toHaveLength(1);

    expect(await second.stop()).toBe(0);
    // A clean close leaves nothing to end: a third start adds no session.end.
    const third = await serve();
    expect(await third.stop()).toBe(0);
    expect((await searchAuditLog(auditDir, { type: 'session.end' })).records).toHaveLength(1);
  }, 180_000); // four gateway processes and a PostgreSQL start one after another: minutes on a loaded machine
});
