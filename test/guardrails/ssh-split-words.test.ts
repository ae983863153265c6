import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { splitCommandLine } from '../../src/guardrails/shell.ts';
import { tempDir } from '../support/tmp.ts';
import { decide, useLoggingTarget } from './logging-target.ts';

/**
 * A word the unwrapper skips (a wrapper's option value or operand: timeout's duration, sudo -u's user,
 * flock's file, taskset's mask) that holds an unquoted expansion may become several words when bash runs
 * the line, and the inner command then starts elsewhere: `X="5 rm"; timeout $X ls -rf /` runs
 * `timeout 5 rm ls -rf /`. The same for the program word itself (`$D/ls` with D="rm -rf / /x" runs rm).
 * Such lines are unparsable (refused, never guessed); a quoted `"$USER"` is one word and still passes.
 * Checked through stock ssh to a real sshd whose ForceCommand only writes each command down (nothing
 * runs), and against real bash for the shift itself.
 */

const SHIFTED = [
  'X="5 rm"; timeout $X ls -rf /',
  'U="root rm"; sudo -u $U ls -rf /',
  'U="root rm"; sudo -u$U ls -rf /', // attached value
  'U="root rm"; sudo --user=$U ls -rf /',
  'F="/tmp/l rm"; flock $F ls -rf /',
  'M="1 rm"; taskset $M ls -rf /',
  'N="5 rm"; nice -n $N ls -rf /',
  'timeout $(echo 5 rm) ls -rf /',
  'timeout `echo 5 rm` ls -rf /',
  'timeout 5* ls -rf /', // pathname expansion may name several files
  'a=(5 rm); timeout "${a[@]}" ls -rf /', // one word per element even quoted
  'D="rm -rf / /x"; $D/ls', // the program word itself
  "X=' -c rm\\${IFS}-rf\\${IFS}/'; su root$X", // su reads options after the user
];

/**
 * One word, but only known at run time, where the wrapper still reads options: it may be an option and
 * move the command (T=-k5: `timeout -k5 10 rm -rf /`; F=--: `flock -- -x rm -rf /` locks "-x" and runs rm;
 * D=-p: `sudo -p/ls rm -rf /`; X=-c: `sh -c 'rm -rf /'`). Each reading is checked.
 */
const OPTION_SHIFTED = ['T=-k5; timeout "$T" 10 rm -rf /', 'F=--; flock "$F" -x rm -rf /', 'D=-p; sudo "$D"/ls rm -rf /', 'M=-c; taskset "$M" 0 rm -rf /'];
/** A shell or fish whose first word is only known at run time, with words after it: -c is undecidable. */
const OPTION_UNDECIDABLE = ['X=-c; sh "$X" \'rm -rf /\'', "X=-e; bash \"$X\" -c 'rm -rf /'", "X=' -c rm\\${IFS}-rf\\${IFS}/'; bash $X", 'X=-c; fish "$X" \'rm -rf /\'', 'X=-Srm; env "$X" ls'];

/** Each is one word when bash runs it. */
const ALLOWED = ['sudo -u "$USER" ls', 'timeout "$T" ls', 'bash "$HOME/x.sh"', 'nohup "$HOME/bin/job" arg', 'sudo "$D"/ls -l /', 'flock "$HOME/l" ls', 'taskset "$M" ls', 'timeout $((5*60)) ls', 'timeout ~ ls', '"$D"/ls', 'ls $X', 'sudo ls $X'];


