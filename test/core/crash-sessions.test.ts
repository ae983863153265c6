import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { describe, it, expect, afterAll } from 'vitest';
import { tempDir, waitFor } from '../support/tmp.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { searchAuditLog } from '../../recorder/audit/index.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const VIGIL = path.join(ROOT, 'bin/vigil.js');

/** `vigil serve` as its own process; resolves with its ports once it runs. */
async function serve(cfg: string): Promise<{ child: ChildProcess; ports: Record<string, number>; exited: Promise<NodeJS.Signals | number | null> }> {
  const child = spawn(process.execPath, [VIGIL, 'serve', '--config', cfg], { env: { ...process.env, VIGIL_LOG_JSON: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, sig) => resolve(sig ?? code)));
  const running = await waitFor(() => out.split('\n').find((l) => l.includes('vigil gateway running')), 60_000, `gateway start: ${out}`);
  return { child, ports: JSON.parse(running).ports, exited };
}

describe('crash recovery of sessions', () => {
  let pg: PostgresHandle;
  const children: ChildProcess[] = [];
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await pg?.stop();
  });

  it('kill -9 with a psql session open: after the restart the session has session.end reason gateway_crash', async () => {
    pg = await startPostgres();
    const dir = tempDir();
    const cfg = path.join(dir, 'vigil.yaml');
    fs.writeFileSync(
      cfg,
      [
        'data_dir: data',
        'api:', '  listen: 127.0.0.1:0',
        'ssh:', '  enabled: false',
        'mysql:', '  enabled: false',
        'postgres:', '  listen: 127.0.0.1:0',
        'targets:', `  - { name: pg, protocol: postgres, host: 127.0.0.1, port: ${pg.port}, database: app, user: trust_user }`,
        'roles:', '  - { name: dba, targets: [pg] }',
        '',
      ].join('\n'),
    );
    const first = await serve(cfg);
    children.push(first.child);
    const out = path.join(dir, 'creds');
    const issued = spawnSync(process.execPath, [VIGIL, 'cert', 'issue', '--config', cfg, '--user', 'alice', '--roles', 'dba', '--out', out], { encoding: 'utf8' });
    expect(issued.stderr).toBe('');
    const conn = `host=127.0.0.1 port=${first.ports.postgres} dbname=pg user=alice sslmode=verify-full sslrootcert=${out}/ca.crt sslcert=${out}/alice.crt sslkey=${out}/alice.key`;
    const psql = spawn('psql', ['-X', '-At', '-d', conn, '-c', 'select pg_sleep(600)'], { stdio: 'ignore' });
    children.push(psql);
    const auditDir = path.join(dir, 'data', 'audit');
    const start = await waitFor(async () => (await searchAuditLog(auditDir, { type: 'session.start', user: 'alice' })).records[0], 30_000, 'session.start');

    first.child.kill('SIGKILL');
    expect(await first.exited).toBe('SIGKILL');
    psql.kill('SIGKILL');

    const second = await serve(cfg);
    children.push(second.child);
    const { records } = await searchAuditLog(auditDir, { session: start.event.session_id });
    const end = records.find((r) => r.event.type === 'session.end');
    expect(end?.event).toMatchObject({ outcome: 'failure', actor: { user: 'alice' }, target: { name: 'pg' }, details: { reason: 'gateway_crash' } });
    // Written at startup, before the gateway accepted anything, and exactly once.
    const started = (await searchAuditLog(auditDir, { type: 'gateway.started' })).records.at(-1)!;
    expect(end!.seq).toBeLessThan(started.seq);
    expect(records.filter((r) => r.event.type === 'session.end')).toHaveLength(1);

    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    // A clean close leaves nothing to end: a third start adds no session.end.
    const third = await serve(cfg);
    children.push(third.child);
    third.child.kill('SIGTERM');
    expect(await third.exited).toBe(0);
    expect((await searchAuditLog(auditDir, { type: 'session.end' })).records).toHaveLength(1);
  });
});
