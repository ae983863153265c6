import type { Logger } from 'pino';
import type { VigilConfig, TargetConfig } from '../config/schema.ts';
import type { IdentityService } from '../identity/types.ts';
import type { StateStore } from '../store/types.ts';
import type { EventBus } from '../events/bus.ts';
import type { SessionRegistry } from '../sessions/registry.ts';
import type { RefusalBudget } from '../sessions/refusal-budget.ts';
import type { GatewayServices } from './services.ts';
import { createAuthorizer } from '../authz/index.ts';
import { dataPaths } from '../data-dir.ts';
import { targetDirectory } from '../config/target-directory.ts';
import { openConfiguredRecordings } from '../../recorder/recordings/storage.ts';
import { recordingUploadEvents } from './recording-events.ts';
import { Guardrails } from '../guardrails/index.ts';

/**
 * The services every process that runs proxies needs (the one-process gateway, and each cluster worker):
 * authorization, recordings, targets and guardrails over the given log, store and session registry.
 */
export async function coreServices(p: {
  config: VigilConfig;
  dataDir: string;
  log: Logger;
  events: EventBus;
  identity: IdentityService;
  store: StateStore;
  sessions: SessionRegistry;
  refusals?: RefusalBudget;
}): Promise<GatewayServices> {
  const { config, dataDir, log, events, store } = p;
  const services: GatewayServices = {
    config,
    dataDir,
    log,
    events,
    identity: p.identity,
    store,
    authz: createAuthorizer(config, store),
    sessions: p.sessions,
    recordings: await openConfiguredRecordings(dataPaths(dataDir).recordings, config.recording.storage, recordingUploadEvents(events, log)),
    targets: targetDirectory(config.targets as TargetConfig[]),
    refusals: p.refusals,
  };
  if (config.guardrails.length) {
    await Guardrails.ready();
    services.guardrails = new Guardrails(config.guardrails);
  }
  return services;
}
