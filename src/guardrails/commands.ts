import path from 'node:path';
import { splitCommandLine, type SimpleCommand, type Word } from './shell.ts';

/**
 * Matching SSH command lines against guardrail patterns on their words (argv), never on raw bytes.
 * A pattern is words: the first matches the program's base name (`/usr/bin/rm` is `rm`), options
 * (`-rf`) match when the command has each of those short options anywhere (`-r -f`, `-fr`, `-Rf`,
 * `--recursive --force`), other words must each be one of the command's operands (paths normalised:
 * `//`, `/.`, `/tmp/..` are `/`). Globs (`*`, `?`, `[…]`) work in any pattern word.
 *
 * Commands run through wrappers (sudo, env, nice, nohup, timeout, command, exec…), `sh -c '…'`,
 * `eval`, command substitution and `alias NAME='…'` definitions are checked too. Out of reach, and said
 * so in the README: aliases and functions already defined in the shell, scripts a command runs, and
 * programs that run other programs from their arguments (find -exec, xargs).
 */

export type Match = { matched: true; pattern: string } | { matched: false } | { unknown: string };

/** Long options that mean a short one (for `-rf`-style patterns). */
const LONG_AS_SHORT: Record<string, string> = { '--recursive': 'r', '--force': 'f' };

const WRAPPERS = new Set(['sudo', 'doas', 'env', 'nice', 'nohup', 'time', 'command', 'exec', 'builtin', 'timeout', 'stdbuf', 'ionice', 'setsid', 'chroot', 'busybox']);
/** Wrapper options that take the next word as their value. */
const WRAPPER_VALUE_OPTS: Record<string, Set<string>> = {
  sudo: new Set(['-u', '-g', '-C', '-h', '-p', '-r', '-t', '-U', '-D']),
  nice: new Set(['-n']),
  ionice: new Set(['-c', '-n', '-p']),
  env: new Set(['-u', '-C', '-S']),
  timeout: new Set(['-s', '-k']),
};
const SHELLS = new Set(['sh', 'bash', 'dash', 'zsh', 'ksh', 'ash', 'mksh']);

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
  const argv = unwrap(c.argv);
  if (argv.length === 0) return { matched: false };
  const program0 = argv[0];
  if (program0.dynamic) return { unknown: `the program is only known when the shell runs (${program0.text})` };
  const program = path.posix.basename(program0.text);
  const args = argv.slice(1);
  // Code handed to a shell or eval is a command line of its own.
  if (SHELLS.has(program)) {
    const ci = args.findIndex((a) => !a.dynamic && /^-[a-z]*c[a-z]*$/.test(a.text));
    if (ci >= 0 && args[ci + 1]) {
      if (args[ci + 1].dynamic) return { unknown: 'a shell runs a script only known when it runs' };
      const m = matchCommandLine(args[ci + 1].text, patterns, depth + 1);
      if (!('matched' in m) || m.matched) return m;
    }
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

/** Strip leading assignments and wrapper commands with their options. */
function unwrap(argv: Word[]): Word[] {
  let i = 0;
  for (let guard = 0; guard < 16 && i < argv.length; guard++) {
    while (i < argv.length && !argv[i].dynamic && /^[A-Za-z_][A-Za-z0-9_]*=/.test(argv[i].text)) i++;
    if (i >= argv.length || argv[i].dynamic) break;
    const w = path.posix.basename(argv[i].text);
    if (!WRAPPERS.has(w)) break;
    i++;
    const valued = WRAPPER_VALUE_OPTS[w];
    while (i < argv.length && (argv[i].text.startsWith('-') || (w === 'env' && /^[A-Za-z_][A-Za-z0-9_]*=/.test(argv[i].text)))) {
      if (argv[i].text === '--') {
        i++;
        break;
      }
      if (valued?.has(argv[i].text)) i++;
      i++;
    }
    // timeout DURATION, chroot DIR, nice/ionice values given inline are already skipped.
    if ((w === 'timeout' || w === 'chroot') && i < argv.length) i++;
  }
  return argv.slice(i);
}

function argsMatch(args: Word[], p: CompiledPattern): boolean {
  let short = '';
  const long: string[] = [];
  const operands: Word[] = [];
  let endOfOptions = false;
  for (const a of args) {
    if (!endOfOptions && !a.dynamic && a.text === '--') endOfOptions = true;
    else if (!endOfOptions && !a.dynamic && a.text.startsWith('--')) {
      long.push(a.text);
      const s = LONG_AS_SHORT[a.text];
      if (s) short += s;
    } else if (!endOfOptions && !a.dynamic && a.text.startsWith('-') && a.text.length > 1) short += normaliseFlags(a.text.slice(1));
    else operands.push(a);
  }
  for (const f of p.shortFlags) if (!short.includes(f)) return false;
  for (const f of p.longFlags) if (!long.some((l) => l === f || l.startsWith(`${f}=`))) return false;
  for (let k = 0; k < p.operands.length; k++) {
    const re = p.operands[k];
    const literal = p.operandLiterals[k];
    const hit = operands.some((o) => (o.dynamic ? glob(o.shape).test(literal) : re.test(normalisePath(o.text))));
    if (!hit) return false;
  }
  return true;
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
