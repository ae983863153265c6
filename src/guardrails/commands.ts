import path from 'node:path';
import { splitCommandLine, type SimpleCommand, type Word } from './shell.ts';
import { LOGIN_SHELL, programName, SHELLS, shellCommandString, unwrap } from './wrappers.ts';

/**
 * Matching SSH command lines against guardrail patterns on their words (argv), never on raw bytes.
 * A pattern is words: the first matches the program's base name (`/usr/bin/rm` is `rm`), options
 * (`-rf`) match when the command has each of those short options anywhere (`-r -f`, `-fr`, `-Rf`,
 * `--recursive --force`), other words must each be one of the command's operands (paths normalised:
 * `//`, `/.`, `/tmp/..` are `/`; after an expansion, `..` may reach any ancestor). Globs (`*`, `?`, `[…]`)
 * work in any pattern word.
 *
 * Commands run through wrappers (sudo, su, runuser, env, nice, nohup, timeout, exec…: wrappers.ts), `sh -c '…'`,
 * `eval`, command substitution and `alias NAME='…'` definitions are checked too. Out of reach, and said
 * so in the README: aliases and functions already defined in the shell, scripts a command runs, and
 * programs that run other programs from their arguments (find -exec, xargs).
 */

export type Match = { matched: true; pattern: string } | { matched: false } | { unknown: string };

/** Long options that mean a short one (for `-rf`-style patterns). */
const LONG_AS_SHORT: Record<string, string> = { '--recursive': 'r', '--force': 'f' };

/**
 * Whether the command's long option `given` names the option `full`. getopt_long takes any unambiguous
 * prefix of a long option (`rm --rec --forc /` is `rm -rf /`), and the tools guardrails name use it: a
 * prefix counts. A prefix the tool's other options share too is ambiguous: the tool refuses to run,
 * so reading it as this option refuses nothing that would have run.
 */
function namesLongOption(given: string, full: string): boolean {
  const eq = given.indexOf('=');
  const name = eq < 0 ? given : given.slice(0, eq);
  return name.length > 2 && full.startsWith(name);
}

export interface CompiledPattern {
  source: string;
  program: RegExp;
  shortFlags: string;
  longFlags: string[];
  operands: RegExp[];
  operandLiterals: string[];
}

export function compilePattern(source: string): CompiledPattern {
  const words = source.trim().split(/\s+/);
  const out: CompiledPattern = { source, program: glob(words[0]), shortFlags: '', longFlags: [], operands: [], operandLiterals: [] };
  for (const w of words.slice(1)) {
    if (w.startsWith('--') && w.length > 2) out.longFlags.push(w);
    else if (w.startsWith('-') && w.length > 1) out.shortFlags += normaliseFlags(w.slice(1));
    else {
      out.operands.push(glob(normalisePath(w)));
      out.operandLiterals.push(normalisePath(w));
    }
  }
  return out;
}

/** Does the command line match any of the patterns? Unknown: it cannot be decided (dynamic program, unparsable). */
export function matchCommandLine(line: string, patterns: CompiledPattern[], depth = 0): Match {
  if (depth > 6) return { unknown: 'commands nested too deeply' };
  const split = splitCommandLine(line);
  if (!split.ok) return { unknown: split.error };
  let unknown: string | undefined;
  for (const c of split.commands) {
    const m = matchCommand(c, patterns, depth);
    if ('unknown' in m) unknown ??= m.unknown;
    else if (m.matched) return m;
  }
  return unknown ? { unknown } : { matched: false };
}

function matchCommand(c: SimpleCommand, patterns: CompiledPattern[], depth: number): Match {
  const unwrapped = unwrap(c.argv);
  // A rule may name a wrapper itself (`sudo -i`).
  for (const w of unwrapped.wrappers) {
    const name = programName(w[0])!;
    for (const p of patterns) if (p.program.test(name) && argsMatch(w.slice(1), p)) return { matched: true, pattern: p.source };
  }
  if ('unknown' in unwrapped) return { unknown: unwrapped.unknown };
  // su may run one command or another depending on its environment: either one matching is a match.
  let unknown: string | undefined;
  for (const argv of [unwrapped.argv, ...(unwrapped.alternatives ?? [])]) {
    const m = matchProgram(argv, patterns, depth);
    if ('unknown' in m) unknown ??= m.unknown;
    else if (m.matched) return m;
  }
  return unknown ? { unknown } : { matched: false };
}

