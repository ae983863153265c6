import { describe, expect, it } from 'vitest';
import type { Principal } from '../../src/identity/types.ts';
import { silentLogger } from '../../src/log.ts';
import { SessionRegistry, type EndReason, type LiveSession } from '../../src/sessions/registry.ts';
import { SharedSessions } from '../../src/sessions/shared-registry.ts';
import type { PostgresStateStore } from '../../src/store/postgres.ts';
import { startCuttableRelay } from '../support/cuttable-relay.ts';
import { usePostgresStoreReplicas } from '../support/pg-store.ts';
import { waitFor } from '../support/tmp.ts';

/**
 * The live-session registry across replicas as operators hit it during an incident: sessions a cluster
 * worker holds (adopted by the primary) must be listed and killable through another replica as soon as
 * they start, and a replica cut off from the store long enough for the others to sweep it must publish its
 * sessions again when it is back. Replicas are store instances in this process on one real PostgreSQL; the
 * heartbeat is set far beyond the test's waits where a test must not pass because of it.
 */

const stores = usePostgresStoreReplicas();
const { cleanups } = stores;
const NO_HEARTBEAT_MS = 10 * 60_000;

/** A replica's store on `schema`, through a relay's `port` when given; it reconnects quickly once the relay is back up. */
const openStore = (schema: string, port?: number) => stores.openStore(schema, { port, reconnectMs: 100 });

async function replica(store: PostgresStateStore, name: string, timing: { heartbeatMs: number; leaseMs?: number }) {
  const registry = new SessionRegistry();
  const shared = await SharedSessions.start({ registry, store: store.liveSessions!, replica: name, log: silentLogger(), ...timing });
  cleanups.push(() => shared.stop());
  return { registry, shared };
}

const principal = (user: string): Principal => ({
  user,
  roles: ['engineer'],
  certSerial: `serial-${user}`,
  credential: 'x509',
  notBefore: new Date(Date.now() - 60_000),
  notAfter: new Date(Date.now() + 3_600_000),
  extensions: [],
});

const info = (user: string) => ({
  protocol: 'postgres',
  principal: principal(user),
  target: { name: 'pg-dev', host: '127.0.0.1', port: 5432, database: 'app' },
  source: { ip: '127.0.0.1', port: 40000 },
  grantIds: [],
});

