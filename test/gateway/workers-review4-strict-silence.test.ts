import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedFiles } from '../support/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { serverStatements, STATEMENT_LOG } from '../postgres/helpers.ts';
import {
  endWorkersTest, issueCredentials, psqlSession, trustedPostgresTarget, twoPostgresWorkersConfig, type ClientProcess,
} from '../support/workers.ts';

/**
 * `vigil serve` with gateway.workers: 2 and strict durability when the primary stops answering (SIGSTOP)
 * while a statement is held for its record: the worker, once it takes the primary as silent, must answer
 * that statement with the protocol's error instead of holding it until the primary answers again. The
 * statement never reaches the backend (its record may be written later: a record without a forward).
 */
let pg: PostgresHandle;
let gp: GatewayProcess | undefined;
let base: string;
let alice: IssuedFiles;
const clients: ClientProcess[] = [];
let primaryStopped = false;

beforeAll(async () => {
  base = tempDir('vigil-workers-review4-strict-silence-');
  pg = await startPostgres({ conf: STATEMENT_LOG });
  const config = twoPostgresWorkersConfig(base, { ...trustedPostgresTarget(pg.port), audit: { durability: 'strict' } });
  ({ alice } = await issueCredentials(config, base, { alice: { user: 'alice', roles: ['engineer'] } }));
  gp = await startGatewayProcess(config, base);
}, 180_000);

afterAll(async () => {
  if (primaryStopped && gp) process.kill(gp.pid, 'SIGCONT');
  await endWorkersTest({ clients, gp, backend: pg, base });
});

const reached = (marker: string) => serverStatements(pg, 'trust_user').some((s) => s.sql.includes(marker));

describe('gateway.workers: 2, strict durability, a primary that stops answering', () => {
  it('a statement held for its record is refused with an error once the primary is taken as silent', async () => {
    const c = psqlSession(clients, gp!, alice, 'alice', 'pg1');
    c.child.stdin.write("SELECT 'ss-before';\n");
    await waitFor(() => c.stdout().includes('ss-before'), 30_000, 'answered');

    process.kill(gp!.pid, 'SIGSTOP');
    primaryStopped = true;
    // Sent before the worker can notice the silence (it takes PRIMARY_SILENT_TICKS seconds): its record
    // goes to the stopped primary and the statement is held for the acknowledgement.
    c.child.stdin.write("SELECT 'ss-held';\n");
    await waitFor(() => c.stderr().includes('audit log unavailable'), 45_000, 'the held statement to be refused while the primary is still stopped');
    expect(c.stdout()).not.toContain('ss-held');
    expect(reached("ss-held'")).toBe(false);

    process.kill(gp!.pid, 'SIGCONT');
    primaryStopped = false;
    await waitFor(() => c.done(), 30_000, 'the session to end');
    // Not forwarded later either, now that the primary may have written its record.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(reached("ss-held'")).toBe(false);
  }, 180_000);
});
