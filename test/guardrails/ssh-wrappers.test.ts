import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { Guardrails, guardrailsSchema } from '../../src/guardrails/index.ts';
import { splitCommandLine } from '../../src/guardrails/shell.ts';
import { shellCommandString, splitEnvString, unwrap } from '../../src/guardrails/wrappers.ts';

/**
 * Commands run through wrappers (sudo, env -S, nice, timeout, chroot…) and shells (`bash -c -- '…'`),
 * and paths reached through `~` or an expansion followed by `..`, against a `rm -rf /` rule. The second
 * half checks vigil's reading of each wrapper's options against the real tool: the Debian binaries on
 * this machine (and bash's builtins) run `printf`, and what printf received must be what vigil found.
 * sudo and doas are not installed here: their tables follow sudo 1.9's and OpenBSD doas' getopt strings.
 */

const g = new Guardrails(guardrailsSchema().parse([{ name: 'careful', ssh: { block_commands: ['rm -rf /'] } }]));
const decide = (line: string): string => {
  const d = g.forSession({ roles: ['oncall'], target: 'box' })!.checkCommand(line);
  return d.action === 'allow' ? 'allow' : d.unparsed ? 'unparsed' : 'block';
};

const WRAPPED = [
  // Long options whose value is the next word.
  'sudo --user root rm -rf /',
  'sudo --us root rm -rf /', // getopt_long takes an unambiguous abbreviation
  'sudo --user=root --preserve-env=PATH rm -rf /',
  'env --unset X rm -rf /',
  'env --chdir / rm -rf /',
  'nice --adjustment 5 rm -rf /',
  'nice -5 rm -rf /',
  'timeout --kill-after 5 10 rm -rf /',
  'timeout --kill 5 10 rm -rf /',
  'chroot --userspec root / rm -rf /',
  'ionice --class 3 rm -rf /',
  // Combined short options ending in one that takes a value.
  'sudo -Eu root rm -rf /',
  'sudo -Hu root rm -rf /',
  'sudo -nEHu root -- rm -rf /',
  'env -iu X rm -rf /',
  'timeout -vk 5 10 rm -rf /',
  // Options the old tables missed.
  'sudo -T 5 rm -rf /',
  'sudo -R /srv rm -rf /',
  'sudo -D /tmp -u root X=1 rm -rf /',
  'doas -u root rm -rf /',
  'doas -n -u root rm -rf /',
  'stdbuf -o L rm -rf /',
  'stdbuf -oL -e 0 rm -rf /',
  'exec -a foo rm -rf /',
  'exec -cla foo rm -rf /',
  'time -f %e -o /dev/null rm -rf /',
  'setsid --wait rm -rf /',
  // env -S: its value is a command line of its own.
  'env -S "rm -rf /"',
  'env --split-string="rm -rf /"',
  'env --split-string "rm -rf" /',
  "env -S'rm -rf' /",
  'env -vS "rm -rf /"',
  "env -S 'rm\\_-rf\\_/'",
  'env -S "-i X=1 rm -rf /"',
  'sudo -u root env -S "rm -rf /"',
  // Shells: options before and after -c, `--`, -c combined.
  'bash -c -- "rm -rf /"',
  'bash -ec "rm -rf /"',
  'bash -ce "rm -rf /"',
  'bash -o pipefail -c "rm -rf /"',
  'bash -eo pipefail -c "rm -rf /"',
  'bash -c -x "rm -rf /"',
  'bash --norc --noprofile -c "rm -rf /"',
  'bash -O extglob -c "rm -rf /"',
  'sh -e -c "rm -rf /"',
  'sudo -u root bash -lc -- "rm -rf /"',
  // A wrapper reached through a path with an expansion in its directory.
  '~/bin/sudo rm -rf /',
  // util-linux su and runuser: -c's string goes to the user's shell; options may follow the user (getopt
  // permutes), and what follows the user is handed to the shell too.
  "su -c 'rm -rf /' root",
  "su root -c 'rm -rf /'",
  "su - -c 'rm -rf /'",
  "su --command='rm -rf /' root",
  "su --com 'rm -rf /' root",
  'su -l root -c "rm -rf /"',
  "su -lc 'rm -rf /' root",
  "su -s /bin/sh -c 'rm -rf /' root",
  "su -s /bin/rbash -c 'rm -rf /' root",
  "su -s /bin/rm root -- -rf /", // -s names any program for root: it gets the operands after the user
  "su root -w -c 'rm -rf /'", // under POSIXLY_CORRECT the shell gets `-w -c 'rm -rf /'`: zsh runs it
  "su --session-command 'rm -rf /' root",
  "su root -- -c 'rm -rf /'",
  "su -c -x root -- 'rm -rf /'", // the shell gets `-c -x 'rm -rf /'`: -x is an option, the string comes after
  "su -c 'ls' -c 'rm -rf /' root", // the last -c wins
  'runuser -u root -- rm -rf /',
  'runuser --user=root rm -- -rf /', // getopt permutes: `rm` is the command, `--` ends runuser's options
  'runuser -u root -g root -- sudo rm -rf /',
  "runuser -c 'rm -rf /' root",
  "runuser -l root -c 'rm -rf /'",
  "sudo su -c 'rm -rf /'",
];

