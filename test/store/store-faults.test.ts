import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../app/config.ts';
import { startAccessEnforcement } from '../../src/access/enforcement.ts';
import { AccessService } from '../../src/access/service.ts';
import { EventBus } from '../../src/events/bus.ts';
import type { GatewayServices } from '../../src/gateway/services.ts';
import type { Principal } from '../../src/identity/types.ts';
import { silentLogger } from '../../src/log.ts';
import { SessionRegistry, type EndReason } from '../../src/sessions/registry.ts';
import { PostgresStateStore } from '../../src/store/postgres.ts';
import { actor, MemorySink, POLICY } from '../access/support.ts';
import { usePostgresStoreReplicas } from '../support/pg-store.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { startPgRelay, type PgRelay } from './pg-relay.ts';

/**
 * The PostgreSQL state store when the database misbehaves in ways that do not close connections: a row
 * lock held by someone else, a listener connection gone silent, a listener (re)connecting while the store
 * opens or closes. Replicas are store instances in this process, on one real PostgreSQL; faults go through
 * a relay that freezes or holds one chosen connection. The reconcile is set to a minute throughout, so
 * nothing here passes because of it.
 */

const stores = usePostgresStoreReplicas();
const { cleanups, openStore } = stores;

async function relay(): Promise<PgRelay> {
  const r = await startPgRelay(stores.db.port);
  cleanups.push(() => r.close());
  return r;
}

const revocation = (serial: string) => ({ serial, reason: 'key leaked', by: 'root', time: new Date().toISOString() });

