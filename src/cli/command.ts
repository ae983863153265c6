import type { ParseArgsConfig } from 'node:util';

/**
 * One CLI command. `name` may have several words (`cert issue`). Options use node:util parseArgs;
 * every command also accepts --config PATH and --data DIR (added by the runner).
 */
export interface Command {
  name: string;
  summary: string;
  /** Usage line after `vigil <name>`, e.g. `--user U --roles R1,R2 [--ttl 1h]`. */
  usage?: string;
  options?: NonNullable<ParseArgsConfig['options']>;
  /** Allow positional arguments (e.g. a serial or an id). */
  positionals?: boolean;
  run(args: CommandArgs): Promise<number | void>;
}

export interface CommandArgs {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  /** --config and --data as given. */
  configPath?: string;
  dataDir?: string;
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
