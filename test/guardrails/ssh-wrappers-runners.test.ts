import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { splitCommandLine } from '../../src/guardrails/shell.ts';
import { unwrap } from '../../src/guardrails/wrappers.ts';
import { decide, useLoggingTarget } from './logging-target.ts';

/**
 * Still more programs that run the command in their arguments (prlimit, setpriv, setarch and its
 * linux32/linux64/i386/x86_64 names, choom, sg, pkexec, strace, ltrace, fakeroot, firejail, ip netns/vrf
 * exec, tmux, screen) and csh code, around a `rm -rf /` rule: through stock ssh to a real sshd whose
 * ForceCommand only writes each command down, then vigil's reading against the binaries on this machine
 * (util-linux 2.38, shadow's sg, strace 6.1, fakeroot). pkexec, ltrace, firejail, screen and csh are not
 * installed here: only their forms named in the tables' comments are read, anything else is undecidable.
 */

/** Each reached the target before these runners were read. */
const BYPASSES = [
  'prlimit rm -rf /',
  'prlimit --nofile=5 -n5:6 rm -rf /',
  'prlimit -n rm -rf /', // -n's limit only attached: rm is the command
  'setpriv --reuid 0 --nnp rm -rf /',
  'setarch x86_64 -R rm -rf /',
  'setarch -R rm -rf /', // no ARCH when the first word is an option
  'linux32 --3gb rm -rf /',
  'linux64 rm -rf /',
  'i386 rm -rf /',
  'x86_64 -R rm -rf /',
  'choom -n 0 -- rm -rf /',
  'choom -n 0 rm -- -rf /', // getopt permutes: -- after rm still ends the options
  "sg root -c 'rm -rf /'",
  "sg - root 'rm -rf /'",
  'pkexec rm -rf /',
  'pkexec --user root --keep-cwd rm -rf /',
  'strace -f -o /dev/null rm -rf /',
  'strace --quiet -e trace=none rm -rf /',
  'ltrace rm -rf /',
  'fakeroot -- rm -rf /',
  'fakeroot -u rm -rf /',
  'firejail rm -rf /',
  'ip netns exec ns1 rm -rf /',
  'ip net e ns1 rm -rf /', // ip takes any unambiguous start of its words
  'ip vrf exec blue rm -rf /',
  "tmux new-session -d 'rm -rf /'", // one operand: a shell line
  'tmux -L s new -d rm -rf /', // several: run as they are
  'screen -dm rm -rf /',
  'screen -dmS job rm -rf /',
];

/** Refused as unparsable: code in another language, options not read, commands that may run anything. */
const UNDECIDABLE = [
  "csh -c 'rm -rf /'",
  "tcsh -fc 'rm -rf /'",
  'choom -n 0 rm -rf /', // permuted, choom refuses -r; under POSIXLY_CORRECT it runs rm
  'ip -all netns exec rm -rf /',
  'firejail --quiet rm -rf /',
  'ltrace -f rm -rf /',
  'pkexec --frob rm -rf /',
  "tmux -c 'rm -rf /'",
  "tmux send-keys 'rm -rf /' Enter",
  "tmux ls \\; new 'rm -rf /'",
  "screen -S job -X stuff 'rm -rf /'",
  'screen -R job rm -rf /',
  'strace --timestamps rm -rf /', // undocumented, left out of the table
  'setarch $A rm -rf /',
];

const ALLOWED = ['prlimit --nofile=5 ls', 'setpriv --nnp id', 'linux64 uname -m', 'choom -n 0 ls', 'sg adm ls', 'strace -c ls', 'fakeroot ls', 'ip a', 'ip netns list', 'tmux ls', 'screen -dm top', 'csh script.csh'];


describe('ssh guardrail: runners around a rm -rf / rule, through a real sshd', () => {
  const target = useLoggingTarget('vigil-guard-runners-');
  const reached = () => target.reached();

  it('each runner form is refused and never reaches the target; csh code is refused as unparsable', async () => {
    const refused = [...BYPASSES, ...UNDECIDABLE];
    const notRefused: string[] = [];
    for (const command of refused) {
      const r = await target.ssh(command);
      if (r.code !== 1 || !r.stderr.includes('guardrail "careful-shell"')) notRefused.push(command);
    }
    expect(notRefused).toEqual([]);
    const cshEvent = await target.w.gw.waitForEvent((e) => e.type === 'guardrail.unparsed' && e.details?.command === UNDECIDABLE[0]);
    expect(cshEvent).toMatchObject({ outcome: 'failure', actor: { user: 'olga' } });
    for (const command of ALLOWED) {
      const r = await target.ssh(command);
      expect(r.code, `${command}: ${r.stderr}`).toBe(0);
    }
    const got = reached();
    expect(got.filter((c) => refused.includes(c))).toEqual([]);
    for (const c of ALLOWED) expect(got, c).toContain(c);
  });
});

describe('ssh guardrail: runners, decisions', () => {
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
const group = execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim();

describe('vigil reads these runners as the real tools do', () => {
  it.each([
    `prlimit ${PRINT}`,
    `prlimit -n ${PRINT}`,
    `prlimit --nofile=512 -s ${PRINT}`,
    `prlimit -n512:1024 --core -- ${PRINT}`,
    `setpriv --nnp ${PRINT}`,
    `setpriv --pdeathsig keep --reset-env ${PRINT}`,
    `setarch x86_64 -R ${PRINT}`,
    `setarch -R -3 ${PRINT}`,
    `linux64 --addr-no-rand ${PRINT}`,
    `x86_64 -- ${PRINT}`,
    `choom -n 0 -- ${PRINT}`,
    `strace -o /dev/null -f -e trace=none ${PRINT}`,
    `strace -qq --output=/dev/null --signal none -s 64 ${PRINT}`,
    `fakeroot ${PRINT}`,
    `fakeroot -u -- ${PRINT}`,
  ])('%j', (line) => {
    const ran = run(line);
    const r = unwrapped(line);
    const argv = r.argv;
    expect(argv[0].text).toBe('printf');
    expect(argv.slice(2).map((x) => x.text)).toEqual(ran.split('\n').slice(0, -1));
  });

  it('choom permutes: options after the command are its own, and -- after the command still ends them', () => {
    const line = `choom -n 0 printf -- '%s\\n' one -x`;
    expect(run(line)).toBe('one\n-x\n');
    const r = unwrapped(line);
    const runs = [r.argv, ...(r.alternatives ?? [])].map((a) => a.map((x) => x.text));
    expect(runs).toContainEqual(['printf', '%s\\n', 'one', '-x']);
  });

  it.each([[`sg ${group} -c "${PRINT}"`], [`sg ${group} "${PRINT}" ignored`], [`sg - ${group} -c "${PRINT}"`]])('%j runs one word through sh -c', (line) => {
    expect(run(line)).toBe('one\ntwo words\n-x\n');
    expect(unwrapped(line).argv.map((x) => x.text)).toEqual(['sh', '-c', PRINT]);
  });
});
