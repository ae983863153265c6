import path from 'node:path';
import type { Logger } from 'pino';
import type { StateStore } from './types.ts';
import type { StoreConfig } from './config.ts';
import { SqliteStateStore } from './sqlite.ts';
import { readSecret } from '../config/types.ts';
import { silentLogger } from '../log.ts';

export type { StateStore } from './types.ts';
export type { StoreConfig } from './config.ts';

/**
 * Open the configured state store (`store` in the config): SQLite in the data directory by default, or
 * PostgreSQL shared by replicas. The pg driver is only loaded when PostgreSQL is configured.
 */
export async function openStateStore(dataDir: string, config: StoreConfig = { kind: 'sqlite' }, opts: { log?: Logger } = {}): Promise<StateStore> {
  if (config.kind === 'sqlite') return new SqliteStateStore(path.join(dataDir, 'state.db'));
  const { PostgresStateStore } = await import('./postgres.ts');
  return PostgresStateStore.open({ url: readSecret(config.url), schema: config.schema, log: opts.log ?? silentLogger() });
}
