import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedFiles } from '../support/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { freePort, tempDir, waitFor } from '../support/tmp.ts';
import { searchAuditLog } from '../../recorder/audit/read.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import {
  endWorkersTest, gatewayWorkerPids, issueCredentials, liveSessionsOf, psqlSession, replacedWorkers, trustedPostgresTarget, twoPostgresWorkersConfig, type ClientProcess,
} from '../support/workers.ts';

/**
 * `vigil serve` with gateway.workers: 2 when the config file changes under it: every worker, the first
 * ones and each replacement of a dead one, runs the configuration the primary runs (what it started with
 * or its last applied reload), never what the file says now. An edit without SIGHUP does not reach the
 * sessions of a replacement; an invalid file does not stop a replacement from starting; a SIGHUP the
 * primary applies reaches every worker.
 */
let pg: PostgresHandle;
let gp: GatewayProcess | undefined;
let base: string;
let alice: IssuedFiles, ada: IssuedFiles;
const clients: ClientProcess[] = [];

beforeAll(async () => {
  base = tempDir('vigil-workers-config-');
  pg = await startPostgres();
  const config = twoPostgresWorkersConfig(base, {
    // A fixed port, as in gateway-workers-faults.test.ts: clients find the listener whichever workers are up.
    postgres: { listen: `127.0.0.1:${await freePort()}` },
    ...trustedPostgresTarget(pg.port),
  });
  ({ alice, ada } = await issueCredentials(config, base, { alice: { user: 'alice', roles: ['engineer'] }, ada: { user: 'ada', roles: ['admin'] } }));
  gp = await startGatewayProcess(config, base);
}, 180_000);

afterAll(() => endWorkersTest({ clients, gp, backend: pg, base }));

/** A psql session of alice that stays open, running each statement written to its stdin. */
const psql = () => psqlSession(clients, gp!, alice, 'alice', 'pg1');

const liveSessions = () => liveSessionsOf(gp!, ada);

/** Kill one worker and wait until its replacement logged that it is ready: both workers' pids. */
async function replaceOne(): Promise<number[]> {
  const [victim] = gatewayWorkerPids(gp!.pid);
  expect(victim).toBeGreaterThan(0);
  process.kill(victim, 'SIGKILL');
  return replacedWorkers(gp!, [victim]);
}

/**
 * Four psql sessions of alice opened one after the other and kept open (the primary hands connections
 * round robin, so both workers get some): for each, the worker that holds it, or undefined when refused.
 */
async function attempts(): Promise<{ worker?: number; c: ClientProcess }[]> {
  const out: { worker?: number; c: ClientProcess }[] = [];
  for (let i = 0; i < 4; i++) {
    const before = new Set((await liveSessions()).map((s) => s.id));
    const c = psql();
    c.child.stdin.write(`SELECT 'try-${i}';\n`);
    await waitFor(() => c.stdout().includes(`try-${i}`) || c.done(), 30_000, `psql attempt ${i}`);
    const row = c.done() ? undefined : await waitFor(async () => (await liveSessions()).find((s) => !before.has(s.id) && s.user === 'alice'), 10_000, 'the session listed');
    out.push({ worker: row?.worker_pid, c });
  }
  return out;
}

async function closeAll(list: { c: ClientProcess }[]): Promise<void> {
  for (const { c } of list) c.child.stdin.end();
  await waitFor(() => list.every(({ c }) => c.done()), 10_000, 'psql exits');
}

/** The config file as the gateway started with it, without the role alice's certificate names. */
const withoutRoles = (text: string) => JSON.stringify({ ...JSON.parse(text), roles: [] }, null, 2);

describe('gateway.workers: 2 and the config file', () => {
  let original: string;

  it('an edit without SIGHUP does not reach a replacement worker: alice is admitted on both workers as before', async () => {
    original = fs.readFileSync(gp!.configFile, 'utf8');
    // Valid, but never applied: the role alice's certificate names is gone from the file.
    fs.writeFileSync(gp!.configFile, withoutRoles(original));
    const workers = await replaceOne();
    const tries = await attempts();
    for (const [i, t] of tries.entries()) expect(t.c.stdout(), t.c.stderr()).toContain(`try-${i}`);
    // Every attempt was admitted, by both workers (the replacement too).
    expect(new Set(tries.map((t) => t.worker))).toEqual(new Set(workers));
    await closeAll(tries);
  }, 180_000);

  it('an invalid file does not stop a replacement from starting; it admits as the primary does', async () => {
    fs.writeFileSync(gp!.configFile, 'roles: [\n  this is: not: yaml\n');
    const workers = await replaceOne();
    expect(gp!.output()).not.toContain('failed to start');
    const tries = await attempts();
    expect(new Set(tries.map((t) => t.worker))).toEqual(new Set(workers));
    await closeAll(tries);
  }, 180_000);

  it('a SIGHUP the primary applies reaches every worker: live sessions cut, new ones refused on both', async () => {
    // Sessions on both workers, admitted under the configuration the primary started with.
    const live = await attempts();
    expect(new Set(live.map((t) => t.worker)).size).toBe(2);
    for (const t of live) t.c.child.stdin.write('SELECT pg_sleep(120);\n');
    fs.writeFileSync(gp!.configFile, withoutRoles(original));
    process.kill(gp!.pid, 'SIGHUP');
    await waitFor(() => live.every((t) => t.c.done()), 20_000, 'sessions cut by the reload');
    for (const t of live) expect(t.c.stderr()).toContain('The vigil configuration changed');
    // The primary and both workers applied it.
    await waitFor(() => gp!.output().split('\n').filter((l) => l.includes('configuration reloaded')).length >= 3, 20_000, 'reload logged by the primary and both workers');
    const tries = await attempts();
    for (const t of tries) {
      expect(t.worker).toBeUndefined();
      expect(t.c.stdout()).not.toMatch(/try-/);
    }

    await gp!.stop();
    const { records } = await searchAuditLog(path.join(base, 'data', 'audit'));
    const events: AuditEvent[] = records.map((r) => r.event);
    // The one change that took effect is the one the chain records; no config.reload_failed either (the
    // invalid file was never loaded: nobody asked for a reload while it was there).
    expect(events.filter((e) => e.type.startsWith('config.')).map((e) => e.type)).toEqual(['config.reloaded']);
    expect(events.find((e) => e.type === 'config.reloaded')?.details).toMatchObject({ roles: { removed: ['engineer'] } });
    // The attempts after it were refused, each recorded, whichever worker took it; none before it.
    const reloadedAt = events.findIndex((e) => e.type === 'config.reloaded');
    const refused = events.map((e, i) => ({ e, i })).filter(({ e }) => e.type === 'auth.failure' && e.actor.user === 'alice');
    expect(refused.length).toBeGreaterThanOrEqual(tries.length);
    expect(refused.every(({ i }) => i > reloadedAt)).toBe(true);
  }, 180_000);
});