describe('PostgreSQL state store faults', () => {
  it("a row lock held elsewhere on a due grant neither delays cutting a revoked or locked session on another replica nor keeps the store's backends waiting", async () => {
    const schema = 'faults_lock';
    const dataDir = path.join(tempDir(), 'data');
    const config = parseConfig({ data_dir: dataDir, ...POLICY }, dataDir, false);
    const [a, b] = [await openStore(schema), await openStore(schema)];
    const replica = (store: PostgresStateStore) => {
      const sink = new MemorySink();
      const events = new EventBus(sink);
      const svc = { config, dataDir, log: silentLogger(), events, store, sessions: new SessionRegistry() } as unknown as GatewayServices;
      return { svc, sink, access: new AccessService({ config, store, events }) };
    };
    const [ra, rb] = [replica(a), replica(b)];

    // A grant due to expire, whose row an operator's psql transaction has locked.
    const req = await ra.access.request(actor('alice'), { role: 'prod-dba', reason: 'INC-9', ttlMs: 50 });
    const g = await ra.access.approve(actor('bob', ['sre-lead']), req.id);
    await new Promise((r) => setTimeout(r, 100));
    const holder = new pg.Client({ host: '127.0.0.1', port: stores.db.port, user: stores.db.superuser, database: 'app' });
    await holder.connect();
    cleanups.push(() => holder.end());
    await holder.query('BEGIN');
    await holder.query(`SELECT 1 FROM "${schema}".access WHERE id = $1 FOR UPDATE`, [g.id]);

    // Both replicas sweep expiries (and so wait on the lock); B has the live sessions.
    for (const r of [ra, rb]) {
      const enf = startAccessEnforcement(r.svc);
      cleanups.push(() => enf.stop());
    }
    const live = (user: string, serial: string) => {
      const p: Principal = { user, roles: [], certSerial: serial, credential: 'x509', notBefore: new Date(), notAfter: new Date(Date.now() + 3_600_000), extensions: [] };
      const ended: { reason?: EndReason } = {};
      const handle = rb.svc.sessions.open({ protocol: 'postgres', principal: p, target: { name: 'pg-prod', host: '127.0.0.1', port: 5432 }, source: { ip: '127.0.0.1', port: 1 }, grantIds: [] }, (reason) => {
        ended.reason = reason;
        handle.close(reason);
      });
      return ended;
    };
    const erin = live('erin', 's-erin');
    const dan = live('dan', 's-dan');
    const waiting = async () =>
      (await stores.admin.query<{ n: string; longest: number | null }>(
        `SELECT count(*) AS n, max(extract(epoch FROM clock_timestamp() - query_start))::float8 AS longest
         FROM pg_stat_activity WHERE application_name = 'vigil' AND wait_event_type = 'Lock'`,
      )).rows[0];
    await waitFor(async () => Number((await waiting()).n) > 0, 5_000, 'a sweep waiting on the locked row');

    // Revoked and locked on A while the lock is held: cut on B within the usual second.
    await a.revoke(revocation('s-erin'));
    await waitFor(() => erin.reason, 1_000, "erin's session cut while the row is locked");
    expect(erin.reason).toBe('revoked');
    await ra.access.lock(actor('root', ['admin']), { user: 'dan', reason: 'offboarding' });
    await waitFor(() => dan.reason, 1_000, "dan's session cut while the row is locked");
    expect(dan.reason).toBe('locked');

    // Still locked, for longer than the store's lock wait: its backends give up and come back, they do not
    // queue on the lock for as long as the client waits (15 s, and then another 15 s for ROLLBACK), each
    // one a connection leaked every round.
    let longest = 0;
    for (const until = Date.now() + 7_000; Date.now() < until; ) {
      const w = await waiting();
      expect(Number(w.n)).toBeLessThanOrEqual(2); // at most one sweep per replica at a time
      longest = Math.max(longest, w.longest ?? 0);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(longest).toBeGreaterThan(1); // the sweeps did wait on the lock: the situation was as meant
    // lock_timeout is 2 s per lock: a row lock is waited for as a tuple lock and then as the holder's
    // transaction, so 4 s at most, with room for the sampling.
    expect(longest).toBeLessThan(5);

    // Released: the next sweep expires the grant, once between both replicas.
    await holder.query('ROLLBACK');
    await waitFor(async () => (await a.getAccess(g.id))?.state === 'expired', 5_000, 'the grant expired');
    await waitFor(() => [...ra.sink.events, ...rb.sink.events].some((e) => e.type === 'access.expired'), 2_000, 'access.expired');
    expect([...ra.sink.events, ...rb.sink.events].filter((e) => e.type === 'access.expired')).toHaveLength(1);
  }, 60_000);

  it('a listener connection gone silent is found and replaced: a revocation on A reaches B within seconds, not at the reconcile', async () => {
    const schema = 'faults_silent';
    const r = await relay();
    const a = await openStore(schema);
    const b = await openStore(schema, { port: r.port, reconnectMs: 200 });
    expect(r.freeze('LISTEN')).toBe(1); // B's listener; its pool keeps working
    const t0 = Date.now();
    await a.revoke(revocation('s-silent'));
    // Found silent within the listener ping (5 s) and its timeout (3 s); then B reloads on its own.
    await waitFor(async () => (await b.refresh(), b.isRevoked('s-silent')), 12_000, 'the revocation on B');
    console.log(`revocation on A seen by B with its listener frozen after ${Date.now() - t0} ms`);
    // And B listens again, on a new connection.
    await waitFor(() => r.connections('LISTEN') === 1, 5_000, "B's new listener");
    await a.revoke(revocation('s-after'));
    await waitFor(async () => (await b.refresh(), b.isRevoked('s-after')), 2_000, 'the next revocation on B');
  }, 60_000);

  it('a revocation committed while the store is starting to listen is in its cache once open() resolves', async () => {
    const schema = 'faults_open';
    const r = await relay();
    const a = await openStore(schema); // creates the schema
    const listening = r.hold('LISTEN');
    const opening = openStore(schema, { port: r.port });
    await listening.held;
    await a.revoke(revocation('s-early'));
    listening.release();
    const b = await opening;
    expect(b.isRevoked('s-early')).toBe(true);
  }, 30_000);

  it('close() while the listener is reconnecting leaves no connection behind', async () => {
    const schema = 'faults_close';
    const r = await relay();
    const b = await openStore(schema, { port: r.port, reconnectMs: 100 });
    const relistening = r.hold('LISTEN');
    // The listener's backend, whether its last statement was LISTEN, its ping or a reload of the caches
    // (which runs on the listener's connection while there is one).
    const killed = await stores.admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'vigil' AND (query IN ($1, 'SELECT 1') OR query LIKE 'SELECT (SELECT coalesce(json_agg(serial)%')`,
      [`LISTEN "${schema}_changes"`],
    );
    expect(killed.rowCount).toBe(1);
    await relistening.held; // the reconnect is under way
    await b.close();
    relistening.release();
    // The reconnect finishing after close() must end its connection: otherwise it listens on forever.
    await waitFor(
      async () => Number((await stores.admin.query(`SELECT count(*) FROM pg_stat_activity WHERE application_name = 'vigil'`)).rows[0].count) === 0,
      3_000,
      'no vigil connection left',
    );
  }, 30_000);
});
