/** The gateway with every protocol of proxies/registry.ts: what `vigil serve` runs. */
import type { LoadedConfig } from '../src/config/load.ts';
import { startGateway as startCore, type Gateway, type StartOptions } from '../src/gateway/gateway.ts';
import { PROXIES } from '../proxies/registry.ts';

export type { Gateway } from '../src/gateway/gateway.ts';

/** `loaded` must come from app/config.ts (parsed with the same proxies), or its proxy sections are unknown keys. */
export function startGateway(loaded: LoadedConfig, opts: Omit<StartOptions, 'proxies'> = {}): Promise<Gateway> {
  return startCore(loaded, { ...opts, proxies: PROXIES });
}
