import fs from 'node:fs';
import type { RecordingStorageConfig } from '../../recorder/recordings/storage.ts';
import path from 'node:path';
import type { CommandArgs } from './command.ts';

/**
 * The data directory a read-only command works on (audit search, tail, head, verify; replay), found without
 * validating the whole config: `--data` as given, else `data_dir` from the config file (relative to the
 * file), else `./data`. Loading the full schema (zod, every section) costs more than the search itself, and
 * these commands use nothing else from the config. `vigil config check` is what validates the file; a
 * config whose `data_dir` is not a string still gets the full loader's error naming the key.
 */
export async function dataDirFromArgs(args: Pick<CommandArgs, 'configPath' | 'dataDir' | 'proxies'>): Promise<string> {
  if (args.dataDir !== undefined) return path.resolve(args.dataDir);
  const file = configFileOf(args);
  if (!file) return path.resolve('./data');
  const doc = await readDocument(file);
  const dataDir = isMap(doc) ? doc.data_dir : undefined;
  if (typeof dataDir === 'string' || (isMap(doc) && dataDir === undefined)) {
    return path.resolve(path.dirname(file), typeof dataDir === 'string' ? dataDir : './data');
  }
  const { loadFromArgs } = await import('./context.ts');
  return loadFromArgs(args).dataDir;
}

/**
 * Whether the config may name a PostgreSQL store (`store.kind: postgres`), read the same cheap way: false
 * only when it certainly does not (no file, no `store`, or `kind: sqlite`). Read-only commands open the
 * full config, and with it the shared audit index, only when this says true.
 */
export async function mayUseSharedStore(args: Pick<CommandArgs, 'configPath'>): Promise<boolean> {
  const file = configFileOf(args);
  if (!file) return false;
  const doc = await readDocument(file);
  if (!isMap(doc)) return true; // unreadable or odd: the full loader decides (and names the problem)
  const store = doc.store;
  if (store === undefined || store === null) return false;
  return !(isMap(store) && store.kind === 'sqlite');
}

function configFileOf(args: Pick<CommandArgs, 'configPath'>): string | undefined {
  const file = args.configPath ?? process.env.VIGIL_CONFIG;
  return file ? path.resolve(file) : undefined;
}

const isMap = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** The config file's YAML document, not validated; undefined when unreadable or not YAML. */
async function readDocument(abs: string): Promise<unknown> {
  try {
    const { parse } = await import('yaml');
    return parse(fs.readFileSync(abs, 'utf8'));
  } catch {
    return undefined; // the full loader says why
  }
}

/**
 * `recording.storage` of the config file alone (where `vigil replay` reads recordings from), validated with
 * its own schema: like the data dir, without loading every proxy for the rest of the file.
 */
export async function recordingStorageFromArgs(args: Pick<CommandArgs, 'configPath'>): Promise<RecordingStorageConfig> {
  const file = args.configPath ?? process.env.VIGIL_CONFIG;
  if (!file) return { kind: 'local' };
  const abs = path.resolve(file);
  const [{ parse }, { ConfigError }] = await Promise.all([import('yaml'), import('../errors.ts')]);
  let doc: unknown;
  try {
    doc = parse(fs.readFileSync(abs, 'utf8'));
  } catch (e) {
    throw new ConfigError('', `cannot read config file ${abs}: ${(e as Error).message}`);
  }
  const recording = doc && typeof doc === 'object' ? (doc as Record<string, unknown>).recording : undefined;
  const storage = recording && typeof recording === 'object' ? (recording as Record<string, unknown>).storage : undefined;
  // The common case (local files) costs no schema.
  if (storage === undefined) return { kind: 'local' };
  const { recordingStorageSchema } = await import('../config/schema.ts');
  const r = recordingStorageSchema({ base: path.dirname(abs), checkFiles: true }).safeParse(storage);
  if (!r.success) throw new ConfigError('recording.storage', r.error.issues[0]?.message ?? 'invalid');
  return r.data as RecordingStorageConfig;
}
