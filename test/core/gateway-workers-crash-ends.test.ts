import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedFiles } from '../support/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { freePort, tempDir, waitFor } from '../support/tmp.ts';
import { searchAuditLog } from '../../recorder/audit/read.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { endWorkersTest, issueCredentials, liveSessionsOf, psqlSession, replacedWorkers, trustedPostgresTarget, twoPostgresWorkersConfig, type ClientProcess, type LiveSessionRow as SessionRow } from '../support/workers.ts';

/**
 * `vigil serve` with gateway.workers: 2 when a worker dies while the record of its session's start or end
 * is still on its way into the log: every session.start in the chain has exactly one session.end (the
 * session's own, or gateway_crash), never none and never two. A long audit commit window keeps those
 * appends pending for seconds, so the worker can be killed in that window.
 */
const COMMIT_WINDOW_MS = 3000;
let pg: PostgresHandle;
let gp: GatewayProcess | undefined;
let base: string;
let alice: IssuedFiles, ada: IssuedFiles;
const clients: ClientProcess[] = [];

beforeAll(async () => {
  base = tempDir('vigil-workers-ends-');
  pg = await startPostgres();
  const config = twoPostgresWorkersConfig(base, {
    // Awaited records (auth, session start and end) wait this long for company before their fsync.
    audit: { commit_window: `${COMMIT_WINDOW_MS}ms` },
    postgres: { listen: `127.0.0.1:${await freePort()}` },
    ...trustedPostgresTarget(pg.port),
  });
  ({ alice, ada } = await issueCredentials(config, base, { alice: { user: 'alice', roles: ['engineer'] }, ada: { user: 'ada', roles: ['admin'] } }));
  gp = await startGatewayProcess(config, base);
}, 180_000);

afterAll(() => endWorkersTest({ clients, gp, backend: pg, base }));

/** A psql session of alice that stays open, running each statement written to its stdin. */
const psql = (): ClientProcess => psqlSession(clients, gp!, alice, 'alice', 'pg1');

const liveSessions = () => liveSessionsOf(gp!, ada);

/** Wait until the replacement of the dead worker `gone` logged that it is ready. */
const replaced = (gone: number) => replacedWorkers(gp!, [gone]);

/** A session of alice, opened and listed by the primary (it is registered before its session.start is written). */
async function opened(): Promise<{ row: SessionRow; c: ClientProcess }> {
  const before = new Set((await liveSessions()).map((s) => s.id));
  const c = psql();
  c.child.stdin.write("SELECT 'in';\n");
  const row = await waitFor(async () => (await liveSessions()).find((s) => !before.has(s.id) && s.user === 'alice'), 30_000, 'the session listed');
  expect(row.worker_pid).toBeGreaterThan(0);
  return { row, c };
}

describe('gateway.workers: 2, a worker killed while its session records are pending', () => {
  let startPending: SessionRow, endPending: SessionRow;

  it('killed while the session.start is pending: the start is written and then ended as gateway_crash', async () => {
    const { row, c } = await opened();
    const t0 = Date.now();
    // The start went to the primary at once (next tick); its fsync waits for the commit window.
    await new Promise((r) => setTimeout(r, 300));
    expect(c.stdout()).not.toContain('in');
    process.kill(row.worker_pid!, 'SIGKILL');
    // Still inside the window: the start was pending when the worker died.
    expect(Date.now() - t0).toBeLessThan(COMMIT_WINDOW_MS);
    startPending = row;
    await waitFor(() => c.done(), 20_000, 'psql cut');
    await replaced(row.worker_pid!);
  }, 120_000);

  it('killed while its own session.end is pending: that end is the only one', async () => {
    const { row, c } = await opened();
    await waitFor(() => c.stdout().includes('in'), 30_000, 'answered (the start is durable)');
    c.child.stdin.end();
    // The worker closed it (its end went to the primary, whose fsync waits for the commit window).
    await waitFor(async () => !(await liveSessions()).some((s) => s.id === row.id), 10_000, 'the session closed');
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 300));
    process.kill(row.worker_pid!, 'SIGKILL');
    expect(Date.now() - t0).toBeLessThan(COMMIT_WINDOW_MS);
    endPending = row;
    await waitFor(() => c.done(), 20_000, 'psql exit');
  }, 120_000);

  it('in the chain every session.start has exactly one session.end', async () => {
    await gp!.stop();
    const { records } = await searchAuditLog(path.join(base, 'data', 'audit'));
    const events: AuditEvent[] = records.map((r) => r.event);
    const ends = (id: string) => events.filter((e) => e.type === 'session.end' && e.session_id === id);
    const started = events.filter((e) => e.type === 'session.start').map((e) => e.session_id!);
    // Both windows were hit: each session's start made it into the log.
    expect(started).toEqual(expect.arrayContaining([startPending.id, endPending.id]));
    expect(ends(startPending.id).map((e) => e.details.reason)).toEqual(['gateway_crash']);
    expect(ends(endPending.id).map((e) => e.details.reason)).toEqual(['client_closed']);
    expect(started.map((id) => [id, ends(id).length]).filter(([, n]) => n !== 1)).toEqual([]);
    // And each end comes after its start.
    for (const id of started) expect(events.findIndex((e) => e.type === 'session.end' && e.session_id === id)).toBeGreaterThan(events.findIndex((e) => e.type === 'session.start' && e.session_id === id));
  }, 120_000);
});
