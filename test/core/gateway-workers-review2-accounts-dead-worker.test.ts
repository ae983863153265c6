import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedFiles } from '../support/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { searchAuditLog } from '../../recorder/audit/read.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import {
  endWorkersTest, issueCredentials, liveSessionsOf, provisionedPostgresTarget, psqlSession, replacedWorkers, twoPostgresWorkersConfig, type ClientProcess,
} from '../support/workers.ts';

/**
 * `vigil serve` with gateway.workers: 2: a worker killed while its session leases an engineer's backend
 * account cannot lock it, and its replacement never sweeps. The primary has a live worker lock it (unless
 * another worker's session still leases it), recorded as db.user.locked with reason worker_died; an account
 * another worker's session still leases stays open for that session.
 */
let pg: PostgresHandle;
let gp: GatewayProcess | undefined;
let base: string;
let alice: IssuedFiles, bob: IssuedFiles, ada: IssuedFiles;
const clients: ClientProcess[] = [];

beforeAll(async () => {
  base = tempDir('vigil-workers-review2-accounts-dead-');
  pg = await startPostgres();
  const config = twoPostgresWorkersConfig(base, provisionedPostgresTarget(pg.port, pg.superuser));
  ({ alice, bob, ada } = await issueCredentials(config, base, {
    alice: { user: 'alice', roles: ['oncall'] },
    bob: { user: 'bob', roles: ['oncall'] },
    ada: { user: 'ada', roles: ['admin'] },
  }));
  gp = await startGatewayProcess(config, base);
}, 180_000);

afterAll(() => endWorkersTest({ clients, gp, backend: pg, base }));

const liveSessions = () => liveSessionsOf(gp!, ada);
const canLogin = (account: string) => pg.psql(`SELECT rolcanlogin FROM pg_roles WHERE rolname = '${account}'`).trim();
const auditEvents = async (): Promise<AuditEvent[]> => (await searchAuditLog(path.join(base, 'data', 'audit'))).records.map((r) => r.event);

/** A session of `user` inside a transaction (a cut connection cannot be hidden by psql reconnecting). */
async function opened(who: IssuedFiles, user: string, tag: string) {
  const before = new Set((await liveSessions()).map((s) => s.id));
  const c = psqlSession(clients, gp!, who, user, 'pgp');
  c.child.stdin.write(`BEGIN;\nSELECT '${tag}-in';\n`);
  await waitFor(() => c.stdout().includes(`${tag}-in`), 30_000, `${tag} answered`);
  const row = await waitFor(async () => (await liveSessions()).find((s) => !before.has(s.id) && s.user === user), 20_000, `${tag} listed`);
  return { c, row };
}

describe('gateway.workers: 2, a worker killed while its sessions lease backend accounts', () => {
  it('the accounts only its sessions leased are locked (worker_died); one another worker still leases stays open', async () => {
    // bob on one worker only; alice on both workers.
    const bobs = await opened(bob, 'bob', 'bob');
    const doomed = bobs.row.worker_pid!;
    const alices = [await opened(alice, 'alice', 'alice0')];
    for (let i = 1; new Set(alices.map((a) => a.row.worker_pid)).size < 2 && i < 8; i++) alices.push(await opened(alice, 'alice', `alice${i}`));
    const survivor = alices.find((a) => a.row.worker_pid !== doomed)!;
    expect(survivor).toBeDefined();
    expect(alices.some((a) => a.row.worker_pid === doomed)).toBe(true);
    expect(canLogin('vigil_bob')).toBe('t');

    process.kill(doomed, 'SIGKILL');
    await waitFor(() => canLogin('vigil_bob') === 'f', 30_000, 'vigil_bob locked after its worker died');
    const locks = await waitFor(async () => {
      const l = (await auditEvents()).filter((e) => e.type === 'db.user.locked' && e.details.account === 'vigil_bob');
      return l.length > 0 ? l : undefined;
    }, 20_000, 'db.user.locked for vigil_bob');
    expect(locks.map((e) => e.details.reason)).toEqual(['worker_died']);
    expect(locks[0]!.details.worker_pid).toBe(doomed);
    expect(locks[0]!.actor.user).toBe('bob');

    // alice's session on the live worker keeps her account and its connection.
    await replacedWorkers(gp!, [doomed]);
    expect(canLogin('vigil_alice')).toBe('t');
    survivor.c.child.stdin.write("SELECT 'alice-still';\n");
    await waitFor(() => survivor.c.stdout().includes('alice-still') || survivor.c.done(), 20_000, 'alice answered or cut');
    expect(survivor.c.stdout() + survivor.c.stderr()).toContain('alice-still');
    expect((await auditEvents()).filter((e) => e.type === 'db.user.locked' && e.details.account === 'vigil_alice' && e.details.locked === true)).toEqual([]);

    for (const a of alices) a.c.child.stdin.end();
    await waitFor(() => canLogin('vigil_alice') === 'f', 20_000, 'vigil_alice locked after her last session');
  }, 240_000);
});