const REACHES_ROOT = [
  'rm -rf ~/../..',
  'rm -rf ~root/..',
  'rm -rf ~/x/../../..',
  'rm -rf "${HOME}/../.."',
  'rm -rf "$HOME"/../..',
  'rm -rf /home/$USER/../..',
  'rm -rf ~',
  'cd /tmp && rm -rf ~+/..',
];

const UNDECIDABLE = [
  'sudo --frobnicate rm -rf /',
  'sudo -Z rm -rf /',
  'env -Z rm -rf /',
  'nice -x 5 rm -rf /',
  'env --d rm -rf /', // --debug or --default-signal: getopt refuses it, vigil does not guess
  'env -S "$X"',
  'env -S "rm \\q /"', // env refuses the escape
  'sudo $OPTS rm -rf /',
  'bash -Z -c "rm -rf /"',
  'bash --bogus -c "rm -rf /"',
  'command --help rm -rf /',
  "su --frobnicate -c 'rm -rf /' root",
  "su -Z -c 'rm -rf /' root",
  "su -u root -c 'rm -rf /'", // runuser's -u: su refuses it
  "su root --frobnicate -c 'rm -rf /'",
  'runuser -u root -Z -- rm -rf /',
  'runuser -u root sudo rm -rf /', // getopt permutes: -rf are runuser's options, and unknown ones
  "su -c 'rm -rf /' $WHO", // a word that could expand to options
];

const ALLOWED = [
  'sudo -u root ls /',
  'sudo -Eu root systemctl restart nginx',
  'sudo --user=postgres psql -c "select 1"',
  'env -S "ls -l" /',
  'nice -n 5 make',
  'timeout 10 rm -rf /tmp/x',
  'bash -ec "echo hi"',
  'bash -c -- "rm -rf /tmp/x"',
  'bash script.sh',
  'rm -rf ~/tmp',
  'rm -rf "$HOME/.cache"',
  'rm -rf "$HOME/../other-user/tmp"',
  'rm -rf "~/.."', // a directory named ~ in the working directory
  'rm -rf ~"x"/..',
  '~/bin/deploy.sh --force /',
  'X=~/bin:~root/bin make',
  "su -c 'ls /tmp' root",
  "su - postgres -c 'psql -l'",
  'runuser -u nobody -- ls',
  "runuser -u root -- rm -rf /tmp/x",
  'su',
  'su - root',
];

