import path from 'node:path';
import { PassThrough } from 'node:stream';
import pg from 'pg';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../app/config.ts';
import { END_MESSAGES, startAccessEnforcement } from '../../src/access/enforcement.ts';
import { EventBus } from '../../src/events/bus.ts';
import type { GatewayServices } from '../../src/gateway/services.ts';
import type { Principal } from '../../src/identity/types.ts';
import { SessionRegistry, type EndReason } from '../../src/sessions/registry.ts';
import { PostgresStateStore } from '../../src/store/postgres.ts';
import type { AccessRecord } from '../../src/store/types.ts';
import { MemorySink, POLICY } from '../access/support.ts';
import { usePostgresStoreReplicas } from '../support/pg-store.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * Live enforcement on replica B while B's store cannot answer grant reads (its pool busy with slow
 * statements, or a grant read failing): revocations and locks B learns from A through LISTEN/NOTIFY must
 * still cut at once, from B's caches; a failed grant read spares only its own grant's sessions.
 * Replicas are store instances in this process on one real PostgreSQL; the reconcile is set to a minute,
 * so nothing here passes because of it.
 */

const stores = usePostgresStoreReplicas();
const { cleanups, openStore } = stores;

/** Enforcement on replica B, with B's operational log kept as parsed lines. */
function enforceOn(store: PostgresStateStore) {
  const dataDir = path.join(tempDir(), 'data');
  const config = parseConfig({ data_dir: dataDir, ...POLICY }, dataDir, false);
  const sessions = new SessionRegistry();
  const logLines: { msg: string; [k: string]: unknown }[] = [];
  const sink = new PassThrough();
  sink.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n').filter(Boolean)) logLines.push(JSON.parse(line));
  });
  const log = pino({ level: 'info' }, sink);
  const svc = { config, dataDir, log, events: new EventBus(new MemorySink()), store, sessions } as unknown as GatewayServices;
  const enforcement = startAccessEnforcement(svc, { expire: false });
  cleanups.push(() => enforcement.stop());
  return { sessions, logLines, enforcement };
}

function principal(user: string, certSerial: string): Principal {
  return { user, roles: [], certSerial, credential: 'x509', notBefore: new Date(), notAfter: new Date(Date.now() + 3_600_000), extensions: [] };
}

function activeGrant(id: string, user: string): AccessRecord {
  const now = new Date();
  return {
    id,
    user,
    role: 'prod-dba',
    targets: ['pg-prod'],
    reason: 'incident',
    ttlMs: 3_600_000,
    state: 'active',
    createdAt: now.toISOString(),
    requestExpiresAt: new Date(now.getTime() + 3_600_000).toISOString(),
    approvals: [],
    breakGlass: false,
    grantedAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + 3_600_000).toISOString(),
  };
}

interface Ended {
  reason: EndReason;
  message: string;
  /** Observed while B's pool was still busy with the slow statements. */
  whilePoolBusy: boolean;
  /** Observed while B's grant read was still queued for a pooled connection. */
  whileGrantReadPending: boolean;
}

