import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type IssuedFiles } from '../support/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startPostgres, clientEnv, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { searchAuditLog } from '../../recorder/audit/read.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { spawnClient, gatewayWorkerPids, apiRequest, type ClientProcess } from '../support/workers.ts';

/**
 * `vigil serve` with gateway.workers: 2 when a worker stops answering (here: SIGSTOP, as a loop that never
 * yields or a blocking call that never returns would look from outside): the primary notices, kills it,
 * writes the gateway_crash end of its session and starts a replacement; the client is not left hanging.
 */
let pg: PostgresHandle;
let gp: GatewayProcess | undefined;
let base: string;
let alice: IssuedFiles, ada: IssuedFiles;
const clients: ClientProcess[] = [];
const stopped: number[] = [];

beforeAll(async () => {
  base = tempDir('vigil-workers-review-hang-');
  pg = await startPostgres();
  const config = {
    data_dir: path.join(base, 'data'),
    gateway: { workers: 2, shutdown_drain: '1s', drain_notice: '0s' },
    ssh: { enabled: false },
    mysql: { enabled: false },
    targets: [{ name: 'pg1', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user' }],
    roles: [{ name: 'engineer', targets: ['pg1'], databases: ['*'] }],
  };
  const tg = await startTestGateway(config, base);
  [alice, ada] = await Promise.all([tg.issue({ user: 'alice', roles: ['engineer'] }), tg.issue({ user: 'ada', roles: ['admin'] })]);
  await tg.stop();
  gp = await startGatewayProcess(config, base);
}, 180_000);

afterAll(async () => {
  for (const c of clients) c.child.kill('SIGKILL');
  for (const pid of stopped) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  await gp?.kill('SIGKILL');
  await pg?.stop();
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

const psql = (): ClientProcess =>
  spawnClient(clients, 'psql', ['-X', '-qAt', '-d', `host=127.0.0.1 port=${gp!.ports.postgres} dbname=pg1 user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}`], { env: clientEnv() });

interface SessionRow {
  id: string;
  user: string;
  worker_pid?: number;
}
const liveSessions = async (): Promise<SessionRow[]> => (await apiRequest(gp!.ports.api, ada, 'GET', '/v1/sessions?live=1')).body.sessions;

describe('gateway.workers: 2, a worker that stops answering', () => {
  it('is killed and replaced; its session ends as gateway_crash and its client is cut', async () => {
    const before = new Set((await liveSessions()).map((s) => s.id));
    const c = psql();
    c.child.stdin.write("BEGIN;\nSELECT 'in';\n");
    await waitFor(() => c.stdout().includes('in'), 30_000, 'answered');
    const row = await waitFor(async () => (await liveSessions()).find((s) => !before.has(s.id) && s.user === 'alice'), 20_000, 'the session listed');
    const hung = row.worker_pid!;
    expect(hung).toBeGreaterThan(0);

    stopped.push(hung);
    process.kill(hung, 'SIGSTOP');
    c.child.stdin.write("SELECT 'while-hung';\n");
    // Nothing answers the client while the worker is stopped; the primary must notice on its own.
    const now = await waitFor(() => {
      const w = gatewayWorkerPids(gp!.pid);
      return w.length === 2 && !w.includes(hung) ? w : undefined;
    }, 90_000, 'the hung worker replaced');
    await waitFor(() => now.every((p) => gp!.output().includes(`gateway worker ready (pid ${p})`)), 60_000, 'the replacement ready');
    expect(gp!.output()).toContain('gateway worker stopped answering');
    await waitFor(() => c.done(), 20_000, 'psql cut');
    expect(c.stdout()).not.toContain('while-hung');
    await waitFor(async () => !(await liveSessions()).some((s) => s.id === row.id), 20_000, 'the session no longer listed');

    // A new session works.
    const d = psql();
    d.child.stdin.write("SELECT 'after';\n");
    await waitFor(() => d.stdout().includes('after'), 30_000, 'a session after the replacement');
    d.child.stdin.end();
    await waitFor(() => d.done(), 10_000, 'psql exit');

    await gp!.stop();
    const { records } = await searchAuditLog(path.join(base, 'data', 'audit'));
    const events: AuditEvent[] = records.map((r) => r.event);
    const ends = events.filter((e) => e.type === 'session.end' && e.session_id === row.id);
    expect(ends.map((e) => [e.details.reason, e.details.worker_pid])).toEqual([['gateway_crash', hung]]);
  }, 240_000);
});
