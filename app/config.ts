/**
 * The full configuration: the core schema (src/config) plus every proxy's section and target kind
 * (proxies/registry.ts). Code that wants a config with `ssh:`, `postgres:` or `mysql:` loads it here.
 */
import type { SchemaContext } from '../src/config/types.ts';
import { buildConfigSchema as buildCoreSchema } from '../src/config/schema.ts';
import { loadConfig as loadCore, parseConfig as parseCore, type LoadedConfig, type LoadOptions } from '../src/config/load.ts';
import { PROXIES } from '../proxies/registry.ts';

export function buildConfigSchema(sc: SchemaContext) {
  return buildCoreSchema(sc, PROXIES);
}

export function parseConfig(doc: unknown, base: string, checkFiles = true) {
  return parseCore(doc, base, checkFiles, PROXIES);
}

export function loadConfig(opts: Omit<LoadOptions, 'proxies'> = {}): LoadedConfig {
  return loadCore({ ...opts, proxies: PROXIES });
}
