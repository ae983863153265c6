import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { Guardrails, guardrailsSchema } from '../../src/guardrails/index.ts';
import { decide, useLoggingTarget } from './logging-target.ts';

/**
 * A word only known at run time may hold the options a rule names: `X=-rf; rm "$X" /` is `rm -rf /`.
 * Such a word (its value may start with `-`, and no `--` came before it) counts as possibly holding any
 * option the rule asks for; one that stays one word is either an option or an operand, never both.
 * Checked through stock ssh to a real sshd whose ForceCommand only writes each command down (nothing
 * runs), and against real bash for the words it makes.
 */

/** Each runs `rm -rf /` when bash runs it. */
const BYPASS = [
  'X=-rf; rm $X /',
  'X=-rf; rm "$X" /',
  'X=rf; rm -$X /',
  'F=f; rm "-r$F" /',
  'X=--recursive; rm "$X" -f /',
  'X="-rf /"; rm $X', // one word splits into both the options and the operand
  'rm "$(echo -rf)" /',
  'rm -r "--for$X" /',
  'HOME=-rf; rm ~ /', // a tilde is $HOME
];

/** None can run `rm -rf /`: after `--`, a literal start other than `-` (`~root` too), one word for two roles, a file glob. */
const ALLOWED = ['ls $X', 'echo $X', 'rm "$HOME/tmp/x"', 'rm -- "$X" /', 'rm ./"$X" /', 'rm /tmp/$X /', 'rm "$X"', 'rm -f ~/x', 'rm ~root/x /', 'rm -f *', 'rm -f *.log', 'rm "--rec$X" /'];


describe('ssh guardrail: options only known at run time, through a real sshd', () => {
  const target = useLoggingTarget('vigil-guard-dynflags-');
  const reached = () => target.reached();

  it('a variable holding rm\'s options is refused and never reaches the target; ordinary lines pass', async () => {
    for (const command of BYPASS) {
      const r = await target.ssh(command);
      expect(r.stderr, command).toContain('guardrail "careful-shell" refused this command');
      expect(r.code, command).toBe(1);
    }
    const event = await target.w.gw.waitForEvent((e) => e.type === 'guardrail.blocked' && e.details?.command === BYPASS[1]);
    expect(event).toMatchObject({ outcome: 'failure', actor: { user: 'olga' } });
    for (const command of ALLOWED) {
      const r = await target.ssh(command);
      expect(r.code, `${command}: ${r.stderr}`).toBe(0);
      expect(r.stdout, command).toContain('reached-target');
    }
    const got = reached();
    for (const c of BYPASS) expect(got, c).not.toContain(c);
    expect(got).toEqual(expect.arrayContaining(ALLOWED));
  });
});

describe('ssh guardrail: options only known at run time, decisions', () => {
  it.each(BYPASS)('%j is blocked', (line) => {
    expect(decide(line)).toBe('block');
  });

  it.each(ALLOWED)('%j is allowed', (line) => {
    expect(decide(line)).toBe('allow');
  });

  it('a rule with a long option or options alone counts such a word too', () => {
    const rules = new Guardrails(guardrailsSchema().parse([{ name: 'careful', ssh: { block_commands: ['rm --no-preserve-root', 'chmod -R'] } }]));
    expect(decide('X=--no-preserve-root; rm -rf "$X" /', rules)).toBe('block');
    expect(decide('rm -rf "--no-pres$X" /', rules)).toBe('block');
    expect(decide('rm -rf "--rec$X" /', rules)).toBe('allow'); // --recursive is not --no-preserve-root
    expect(decide('chmod "$M" 755 /srv', rules)).toBe('block'); // M=-R
    expect(decide('chmod 755 -- "$F"', rules)).toBe('allow');
    expect(decide('chmod 755 ./"$F"', rules)).toBe('allow');
  });
});

describe('bash passes such words to the program as its options', () => {
  const argv = (line: string) => execFileSync('bash', ['-c', line.replace(/\brm\b/, "printf '[%s]'")], { encoding: 'utf8' });

  it.each([
    ['X=-rf; rm $X /', '[-rf][/]'],
    ['X=-rf; rm "$X" /', '[-rf][/]'],
    ['X=rf; rm -$X /', '[-rf][/]'],
    ['F=f; rm "-r$F" /', '[-rf][/]'],
    ['X="-rf /"; rm $X', '[-rf][/]'],
    ['HOME=-rf; rm ~ /', '[-rf][/]'],
  ])('%j gives rm %s', (line, want) => {
    expect(argv(line)).toBe(want);
    expect(decide(line)).toBe('block');
  });
});
