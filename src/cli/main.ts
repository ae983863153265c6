import { parseArgs } from 'node:util';
import { COMMANDS } from './commands/index.ts';
import { UsageError, type Command } from './command.ts';
import { VigilError } from '../errors.ts';

const COMMON = {
  config: { type: 'string' as const },
  data: { type: 'string' as const },
  help: { type: 'boolean' as const, short: 'h' },
};

function helpText(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    'vigil — access gateway for SSH, PostgreSQL and MySQL with short-lived certificates and a tamper-evident audit log',
    '',
    'Usage: vigil <command> [options]   (every command takes --config PATH and --data DIR)',
    '',
    'Commands:',
    ...lines,
    '',
    'Run `vigil <command> --help` for a command\'s options.',
  ].join('\n');
}

function commandHelp(c: Command): string {
  return `Usage: vigil ${c.name} ${c.usage ?? ''}\n\n${c.summary}\n\nCommon options: --config PATH (or $VIGIL_CONFIG), --data DIR`;
}

/** Longest command name that prefixes argv (commands have one to three words). */
function findCommand(argv: string[]): { cmd: Command; rest: string[] } | undefined {
  for (let n = 3; n >= 1; n--) {
    const name = argv.slice(0, n).join(' ');
    const cmd = COMMANDS.find((c) => c.name === name);
    if (cmd) return { cmd, rest: argv.slice(n) };
  }
  return undefined;
}

export async function runCli(argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    out.write(helpText() + '\n');
    return argv.length === 0 ? 2 : 0;
  }
  const found = findCommand(argv);
  if (!found) {
    err.write(`vigil: unknown command "${argv.slice(0, 2).join(' ')}"\n\n${helpText()}\n`);
    return 2;
  }
  const { cmd, rest } = found;
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: { ...COMMON, ...(cmd.options ?? {}) }, allowPositionals: cmd.positionals ?? false, strict: true });
  } catch (e) {
    err.write(`vigil ${cmd.name}: ${(e as Error).message}\n${commandHelp(cmd)}\n`);
    return 2;
  }
  if (parsed.values.help) {
    out.write(commandHelp(cmd) + '\n');
    return 0;
  }
  try {
    const code = await cmd.run({
      values: parsed.values as Record<string, string | boolean | string[] | undefined>,
      positionals: parsed.positionals,
      configPath: parsed.values.config as string | undefined,
      dataDir: parsed.values.data as string | undefined,
      out,
      err,
    });
    return code ?? 0;
  } catch (e) {
    if (e instanceof UsageError) {
      err.write(`vigil ${cmd.name}: ${e.message}\n${commandHelp(cmd)}\n`);
      return 2;
    }
    if (e instanceof VigilError) {
      err.write(`vigil ${cmd.name}: ${e.message} [${e.code}]\n`);
      return 1;
    }
    err.write(`vigil ${cmd.name}: ${(e as Error).stack ?? e}\n`);
    return 1;
  }
}

// Run when executed directly (`tsx src/cli/main.ts`, as `npm start` does); bin/vigil.js calls runCli itself.
if (/src[\\/]cli[\\/]main\.[jt]s$/.test(process.argv[1] ?? '')) {
  runCli(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