describe('live enforcement on a replica whose store cannot answer grant reads', () => {
  it("a revocation and a lock on A cut sessions on B while B's pool is busy and its grant read still waits", async () => {
    const schema = 'enforcement_busy_pool';
    const [a, b] = [await openStore(schema), await openStore(schema)];
    await a.createAccess(activeGrant('g-gina', 'gina'));
    const { sessions, logLines, enforcement } = enforceOn(b);
    const pool = (b as unknown as { pool: pg.Pool }).pool;
    let slowEnded = false;
    const ended = new Map<string, Ended>();
    const open = (user: string, serial: string, grantIds: string[] = []) => {
      const handle = sessions.open(
        { protocol: 'postgres', principal: principal(user, serial), target: { name: 'pg-prod', host: '127.0.0.1', port: 5432 }, source: { ip: '127.0.0.1', port: 1 }, grantIds },
        (reason, message) => {
          ended.set(user, { reason, message, whilePoolBusy: !slowEnded, whileGrantReadPending: pool.waitingCount > 0 });
          handle.close(reason);
        },
      );
    };
    open('gina', 's-gina', ['g-gina']); // holds a JIT grant: every pass reads it from the store
    open('erin', 's-erin'); // her certificate gets revoked on A
    open('frank', 's-frank'); // he gets locked on A
    await enforcement.tick();
    expect(ended.size, 'no session is cut before anything changed').toBe(0);

    // Every connection of B's pool busy with a slow statement (ten slow audit searches through the
    // console): the server's statement_timeout ends them after 10 s. A pooled connection is handed to the
    // next waiter only after its statement's outcome is delivered, so `slowEnded` is set before anything
    // that queued for the pool can run.
    const slow = Array.from({ length: 10 }, () => pool.query('SELECT pg_sleep(30)').finally(() => (slowEnded = true)).catch(() => 'cancelled'));
    await waitFor(
      async () => Number((await stores.admin.query(`SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'vigil' AND query = 'SELECT pg_sleep(30)'`)).rows[0].n) === 10,
      10_000,
      "B's pool fully busy",
    );
    // B's enforcement has queued its read of gina's grant behind them.
    await waitFor(() => pool.waitingCount > 0, 10_000, "B's grant read queued for the pool");

    await a.revoke({ serial: 's-erin', reason: 'key leaked', by: 'root', time: new Date().toISOString() });
    await a.putLock({ kind: 'user', name: 'frank', reason: 'left the company', by: 'root', createdAt: new Date().toISOString() });
    await waitFor(() => ended.has('erin') && ended.has('frank'), 20_000, "erin's and frank's sessions cut");

    expect(ended.get('erin')).toEqual({ reason: 'revoked', message: END_MESSAGES.certRevoked, whilePoolBusy: true, whileGrantReadPending: true });
    expect(ended.get('frank')).toEqual({ reason: 'locked', message: END_MESSAGES.locked, whilePoolBusy: true, whileGrantReadPending: true });
    expect(ended.has('gina'), "a grant that could not be read does not cut its session").toBe(false);

    // The grant read gives up (the pool's connection timeout) and says which grant it could not read.
    const warning = await waitFor(() => logLines.find((l) => Array.isArray(l.failed_grants)), 20_000, 'the failed grant read logged');
    expect(warning.failed_grants).toEqual([{ grant: 'g-gina', err: expect.stringMatching(/unavailable/) }]);
    await Promise.all(slow);

    // Once the pool is free again, grant reads resume: revoking gina's grant on A cuts her on B.
    await a.updateAccess('g-gina', (g) => ({ ...g, state: 'revoked' }));
    await waitFor(() => ended.has('gina'), 10_000, "gina's session cut once her grant is revoked");
    expect(ended.get('gina')).toMatchObject({ reason: 'revoked', message: END_MESSAGES.grantRevoked, whilePoolBusy: false });
    expect(logLines.some((l) => l.msg === 'access enforcement reads grants again')).toBe(true);
  }, 60_000);

  it('a grant read that fails spares only the sessions on that grant: a revoked grant beside it still cuts', async () => {
    const schema = 'enforcement_bad_grant';
    const [a, b] = [await openStore(schema), await openStore(schema)];
    await a.createAccess(activeGrant('g-hal', 'hal'));
    const { sessions, logLines, enforcement } = enforceOn(b);
    const ended = new Map<string, EndReason>();
    const open = (user: string, grantIds: string[]) => {
      const handle = sessions.open(
        { protocol: 'postgres', principal: principal(user, `s-${user}`), target: { name: 'pg-prod', host: '127.0.0.1', port: 5432 }, source: { ip: '127.0.0.1', port: 1 }, grantIds },
        (reason) => {
          ended.set(user, reason);
          handle.close(reason);
        },
      );
    };
    // A grant id PostgreSQL refuses to read (a NUL byte is no valid text): its read fails on every pass.
    open('ivy', ['g-ivy\u0000']);
    open('hal', ['g-hal']);
    await enforcement.tick();
    expect(ended.size).toBe(0);

    await a.updateAccess('g-hal', (g) => ({ ...g, state: 'revoked' }));
    await waitFor(() => ended.has('hal'), 10_000, "hal's session cut once his grant is revoked");
    expect(ended.get('hal')).toBe('revoked');
    expect(ended.has('ivy'), 'a grant that could not be read does not cut its session').toBe(false);
    const warning = logLines.find((l) => Array.isArray(l.failed_grants));
    expect(warning?.failed_grants).toEqual([{ grant: 'g-ivy\u0000', err: expect.any(String) }]);
  }, 60_000);
});
