/**
 * Splits a POSIX shell command line into simple commands and their words, the way bash would before
 * running them: quotes ('…', "…", $'…' with its C escapes, $"…"), backslash escapes and `\`-newline
 * continuation, the operators `;` `&&` `||` `|` `&` and newlines, reserved words (`{ } ! if then … done
 * case for function coproc`: never a program, the command after them is), brace expansion (`{a,b}`,
 * `{1..3}`), pathname patterns (`/bin/r?`), redirections (their targets are not arguments),
 * `$IFS`/`${IFS}` (unquoted: a word break with the default IFS), tilde prefixes (`~`, `~user/…`, also after
 * `=` and `:` in assignments: a directory only known when the shell runs), and command and process substitution
 * `$(…)`, backticks, `<(…)`, `>(…)`, whose inner command lines are split as well.
 *
 * A word holding an expansion vigil cannot know (`$HOME`, `$(…)`, `*`) keeps its literal parts with a
 * `dynamic` flag, so a rule can treat it as "could be anything there"; one the shell may also split into
 * several words (unquoted `$X`, `$(…)`, a glob) has a `splits` flag, because the words after it then shift
 * (`timeout $T rm` with T="5 rm" runs `rm`). Syntax that is not modelled here
 * and could hide a command or change what a word is (`${x:-$(…)}`, a command substitution in
 * arithmetic, `$IFS` after IFS was assigned) makes the split fail: a rule then refuses it as unparsable
 * rather than guess.
 */

export interface Word {
  text: string;
  /** Contains an expansion whose value is only known when the shell runs (variables, substitutions, globs). */
  dynamic: boolean;
  /** `text` with each expansion replaced by `*` (globs kept as globs): what the word could be, as a glob. */
  shape: string;
  /**
   * The shell may turn it into several words, or none (absent: it stays one word): an unquoted variable
   * or command substitution is split on IFS, an unquoted glob may name several files, `"$@"` is one word
   * per parameter. A quoted `"$USER"` is one word. Where a word only shifts what comes after it (a
   * wrapper's option value: `timeout $T rm` with T="5 rm"), this is what makes it undecidable.
   */
  splits?: boolean;
}

export interface SimpleCommand {
  argv: Word[];
}

export type Split = { ok: true; commands: SimpleCommand[] } | { ok: false; error: string };

const MAX_NESTING = 8;
/** Words one word may brace-expand to; more is refused (a rule cannot be checked on a million words). */
const MAX_BRACE_WORDS = 256;

/** Words that are syntax, not a program, where a command starts (bash reserved words). */
const RESERVED = new Set(['{', '}', '!', 'if', 'then', 'elif', 'else', 'fi', 'while', 'until', 'do', 'done', 'esac', 'coproc']);
// `time` is a reserved word too; commands.ts unwraps it with its `-p` like the other wrappers.
/** Reserved words followed by words that are not a command: `for NAME in …`, `case WORD in`, `function NAME`. */
const HEADERS = new Set(['for', 'select', 'case', 'function']);

/** A piece of a word being read: literal or expanded text, or an unquoted brace-expansion character. */
type Piece = { text: string; shape: string; quoted?: true } | '{' | ',' | '}';

class Unparsable extends Error {}

export function splitCommandLine(line: string, depth = 0): Split {
  if (depth > MAX_NESTING) return { ok: false, error: 'command substitutions nested too deeply' };
  try {
    return { ok: true, commands: split(line, depth) };
  } catch (e) {
    if (e instanceof Unparsable) return { ok: false, error: e.message };
    throw e;
  }
}

