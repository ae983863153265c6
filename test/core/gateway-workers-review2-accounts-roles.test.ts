import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedFiles } from '../support/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import {
  endWorkersTest, issueCredentials, liveSessionsOf, psqlSession, twoPostgresWorkersConfig, type ClientProcess, type LiveSessionRow as SessionRow,
} from '../support/workers.ts';

/**
 * `vigil serve` with gateway.workers: 2: one engineer's sessions on two workers, one admitted on a role that
 * maps to a write role, one on her read-only role. Each worker leases the one account in its own process,
 * yet the account must hold the union of the roles of ALL her live sessions: a session opening on one
 * worker must not strip the roles the other's session needs, and the end of the writing session must take
 * its write role away although her read-only session on the other worker keeps the account open.
 */
let pg: PostgresHandle;
let gp: GatewayProcess | undefined;
let base: string;
let reader: IssuedFiles, writer: IssuedFiles, ada: IssuedFiles;
const clients: ClientProcess[] = [];

beforeAll(async () => {
  base = tempDir('vigil-workers-review2-accounts-roles-');
  pg = await startPostgres();
  const config = twoPostgresWorkersConfig(base, {
    targets: [
      {
        name: 'pgp', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'unused_with_provisioning',
        user_provisioning: { admin: { user: pg.superuser }, roles_map: { oncall: ['pg_read_all_data'], dba: ['pg_write_all_data'] } },
      },
    ],
    roles: [
      { name: 'oncall', targets: ['pgp'], databases: ['app'] },
      { name: 'dba', targets: ['pgp'], databases: ['app'] },
    ],
  });
  ({ reader, writer, ada } = await issueCredentials(config, base, {
    reader: { user: 'alice', roles: ['oncall'] },
    writer: { user: 'alice', roles: ['dba'] },
    ada: { user: 'ada', roles: ['admin'] },
  }));
  gp = await startGatewayProcess(config, base);
}, 180_000);

afterAll(() => endWorkersTest({ clients, gp, backend: pg, base }));

const liveSessions = () => liveSessionsOf(gp!, ada);
const canLogin = () => pg.psql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'vigil_alice'").trim();
/** The database roles vigil_alice is a member of now, comma-separated. */
const memberOf = () =>
  pg.psql("SELECT coalesce(string_agg(r.rolname, ',' ORDER BY r.rolname), '') FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = 'vigil_alice'").trim();

/** A session of alice with `who`'s credential, inside a transaction (a cut connection cannot be hidden by psql reconnecting). */
async function opened(who: IssuedFiles, tag: string): Promise<{ c: ClientProcess; row: SessionRow }> {
  const before = new Set((await liveSessions()).map((s) => s.id));
  const c = psqlSession(clients, gp!, who, 'alice', 'pgp');
  c.child.stdin.write(`BEGIN;\nSELECT '${tag}-in';\n`);
  await waitFor(() => c.stdout().includes(`${tag}-in`), 30_000, `${tag} answered`);
  const row = await waitFor(async () => (await liveSessions()).find((s) => !before.has(s.id) && s.user === 'alice'), 20_000, `${tag} listed`);
  return { c, row };
}

async function ended(sessions: { c: ClientProcess; row: SessionRow }[]): Promise<void> {
  for (const s of sessions) {
    s.c.child.stdin.write('COMMIT;\n');
    s.c.child.stdin.end();
  }
  for (const s of sessions) await waitFor(() => s.c.done(), 20_000, 'psql exit');
  const gone = new Set(sessions.map((s) => s.row.id));
  await waitFor(async () => !(await liveSessions()).some((s) => gone.has(s.id)), 20_000, 'the sessions gone');
}

/**
 * Her read-only session, then her writing session on the other worker. A writing session that lands on the
 * reader's worker (connections are handed round robin) ends before the next is tried: its end narrows the
 * account to the reader's roles on that worker, as no lease of another worker needs more.
 */
async function onTwoWorkers(tag: string) {
  const read = await opened(reader, `${tag}-read`);
  let write = await opened(writer, `${tag}-write`);
  for (let i = 0; write.row.worker_pid === read.row.worker_pid && i < 6; i++) {
    await ended([write]);
    await waitFor(() => memberOf() === 'pg_read_all_data', 20_000, 'the account narrowed to the reader again');
    write = await opened(writer, `${tag}-write${i}`);
  }
  expect(write.row.worker_pid).not.toBe(read.row.worker_pid);
  return { read, write };
}

describe('gateway.workers: 2, one engineer account leased on two workers with different roles', () => {
  it("a session opening on one worker keeps the roles the other worker's live session needs", async () => {
    const { read, write } = await onTwoWorkers('open');
    // Nothing announces a revocation that did not happen: give one the time it takes before looking.
    await new Promise((r) => setTimeout(r, 2000));
    expect(memberOf()).toBe('pg_read_all_data,pg_write_all_data');
    await ended([write, read]);
    await waitFor(() => canLogin() === 'f', 20_000, 'vigil_alice locked after her last session');
    expect(memberOf()).toBe('');
  }, 240_000);

  it('the end of her writing session takes the write role away while her read-only session on the other worker keeps the account', async () => {
    const { read, write } = await onTwoWorkers('end');
    // Its worker has no lease of the account left, but the read-only session on the other worker keeps
    // the account open. The write role goes all the same (deny by default).
    await ended([write]);
    await waitFor(() => memberOf() === 'pg_read_all_data', 20_000, 'the write role revoked after the writing session ended');
    expect(canLogin()).toBe('t');
    read.c.child.stdin.write("SELECT 'read-still';\n");
    await waitFor(() => read.c.stdout().includes('read-still') || read.c.done(), 20_000, 'the reading session answered or cut');
    expect(read.c.stdout() + read.c.stderr()).toContain('read-still');

    // Her last session ends: the account is locked with no roles.
    await ended([read]);
    await waitFor(() => canLogin() === 'f', 20_000, 'vigil_alice locked after her last session');
    expect(memberOf()).toBe('');
  }, 240_000);
});
