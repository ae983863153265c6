import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedFiles } from '../support/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import {
  endWorkersTest, issueCredentials, liveSessionsOf, provisionedPostgresTarget, psqlSession, twoPostgresWorkersConfig, type ClientProcess, type LiveSessionRow as SessionRow,
} from '../support/workers.ts';

/**
 * `vigil serve` with gateway.workers: 2 and per-engineer database accounts: an engineer's sessions may land
 * on different workers, each of which leases the one account in its own process. The end of her session
 * on one worker must not lock the account (and kill its connections) while her session on the other
 * worker still uses it; her last session's end still locks it.
 */
let pg: PostgresHandle;
let gp: GatewayProcess | undefined;
let base: string;
let alice: IssuedFiles, ada: IssuedFiles;
const clients: ClientProcess[] = [];

beforeAll(async () => {
  base = tempDir('vigil-workers-review-accounts-');
  pg = await startPostgres();
  const config = twoPostgresWorkersConfig(base, provisionedPostgresTarget(pg.port, pg.superuser));
  ({ alice, ada } = await issueCredentials(config, base, { alice: { user: 'alice', roles: ['oncall'] }, ada: { user: 'ada', roles: ['admin'] } }));
  gp = await startGatewayProcess(config, base);
}, 180_000);

afterAll(() => endWorkersTest({ clients, gp, backend: pg, base }));

/** A psql session of alice that stays open, running each statement written to its stdin. */
const psql = () => psqlSession(clients, gp!, alice, 'alice', 'pgp');

const liveSessions = () => liveSessionsOf(gp!, ada);
const canLogin = () => pg.psql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'vigil_alice'").trim();

/** A session of alice inside a transaction (a cut connection cannot be hidden by psql reconnecting). */
async function opened(tag: string): Promise<{ c: ClientProcess; row: SessionRow }> {
  const before = new Set((await liveSessions()).map((s) => s.id));
  const c = psql();
  c.child.stdin.write(`BEGIN;\nSELECT '${tag}-in';\n`);
  await waitFor(() => c.stdout().includes(`${tag}-in`), 30_000, `${tag} answered`);
  const row = await waitFor(async () => (await liveSessions()).find((s) => !before.has(s.id) && s.user === 'alice'), 20_000, `${tag} listed`);
  return { c, row };
}

describe('gateway.workers: 2, one engineer account leased in two workers', () => {
  it("the end of her session on one worker neither locks the account nor cuts her session on the other", async () => {
    const first = await opened('one');
    // Connections are handed round robin: within a few, one lands on the other worker.
    const extra: ClientProcess[] = [];
    let second = await opened('two');
    for (let i = 0; second.row.worker_pid === first.row.worker_pid && i < 6; i++) {
      extra.push(second.c);
      second = await opened(`two${i}`);
    }
    expect(second.row.worker_pid).not.toBe(first.row.worker_pid);
    for (const c of extra) c.child.stdin.end();

    // Every session of alice on the first worker ends: that worker holds no lease of the account any more.
    first.c.child.stdin.write('COMMIT;\n');
    first.c.child.stdin.end();
    for (const c of [first.c, ...extra]) await waitFor(() => c.done(), 20_000, 'psql exit');
    const ended = new Set([first.row.id]);
    await waitFor(async () => !(await liveSessions()).some((s) => ended.has(s.id)), 20_000, 'the first session gone');
    // Nothing announces a lock that did not happen: give one the time it takes (a few queries to the
    // local server) before looking.
    await new Promise((r) => setTimeout(r, 3000));

    second.c.child.stdin.write("SELECT 'two-still';\n");
    await waitFor(() => second.c.stdout().includes('two-still') || second.c.done(), 20_000, 'the second session answered or cut');
    expect(second.c.stdout() + second.c.stderr()).toContain('two-still');
    expect(canLogin()).toBe('t');

    // Her last session ends: the account is locked.
    second.c.child.stdin.write('COMMIT;\n');
    second.c.child.stdin.end();
    await waitFor(() => second.c.done(), 20_000, 'psql exit');
    await waitFor(() => canLogin() === 'f', 20_000, 'vigil_alice locked after her last session');
  }, 180_000);
});
