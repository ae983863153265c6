import path from 'node:path';
import type { StateStore } from './types.ts';
import { SqliteStateStore } from './sqlite.ts';

export type { StateStore } from './types.ts';

/** Open the default embedded state store in the data directory. */
export async function openStateStore(dataDir: string): Promise<StateStore> {
  return new SqliteStateStore(path.join(dataDir, 'state.db'));
}
