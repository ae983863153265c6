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
 * `vigil serve` with gateway.workers: 2 (batched durability) when the primary, which alone writes the
 * audit log, stops answering without going away (here SIGSTOP; a stuck primary looks the same): the
 * workers must not go on forwarding statements whose records cannot be written (killed now, the primary
 * would lose them all). They take the log as unavailable, refuse the statement with the protocol's error
 * and end the session, and serve again once the primary answers.
 */
let pg: PostgresHandle;
let gp: GatewayProcess | undefined;
let base: string;
let alice: IssuedFiles;
const clients: ClientProcess[] = [];
let primaryStopped = false;

beforeAll(async () => {
  base = tempDir('vigil-workers-review2-primary-stopped-');
  pg = await startPostgres({ conf: STATEMENT_LOG });
  const config = twoPostgresWorkersConfig(base, trustedPostgresTarget(pg.port));
  ({ alice } = await issueCredentials(config, base, { alice: { user: 'alice', roles: ['engineer'] } }));
  gp = await startGatewayProcess(config, base);
}, 180_000);

afterAll(async () => {
  if (primaryStopped && gp) process.kill(gp.pid, 'SIGCONT');
  await endWorkersTest({ clients, gp, backend: pg, base });
});

const psql = (): ClientProcess => psqlSession(clients, gp!, alice, 'alice', 'pg1');
const reached = (marker: string) => serverStatements(pg, 'trust_user').some((s) => s.sql.includes(marker));

describe('gateway.workers: 2, a primary that stops answering', () => {
  it('its workers refuse statements instead of forwarding them unrecorded, and serve again once it answers', async () => {
    const c = psql();
    c.child.stdin.write("SELECT 'ps-before';\n");
    await waitFor(() => c.stdout().includes('ps-before'), 30_000, 'answered');

    process.kill(gp!.pid, 'SIGSTOP');
    primaryStopped = true;
    // A statement a second while the primary is stopped: those of the first seconds go through (batched, as
    // with a local writer between commits), but not for long: the worker takes the log as unavailable.
    let probes = 0;
    const prober = setInterval(() => c.done() || c.child.stdin.write(`SELECT 'ps-probe-${++probes}';\n`), 1000);
    try {
      await waitFor(() => c.done(), 60_000, 'a statement refused while the primary is stopped').catch((e) => {
        const ran = serverStatements(pg, 'trust_user').filter((st) => st.sql.includes('ps-probe-')).length;
        throw new Error(`${(e as Error).message}: the backend ran ${ran} of ${probes} statements sent meanwhile, and none could be recorded`);
      });
    } finally {
      clearInterval(prober);
    }
    expect(c.stderr()).toContain('audit log unavailable');
    // The refused statement (the first without an answer) never reached the backend, nor any after it.
    const answered = [...c.stdout().matchAll(/ps-probe-(\d+)/g)].map((m) => Number(m[1]));
    const refused = answered.length + 1;
    expect(answered).toEqual(Array.from({ length: answered.length }, (_, i) => i + 1));
    for (let k = refused; k <= probes; k++) expect(reached(`ps-probe-${k}'`)).toBe(false);
    const noticed = (what: string) => gp!.output().split(what).length - 1;
    await waitFor(() => noticed('the gateway primary stopped answering') >= 2, 30_000, 'both workers to notice the primary is stopped');

    process.kill(gp!.pid, 'SIGCONT');
    primaryStopped = false;
    await waitFor(() => noticed('the gateway primary answers again') >= 2, 60_000, 'both workers to hear the primary again');
    // Both workers serve again (connections go round robin).
    for (let i = 0; i < 2; i++) {
      const d = psql();
      d.child.stdin.write(`SELECT 'ps-after-${i}';\n`);
      await waitFor(() => d.stdout().includes(`ps-after-${i}`), 30_000, `session ${i} after the primary answered again`);
      d.child.stdin.end();
      await waitFor(() => d.done(), 10_000, 'psql exit');
    }
  }, 240_000);
});
