import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedFiles } from '../support/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startPostgres, clientEnv, type PostgresHandle } from '../support/postgres.ts';
import { freePort, tempDir, waitFor } from '../support/tmp.ts';
import { searchAuditLog } from '../../recorder/audit/read.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { issueCredentials, provisionedPostgresTarget, twoPostgresWorkersConfig } from '../support/workers.ts';

/**
 * `vigil serve` with gateway.workers: 2 stopping (SIGTERM) while a step of a worker's shutdown takes long
 * but within its bound: locking the backend account of a session cut at the end of the drain, against a
 * backend that stopped answering new connections (up to gateway.connect_timeout). The primary waits for
 * the sum of the worker's bounded steps: the worker is not killed mid-close, and the failed lock is in the
 * chain (db.user.provisioning_failed), so the operator knows the account is still open.
 */
const CONNECT_TIMEOUT_MS = 20_000;
let pg: PostgresHandle;
let gp: GatewayProcess | undefined;
let base: string;
let alice: IssuedFiles;
let relay: { port: number; blackhole(): void; close(): Promise<void> };
let psqlChild: ChildProcessWithoutNullStreams | undefined;

/** TCP to the local PostgreSQL; after blackhole(), new connections are accepted and never answered. */
async function startRelay(to: number): Promise<typeof relay> {
  let blackholed = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((c) => {
    sockets.add(c);
    c.on('error', () => {});
    c.on('close', () => sockets.delete(c));
    if (blackholed) return;
    const u = net.connect(to, '127.0.0.1');
    sockets.add(u);
    u.on('error', () => {});
    u.on('close', () => (sockets.delete(u), c.destroy()));
    c.on('close', () => u.destroy());
    c.pipe(u);
    u.pipe(c);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    port,
    blackhole: () => void (blackholed = true),
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

beforeAll(async () => {
  base = tempDir('vigil-workers-drain-');
  pg = await startPostgres();
  relay = await startRelay(pg.port);
  const config = twoPostgresWorkersConfig(base, {
    gateway: { connect_timeout: `${CONNECT_TIMEOUT_MS}ms` },
    ...provisionedPostgresTarget(relay.port, pg.superuser),
  });
  ({ alice } = await issueCredentials(config, base, { alice: { user: 'alice', roles: ['oncall'] } }));
  gp = await startGatewayProcess(config, base);
}, 180_000);

afterAll(async () => {
  psqlChild?.kill('SIGKILL');
  await gp?.kill('SIGKILL');
  await relay?.close();
  await pg?.stop();
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

describe('gateway.workers: 2, a worker shutdown within its bounds', () => {
  it('a slow account lock at shutdown is waited for: the worker is not killed, the failed lock is recorded', async () => {
    const conn = `host=127.0.0.1 port=${gp!.ports.postgres} dbname=pgp user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}`;
    psqlChild = spawn('psql', ['-X', '-qAt', '-d', conn], { stdio: ['pipe', 'pipe', 'pipe'], env: clientEnv() });
    let out = '';
    psqlChild.stdout.on('data', (d) => (out += d));
    psqlChild.stderr.on('data', (d) => (out += d));
    psqlChild.stdin.on('error', () => {});
    psqlChild.stdin.write("SELECT 'alice-in';\n");
    await waitFor(() => out.includes('alice-in'), 30_000, 'alice answered');
    // Her session's connection keeps working; the lock's new admin connection will hang.
    relay.blackhole();
    const t0 = Date.now();
    gp!.child.kill('SIGTERM');
    expect(await gp!.exited).toBe(0);
    const took = Date.now() - t0;
    expect(gp!.output()).not.toContain('did not finish draining in time');
    // It did wait for the lock: drain (1s), the cut session, then the connect that timed out.
    expect(took).toBeGreaterThan(CONNECT_TIMEOUT_MS);

    const { records } = await searchAuditLog(path.join(base, 'data', 'audit'));
    const events: AuditEvent[] = records.map((r) => r.event);
    const session = events.find((e) => e.type === 'session.start' && e.actor.user === 'alice');
    expect(events.filter((e) => e.type === 'session.end' && e.session_id === session?.session_id).map((e) => e.details.reason)).toEqual(['shutdown']);
    const failed = events.filter((e) => e.type === 'db.user.provisioning_failed' && e.details.account === 'vigil_alice');
    expect(failed.map((e) => ({ step: e.details.step, reason: e.details.reason }))).toEqual([{ step: 'lock', reason: 'shutdown' }]);
    // The account is still open: the next start's sweep locks it.
    expect(pg.psql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'vigil_alice'").trim()).toBe('t');
  }, 120_000);
});
