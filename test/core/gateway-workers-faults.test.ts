import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedFiles } from '../support/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { freePort, tempDir, waitFor } from '../support/tmp.ts';
import { searchAuditLog } from '../../recorder/audit/read.ts';
import { postgresAccounts } from '../../proxies/postgres/provisioning.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import {
  apiRequest, endWorkersTest, gatewayWorkerPids, issueCredentials, liveSessionsOf, provisionedPostgresTarget, psqlSession, replacedWorkers, twoPostgresWorkersConfig, type ClientProcess,
} from '../support/workers.ts';

/**
 * `vigil serve` with gateway.workers: 2 when workers die and are replaced: a replacement never sweeps the
 * per-engineer backend accounts (the start sweep runs once per gateway start, before any worker listens),
 * so a session on the other worker keeps its account and its connection; /readyz fails while no worker
 * listens and recovers with the replacements; a SIGTERM that reaches the primary while a replacement is
 * still loading drains that worker too (the primary holds its messages until it is up).
 */
let pg: PostgresHandle;
let gp: GatewayProcess | undefined;
let base: string;
let alice: IssuedFiles, ada: IssuedFiles;
const clients: ClientProcess[] = [];

beforeAll(async () => {
  base = tempDir('vigil-workers-faults-');
  pg = await startPostgres();
  const config = twoPostgresWorkersConfig(base, {
    gateway: { shutdown_drain: '2s' },
    // A fixed port: when every worker is gone the primary closes the shared socket, and the next worker's
    // listen opens it again on the configured port (port 0 would be a new random one).
    postgres: { listen: `127.0.0.1:${await freePort()}` },
    ...provisionedPostgresTarget(pg.port, pg.superuser),
  });
  ({ alice, ada } = await issueCredentials(config, base, { alice: { user: 'alice', roles: ['oncall'] }, ada: { user: 'ada', roles: ['admin'] } }));
  // What a gateway killed mid-session leaves: an open vigil-managed account. This start must lock it, once.
  const left = postgresAccounts({ name: 'pgp', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', tls: 'disable' } as never, { admin: { user: pg.superuser } } as never, 10_000);
  await left.open('vigil_ivy', ['pg_read_all_data'], 'left-by-a-dead-gateway');
  gp = await startGatewayProcess(config, base);
}, 180_000);

afterAll(() => endWorkersTest({ clients, gp, backend: pg, base }));

/** A psql session of alice that stays open, running each statement written to its stdin. */
const psql = () => psqlSession(clients, gp!, alice, 'alice', 'pgp');

const get = (p: string) => apiRequest(gp!.ports.api, undefined, 'GET', p);

const liveSessions = () => liveSessionsOf(gp!, ada);

const workerPids = () => gatewayWorkerPids(gp!.pid);

/** Both workers are up again after `gone` died: their pids, once each logged that it is ready. */
const replaced = (gone: number[]) => replacedWorkers(gp!, gone);

const canLogin = (account: string) => pg.psql(`SELECT rolcanlogin FROM pg_roles WHERE rolname = '${account}'`).trim();

describe('gateway.workers: 2 when workers die', () => {
  it('the start sweep ran once, in one worker: the account an earlier run left open is locked', async () => {
    await waitFor(() => canLogin('vigil_ivy') === 'f', 30_000, 'vigil_ivy locked at start');
  }, 60_000);

  it("a replacement worker does not lock the account of a session another worker holds, nor drop its connection", async () => {
    const before = new Set((await liveSessions()).map((s) => s.id));
    const c = psql();
    // Inside a transaction: a cut connection cannot be hidden by psql reconnecting.
    c.child.stdin.write("BEGIN;\nSELECT 'alice-in';\n");
    await waitFor(() => c.stdout().includes('alice-in'), 30_000, 'alice answered');
    const row = await waitFor(async () => (await liveSessions()).find((s) => !before.has(s.id) && s.user === 'alice'), 20_000, 'alice listed');
    const backend = pg.psql("SELECT pid FROM pg_stat_activity WHERE usename = 'vigil_alice'").trim();
    expect(backend).toMatch(/^\d+$/);

    const [other] = workerPids().filter((p) => p !== row.worker_pid);
    expect(other).toBeGreaterThan(0);
    process.kill(other, 'SIGKILL');
    const [replacement] = (await replaced([other])).filter((p) => p !== row.worker_pid);
    expect(replacement).toBeGreaterThan(0);
    // Nothing announces that a sweep did not happen: give one the time it takes (a few queries to the
    // local server) before looking.
    await new Promise((r) => setTimeout(r, 3000));

    c.child.stdin.write("SELECT 'alice-still';\n");
    await waitFor(() => c.stdout().includes('alice-still') || c.done(), 20_000, 'alice answered after the replacement started');
    expect(c.stdout() + c.stderr()).toContain('alice-still');
    expect(canLogin('vigil_alice')).toBe('t');
    expect(pg.psql("SELECT pid FROM pg_stat_activity WHERE usename = 'vigil_alice'").trim()).toBe(backend);
    c.child.stdin.write('COMMIT;\n');
    c.child.stdin.end();
    await waitFor(() => c.done(), 10_000, 'psql exit');
    // Her last session ended: the account is locked again (by the worker that held the lease).
    await waitFor(() => canLogin('vigil_alice') === 'f', 20_000, 'vigil_alice locked after her session');
  }, 180_000);

  it('/readyz answers 503 while no worker listens and 200 again once a replacement is ready', async () => {
    expect(await get('/readyz')).toMatchObject({ status: 200, body: { status: 'ready' } });
    const seen: { status: number; body: any }[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        seen.push(await get('/readyz').catch((e: Error) => ({ status: 0, body: e.message })));
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const gone = workerPids();
    expect(gone).toHaveLength(2);
    for (const p of gone) process.kill(p, 'SIGKILL');
    try {
      await waitFor(() => seen.some((r) => r.status === 503), 20_000, '/readyz 503 with no worker');
      expect(seen.find((r) => r.status === 503)?.body).toEqual({ status: 'no_workers' });
      await replaced(gone);
      await waitFor(() => seen.at(-1)?.status === 200, 20_000, '/readyz 200 again');
    } finally {
      polling = false;
      await poller;
    }
    // The balancer was right to send traffic again: a session works.
    const c = psql();
    c.child.stdin.write("SELECT 'after-outage';\n");
    await waitFor(() => c.stdout().includes('after-outage'), 30_000, 'a session after the workers came back');
    c.child.stdin.end();
    await waitFor(() => c.done(), 10_000, 'psql exit');
  }, 180_000);

  it('SIGTERM while a replacement worker is still loading drains it too: the gateway exits at once and the replacement never listens', async () => {
    const before = workerPids();
    expect(before).toHaveLength(2);
    process.kill(before[0], 'SIGKILL');
    // The primary forks the replacement at once or after a short pause; it then loads its modules (a
    // second or more) before it can take a message. SIGTERM the primary in that window.
    const replacement = await waitFor(() => workerPids().find((p) => !before.includes(p)), 30_000, 'the replacement forked');
    const t0 = Date.now();
    gp!.child.kill('SIGTERM');
    expect(gp!.output()).not.toContain(`gateway worker ready (pid ${replacement})`);
    expect(await gp!.exited).toBe(0);
    const took = Date.now() - t0;
    // Not the primary's last resort (shutdown_drain 2s + 15s, then SIGKILL): the worker heard the drain.
    expect(gp!.output()).not.toContain('did not finish draining in time');
    expect(took).toBeLessThan(10_000);
    expect(gp!.output()).not.toContain(`gateway worker ready (pid ${replacement})`);

    const { records } = await searchAuditLog(path.join(base, 'data', 'audit'));
    const events: AuditEvent[] = records.map((r) => r.event);
    const locks = (account: string) => events.filter((e) => e.type === 'db.user.locked' && e.details.account === account);
    // The one start sweep locked what the earlier run left; no sweep ever touched alice's leased account.
    expect(locks('vigil_ivy').map((e) => e.details.reason)).toEqual(['gateway_start']);
    expect(locks('vigil_alice').filter((e) => e.details.reason === 'gateway_start')).toEqual([]);
  }, 120_000);
});