function matchProgram(argv: Word[], patterns: CompiledPattern[], depth: number): Match {
  if (argv.length === 0) return { matched: false };
  const args = argv.slice(1);
  // su without -s: the user's shell is not known here, so what it runs is read with each shell's options.
  if (argv[0] === LOGIN_SHELL) return matchShellScript([...SHELLS], args, patterns, depth);
  const program = programName(argv[0]);
  if (program === undefined) return { unknown: `the program is only known when the shell runs (${argv[0].text})` };
  // Code handed to a shell or eval is a command line of its own.
  if (SHELLS.has(program)) {
    const m = matchShellScript([program], args, patterns, depth);
    if (!('matched' in m) || m.matched) return m;
  }
  if (program === 'eval') {
    if (args.some((a) => a.dynamic)) return { unknown: 'eval of text only known when the shell runs' };
    const m = matchCommandLine(args.map((a) => a.text).join(' '), patterns, depth + 1);
    if (!('matched' in m) || m.matched) return m;
  }
  if (program === 'alias') {
    for (const a of args) {
      const eq = a.text.indexOf('=');
      if (eq > 0) {
        const m = matchCommandLine(a.text.slice(eq + 1), patterns, depth + 1);
        if ('matched' in m && m.matched) return m;
      }
    }
  }
  for (const p of patterns) if (p.program.test(program) && argsMatch(args, p)) return { matched: true, pattern: p.source };
  return { matched: false };
}

/** Does the command string these shells would run (`sh -c '…'`) match? */
function matchShellScript(shells: string[], args: Word[], patterns: CompiledPattern[], depth: number): Match {
  let unknown: string | undefined;
  for (const shell of shells) {
    const s = shellCommandString(shell, args);
    if ('unknown' in s) unknown ??= s.unknown;
    if (!('script' in s)) continue;
    if (s.script.dynamic) {
      unknown ??= 'a shell runs a script only known when it runs';
      continue;
    }
    const m = matchCommandLine(s.script.text, patterns, depth + 1);
    if ('unknown' in m) unknown ??= m.unknown;
    else if (m.matched) return m;
  }
  return unknown ? { unknown } : { matched: false };
}

/** Operand-word choices tried per rule before giving up on precision and calling it a match. */
const MAX_OPERAND_CHOICES = 4096;

function argsMatch(args: Word[], p: CompiledPattern): boolean {
  let short = '';
  const long: string[] = [];
  const operands: Word[] = [];
  /** Words only known at run time where options are still read, that could start with `-`. */
  const maybeOptions: Word[] = [];
  let endOfOptions = false;
  for (const a of args) {
    if (!endOfOptions && !a.dynamic && a.text === '--') endOfOptions = true;
    else if (!endOfOptions && !a.dynamic && a.text.startsWith('--')) {
      long.push(a.text);
      for (const [full, s] of Object.entries(LONG_AS_SHORT)) if (namesLongOption(a.text, full)) short += s;
    } else if (!endOfOptions && !a.dynamic && a.text.startsWith('-') && a.text.length > 1) short += normaliseFlags(a.text.slice(1));
    else {
      operands.push(a);
      if (!endOfOptions && a.dynamic && literalStart(a).couldBeOption) maybeOptions.push(a);
    }
  }
  const missing: Flag[] = [
    ...[...p.shortFlags].filter((f) => !short.includes(f)).map((f): Flag => ({ short: f })),
    ...p.longFlags.filter((f) => !long.some((l) => l === f || (!f.includes('=') && namesLongOption(l, f)))).map((f): Flag => ({ long: f })),
  ];
  // Each rule operand needs a word that could be it; a dynamic word could be a path or an option.
  const candidates: Word[][] = [];
  for (let k = 0; k < p.operands.length; k++) {
    const re = p.operands[k];
    const literal = p.operandLiterals[k];
    const hits = operands.filter((o) => (o.dynamic ? couldBe(o, literal) : re.test(normalisePath(o.text))));
    if (hits.length === 0) return false;
    candidates.push(hits);
  }
  if (missing.length === 0) return true;
  // `X=-rf; rm "$X" /` is `rm -rf /`: a word whose value may start with `-` may hold any option the
  // rule asks for. One that stays one word is either an option or an operand, never both (`rm "$X"`
  // is not `rm -rf /`); one the shell splits (`rm $X`, X="-rf /") may be both.
  const total = candidates.reduce((n, c) => n * c.length, 1);
  if (total > MAX_OPERAND_CHOICES) return missing.every((f) => maybeOptions.some((w) => mayHold(w, f)));
  const choose = (k: number, used: Set<Word>): boolean => {
    if (k === candidates.length) return missing.every((f) => maybeOptions.some((w) => (w.splits || !used.has(w)) && mayHold(w, f)));
    return candidates[k].some((w) => choose(k + 1, new Set(used).add(w)));
  };
  return choose(0, new Set());
}

type Flag = { short: string } | { long: string };

/** Could the dynamic word be this operand once the shell has expanded it? */
function couldBe(w: Word, literal: string): boolean {
  // A pathname pattern without a `/` (`*`, `*.log`) names files in the working directory: relative
  // names, never an absolute path (a literal relative word is not resolved either).
  if (literal.startsWith('/') && onlyPattern(w) && !w.text.includes('/')) return false;
  return glob(normaliseShape(w.shape)).test(literal);
}

