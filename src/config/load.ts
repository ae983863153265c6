import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { buildConfigSchema, type VigilConfig } from './schema.ts';
import type { ProxyConfigPart } from './proxy-config.ts';

export interface LoadOptions {
  /** Config file; falls back to $VIGIL_CONFIG; none = built-in defaults (embedded store under ./data). */
  configPath?: string;
  /** Overrides data_dir (the `--data` flag). */
  dataDir?: string;
  /** Check that referenced files exist (default true). */
  checkFiles?: boolean;
  /** The protocols whose sections and targets the config may have (app/config.ts binds proxies/registry.ts). */
  proxies?: readonly ProxyConfigPart[];
}

export interface LoadedConfig {
  config: VigilConfig;
  /** Config file used, if any. */
  file?: string;
  /** Absolute data directory. */
  dataDir: string;
  /** The data directory the file names (absolute; the default when it names none), whatever `--data` says. */
  fileDataDir?: string;
}

/** `targets[0].port` from a zod path. */
export function formatPath(p: readonly PropertyKey[]): string {
  let out = '';
  for (const k of p) out += typeof k === 'number' ? `[${k}]` : out ? `.${String(k)}` : String(k);
  return out;
}

function toConfigError(err: z.ZodError): ConfigError {
  const issue = err.issues[0];
  let p = formatPath(issue.path);
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0];
    p = p ? `${p}.${key}` : key;
    message = 'unknown key';
  } else if (issue.code === 'invalid_union' && 'note' in issue && issue.note === 'No matching discriminator') {
    if (!p.endsWith('protocol')) p = p ? `${p}.protocol` : 'protocol';
    message = 'unknown protocol';
  }
  const more = err.issues.length > 1 ? ` (and ${err.issues.length - 1} more problem${err.issues.length > 2 ? 's' : ''})` : '';
  return new ConfigError(p, message + more);
}

type ConfigSchema = ReturnType<typeof buildConfigSchema>;
/**
 * Built schemas by proxy set, then by (checkFiles, base): building one costs far more than parsing a
 * config with it (zod compiles every object schema), and a schema holds no state of its own (defaults
 * are copied on every parse). A few bases at most in a process; bounded anyway.
 */
const schemas = new WeakMap<readonly ProxyConfigPart[], Map<string, ConfigSchema>>();
const SCHEMAS_PER_PROXY_SET = 16;

function schemaFor(base: string, checkFiles: boolean, proxies: readonly ProxyConfigPart[]): ConfigSchema {
  let byContext = schemas.get(proxies);
  if (!byContext) schemas.set(proxies, (byContext = new Map()));
  const key = `${checkFiles ? 1 : 0}${base}`;
  let schema = byContext.get(key);
  if (!schema) {
    schema = buildConfigSchema({ base, checkFiles }, proxies);
    if (byContext.size >= SCHEMAS_PER_PROXY_SET) byContext.delete(byContext.keys().next().value!);
    byContext.set(key, schema);
  }
  return schema;
}

/** Validate a parsed YAML document. Throws ConfigError naming the first bad key. */
const NO_PROXIES: readonly ProxyConfigPart[] = [];

export function parseConfig(doc: unknown, base: string, checkFiles = true, proxies: readonly ProxyConfigPart[] = NO_PROXIES): VigilConfig {
  const schema = schemaFor(base, checkFiles, proxies);
  const result = schema.safeParse(doc ?? {});
  if (!result.success) throw toConfigError(result.error);
  return result.data as VigilConfig;
}

/** ` at line L, column C` of an offset in the text. */
function positionOf(text: string, offset: number | undefined): string {
  if (typeof offset !== 'number') return '';
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return ` at line ${line}, column ${offset - before.lastIndexOf('\n')}`;
}

/**
 * Some YAML messages end with the source they stumbled on (`Block scalar header includes extra characters:
 * |https://hooks…`, `Unresolved alias …: <name>`): that may be an inline secret, so only the part before
 * the quoted source is kept. The position says where to look.
 */
const withoutQuotedSource = (message: string) => message.split(': ')[0];

/** Offset of the first alias (`*name`) whose anchor is not defined before it. */
function unresolvedAliasOffset(doc: YAML.Document): number | undefined {
  const anchors = new Set<string>();
  let offset: number | undefined;
  YAML.visit(doc, {
    Node(_key, node) {
      if (YAML.isAlias(node)) {
        if (!anchors.has(node.source)) {
          offset = node.range?.[0];
          return YAML.visit.BREAK;
        }
      } else if (node.anchor) anchors.add(node.anchor);
      return undefined;
    },
  });
  return offset;
}

/**
 * Parse the config text, or throw a ConfigError naming the file and the position. Not prettyErrors: it
 * appends the offending line, which may hold a secret (a Slack URL), and this message reaches the audit
 * log (config.reload_failed), the API and doctor's output. Warnings (an unknown `!tag`) are not printed.
 */
function parseYaml(text: string, abs: string): unknown {
  const invalid = (message: string, offset: number | undefined) =>
    new ConfigError('', `${abs} is not valid YAML: ${withoutQuotedSource(message)}${positionOf(text, offset)}`);
  const doc = YAML.parseDocument(text, { prettyErrors: false });
  const first = doc.errors[0];
  if (first) throw invalid(first.message, first.pos[0]);
  try {
    return doc.toJS();
  } catch (e) {
    // An unresolved alias, or one expanding past maxAliasCount ("billion laughs").
    throw invalid((e as Error).message, e instanceof ReferenceError ? unresolvedAliasOffset(doc) : undefined);
  }
}

export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  const file = opts.configPath ?? process.env.VIGIL_CONFIG;
  let doc: unknown = {};
  let base = process.cwd();
  if (file) {
    const abs = path.resolve(file);
    let text: string;
    try {
      text = fs.readFileSync(abs, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new ConfigError('', `cannot read config file ${abs}: ${code === 'ENOENT' ? 'no such file' : code}`);
    }
    doc = parseYaml(text, abs);
    base = path.dirname(abs);
  }
  const config = parseConfig(doc, base, opts.checkFiles ?? true, opts.proxies);
  const fileDataDir = path.resolve(base, config.data_dir);
  const dataDir = path.resolve(opts.dataDir ?? fileDataDir);
  config.data_dir = dataDir;
  // Relative to the config file, like data_dir.
  if (config.audit.witness?.file) config.audit.witness.file = path.resolve(base, config.audit.witness.file);
  return { config, file: file ? path.resolve(file) : undefined, dataDir, fileDataDir };
}
