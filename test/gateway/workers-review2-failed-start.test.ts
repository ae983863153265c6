import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedFiles } from '../support/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import {
  endWorkersTest, gatewayWorkerPids, issueCredentials, psqlSession, replacedWorkers, trustedPostgresTarget, twoPostgresWorkersConfig, type ClientProcess,
} from '../support/workers.ts';

/**
 * `vigil serve` with gateway.workers: 2 when a replacement worker fails to start after the gateway is up
 * (here its CA key cannot be read for a while, as a store or disk outage would look): the failed worker
 * must exit, so that the primary starts another once the cause is gone, instead of lingering without
 * listeners while it still answers the primary's pings (never replaced: one worker fewer for good).
 */
let pg: PostgresHandle;
let gp: GatewayProcess | undefined;
let base: string;
let alice: IssuedFiles;
const clients: ClientProcess[] = [];

beforeAll(async () => {
  base = tempDir('vigil-workers-review2-failed-start-');
  pg = await startPostgres();
  const config = twoPostgresWorkersConfig(base, trustedPostgresTarget(pg.port));
  ({ alice } = await issueCredentials(config, base, { alice: { user: 'alice', roles: ['engineer'] } }));
  gp = await startGatewayProcess(config, base);
}, 180_000);

afterAll(() => endWorkersTest({ clients, gp, backend: pg, base }));

describe('gateway.workers: 2, a replacement worker that fails to start', () => {
  it('exits, and the primary starts another that serves once the cause is gone', async () => {
    const hostKey = path.join(base, 'data', 'ca', 'ssh_host_ed25519_key');
    const aside = `${hostKey}.aside`;
    const [killed] = await waitFor(() => {
      const w = gatewayWorkerPids(gp!.pid);
      return w.length === 2 ? w : undefined;
    }, 30_000, 'two workers');
    fs.renameSync(hostKey, aside);
    try {
      process.kill(killed!, 'SIGKILL');
      // A replacement is forked and fails on the missing key.
      await waitFor(() => gp!.output().includes('VIGIL_CA_MISSING'), 60_000, 'the replacement failing to start');
    } finally {
      fs.renameSync(aside, hostKey);
    }
    const failed = gatewayWorkerPids(gp!.pid).filter((p) => p !== killed && !gp!.output().includes(`gateway worker ready (pid ${p})`));
    // The worker that could not start does not linger: it exits, and a later replacement serves.
    const now = await replacedWorkers(gp!, [killed!, ...failed]);
    expect(now).not.toContain(killed);
    for (const p of failed) expect(now).not.toContain(p);

    // Sessions work again on both workers (connections go round robin).
    for (let i = 0; i < 2; i++) {
      const c = psqlSession(clients, gp!, alice, 'alice', 'pg1');
      c.child.stdin.write(`SELECT 'after-${i}';\n`);
      await waitFor(() => c.stdout().includes(`after-${i}`), 30_000, `session ${i} after the replacement`);
      c.child.stdin.end();
      await waitFor(() => c.done(), 10_000, 'psql exit');
    }
  }, 240_000);
});