describe('ssh guardrail: a skipped word that splits, through a real sshd', () => {
  const target = useLoggingTarget('vigil-guard-split-');
  const reached = () => target.reached();

  it('a wrapper whose skipped word splits is refused as unparsable and never reaches the target; quoted words pass', async () => {
    for (const command of SHIFTED) {
      const r = await target.ssh(command);
      expect(r.code, command).toBe(1);
      expect(r.stderr, command).toContain('guardrail "careful-shell" refused this command (unparsable:');
    }
    for (const command of [...OPTION_SHIFTED, ...OPTION_UNDECIDABLE]) {
      const r = await target.ssh(command);
      expect(r.code, command).toBe(1);
      expect(r.stderr, command).toContain('guardrail "careful-shell" refused this command');
    }
    const event = await target.w.gw.waitForEvent((e) => e.type === 'guardrail.unparsed' && e.details?.command === SHIFTED[0]);
    expect(event).toMatchObject({ outcome: 'failure', actor: { user: 'olga' } });
    for (const command of ['sudo -u "$USER" ls', 'timeout "$T" ls']) {
      const r = await target.ssh(command);
      expect(r.code, `${command}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toContain('reached-target');
    }
    const got = reached();
    for (const c of [...SHIFTED, ...OPTION_SHIFTED, ...OPTION_UNDECIDABLE]) expect(got, c).not.toContain(c);
    expect(got).toEqual(expect.arrayContaining(['sudo -u "$USER" ls', 'timeout "$T" ls']));
  });
});

describe('ssh guardrail: words that split, decisions', () => {
  it.each(SHIFTED)('%j is unparsable', (line) => {
    expect(decide(line)).toBe('unparsed');
  });

  it.each(OPTION_SHIFTED)('%j is blocked: the word read as an option leaves rm -rf /', (line) => {
    expect(decide(line)).toBe('block');
  });

  it.each(OPTION_UNDECIDABLE)('%j is unparsable', (line) => {
    expect(decide(line)).toBe('unparsed');
  });

  it.each(ALLOWED)('%j is allowed', (line) => {
    expect(decide(line)).toBe('allow');
  });

  it('the splitter marks what bash splits, and not what it keeps as one word', () => {
    const words = (line: string) => {
      const s = splitCommandLine(line);
      if (!s.ok) throw new Error(s.error);
      return s.commands[s.commands.length - 1].argv.map((w) => [w.text, w.splits === true]);
    };
    expect(words('x $A "$B" ${C} "${D}" $(e) "$(f)" `g` * "*" ~ $((1+2)) "$@" "$*" <(h) X=*')).toEqual([
      ['x', false], ['$A', true], ['$B', false], ['${C}', true], ['${D}', false], ['$(e)', true], ['$(f)', false], ['`g`', true],
      ['*', true], ['*', false], ['~', false], ['$((1+2))', false], ['$@', true], ['$*', false], ['<(h)', false], ['X=*', false],
    ]);
    expect(words('IFS=1; x $((1+2))')).toEqual([['x', false], ['$((1+2))', true]]);
  });
});

describe('bash really shifts the command after a split word', () => {
  const bash = (line: string) => execFileSync('bash', ['-c', line], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const lock = path.join(tempDir('vigil-split-flock-'), 'l');

  it.each([
    'X="5 echo"; timeout $X ls -rf /',
    'N="5 echo"; nice -n $N ls -rf /',
    'M="1 echo"; taskset $M ls -rf /',
    `F="${lock} echo"; flock $F ls -rf /`,
  ])('%j runs echo, not ls', (line) => {
    expect(bash(line)).toBe('ls -rf /\n');
    expect(decide(line.replace('echo', 'rm'))).toBe('unparsed');
  });

  it.each([
    ['T=-k5; timeout "$T" 10 echo -rf /'],
    [`F=--; flock "$F" -x echo -rf / 2>/dev/null; rm -f -- -x`], // flock -- locks a file named -x
    ['M=-c; taskset "$M" 0 echo -rf /'],
    [`X=-c; sh "$X" 'echo -rf /'`],
    [`X=-e; bash "$X" -c 'echo -rf /'`],
  ])('%j: a quoted word read as an option moves the command', (line) => {
    expect(bash(`cd ${path.dirname(lock)} && ${line}`)).toBe('-rf /\n');
    expect(decide(line.replace(/echo/, 'rm'))).not.toBe('allow');
  });
});