/** Dynamic only for a glob: no variable, substitution or tilde in it (a `$` even quoted counts as one: refusing errs safe). */
function onlyPattern(w: Word): boolean {
  return !/[$`~]|[<>]\(/.test(w.text);
}

/**
 * A dynamic word's text up to its first expansion or glob (`-r` for `"-r$F"`, empty for `"$X"` and
 * `"$HOME/x"`, whose value may start with `-`), and whether it could then be an option at all: a word
 * starting with anything else (`./"$X"`, `/tmp/$X`) cannot.
 */
function literalStart(w: Word): { prefix: string; couldBeOption: boolean } {
  const shape = w.shape;
  // `~user` (unquoted: an expansion's `*` shape) is a home directory from the user database, `/…`; but
  // `~`, `~+` and `~-` are $HOME, $PWD and $OLDPWD, which the line may set (`HOME=-rf; rm ~ /`).
  if (/^~[A-Za-z0-9._]/.test(w.text) && shape.startsWith('*')) return { prefix: '/', couldBeOption: false };
  let prefix = '';
  for (let k = 0; k < shape.length; k++) {
    const c = shape[k];
    if (c === '\\' && k + 1 < shape.length) prefix += shape[++k];
    else if ('*?['.includes(c)) break;
    else prefix += c;
  }
  return { prefix, couldBeOption: prefix === '' || prefix.startsWith('-') };
}

/** Could this dynamic word hold the option: `-$X` any short one, `--rec$X` only `--recursive` (or `-r`)? */
function mayHold(w: Word, flag: Flag): boolean {
  const { prefix } = literalStart(w);
  if (prefix === '' || prefix === '-') return true;
  const longPrefix = (full: string) => full.startsWith(prefix) || prefix.startsWith(`${full}=`);
  if (!prefix.startsWith('--')) return 'short' in flag; // a cluster of short options: `-r$X` may go on with any letter
  if ('long' in flag) return longPrefix(flag.long);
  return Object.entries(LONG_AS_SHORT).some(([full, s]) => s === flag.short && longPrefix(full));
}

/** `-R` means recursive like `-r` for every common tool that has either. */
function normaliseFlags(f: string): string {
  return f.replace(/R/g, 'r');
}

function normalisePath(p: string): string {
  if (!p.startsWith('/')) return p;
  const n = path.posix.normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/** Stands for any number of path segments, none included. */
const ANY_SEGMENTS = '\0';

/**
 * A dynamic word's shape with `.`, `..` and `//` resolved as far as they can be. An expansion may hold
 * several segments (`$HOME` is `/home/x`, `~` the same), so a `..` after it can reach any ancestor:
 * `"$HOME/../.."` could be `/`, and its shape becomes a glob that matches `/`.
 */
export function normaliseShape(shape: string): string {
  const absolute = shape.startsWith('/');
  const segments: string[] = [];
  for (const seg of shape.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg !== '..') {
      segments.push(seg);
      continue;
    }
    const top = segments.pop();
    if (top === undefined) {
      if (!absolute) segments.push('..'); // relative to a directory vigil does not know
    } else if (top === '..') segments.push('..', '..');
    else if (top === ANY_SEGMENTS) {
      // Any number of segments, none included: its parent could be one further up.
      if (segments.length && segments[segments.length - 1] !== '..') segments.pop();
      segments.push(ANY_SEGMENTS);
    } else if (isPattern(top)) segments.push(ANY_SEGMENTS);
  }
  // ANY_SEGMENTS takes the slash before it: `/a` + any is `/a*` (`/a`, `/a/b`), at the start `*` (`/` too).
  let out = '';
  for (const seg of segments) out += seg === ANY_SEGMENTS ? '*' : `/${seg}`;
  if (!absolute && out.startsWith('/')) out = out.slice(1);
  return out === '' ? (absolute ? '/' : '.') : out;
}

/** Does a glob segment hold an unescaped `*`, `?` or `[`? */
function isPattern(glob: string): boolean {
  for (let k = 0; k < glob.length; k++) {
    if (glob[k] === '\\') k++;
    else if ('*?['.includes(glob[k])) return true;
  }
  return false;
}

/** A shell glob as an anchored regular expression (`\\x` escapes a character). */
export function glob(g: string): RegExp {
  let re = '';
  for (let i = 0; i < g.length; i++) {
    const c = g[i];
    if (c === '\\' && i + 1 < g.length) re += escape(g[++i]);
    else if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = g.indexOf(']', i + 2);
      if (end < 0) re += '\\[';
      else {
        let body = g.slice(i + 1, end);
        if (body.startsWith('!')) body = '^' + body.slice(1);
        re += `[${body.replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else re += escape(c);
  }
  return new RegExp(`^${re}$`, 's');
}

function escape(c: string): string {
  return /[.*+?^${}()|[\]\\/]/.test(c) ? `\\${c}` : c;
}
