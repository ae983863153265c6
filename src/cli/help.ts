/**
 * Everything the CLI says about itself, generated from the one command table: `vigil --help`, a command's
 * `--help` (every option with its meaning, and examples), a group's help (`vigil audit --help` lists the
 * audit subcommands), `vigil help <command>` and the bash/zsh completion scripts.
 */
import { COMMON_OPTION_HELP, UsageError, type Command, type OptionSpec } from './command.ts';
import type { Style } from './style.ts';

/** Options every command takes, added by the runner. */
export const RUNNER_OPTIONS: Record<string, OptionSpec> = {
  config: { type: 'string' },
  data: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

export interface DescribedOption {
  name: string;
  short?: string;
  arg?: string;
  multiple: boolean;
  /** Empty when neither the option nor COMMON_OPTION_HELP says what it means (a test forbids that). */
  help: string;
}

/** The command's own options, then the runner's, each with its meaning. */
export function describeOptions(cmd: Command): DescribedOption[] {
  const all = { ...(cmd.options ?? {}), ...RUNNER_OPTIONS };
  return Object.entries(all).map(([name, o]) => {
    const common = COMMON_OPTION_HELP[name];
    return {
      name,
      short: o.short,
      arg: o.type === 'string' ? (o.arg ?? common?.arg ?? 'VALUE') : undefined,
      multiple: o.multiple === true,
      help: o.help ?? common?.help ?? '',
    };
  });
}

/** Options as node:util parseArgs takes them (without the help-only fields). */
export function parseArgsOptions(cmd: Command): Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> {
  const all = { ...(cmd.options ?? {}), ...RUNNER_OPTIONS };
  return Object.fromEntries(Object.entries(all).map(([k, o]) => [k, { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) }]));
}

function table(rows: [string, string][], indent = '  '): string[] {
  const width = Math.min(30, Math.max(0, ...rows.map(([a]) => a.length)));
  return rows.map(([a, b]) => (a.length > width ? `${indent}${a}\n${indent}${' '.repeat(width + 2)}${b}` : `${indent}${a.padEnd(width)}  ${b}`));
}

export function commandHelp(cmd: Command, s: Style): string {
  const [usageLine, ...notes] = (cmd.usage ?? '').split('\n');
  const opts = describeOptions(cmd).map((o): [string, string] => {
    const flag = `${o.short ? `-${o.short}, ` : ''}--${o.name}${o.arg ? ` ${o.arg}` : ''}`;
    return [flag, o.help + (o.multiple ? ' (repeatable)' : '')];
  });
  const lines = [`${s.bold('Usage:')} vigil ${cmd.name} ${usageLine}`.trimEnd(), '', cmd.summary];
  const extra = notes.join('\n').replace(/^\n+/, '').trimEnd();
  if (extra) lines.push('', extra);
  lines.push('', s.bold('Options:'), ...table(opts));
  if (cmd.examples?.length) lines.push('', s.bold('Examples:'), ...cmd.examples.map((e) => `  ${s.dim('$')} vigil ${e}`));
  return lines.join('\n');
}

/** Commands under a group prefix such as `audit` or `access`. */
export function groupMembers(commands: Command[], prefix: string): Command[] {
  return commands.filter((c) => c.name.startsWith(prefix + ' '));
}

export function groupHelp(commands: Command[], prefix: string, s: Style): string {
  const members = groupMembers(commands, prefix);
  return [
    `${s.bold('Usage:')} vigil ${prefix} <subcommand> [options]`,
    '',
    `${s.bold('Subcommands:')}`,
    ...table(members.map((c) => [c.name.slice(prefix.length + 1), c.summary])),
    '',
    `Run \`vigil ${prefix} <subcommand> --help\` for its options and examples.`,
  ].join('\n');
}

export const EXIT_CODES: [number, string][] = [
  [0, 'success'],
  [1, 'failure: the command ran and something went wrong (message on stderr, with a stable error code)'],
  [2, 'usage error: unknown command or option, missing or malformed argument'],
  [3, '`audit verify`: intact but completeness not proven; `audit verify-bundle`: records removed'],
  [4, '`audit verify`: unsealed tail; `audit verify-bundle`: selection incomplete'],
  [5, '`audit verify`: unreadable; `audit verify-bundle`: recording missing or swapped'],
];

export function mainHelp(commands: Command[], s: Style): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'vigil — access gateway for SSH, PostgreSQL and MySQL with short-lived certificates and a tamper-evident audit log',
    '',
    `${s.bold('Usage:')} vigil <command> [options]   (every command takes --config PATH and --data DIR)`,
    '',
    s.bold('Commands:'),
    ...commands.map((c) => `  ${s.cyan(c.name.padEnd(width))}  ${c.summary}`),
    '',
    s.bold('Exit codes:'),
    ...EXIT_CODES.map(([c, m]) => `  ${c}  ${m}`),
    '',
    'Run `vigil <command> --help` or `vigil help <command>` for its options and examples;',
    '`vigil audit --help` lists the audit subcommands. Colours only on a terminal; NO_COLOR=1 turns them off.',
  ].join('\n');
}