describe('ssh guardrail: wrappers, shells and paths around a rm -rf / rule', () => {
  it.each(WRAPPED)('%j is blocked', (line) => {
    expect(decide(line)).toBe('block');
  });

  it.each(REACHES_ROOT)('%j could be / and is blocked', (line) => {
    expect(decide(line)).toBe('block');
  });

  it.each(UNDECIDABLE)('%j has an option vigil does not know: unparsable', (line) => {
    expect(decide(line)).toBe('unparsed');
  });

  it('says which option it did not know', () => {
    const d = g.forSession({ roles: ['oncall'], target: 'box' })!.checkCommand('sudo --frobnicate rm -rf /');
    expect(d).toMatchObject({ action: 'block', rule: 'careful', unparsed: true, reason: 'unparsable: sudo: the option --frobnicate is not one vigil knows' });
  });

  it.each(ALLOWED)('%j is allowed', (line) => {
    expect(decide(line)).toBe('allow');
  });

  it('a rule naming a wrapper still matches it, even with an option vigil does not know', () => {
    const sudoI = new Guardrails(guardrailsSchema().parse([{ name: 'no-root-shell', ssh: { block_commands: ['sudo -i'] } }]));
    const s = sudoI.forSession({ roles: ['x'], target: 'box' })!;
    expect(s.checkCommand('sudo -i').action).toBe('block');
    expect(s.checkCommand('sudo --frobnicate -i')).toMatchObject({ action: 'block', unparsed: false, reason: 'command matches "sudo -i"' });
    expect(s.checkCommand('sudo -u root -i')).toMatchObject({ action: 'block', unparsed: false });
    expect(s.checkCommand('sudo -u root ls').action).toBe('allow');
  });

  it('a rule naming su still matches su without -c, an interactive shell', () => {
    const noSu = new Guardrails(guardrailsSchema().parse([{ name: 'no-su', ssh: { block_commands: ['su'] } }]));
    const s = noSu.forSession({ roles: ['x'], target: 'box' })!;
    expect(s.checkCommand('su').action).toBe('block');
    expect(s.checkCommand('su - root').action).toBe('block');
    expect(s.checkCommand('sudo su -').action).toBe('block');
    expect(s.checkCommand("su -c 'ls' root").action).toBe('block');
  });

  it('marks tilde prefixes as expansions where bash expands them, and only there', () => {
    const split = splitCommandLine('echo ~ ~/x ~root/y ~+ a=~/z b=x:~root c~ "~" \\~ ~"q"/ x=":"~');
    if (!split.ok) throw new Error(split.error);
    expect(split.commands[0].argv.slice(1).map((w) => [w.text, w.dynamic, w.shape])).toEqual([
      ['~', true, '*'],
      ['~/x', true, '*/x'],
      ['~root/y', true, '*/y'],
      ['~+', true, '*'],
      ['a=~/z', true, 'a=*/z'],
      ['b=x:~root', true, 'b=x:*'],
      ['c~', false, 'c~'],
      ['~', false, '~'],
      ['~', false, '~'],
      ['~q/', false, '~q/'],
      ['x=:~', false, 'x=:~'],
    ]);
  });

  it('splits env -S strings as GNU env does', () => {
    const texts = (s: string) => {
      const r = splitEnvString(s);
      return typeof r === 'string' ? r : r.map((w) => (w.dynamic ? `dynamic:${w.shape}` : w.text));
    };
    expect(texts(`rm -rf '/' "a b"`)).toEqual(['rm', '-rf', '/', 'a b']);
    expect(texts('rm\\_-rf\\_/ #comment')).toEqual(['rm', '-rf', '/']);
    expect(texts('"a\\_b" x\\cignored')).toEqual(['a b', 'x']);
    expect(texts('rm ${HOME}/x')).toEqual(['rm', 'dynamic:*/x']);
    expect(texts('rm $HOME')).toBe('a $ that is not ${NAME}');
    expect(texts("'unterminated")).toBe('an unterminated quote');
  });
});

/** The program and arguments vigil finds behind the wrappers of a one-command line. */
const found = (line: string): string[] => {
  const split = splitCommandLine(line);
  if (!split.ok || split.commands.length !== 1) throw new Error(`not one command: ${line}`);
  const r = unwrap(split.commands[0].argv);
  if ('unknown' in r) throw new Error(`${line}: ${r.unknown}`);
  return r.argv.map((w) => w.text);
};
const PRINT = `printf '%s\\n' one 'two words' -x`;

