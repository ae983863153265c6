import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { splitCommandLine } from '../../src/guardrails/shell.ts';
import { LOGIN_SHELL, unwrap } from '../../src/guardrails/wrappers.ts';
import { tempDir } from '../support/tmp.ts';
import { decide, useLoggingTarget } from './logging-target.ts';

/**
 * More programs that run the command in their arguments (watch, flock, taskset, chrt, unshare, nsenter,
 * systemd-run, script, fish) around a `rm -rf /` rule: through stock ssh to a real sshd whose
 * ForceCommand only writes each command down (nothing runs), and then vigil's reading of each one's
 * options against the util-linux binaries on this machine. watch needs a terminal and systemd-run a
 * running systemd, so those two follow their getopt strings ("+bced::ghq:n:pvtwx", systemd 252's
 * "+hrH:M:E:p:tPqGdSu:") and --help.
 */

/** Each reached the target before these wrappers were in the table. */
const BYPASSES = [
  'watch rm -rf /',
  'watch -n 1 rm -rf /',
  "watch -d 'rm -rf' /", // joined with spaces and run by sh -c
  'watch -x rm -rf /',
  'flock /tmp/l rm -rf /',
  "flock -n /tmp/l -c 'rm -rf /'", // -c's string is run by $SHELL
  "flock -w 5 /tmp/l --command 'rm -rf /'",
  'taskset 1 rm -rf /',
  'taskset -c 0 rm -rf /',
  'chrt -f 1 rm -rf /',
  'chrt --other 0 rm -rf /',
  'unshare -r rm -rf /',
  'unshare --mount-proc -f -- rm -rf /',
  'nsenter -t 1 -m rm -rf /',
  'nsenter -t1 -m/proc/1/ns/mnt --wd=/ rm -rf /', // -m's file only attached
  'systemd-run rm -rf /',
  'systemd-run -p Nice=5 --uid=root --wait rm -rf /',
  "script -c 'rm -rf /'",
  "script -qc 'rm -rf /' /dev/null",
  "script /dev/null -q -c 'rm -rf /'", // getopt permutes: options after the log file
  "script -c 'ls' /dev/null -c 'rm -rf /'", // the last -c wins
];

/** fish code is not sh (`not rm -rf /` runs rm): refused as unparsable, never read as sh. */
const FISH = ["fish -c 'rm -rf /'", "fish -c 'not rm -rf /'", "fish -C 'rm -rf /'", "fish --comm 'and rm -rf /'"];

const UNDECIDABLE = [
  'chrt -o rm -rf /', // newer chrt takes no priority for SCHED_OTHER: where the command starts is not known
  'flock --frobnicate /tmp/l rm -rf /',
  "flock -c 'rm -rf /' /tmp/l", // flock refuses -c before the file; vigil does not guess
  'nsenter -t 1 -Q rm -rf /',
  'watch $CMD', // sh -c of text only known when the shell runs
  "script $OPTS -c 'ls'",
  ...FISH,
];

const ALLOWED = ['watch ls', 'watch -x df -h /', 'flock /tmp/l -c ls', 'taskset -c 0 make', 'chrt -o 0 make', 'unshare -r id', "script -qc 'uptime' /dev/null", 'fish script.fish'];


describe('ssh guardrail: more wrappers around a rm -rf / rule, through a real sshd', () => {
  const target = useLoggingTarget('vigil-guard-wrappers-');
  const reached = () => target.reached();

  it('each wrapper form is refused and never reaches the target; fish code is refused as unparsable', async () => {
    for (const command of [...BYPASSES, ...FISH]) {
      const r = await target.ssh(command);
      expect(r.code, command).toBe(1);
      expect(r.stderr, command).toContain('guardrail "careful-shell"');
    }
    const fishEvent = await target.w.gw.waitForEvent((e) => e.type === 'guardrail.unparsed' && e.details?.command === FISH[1]);
    expect(fishEvent).toMatchObject({ outcome: 'failure', actor: { user: 'olga' } });
    for (const command of ALLOWED) {
      const r = await target.ssh(command);
      expect(r.code, `${command}: ${r.stderr}`).toBe(0);
    }
    const got = reached();
    for (const c of [...BYPASSES, ...FISH]) expect(got, c).not.toContain(c);
    for (const c of ALLOWED) expect(got, c).toContain(c);
  });
});

describe('ssh guardrail: more wrappers, decisions', () => {
  it.each(BYPASSES)('%j is blocked', (line) => {
    expect(decide(line)).toBe('block');
  });

  it.each(UNDECIDABLE)('%j is unparsable', (line) => {
    expect(decide(line)).toBe('unparsed');
  });

  it.each(ALLOWED)('%j is allowed', (line) => {
    expect(decide(line)).toBe('allow');
  });
});

const PRINT = `printf '%s\\n' one 'two words' -x`;
const run = (line: string) => execFileSync('bash', ['-c', line], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).replace(/\r/g, '');
const unwrapped = (line: string) => {
  const split = splitCommandLine(line);
  if (!split.ok || split.commands.length !== 1) throw new Error(`not one command: ${line}`);
  const r = unwrap(split.commands[0].argv);
  if ('unknown' in r) throw new Error(`${line}: ${r.unknown}`);
  return r;
};

describe('vigil reads these wrappers as the real tools do', () => {
  const lock = path.join(tempDir('vigil-flock-'), 'l');

  it.each([
    `flock ${lock} ${PRINT}`,
    `flock -n -w 5 -E 3 ${lock} ${PRINT}`,
    `flock --nb --timeout=5 --no-fork ${lock} ${PRINT}`,
    `taskset 1 ${PRINT}`,
    `taskset -c 0 ${PRINT}`,
    `taskset --cpu-list 0 ${PRINT}`,
    `chrt -o 0 ${PRINT}`,
    `chrt --other -v 0 ${PRINT}`,
    `chrt -b -- 0 ${PRINT}`,
    `unshare ${PRINT}`,
    `unshare -f --mount-proc -- ${PRINT}`,
    `unshare --fork --kill-child=TERM ${PRINT}`,
    `nsenter -t 1 --preserve-credentials ${PRINT}`,
    `nsenter -F --target=1 -- ${PRINT}`,
  ])('%j', (line) => {
    const ran = run(line);
    const r = unwrapped(line);
    expect(r.argv[0].text).toBe('printf');
    expect(r.argv.slice(2).map((x) => x.text)).toEqual(ran.split('\n').slice(0, -1));
  });

  it.each([
    [`flock ${lock} -c "${PRINT}"`],
    [`flock -x ${lock} --command "${PRINT}"`],
    [`script -qc "${PRINT}" /dev/null`],
    [`script /dev/null -q --command="${PRINT}"`],
    [`script -q -c "echo no" /dev/null -c "${PRINT}"`],
  ])('%j runs the string vigil checks, through $SHELL', (line) => {
    const r = unwrapped(line);
    const runs = [r.argv, ...(r.alternatives ?? [])];
    const last = runs[runs.length - 1];
    expect(last[0]).toBe(LOGIN_SHELL);
    expect(last.slice(1).map((x) => x.text)).toEqual(['-c', PRINT]);
    expect(run(line)).toBe('one\ntwo words\n-x\n');
  });

  it('watch joins its operands into one sh -c line, and -x runs them as they are', () => {
    expect(unwrapped(`watch -n 1 -d -- rm "-rf /"`).argv.map((x) => x.text)).toEqual(['sh', '-c', 'rm -rf /']);
    expect(unwrapped(`watch -x -- rm "-rf /"`).argv.map((x) => x.text)).toEqual(['rm', '-rf /']);
  });
});
