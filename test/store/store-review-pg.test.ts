import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../app/config.ts';
import { createAuthorizer } from '../../src/authz/index.ts';
import { StoreUnavailableError } from '../../src/errors.ts';
import { startAccessEnforcement } from '../../src/access/enforcement.ts';
import type { GatewayServices } from '../../src/gateway/services.ts';
import type { Principal } from '../../src/identity/types.ts';
import { silentLogger } from '../../src/log.ts';
import { SessionRegistry, type EndReason } from '../../src/sessions/registry.ts';
import { MemorySink, POLICY } from '../access/support.ts';
import { EventBus } from '../../src/events/bus.ts';
import { usePostgresStoreReplicas } from '../support/pg-store.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * The PostgreSQL state store as operators run it: a replica whose connection pool is busy with slow work
 * (long searches, a slow database), and a least-privilege database role that owns only vigil's schema.
 * Replicas are store instances in this process on one real PostgreSQL. The reconcile is set to a minute,
 * so nothing here passes because of it.
 */

const stores = usePostgresStoreReplicas();
const { cleanups, openStore } = stores;

const revocation = (serial: string) => ({ serial, reason: 'key leaked', by: 'root', time: new Date().toISOString() });

describe('PostgreSQL state store under operating conditions', () => {
  it("a revocation on A cuts a session on B while B's connection pool is busy with slow statements", async () => {
    const schema = 'review_busy_pool';
    const [a, b] = [await openStore(schema), await openStore(schema)];
    const dataDir = path.join(tempDir(), 'data');
    const config = parseConfig({ data_dir: dataDir, ...POLICY }, dataDir, false);
    const sessions = new SessionRegistry();
    const svc = { config, dataDir, log: silentLogger(), events: new EventBus(new MemorySink()), store: b, sessions } as unknown as GatewayServices;
    const enf = startAccessEnforcement(svc, { expire: false });
    cleanups.push(() => enf.stop());
    const p: Principal = { user: 'erin', roles: [], certSerial: 's-busy', credential: 'x509', notBefore: new Date(), notAfter: new Date(Date.now() + 3_600_000), extensions: [] };
    const ended: { reason?: EndReason; whilePoolBusy?: boolean } = {};
    let slowEnded = false;
    const handle = sessions.open({ protocol: 'postgres', principal: p, target: { name: 'pg-prod', host: '127.0.0.1', port: 5432 }, source: { ip: '127.0.0.1', port: 1 }, grantIds: [] }, (reason) => {
      ended.reason = reason;
      ended.whilePoolBusy = !slowEnded;
      handle.close(reason);
    });

    // Every connection of B's pool busy with a slow statement (as ten slow audit searches through the
    // console would be): the server's statement_timeout ends them after 10 s.
    const pool = (b as unknown as { pool: pg.Pool }).pool;
    // A pooled connection is handed to the next waiter only after its statement's outcome is delivered, so
    // `slowEnded` is set before anything that queued for the pool can run.
    const slow = Array.from({ length: 10 }, () => pool.query('SELECT pg_sleep(30)').finally(() => (slowEnded = true)).catch(() => 'cancelled'));
    await waitFor(
      async () => Number((await stores.admin.query(`SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'vigil' AND query = 'SELECT pg_sleep(30)'`)).rows[0].n) === 10,
      10_000,
      "B's pool fully busy",
    );

    await a.revoke(revocation('s-busy'));
    // Cut while the pool is still busy: the revocation must not queue behind B's slow statements.
    await waitFor(() => ended.reason, 20_000, "erin's session cut");
    expect(ended.reason).toBe('revoked');
    expect(ended.whilePoolBusy, 'the session was only cut once a slow statement had ended').toBe(true);
    await Promise.all(slow);
  }, 60_000);

  it('starts with a role that owns its schema but may not create schemas in the database', async () => {
    const schema = 'review_owned';
    const role = 'vigil_least';
    const password = 'least-priv-pass';
    await stores.admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
    await stores.admin.query(`CREATE SCHEMA ${schema} AUTHORIZATION ${role}`);
    cleanups.push(async () => {
      await stores.admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await stores.admin.query(`DROP ROLE ${role}`);
    });
    const who = { user: role, password };
    const first = await openStore(schema, { who });
    expect((await stores.admin.query(`SELECT max(version) AS v FROM ${schema}.schema_migrations`)).rows[0].v).toBeGreaterThanOrEqual(4);
    // A second replica (and every restart) finds the schema there and up to date.
    const second = await openStore(schema, { who });
    await first.revoke(revocation('s-owned'));
    await waitFor(async () => (await second.refresh(), second.isRevoked('s-owned')), 5_000, 'the revocation on the second replica');
  }, 60_000);
});

describe('PostgreSQL state store: a database that does not answer in time', () => {
  it('a table locked by someone else (a migration, VACUUM FULL) makes reads fail as "unavailable", so new sessions are refused as store_unavailable', async () => {
    const schema = 'review_locked_table';
    const store = await openStore(schema);
    const holder = new pg.Client({ host: '127.0.0.1', port: stores.db.port, user: stores.db.superuser, database: 'app' });
    await holder.connect();
    cleanups.push(() => holder.end());
    await holder.query('BEGIN');
    await holder.query(`LOCK TABLE "${schema}".access IN ACCESS EXCLUSIVE MODE`);
    // The authorizer reads the user's grants for every new session: the store's lock_timeout fires (2 s),
    // and the refusal must say the store is unavailable (admission: store_unavailable, "cannot reach its
    // state store"), not that the authorizer failed (authz_error, a bare "Access denied.").
    const dataDir = path.join(tempDir(), 'data');
    const authz = createAuthorizer(parseConfig({ data_dir: dataDir, ...POLICY }, dataDir, false), store);
    const principal: Principal = { user: 'alice', roles: ['dev'], certSerial: 's-alice', credential: 'x509', notBefore: new Date(), notAfter: new Date(Date.now() + 3_600_000), extensions: [] };
    const err = await authz.authorize({ principal, target: 'pg-stage', protocol: 'postgres', database: 'app' }).then(() => undefined, (e: Error & { code?: string }) => e);
    await holder.query('ROLLBACK');
    expect(err?.message).toMatch(/lock timeout/);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err?.code).toBe('VIGIL_STORE_UNAVAILABLE');
    expect(await store.listAccess({ state: 'active', user: 'alice' })).toEqual([]);
  }, 30_000);
});
