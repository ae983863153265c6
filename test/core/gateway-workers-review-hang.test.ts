import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedFiles } from '../support/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { searchAuditLog } from '../../recorder/audit/read.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import {
  endWorkersTest, gatewayWorkerPids, issueCredentials, liveSessionsOf, psqlSession, trustedPostgresTarget, twoPostgresWorkersConfig, type ClientProcess,
} from '../support/workers.ts';

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
  const config = twoPostgresWorkersConfig(base, trustedPostgresTarget(pg.port));
  ({ alice, ada } = await issueCredentials(config, base, { alice: { user: 'alice', roles: ['engineer'] }, ada: { user: 'ada', roles: ['admin'] } }));
  gp = await startGatewayProcess(config, base);
}, 180_000);

afterAll(() => endWorkersTest({ clients, stoppedPids: stopped, gp, backend: pg, base }));

const psql = (): ClientProcess => psqlSession(clients, gp!, alice, 'alice', 'pg1');

const liveSessions = () => liveSessionsOf(gp!, ada);

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
