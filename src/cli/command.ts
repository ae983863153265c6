import type { ProxyModule } from '../gateway/proxy.ts';

/**
 * One command-line option as node:util parseArgs takes it, plus what `--help` and completion show:
 * `help` says what it means (every option needs one, a test checks; common ones like --json take theirs
 * from COMMON_OPTION_HELP), `arg` names its value (`FILE`, `30m`).
 */
export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  help?: string;
  arg?: string;
}

/** Meanings of options many commands share, used when an option carries no `help` of its own. */
export const COMMON_OPTION_HELP: Record<string, { help: string; arg?: string }> = {
  config: { help: 'configuration file (default: $VIGIL_CONFIG, else built-in defaults)', arg: 'PATH' },
  data: { help: 'data directory (default: data_dir from the configuration)', arg: 'DIR' },
  help: { help: 'show this help' },
  json: { help: 'print JSON (one object per line) instead of a table, for scripts' },
};

/**
 * One CLI command. `name` may have several words (`cert issue`). Options use node:util parseArgs;
 * every command also accepts --config PATH and --data DIR (added by the runner).
 */
export interface Command {
  name: string;
  summary: string;
  /** Usage line after `vigil <name>`, e.g. `--user U --roles R1,R2 [--ttl 1h]`, optionally followed by notes. */
  usage?: string;
  options?: Record<string, OptionSpec>;
  /** Complete command lines shown under "Examples" in `--help` (without the leading `vigil`). */
  examples?: string[];
  /** Allow positional arguments (e.g. a serial or an id). */
  positionals?: boolean;
  /**
   * The command reads only the data directory (the audit log, recordings) or talks to a running gateway:
   * it is not given the protocol modules, so it starts without loading any proxy.
   */
  withoutProxies?: boolean;
  run(args: CommandArgs): Promise<number | void>;
}

export interface CommandArgs {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  /** --config and --data as given. */
  configPath?: string;
  dataDir?: string;
  /** The protocols this vigil is assembled with (app/): config loading and `serve` need them. */
  proxies: readonly ProxyModule<any>[];
  /** Where to write normal output (tests capture it). */
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

/** A usage error: printed with the command's usage, exit code 2. */
export class UsageError extends Error {}

export function stringOpt(v: CommandArgs['values'], key: string): string | undefined {
  const x = v[key];
  return typeof x === 'string' ? x : undefined;
}

export function requireOpt(v: CommandArgs['values'], key: string): string {
  const x = stringOpt(v, key);
  if (!x) throw new UsageError(`--${key} is required`);
  return x;
}
