import pg from 'pg';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { silentLogger } from '../../src/log.ts';
import { openStateStore, type StateStore } from '../../src/store/index.ts';
import { PostgresStateStore } from '../../src/store/postgres.ts';
import { PASSWORDS, startPostgres, type PostgresHandle } from './postgres.ts';
import { tempDir } from './tmp.ts';

/**
 * What the PostgreSQL state-store tests (test/store/*) share: one real PostgreSQL per test file, started
 * before its tests and stopped after them, with store instances in this process as replicas.
 */

/** The store URL of a login role (by default the password-authenticated `scram_user`) on a PostgreSQL at `port`. */
export function storeUrl(port: number, who: { user: string; password: string } = { user: 'scram_user', password: PASSWORDS.scram_user }): string {
  return `postgres://${who.user}:${who.password}@127.0.0.1:${port}/app?sslmode=disable`;
}

/** The replicas' reconcile: a minute, so that nothing in these tests passes because of it. */
const RECONCILE_MS = 60_000;

export interface StoreReplicas {
  /** The PostgreSQL; set once the file's beforeAll ran. */
  readonly db: PostgresHandle;
  /** A superuser connection to its `app` database, to look at and interfere with the stores' sessions. */
  readonly admin: pg.Client;
  /** Run after the current test, newest first: closing what it opened. */
  readonly cleanups: (() => unknown)[];
  /**
   * A store replica on `schema`, closed after the test; through another `port` (a relay) or as another
   * login role when given.
   */
  openStore(schema: string, opts?: { port?: number; reconnectMs?: number; who?: { user: string; password: string } }): Promise<PostgresStateStore>;
}

/** Register the hooks of a state-store test file on one PostgreSQL: start it, clean up after each test, stop it. */
export function usePostgresStoreReplicas(): StoreReplicas {
  let db: PostgresHandle | undefined;
  let admin: pg.Client | undefined;
  const cleanups: (() => unknown)[] = [];

  beforeAll(async () => {
    db = await startPostgres();
    admin = new pg.Client({ host: '127.0.0.1', port: db.port, user: db.superuser, database: 'app' });
    await admin.connect();
  }, 120_000);

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  afterAll(async () => {
    await admin?.end();
    await db?.stop();
  });

  const replicas: StoreReplicas = {
    get db() {
      if (!db) throw new Error('PostgreSQL is not started yet (usePostgresStoreReplicas: used outside a test?)');
      return db;
    },
    get admin() {
      if (!admin) throw new Error('PostgreSQL is not started yet (usePostgresStoreReplicas: used outside a test?)');
      return admin;
    },
    cleanups,
    async openStore(schema, opts = {}) {
      const url = storeUrl(opts.port ?? replicas.db.port, opts.who);
      const store = await PostgresStateStore.open({ url, schema, log: silentLogger(), reconcileMs: RECONCILE_MS, reconnectMs: opts.reconnectMs });
      cleanups.push(() => store.close());
      return store;
    },
  };
  return replicas;
}

export interface SharedStateStore {
  readonly db: PostgresHandle;
  /** The state store on `schema`, opened as vigil opens it from a config (its URL read from `urlEnv`). */
  readonly store: StateStore;
}

/**
 * Register the hooks of a test file on one state store in PostgreSQL, opened through `openStateStore` with
 * `url: { env: urlEnv }` (so that a config file written by the test can point a CLI at the same store).
 */
export function usePostgresStateStore(urlEnv: string, schema: string): SharedStateStore {
  let db: PostgresHandle | undefined;
  let store: StateStore | undefined;

  beforeAll(async () => {
    db = await startPostgres();
    process.env[urlEnv] = storeUrl(db.port);
    store = await openStateStore(tempDir(), { kind: 'postgres', url: { env: urlEnv }, schema });
  }, 120_000);

  afterAll(async () => {
    await store?.close();
    delete process.env[urlEnv];
    await db?.stop();
  });

  return {
    get db() {
      if (!db) throw new Error('PostgreSQL is not started yet (usePostgresStateStore: used outside a test?)');
      return db;
    },
    get store() {
      if (!store) throw new Error('the state store is not open yet (usePostgresStateStore: used outside a test?)');
      return store;
    },
  };
}