function split(line: string, depth: number): SimpleCommand[] {
  const commands: SimpleCommand[] = [];
  let argv: Word[] = [];
  let pieces: Piece[] = [];
  let dynamic = false;
  /** The word holds an expansion the shell splits into words (see Word.splits). */
  let splits = false;
  let quoted = false;
  let inWord = false;
  /** An unquoted `[` was seen in this word: a later `]` makes it a bracket pattern. */
  let bracket = false;
  /** The word holds an unquoted pattern character (`*`, `?`, `[…]`): it names whichever files match. */
  let pattern = false;
  /** The next word is a redirection's target, not an argument. */
  let redirect = false;
  /**
   * Reading words that are not a command: a `for`/`select` header, a `function` name, a `case WORD in`,
   * or a case pattern (`case-pattern`: up to its `)`, across newlines).
   */
  let header: string | undefined;
  /** `case` commands open at this point (their `;;` starts a pattern, their `esac` ends them). */
  let caseDepth = 0;
  /** After `coproc`: the next word is a NAME when a compound command follows it. */
  let coproc = false;
  /** IFS was assigned earlier in the line: `$IFS` is no longer a known word break. */
  let ifsChanged = false;
  const n = line.length;
  let i = 0;

  const resetWord = () => {
    pieces = [];
    dynamic = splits = quoted = inWord = bracket = pattern = false;
  };
  const endWord = () => {
    if (!inWord) return resetWord();
    // An assignment (`a=*`, `a[1]=x`) is not pathname-expanded.
    const assignment = pieces.every((p) => typeof p === 'object') && /^[A-Za-z_][A-Za-z0-9_]*(?:\[[^\]]*\])?\+?=/.test(pieces.map((p) => (p as { text: string }).text).join(''));
    if (pattern && !assignment) dynamic = splits = true;
    const words = expandBraces(pieces).map(({ text, shape }): Word => ({ text, shape, dynamic, ...(splits ? { splits } : {}) }));
    const plain = !quoted && !dynamic && words.length === 1 ? words[0].text : undefined;
    if (words.some((w) => /^IFS\+?=/.test(w.text) || w.text === 'IFS')) ifsChanged = true;
    resetWord();
    if (redirect) {
      redirect = false; // `>file`: the file is not an argument (substitutions in it were split already)
      return;
    }
    if (header !== undefined) {
      // `for x do …` (no `in`): `do` ends the header and a command follows.
      if ((header === 'for' || header === 'select') && plain === 'do') header = undefined;
      // `case WORD in`: patterns follow; `esac` in place of a pattern ends the case.
      else if (header === 'case' && plain === 'in') header = 'case-pattern';
      else if (header === 'case-pattern' && plain === 'esac') {
        header = undefined;
        caseDepth = Math.max(0, caseDepth - 1);
      }
      // `function NAME`: only the name; `{` or `(` comes next.
      else if (header === 'function') header = undefined;
      return;
    }
    if (argv.length === 0 && plain !== undefined) {
      if (coproc) {
        coproc = false;
        // `coproc NAME { …; }`: NAME names the coprocess; `coproc cmd args` runs cmd.
        if (/^[ \t]*[{(]/.test(line.slice(i))) return;
      }
      if (RESERVED.has(plain)) {
        if (plain === 'coproc') coproc = true;
        if (plain === 'esac') caseDepth = Math.max(0, caseDepth - 1);
        return;
      }
      if (HEADERS.has(plain)) {
        header = plain;
        if (plain === 'case') caseDepth++;
        return;
      }
    }
    argv.push(...words);
  };
  const endCommand = (endsPattern = true) => {
    endWord();
    if (argv.length) commands.push({ argv });
    argv = [];
    redirect = false;
    if (header !== 'case-pattern' || endsPattern) header = undefined;
    coproc = false;
  };
  /** Literal text; `quotedText`: it came from quotes or an escape, so it is neither a glob nor a brace. */
  const lit = (s: string, quotedText: boolean) => {
    inWord = true;
    if (quotedText) {
      quoted = true;
      pieces.push({ text: s, shape: s.replace(/[*?[\]\\{}]/g, (c) => `\\${c}`), quoted: true });
      return;
    }
    for (const c of s) {
      if (c === '{' || c === ',' || c === '}') pieces.push(c);
      else {
        // An unquoted pattern character makes the word a pathname pattern: it could name any matching file.
        if (c === '*' || c === '?' || (c === ']' && bracket)) pattern = true;
        if (c === '[') bracket = true;
        pieces.push({ text: c, shape: c === '\\' ? '\\\\' : c });
      }
    }
  };
  /** `splitsHere`: the shell splits its value into words (unquoted, or `"$@"`). */
  const expansion = (s: string, splitsHere: boolean) => {
    pieces.push({ text: s, shape: '*' });
    dynamic = inWord = true;
    if (splitsHere) splits = true;
  };
  /** A `$(…)`, backtick or `<(…)` body: split it too (its commands run), and the word becomes dynamic. */
  const substitute = (inner: string) => {
    const r = splitCommandLine(inner, depth + 1);
    if (!r.ok) throw new Unparsable(r.error);
    commands.push(...r.commands);
  };
  const ifs = (quotedHere: boolean, text: string) => {
    if (ifsChanged) throw new Unparsable('$IFS after IFS was assigned: the word breaks are only known when the shell runs');
    if (quotedHere) expansion(text, false);
    else endWord();
  };
  /**
   * Can an unquoted `~` here start a tilde prefix? At the start of a word, and in a word that looks like
   * an assignment right after its `=` or after an unquoted `:` (bash does it there even in arguments).
   */
  const tildePosition = (): boolean => {
    if (!inWord) return true;
    const last = pieces[pieces.length - 1];
    if (typeof last !== 'object' || last.quoted || (last.text !== '=' && last.text !== ':')) return false;
    const sofar = pieces.map((p) => (typeof p === 'object' ? p.text : p)).join('');
    return last.text === ':' ? /^[A-Za-z_][A-Za-z0-9_]*\+?=/.test(sofar) : /^[A-Za-z_][A-Za-z0-9_]*\+?=$/.test(sofar);
  };
  /** `$…` at i (outside single quotes): returns the new index. */
  const dollar = (quotedHere: boolean): number => {
    const next = line[i + 1];
    if (next === '(') {
      const end = matching(line, i + 1);
      if (end < 0) throw new Unparsable('unterminated $(');
      if (line[i + 2] === '(') {
        // $(( … )) is arithmetic: a value, not a command, unless it holds a substitution (not modelled).
        if (/\$\(|`/.test(line.slice(i + 3, end))) throw new Unparsable('a command substitution inside $(( … ))');
        // A number: split only on an IFS that holds digits (bash ignores an IFS from the environment).
        expansion(line.slice(i, end + 1), !quotedHere && ifsChanged);
        return end + 1;
      }
      substitute(line.slice(i + 2, end));
      expansion(line.slice(i, end + 1), !quotedHere);
      return end + 1;
    }
    if (next === '{') {
      const end = line.indexOf('}', i + 2);
      if (end < 0) throw new Unparsable('unterminated ${');
      const body = line.slice(i + 2, end);
      // ${x:-$(cmd)}, ${x:-"…"}, ${x:-${y}}: the `}` found may not be the closing one, and what is inside runs.
      if (/[$`'"\\{(]/.test(body)) throw new Unparsable('an expansion inside ${…}');
      if (body === 'IFS') ifs(quotedHere, line.slice(i, end + 1));
      // `"${a[@]}"`, `"${@:2}"`, `"${!p@}"`: one word per element even when quoted.
      else expansion(line.slice(i, end + 1), !quotedHere || body.includes('@'));
      return end + 1;
    }
    // $"…" (bash): a translated string, the same text in the C locale.
    if (next === '"' && !quotedHere) return i + 1;
    const m = /^[A-Za-z_][A-Za-z0-9_]*|^[0-9@*#?$!-]/.exec(line.slice(i + 1));
    if (!m) {
      lit('$', true);
      return i + 1;
    }
    if (m[0] === 'IFS') ifs(quotedHere, '$IFS');
    else expansion('$' + m[0], !quotedHere || m[0] === '@');
    return i + 1 + m[0].length;
  };
  while (i < n) {
    const c = line[i];
    if (c === '\\') {
      if (line[i + 1] === '\n') {
        i += 2; // continuation: the two characters vanish
        continue;
      }
      if (i + 1 < n) lit(line[i + 1], true);
      i += 2;
      continue;
    }
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Unparsable('unterminated single quote');
      lit(line.slice(i + 1, end), true);
      i = end + 1;
      continue;
    }
    if (c === '$' && line[i + 1] === "'") {
      const [s, end] = ansiC(line, i + 2);
      lit(s, true);
      i = end + 1;
      continue;
    }
    if (c === '"') {
      inWord = quoted = true;
      let j = i + 1;
      for (; j < n && line[j] !== '"'; ) {
        const d = line[j];
        if (d === '\\' && j + 1 < n) {
          const e = line[j + 1];
          if (e === '\n') j += 2;
          else {
            lit('$`"\\'.includes(e) ? e : `\\${e}`, true);
            j += 2;
          }
        } else if (d === '$') {
          i = j;
          j = dollar(true);
        } else if (d === '`') {
          const end = line.indexOf('`', j + 1);
          if (end < 0) throw new Unparsable('unterminated backtick');
          substitute(line.slice(j + 1, end));
          expansion(line.slice(j, end + 1), false);
          j = end + 1;
        } else {
          lit(d, true);
          j++;
        }
      }
      if (j >= n) throw new Unparsable('unterminated double quote');
      i = j + 1;
      continue;
    }
    if (c === '$') {
      i = dollar(false);
      continue;
    }
    if (c === '`') {
      const end = line.indexOf('`', i + 1);
      if (end < 0) throw new Unparsable('unterminated backtick');
      substitute(line.slice(i + 1, end));
      expansion(line.slice(i, end + 1), true);
      i = end + 1;
      continue;
    }
    if ((c === '<' || c === '>') && line[i + 1] === '(') {
      // Process substitution: the inner command line runs; the word is a file name only known then.
      const end = matching(line, i + 1);
      if (end < 0) throw new Unparsable(`unterminated ${c}(`);
      substitute(line.slice(i + 2, end));
      expansion(line.slice(i, end + 1), false); // one file name (/dev/fd/63)
      i = end + 1;
      continue;
    }
    if (c === '<' || c === '>') {
      // A redirection: its target word is not an argument. Digits right before it are its file
      // descriptor (`2>`); any other word before it ends there (`a>b` is `a` and a redirection).
      if (inWord && !quoted && !dynamic && pieces.every((p) => typeof p === 'object' && /^[0-9]$/.test(p.text))) resetWord();
      else endWord();
      let j = i + 1;
      while (j < n && (line[j] === '>' || line[j] === '<' || line[j] === '&' || (line[j] === '|' && j === i + 1 && c === '>'))) j++;
      if (line[j] === '(') throw new Unparsable(`a redirection followed by (`);
      redirect = true;
      i = j;
      continue;
    }
    if (c === ';' && line[i + 1] === ';' && caseDepth > 0) {
      // `;;` (`;;&`) ends a case branch: a pattern follows, up to its `)`.
      endCommand();
      header = 'case-pattern';
      i += line[i + 2] === '&' ? 3 : 2;
      continue;
    }
    if (c === ';' && line[i + 1] === '&' && caseDepth > 0) {
      endCommand();
      header = 'case-pattern';
      i += 2;
      continue;
    }
    if (header === 'case-pattern' && !inWord && argv.length === 0 && (c === '(' || c === '\n' || c === ';')) {
      i++; // `(pattern)` and blank lines between branches
      continue;
    }
    if (c === ';' || c === '&' || c === '|' || c === '\n' || c === '(' || c === ')') {
      endCommand(c === ')');
      i++;
      continue;
    }
    if (c === ' ' || c === '\t') {
      endWord();
      i++;
      continue;
    }
    if (c === '~' && tildePosition()) {
      // `~`, `~/…`, `~user/…`, `~+`, `~-`: a home or working directory vigil does not know. A quoted
      // character before the first `/` (`~"x"`) leaves it literal, as bash does.
      const name = /^[A-Za-z0-9._+-]*/.exec(line.slice(i + 1))![0];
      const after = line[i + 1 + name.length];
      if (after === undefined || /[/\s;&|()<>{},:]/.test(after)) {
        expansion(`~${name}`, false); // tilde expansion is not split
        i += 1 + name.length;
        continue;
      }
    }
    if (c === '#' && !inWord) {
      const nl = line.indexOf('\n', i);
      if (nl < 0) break;
      i = nl;
      continue;
    }
    lit(c, false);
    i++;
  }
  endCommand();
  return commands;
}

const SIMPLE_ESCAPES: Record<string, string> = { a: '\x07', b: '\b', e: '\x1b', E: '\x1b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\', "'": "'", '"': '"', '?': '?' };

/** The text of a bash `$'…'` string whose body starts at `from`, decoded as bash does; and the index of its closing quote. */
function ansiC(line: string, from: number): [string, number] {
  let s = '';
  let j = from;
  for (; j < line.length && line[j] !== "'"; j++) {
    if (line[j] !== '\\' || j + 1 >= line.length) {
      s += line[j];
      continue;
    }
    const e = line[++j];
    const rest = line.slice(j + 1);
    let m: RegExpExecArray | null;
    if (e in SIMPLE_ESCAPES) s += SIMPLE_ESCAPES[e];
    else if (/^[0-7]$/.test(e)) {
      // \nnn: one to three octal digits (`\057` is `/`).
      const digits = e + /^[0-7]{0,2}/.exec(rest)![0];
      s += String.fromCharCode(parseInt(digits, 8) & 0xff);
      j += digits.length - 1;
    } else if (e === 'x' && (m = /^[0-9a-fA-F]{1,2}/.exec(rest))) {
      s += String.fromCharCode(parseInt(m[0], 16));
      j += m[0].length;
    } else if (e === 'u' && (m = /^[0-9a-fA-F]{1,4}/.exec(rest))) {
      s += String.fromCodePoint(parseInt(m[0], 16));
      j += m[0].length;
    } else if (e === 'U' && (m = /^[0-9a-fA-F]{1,8}/.exec(rest))) {
      const cp = parseInt(m[0], 16);
      if (cp > 0x10ffff) throw new Unparsable('an invalid \\U escape in $\'…\'');
      s += String.fromCodePoint(cp);
      j += m[0].length;
    } else if (e === 'c' && rest.length > 0) {
      s += String.fromCharCode(rest.charCodeAt(0) & 0x1f);
      j += 1;
    } else s += `\\${e}`; // bash keeps an unknown escape as it is
  }
  if (j >= line.length) throw new Unparsable("unterminated $' quote");
  // bash ends the string at a NUL byte: what follows is dropped, which a rule would not expect.
  if (s.includes('\0')) throw new Unparsable("a NUL byte in $'…'");
  return [s, j];
}

/**
 * Brace expansion of one word's pieces, as bash does before anything else: `a{b,c}d` is `abd acd`,
 * `{1..3}` is `1 2 3`, `{a..c}` is `a b c`; a brace without a comma or a valid sequence is literal.
 */
function expandBraces(pieces: Piece[]): { text: string; shape: string }[] {
  const out: { text: string; shape: string }[] = [];
  const walk = (ps: Piece[]) => {
    if (out.length > MAX_BRACE_WORDS) throw new Unparsable(`a brace expansion of more than ${MAX_BRACE_WORDS} words`);
    for (let o = 0; o < ps.length; o++) {
      if (ps[o] !== '{') continue;
      let d = 0;
      const commas: number[] = [];
      let close = -1;
      for (let k = o; k < ps.length; k++) {
        if (ps[k] === '{') d++;
        else if (ps[k] === '}' && --d === 0) {
          close = k;
          break;
        } else if (ps[k] === ',' && d === 1) commas.push(k);
      }
      if (close < 0) continue; // no closing brace: this one is literal
      const before = ps.slice(0, o).map(literal);
      const after = ps.slice(close + 1);
      if (commas.length) {
        let start = o + 1;
        for (const k of [...commas, close]) {
          walk([...before, ...ps.slice(start, k), ...after]);
          start = k + 1;
        }
        return;
      }
      const seq = sequence(ps.slice(o + 1, close));
      if (seq) {
        if (seq.length > MAX_BRACE_WORDS) throw new Unparsable(`a brace expansion of more than ${MAX_BRACE_WORDS} words`);
        for (const s of seq) walk([...before, { text: s, shape: s }, ...after]);
        return;
      }
      // `{x}`: literal; look for an expansion further on.
    }
    const lits = ps.map(literal);
    out.push({ text: lits.map((p) => p.text).join(''), shape: lits.map((p) => p.shape).join('') });
  };
  walk(pieces);
  if (out.length > MAX_BRACE_WORDS) throw new Unparsable(`a brace expansion of more than ${MAX_BRACE_WORDS} words`);
  return out;
}

function literal(p: Piece): { text: string; shape: string } {
  return typeof p === 'string' ? { text: p, shape: p === ',' ? p : `\\${p}` } : p;
}

/** `{1..5}`, `{5..1..2}`, `{a..e}`: the words, or undefined when the body is not a sequence. */
function sequence(body: Piece[]): string[] | undefined {
  if (body.some((p) => typeof p === 'string' || p.shape === '*')) return undefined;
  const t = body.map((p) => (p as { text: string }).text).join('');
  const m = /^(?:(-?\d+)\.\.(-?\d+)|([A-Za-z])\.\.([A-Za-z]))(?:\.\.(-?\d+))?$/.exec(t);
  if (!m) return undefined;
  const numeric = m[1] !== undefined;
  const a = numeric ? Number(m[1]) : m[3].charCodeAt(0);
  const b = numeric ? Number(m[2]) : m[4].charCodeAt(0);
  const step = Math.abs(Number(m[5] ?? 1)) || 1;
  if (Math.abs(b - a) / step > MAX_BRACE_WORDS) throw new Unparsable(`a brace expansion of more than ${MAX_BRACE_WORDS} words`);
  // `{01..10}`: zero-padded to the wider end.
  const width = numeric && (/^-?0\d/.test(m[1]) || /^-?0\d/.test(m[2])) ? Math.max(m[1].length, m[2].length) : 0;
  const out: string[] = [];
  for (let v = a; a <= b ? v <= b : v >= b; v += a <= b ? step : -step) {
    out.push(numeric ? (v < 0 ? '-' : '') + String(Math.abs(v)).padStart(width, '0') : String.fromCharCode(v));
  }
  return out;
}

/** Index of the `)` closing the `(` at `open`, skipping quotes and nested parentheses; -1 if none. */
function matching(s: string, open: number): number {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') i++;
    else if (c === "'") {
      const e = s.indexOf("'", i + 1);
      if (e < 0) return -1;
      i = e;
    } else if (c === '(') depth++;
    else if (c === ')' && --depth === 0) return i;
  }
  return -1;
}
