import os from 'node:os';
import fs from 'node:fs';
import type { Logger } from 'pino';
import { loadConfig, type LoadedConfig } from '../config/load.ts';
import type { VigilConfig } from '../config/schema.ts';
import type { EventBus } from '../events/bus.ts';
import type { IdentityService } from '../identity/types.ts';
import type { StateStore } from '../store/types.ts';
import type { CommandArgs } from './command.ts';
import { NotFoundError } from '../errors.ts';

/** What a CLI command works with when it acts on the data directory directly (no running gateway needed). */
export interface LocalContext {
  loaded: LoadedConfig;
  config: VigilConfig;
  dataDir: string;
  log: Logger;
  store: StateStore;
  identity: IdentityService;
  events: EventBus;
  /** Origin of events caused by this CLI invocation. */
  source: { ip: string; via: string };
  close(): Promise<void>;
}

/** The OS user running the CLI, used as actor when no --by is given. */
export function localUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return 'unknown';
  }
}

export function loadFromArgs(args: Pick<CommandArgs, 'configPath' | 'dataDir' | 'proxies'>): LoadedConfig {
  return loadConfig({ configPath: args.configPath, dataDir: args.dataDir, proxies: args.proxies });
}

/**
 * Open the data directory for a CLI command. Events go to the audit log directly when no gateway holds
 * the writer, otherwise through the spool that the running gateway ingests into the same chain.
 */
/**
 * For commands that only read (listings): a data dir that does not exist is a mistyped --data or data_dir,
 * to be said as such, not answered from an empty state database created on the spot.
 */
export function requireExistingDataDir(dataDir: string): void {
  if (!fs.existsSync(dataDir)) throw new NotFoundError(`no data directory at ${dataDir} (check --data or data_dir in the config)`);
}

/** `readOnly`: the command only lists, so a missing data dir is an error instead of being created. */
export async function openLocal(args: Pick<CommandArgs, 'configPath' | 'dataDir' | 'proxies'>, opts: { readOnly?: boolean } = {}): Promise<LocalContext> {
  // Imported here, not at the top: commands that only read (audit search, help) import this module for
  // loadFromArgs and should not pay for the store, identity and logger at start-up.
  const [{ auditOptions, dataPaths }, { EventBus }, { silentLogger }, { initIdentity, openIdentity }, { openStateStore }, { openAuditForCli }] = await Promise.all([
    import('../data-dir.ts'),
    import('../events/bus.ts'),
    import('../log.ts'),
    import('../identity/index.ts'),
    import('../store/index.ts'),
    import('../../recorder/audit/index.ts'),
  ]);
  const loaded = loadFromArgs(args);
  const { config, dataDir } = loaded;
  if (opts.readOnly) requireExistingDataDir(dataDir);
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const log = silentLogger();
  // A CLI run may use another config than the gateway: never rewrite the server or host certificates here.
  await initIdentity(dataDir, config, { updateDerived: false });
  const store = await openStateStore(dataDir, config.store);
  const identity = await openIdentity(dataDir, config, store);
  const audit = await openAuditForCli(dataPaths(dataDir).audit, auditOptions(dataDir, config, log));
  const events = new EventBus(audit);
  return {
    loaded,
    config,
    dataDir,
    log,
    store,
    identity,
    events,
    source: { ip: 'local', via: `cli:${localUser()}@${os.hostname()}` },
    async close() {
      await audit.close();
      await store.close();
    },
  };
}
