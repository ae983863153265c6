import pg from 'pg';
import { readSecret, type SecretRef } from '../config/types.ts';
import { LATEST_VERSION } from './postgres-schema.ts';
import { describeUrl, scrubber } from './pg-url.ts';

/**
 * `vigil doctor` on a PostgreSQL store: can this host reach it, and how far is its schema? Read-only (no
 * migration: the gateway migrates at start); nothing it says contains the password.
 */
export async function checkPostgresStore(cfg: { url: SecretRef; schema: string }, timeoutMs: number): Promise<{ ok: boolean; name: string; detail: string; fix?: string }> {
  let url: string;
  try {
    url = readSecret(cfg.url);
  } catch (e) {
    return { ok: false, name: 'store url', detail: (e as Error).message, fix: 'set the variable or file that store.url names' };
  }
  let name = 'store';
  let scrub = (e: unknown) => String(e);
  try {
    name = `store ${describeUrl(url)}`;
    scrub = scrubber(url);
  } catch (e) {
    return { ok: false, name, detail: (e as Error).message, fix: 'correct the URL that store.url names' };
  }
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs, application_name: 'vigil doctor' });
  client.on('error', () => {});
  try {
    await client.connect();
    const found = await client.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [`"${cfg.schema}".schema_migrations`]);
    if (!found.rows[0].exists) {
      return { ok: true, name, detail: `reachable; schema ${cfg.schema} is not created yet (the gateway creates it at start)` };
    }
    const v = (await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM "${cfg.schema}".schema_migrations`)).rows[0].v ?? 0;
    const state = v === LATEST_VERSION ? 'up to date' : v < LATEST_VERSION ? `the gateway migrates it to ${LATEST_VERSION} at start` : `newer than this vigil (${LATEST_VERSION})`;
    return { ok: true, name, detail: `reachable; schema ${cfg.schema} at version ${v}, ${state}` };
  } catch (e) {
    return { ok: false, name, detail: scrub(e), fix: 'check that the database is up and reachable from this host, and the user, password and database in the URL' };
  } finally {
    await client.end().catch(() => {});
  }
}