describe('live sessions across replicas: review', () => {
  it("a worker's session adopted by the primary is listed and killable through another replica before any heartbeat", async () => {
    const schema = 'review_live_adopted';
    const [storeA, storeB] = [await openStore(schema), await openStore(schema)];
    const a = await replica(storeA, 'replica-a', { heartbeatMs: NO_HEARTBEAT_MS });
    const b = await replica(storeB, 'replica-b', { heartbeatMs: NO_HEARTBEAT_MS });
    // The first publish of each (at start) renews its lease; a later one must come from the adoption.
    await waitFor(async () => (await stores.admin.query(`SELECT 1 FROM ${schema}.live_replicas WHERE replica = 'replica-a'`)).rowCount, 15_000, "A's lease");

    // As src/gateway/workers/pool.ts does on a worker's session_opened: the primary adopts the session.
    const session: LiveSession = { ...info('alice'), id: 'adopted-session-1', startedAt: new Date(), worker: { id: 1, pid: 4242 } };
    const terminated: { reason: EndReason; message: string }[] = [];
    const handle = a.registry.adopt(session, (reason, message) => terminated.push({ reason, message }));

    const row = await waitFor(async () => (await b.shared.list([])).sessions.find((s) => s.id === session.id), 15_000, "the adopted session listed on B");
    expect(row).toMatchObject({ user: 'alice', replica: 'replica-a', worker_pid: 4242 });

    // A kill through B reaches the holder, which asks the worker to end it (as a local kill would).
    const killed = b.shared.kill(session.id, 'terminated by root: INC-7', 15_000);
    await waitFor(() => terminated.length, 15_000, 'the kill carried out by the holder');
    expect(terminated[0]).toEqual({ reason: 'terminated', message: 'terminated by root: INC-7' });
    // The worker reports the close: the session leaves the listing without waiting for a heartbeat.
    handle.close('terminated');
    expect(await killed).toEqual({ held: true, ended: true });
    expect((await b.shared.list([])).sessions.some((s) => s.id === session.id)).toBe(false);
  }, 60_000);

  it('a replica cut off from the store until the others swept it publishes its sessions again when it is back', async () => {
    const schema = 'review_live_swept';
    const relay = await startCuttableRelay(stores.db.port);
    cleanups.push(() => relay.close());
    const storeA = await openStore(schema, relay.port);
    const storeB = await openStore(schema);
    // Short lease so that B sweeps A (after 10 leases) within the test; B's heartbeat runs its sweep.
    const a = await replica(storeA, 'replica-a', { heartbeatMs: 100, leaseMs: 300 });
    const b = await replica(storeB, 'replica-b', { heartbeatMs: 100, leaseMs: 300 });

    // An idle session (a psql left open in a shell): its view does not change while it idles.
    const terminated: string[] = [];
    const handle = a.registry.open(info('carol'), (_reason, message) => terminated.push(message), 'idle-session-1');
    await waitFor(async () => (await b.shared.list([])).sessions.some((s) => s.id === handle.id), 15_000, "A's session listed on B");

    await relay.down();
    // B's sweep removes A (lease over for 10 leases) and its sessions, as for a replica that died.
    await waitFor(async () => (await stores.admin.query(`SELECT 1 FROM ${schema}.live_replicas WHERE replica = 'replica-a'`)).rowCount === 0, 30_000, 'A swept by B');
    expect((await stores.admin.query(`SELECT 1 FROM ${schema}.live_sessions WHERE id = $1`, [handle.id])).rowCount).toBe(0);
    await relay.up();

    // A is back (its lease renewed): the session it still holds is listed and killable through B again.
    await waitFor(async () => (await stores.admin.query(`SELECT 1 FROM ${schema}.live_replicas WHERE replica = 'replica-a'`)).rowCount, 30_000, "A's lease renewed");
    const row = await waitFor(async () => (await b.shared.list([])).sessions.find((s) => s.id === handle.id), 15_000, "A's session listed on B again");
    expect(row).toMatchObject({ user: 'carol', replica: 'replica-a' });
    expect(await b.shared.kill(handle.id, 'terminated by root: INC-8', 0).then((r) => r.held)).toBe(true);
    await waitFor(() => terminated.length, 15_000, 'the kill carried out by A');
    expect(terminated).toEqual(['terminated by root: INC-8']);
    handle.close('terminated');
  }, 90_000);
  it('a kill asked while the holder was cut off from the store is carried out when it is back, even after the others swept it', async () => {
    const schema = 'review_live_kill_swept';
    const relay = await startCuttableRelay(stores.db.port);
    cleanups.push(() => relay.close());
    const storeA = await openStore(schema, relay.port);
    const storeB = await openStore(schema);
    // A's lease leaves time to ask the kill once A is cut off; B sweeps replicas 10 of its own leases after theirs ran out.
    const a = await replica(storeA, 'replica-a', { heartbeatMs: 100, leaseMs: 5_000 });
    const b = await replica(storeB, 'replica-b', { heartbeatMs: 100, leaseMs: 300 });

    const terminated: string[] = [];
    const killed = a.registry.open(info('dave'), (_reason, message) => terminated.push(message), 'killed-session-1');
    const idle = a.registry.open(info('erin'), () => {}, 'idle-session-2');
    await waitFor(async () => (await b.shared.list([])).sessions.filter((s) => s.replica === 'replica-a').length === 2, 15_000, "A's sessions listed on B");

    await relay.down();
    // A's lease still runs: B records the kill on the row; A, cut off, cannot hear of it yet.
    expect(await b.shared.kill(killed.id, 'terminated by root: INC-9', 0)).toEqual({ held: true, ended: false });
    // B's sweep (A's lease long over) removes A's other session, as for a replica that died.
    await waitFor(async () => (await stores.admin.query(`SELECT 1 FROM ${schema}.live_sessions WHERE id = $1`, [idle.id])).rowCount === 0, 60_000, "A's idle session swept by B");
    expect(terminated).toEqual([]);
    await relay.up();

    // A is back: the kill asked of it is carried out, and the session it still holds is listed again.
    await waitFor(() => terminated.length, 30_000, 'the kill asked during the outage carried out by A');
    expect(terminated).toEqual(['terminated by root: INC-9']);
    killed.close('terminated');
    const row = await waitFor(async () => (await b.shared.list([])).sessions.find((s) => s.id === idle.id), 15_000, "A's idle session listed on B again");
    expect(row).toMatchObject({ user: 'erin', replica: 'replica-a' });
    await waitFor(async () => !(await b.shared.list([])).sessions.some((s) => s.id === killed.id), 15_000, 'the killed session gone from the listing');
    idle.close('client_closed');
  }, 120_000);
});