describe('vigil reads each wrapper as the real tool does', () => {
  const lines = [
    `env -u X -C / -i A=1 ${PRINT}`,
    `env --unset X --chdir=/ ${PRINT}`,
    `env --uns X --ch / ${PRINT}`,
    `env -iu X -- ${PRINT}`,
    `env -vS "printf %s\\\\n one" 'two words' -x`,
    `env --split-string "-i A=1 printf %s\\\\n one" 'two words' -x`,
    `nice -n 5 ${PRINT}`,
    `nice --adjustment 5 ${PRINT}`,
    `nice --adj=5 ${PRINT}`,
    `nice -5 ${PRINT}`,
    `ionice -c 3 -t ${PRINT}`,
    `ionice --class 3 --classdata 0 ${PRINT}`,
    `timeout -k 5 10 ${PRINT}`,
    `timeout --kill-after 5 --signal KILL 10 ${PRINT}`,
    `timeout -vk5 --foreground 10 ${PRINT}`,
    `stdbuf -o L -eL ${PRINT}`,
    `stdbuf --output L --error=0 ${PRINT}`,
    `chroot --userspec root / ${PRINT}`,
    `chroot --userspec=root:root --skip-chdir / ${PRINT}`,
    `nohup ${PRINT}`,
    `setsid -w ${PRINT}`,
    `setsid --wait --fork ${PRINT}`,
    `/usr/bin/time -f %e -o /dev/null ${PRINT}`,
    `/usr/bin/time --format=%e --output /dev/null -q ${PRINT}`,
    `time -p ${PRINT}`,
    `command -p ${PRINT}`,
    `exec -a foo ${PRINT}`,
    `exec -cla foo ${PRINT}`,
    `builtin ${PRINT}`,
    `X=1 env Y=2 nice -n 1 timeout -s TERM 10 ${PRINT}`,
  ];

  it.each(lines)('%j', (line) => {
    const ran = execFileSync('bash', ['-c', line], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const argv = found(line);
    expect(argv[0]).toBe('printf');
    expect(argv.slice(2)).toEqual(ran.split('\n').slice(0, -1));
  });

  it.each([
    `bash -c -- "${PRINT}"`,
    `bash -ec "${PRINT}"`,
    `bash -eo pipefail -c "${PRINT}"`,
    `bash -c -x "${PRINT}"`,
    `bash --norc -O extglob -c "${PRINT}"`,
    `bash +o posix -c "${PRINT}"`,
    `sh -e -c "${PRINT}"`,
    `dash -ec "${PRINT}"`,
  ])('%j runs the string vigil checks', (line) => {
    const argv = splitCommandLine(line);
    if (!argv.ok) throw new Error(argv.error);
    const words = argv.commands[0].argv;
    const s = shellCommandString(words[0].text, words.slice(1));
    if (!('script' in s)) throw new Error(JSON.stringify(s));
    expect(s.script.text).toBe(PRINT);
    expect(execFileSync('bash', ['-c', line], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })).toBe('one\ntwo words\n-x\n');
  });

  // As root here, su and runuser switch to root without a password.
  const suLines: [string, string][] = [
    [`su -c "${PRINT}" root`, PRINT],
    [`su root -c "${PRINT}"`, PRINT],
    [`su - -c "${PRINT}"`, PRINT],
    [`su --command="${PRINT}" root`, PRINT],
    [`su -l root --com "${PRINT}"`, PRINT],
    [`su -fs /bin/dash -c "${PRINT}" root`, PRINT],
    [`su root -- -c "${PRINT}"`, PRINT],
    [`su -c -x root -- "${PRINT}"`, PRINT],
    [`su -c "echo no" -c "${PRINT}" root`, PRINT],
    [`runuser -c "${PRINT}" root`, PRINT],
    [`runuser -l root -c "${PRINT}"`, PRINT],
  ];
  it.each(suLines)('%j runs the string vigil checks', (line, script) => {
    const split = splitCommandLine(line);
    if (!split.ok) throw new Error(split.error);
    const r = unwrap(split.commands[0].argv);
    if ('unknown' in r) throw new Error(r.unknown);
    const s = shellCommandString('bash', r.argv.slice(1));
    if (!('script' in s)) throw new Error(JSON.stringify(s));
    expect(s.script.text).toBe(script);
    const ran = execFileSync('bash', ['-c', line], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    expect(ran).toBe('one\ntwo words\n-x\n');
  });

  it.each([
    `runuser -u root -- ${PRINT}`,
    `runuser --user=root --preserve-environment -- ${PRINT}`,
    `runuser -u root -g root -- env -u X -- ${PRINT}`,
    `runuser -u root printf '%s\n' -m one -- 'two words' -x`, // -m is runuser's: getopt permutes
  ])('%j runs the command vigil found', (line) => {
    const ran = execFileSync('bash', ['-c', line], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const argv = found(line);
    expect(argv[0]).toBe('printf');
    expect(argv.slice(2)).toEqual(ran.split('\n').slice(0, -1));
  });

  it('bash - -c reads a script named -c, not a command string', () => {
    const split = splitCommandLine('bash - -c "rm -rf /"');
    if (!split.ok) throw new Error(split.error);
    expect(shellCommandString('bash', split.commands[0].argv.slice(1))).toEqual({ none: true });
  });
});
