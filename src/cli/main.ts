import { parseArgs } from 'node:util';
import { UsageError, type Command } from './command.ts';
import type { ProxyModule } from '../gateway/proxy.ts';
import { VigilError } from '../errors.ts';
import { builtinCommands, commandHelp, groupHelp, groupMembers, mainHelp, parseArgsOptions } from './help.ts';
import { styleFor } from './style.ts';
import { loadCommandTable } from './table.ts';

/** Longest command name that prefixes argv (commands have one to three words). */
function findCommand(commands: Command[], argv: string[]): { cmd: Command; rest: string[] } | undefined {
  for (let n = 3; n >= 1; n--) {
    const name = argv.slice(0, n).join(' ');
    const cmd = commands.find((c) => c.name === name);
    if (cmd) return { cmd, rest: argv.slice(n) };
  }
  return undefined;
}

/** Longest group (`audit`, `access`, `lock`) that prefixes argv, when no command matched. */
function findGroup(commands: Command[], argv: string[]): string | undefined {
  const words = argv.filter((a) => !a.startsWith('-'));
  for (let n = Math.min(2, words.length); n >= 1; n--) {
    const prefix = words.slice(0, n).join(' ');
    if (argv.slice(0, n).join(' ') === prefix && groupMembers(commands, prefix).length) return prefix;
  }
  return undefined;
}

/**
 * What the composition root (app/main.ts) gives the CLI: the command table and the protocols. Both are
 * loaded lazily, so `vigil --help` loads neither the command modules nor any proxy.
 */
export interface CliApp {
  /** The command table when running from the sources (compiled, the build's manifest is used). */
  commands(): Promise<Command[]>;
  proxies(): Promise<readonly ProxyModule<any>[]>;
}

export async function runCli(argv: string[], out: NodeJS.WritableStream, err: NodeJS.WritableStream, app: CliApp): Promise<number> {
  const table = await loadCommandTable(app.commands);
  const builtins = builtinCommands(() => commands, styleFor);
  const commands: Command[] = [...table, ...builtins];
  const so = styleFor(out);
  const se = styleFor(err);
  const fail = (name: string, message: string) => err.write(`${se.red(`vigil ${name}:`)} ${message}\n`);
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') {
    (argv.length === 0 ? err : out).write(mainHelp(commands, argv.length === 0 ? se : so) + '\n');
    return argv.length === 0 ? 2 : 0;
  }
  const found = findCommand(commands, argv);
  if (!found) {
    const group = findGroup(commands, argv);
    if (group !== undefined) {
      const asked = argv.includes('--help') || argv.includes('-h');
      const rest = argv.slice(group.split(' ').length);
      if (!asked && rest.length) fail(group, `unknown subcommand "${rest[0]}"\n`);
      (asked ? out : err).write(groupHelp(commands, group, asked ? so : se) + '\n');
      return asked ? 0 : 2;
    }
    fail('', `unknown command "${argv.slice(0, 2).join(' ')}" (run \`vigil --help\` for the list)`);
    return 2;
  }
  const { cmd, rest } = found;
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: parseArgsOptions(cmd), allowPositionals: cmd.positionals ?? false, strict: true });
  } catch (e) {
    fail(cmd.name, `${(e as Error).message}\n${se.bold('Usage:')} vigil ${cmd.name} ${(cmd.usage ?? '').split('\n')[0]}\n(run \`vigil ${cmd.name} --help\` for every option)`);
    return 2;
  }
  if (parsed.values.help) {
    out.write(commandHelp(cmd, so) + '\n');
    return 0;
  }
  try {
    const code = await cmd.run({
      values: parsed.values as Record<string, string | boolean | string[] | undefined>,
      positionals: parsed.positionals,
      configPath: parsed.values.config as string | undefined,
      dataDir: parsed.values.data as string | undefined,
      // help and completion read only the table, and the read-only commands only the data dir: they do not
      // pay for loading every proxy.
      proxies: builtins.includes(cmd) || cmd.withoutProxies ? [] : await app.proxies(),
      out,
      err,
    });
    return code ?? 0;
  } catch (e) {
    if (e instanceof UsageError) {
      fail(cmd.name, `${e.message}\n\n${commandHelp(cmd, se)}`);
      return 2;
    }
    if (e instanceof VigilError) {
      fail(cmd.name, `${e.message} [${e.code}]`);
      return 1;
    }
    fail(cmd.name, `${(e as Error).stack ?? e}`);
    return 1;
  }
}