/** Next words after a typed command prefix: `''` → first words, `'audit'` → verify, search, … */
function childWords(commands: Command[]): Map<string, Set<string>> {
  const m = new Map<string, Set<string>>();
  for (const c of commands) {
    const words = c.name.split(' ');
    for (let i = 0; i < words.length; i++) {
      const prefix = words.slice(0, i).join(' ');
      if (!m.has(prefix)) m.set(prefix, new Set());
      m.get(prefix)!.add(words[i]);
    }
  }
  return m;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function bashFunction(commands: Command[]): string {
  const children = [...childWords(commands)].map(([prefix, next]) => `    ${q(prefix)}) next=${q([...next].join(' '))} ;;`);
  const options = commands.map((c) => {
    const flags = describeOptions(c).flatMap((o) => [`--${o.name}`, ...(o.short ? [`-${o.short}`] : [])]);
    return `    ${q(c.name)}) opts=${q(flags.join(' '))} ;;`;
  });
  return [
    '_vigil() {',
    '  local cur="${COMP_WORDS[COMP_CWORD]}" path="" i w next="" opts=""',
    '  for ((i = 1; i < COMP_CWORD; i++)); do',
    '    w="${COMP_WORDS[i]}"',
    '    [[ $w == -* ]] && break',
    '    path="${path:+$path }$w"',
    '  done',
    '  case "$path" in',
    ...options,
    '  esac',
    '  case "$path" in',
    ...children,
    '  esac',
    '  if [[ $cur == -* ]]; then',
    '    COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
    '  elif [[ -n $next ]]; then',
    '    COMPREPLY=($(compgen -W "$next" -- "$cur"))',
    '  else',
    '    COMPREPLY=($(compgen -f -- "$cur"))',
    '  fi',
    '}',
    'complete -o filenames -F _vigil vigil',
  ].join('\n');
}

export const COMPLETION_SHELLS = ['bash', 'zsh'] as const;

/** A completion script for `shell`, listing every command and each command's options. */
export function completionScript(commands: Command[], shell: string): string {
  const head = `# ${shell} completion for vigil, generated by \`vigil completion ${shell}\` from the command table.`;
  if (shell === 'bash') return `${head}\n# Install: vigil completion bash > /etc/bash_completion.d/vigil  (or source it from ~/.bashrc)\n${bashFunction(commands)}\n`;
  if (shell === 'zsh') {
    // zsh runs the bash completion function through its bashcompinit layer: one generated function for both.
    return `#compdef vigil\n${head}\n# Install: vigil completion zsh > "\${fpath[1]}/_vigil"  (or: source <(vigil completion zsh))\nautoload -U +X bashcompinit && bashcompinit\n${bashFunction(commands)}\n`;
  }
  throw new UsageError(`unknown shell ${JSON.stringify(shell)}: expected ${COMPLETION_SHELLS.join(' or ')}`);
}

/** `vigil help` and `vigil completion`, which describe the table they are given. */
export function builtinCommands(table: () => Command[], styleOf: (out: NodeJS.WritableStream) => Style): Command[] {
  return [
    {
      name: 'help',
      summary: 'Show help for a command or a group of commands (`vigil help audit search`, `vigil help audit`).',
      usage: '[COMMAND…]',
      positionals: true,
      examples: ['help audit search', 'help access'],
      async run(args) {
        const all = table();
        const name = args.positionals.join(' ');
        const s = styleOf(args.out);
        if (!name) return void args.out.write(mainHelp(all, s) + '\n');
        const cmd = all.find((c) => c.name === name);
        if (cmd) return void args.out.write(commandHelp(cmd, s) + '\n');
        if (groupMembers(all, name).length) return void args.out.write(groupHelp(all, name, s) + '\n');
        throw new UsageError(`unknown command "${name}"`);
      },
    },
    {
      name: 'completion',
      summary: 'Print a shell completion script (bash or zsh) for every command and option.',
      usage: 'bash|zsh',
      positionals: true,
      examples: ['completion bash > /etc/bash_completion.d/vigil', 'completion zsh > "${fpath[1]}/_vigil"'],
      async run(args) {
        if (args.positionals.length !== 1) throw new UsageError(`name a shell: ${COMPLETION_SHELLS.join(' or ')}`);
        args.out.write(completionScript(table(), args.positionals[0]));
        return 0;
      },
    },
  ];
}
