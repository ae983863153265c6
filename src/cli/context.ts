import os from 'node:os';
import fs from 'node:fs';
import type { Logger } from 'pino';
import { loadConfig, type LoadedConfig } from '../config/load.ts';
import type { VigilConfig } from '../config/schema.ts';
import { auditOptions, dataPaths } from '../data-dir.ts';
import { EventBus } from '../events/bus.ts';
import { silentLogger } from '../log.ts';
import { initIdentity, openIdentity } from '../identity/index.ts';
import type { IdentityService } from '../identity/types.ts';
import { openStateStore } from '../store/index.ts';
import type { StateStore } from '../store/types.ts';
import { openAuditForCli } from '../../recorder/audit/index.ts';
import type { CommandArgs } from './command.ts';

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

export function loadFromArgs(args: Pick<CommandArgs, 'configPath' | 'dataDir'>): LoadedConfig {
  return loadConfig({ configPath: args.configPath, dataDir: args.dataDir });
}

/**
 * Open the data directory for a CLI command. Events go to the audit log directly when no gateway holds
 * the writer, otherwise through the spool that the running gateway ingests into the same chain.
 */
export async function openLocal(args: Pick<CommandArgs, 'configPath' | 'dataDir'>): Promise<LocalContext> {
  const loaded = loadFromArgs(args);
  const { config, dataDir } = loaded;
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const log = silentLogger();
  // A CLI run may use another config than the gateway: never rewrite the server or host certificates here.
  await initIdentity(dataDir, config, { updateDerived: false });
  const store = await openStateStore(dataDir);
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
