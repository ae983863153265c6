import { describe, expect, it } from 'vitest';
import { Guardrails, guardrailsSchema } from '../../src/guardrails/index.ts';
import { splitCommandLine } from '../../src/guardrails/shell.ts';

/**
 * Bash syntax the splitter must read as bash does before a `rm -rf /srv/data` rule can hold: reserved
 * words, $'…' escapes, brace expansion, process substitution, substitutions in redirection targets,
 * pathname patterns. What it does not model must be refused as unparsable, never allowed. Pure: the
 * same lines go through stock ssh into a real bash in ssh-shell-syntax-e2e.test.ts.
 */

const g = new Guardrails(guardrailsSchema().parse([{ name: 'keep-data', ssh: { block_commands: ['rm -rf /srv/data'] } }]));
const decide = (line: string): string => {
  const d = g.forSession({ roles: ['oncall'], target: 'box' })!.checkCommand(line);
  return d.action === 'allow' ? 'allow' : d.unparsed ? 'unparsed' : 'block';
};
const argvs = (line: string) => {
  const r = splitCommandLine(line);
  if (!r.ok) throw new Error(r.error);
  return r.commands.map((c) => c.argv.map((w) => w.text));
};

export const SYNTAX_BLOCKED = [
  // Reserved words: the program is the word after them.
  '{ rm -rf /srv/data; }',
  'if true; then rm -rf /srv/data; fi',
  'if false; then :; elif true; then rm -rf /srv/data; else :; fi',
  'if false; then :; else rm -rf /srv/data; fi',
  'while true; do rm -rf /srv/data; break; done',
  'until false; do rm -rf /srv/data; break; done',
  '! rm -rf /srv/data',
  'for x in 1; do rm -rf /srv/data; done',
  'for x do rm -rf /srv/data; done',
  'case x in x) rm -rf /srv/data;; esac',
  'case x in a) :;; *) rm -rf /srv/data;; esac',
  'case x in\n  a) :\n  ;;\n  (*) rm -rf /srv/data\n  ;;\nesac',
  'case x in a) :;; esac; rm -rf /srv/data',
  'f() { rm -rf /srv/data; }; f',
  'function f { rm -rf /srv/data; }; f',
  'coproc rm -rf /srv/data',
  'coproc C { rm -rf /srv/data; }',
  'time -p rm -rf /srv/data',
  // $'…' and $"…".
  "rm -rf $'\\057srv/data'",
  "rm -rf $'\\x2fsrv\\x2fdata'",
  "rm -rf $'\\u002fsrv/data'",
  "rm -rf $'/srv/\\144ata'",
  'rm -rf $"/srv/data"',
  '$"rm" -rf /srv/data',
  // Brace expansion.
  'rm -rf /srv/{data,}',
  'rm -rf /srv/{nothing,dat{a,b}}',
  'rm -rf /srv/dat{a..c}',
  '{rm,-rf,/srv/data}',
  // Process substitution, substitutions in redirection targets.
  'cat <(rm -rf /srv/data)',
  'tee >(rm -rf /srv/data) </dev/null',
  ': >$(rm${IFS}-rf${IFS}/srv/data)',
  ': <<<`rm -rf /srv/data`',
  'rm -rf /srv/data>/dev/null',
  'rm -rf /srv/data 2>/dev/null',
  '>/dev/null rm -rf /srv/data',
  // Pathname patterns could name the directory.
  'rm -rf /srv/dat?',
  'rm -rf /srv/d*',
  'rm -rf /srv/[d]ata',
];

export const SYNTAX_UNPARSED = [
  '/???/r? -rf /srv/data', // the program is a pattern
  'echo ${x:-$(rm -rf /srv/data)}', // a substitution inside ${…}
  'echo $(( $(rm -rf /srv/data) ))', // a substitution inside arithmetic
  'IFS=/; rm${IFS}-rf${IFS}srv${IFS}data', // $IFS after IFS was assigned
  "rm -rf $'/srv/data\\0x'", // bash stops at the NUL
  'rm -rf /srv/{1..100000}', // too many words to check
];

describe('ssh guardrail: bash syntax around a rm -rf /srv/data rule', () => {
  it.each(SYNTAX_BLOCKED)('%j is blocked', (line) => {
    expect(decide(line)).toBe('block');
  });

  it.each(SYNTAX_UNPARSED)('%j is refused as unparsable', (line) => {
    expect(decide(line)).toBe('unparsed');
  });

  it.each(['echo rm -rf /srv/data', 'rm -rf /srv/data2', "echo '{ rm -rf /srv/data; }'", 'rm -rf /srv/{other,more}', 'if true; then echo ok; fi', 'cat <(echo hi)', 'echo {a,b}', "'{' rm -rf /srv/data", 'case $1 in start) echo go;; *) echo usage;; esac', 'a[1]=x; X=* true', 'find /srv -name x -exec ls {} \\;'])('%j is allowed', (line) => {
    expect(decide(line)).toBe('allow');
  });

  it('reads the words bash would run', () => {
    expect(argvs('{ rm -rf /srv/data; }')).toEqual([['rm', '-rf', '/srv/data']]);
    expect(argvs('if true; then rm -rf /x; fi')).toEqual([['true'], ['rm', '-rf', '/x']]);
    expect(argvs('! rm x')).toEqual([['rm', 'x']]);
    expect(argvs("rm $'\\057srv\\tx\\q'")).toEqual([['rm', '/srv\tx\\q']]);
    expect(argvs('rm /srv/{data,} a{1..3}b {x} {01..03}')).toEqual([['rm', '/srv/data', '/srv/', 'a1b', 'a2b', 'a3b', '{x}', '01', '02', '03']]);
    expect(argvs("echo '{a,b}' \\{a,b}")).toEqual([['echo', '{a,b}', '{a,b}']]);
    expect(argvs('cat <(rm -rf /srv/data) x')).toEqual([['rm', '-rf', '/srv/data'], ['cat', '<(rm -rf /srv/data)', 'x']]);
    expect(argvs(': >$(rm${IFS}-rf${IFS}/srv/data) 2>&1')).toEqual([['rm', '-rf', '/srv/data'], [':']]);
    expect(argvs('while IFS= read -r l; do echo $l; done')).toEqual([['IFS=', 'read', '-r', 'l'], ['echo', '$l']]);
  });
});
