/**
 * Splits a POSIX shell command line into simple commands and their words, the way sh would before
 * running them: quotes ('…', "…", $'…'), backslash escapes and `\`-newline continuation, the operators
 * `;` `&&` `||` `|` `&` and newlines, `$IFS`/`${IFS}` (unquoted: a word break with the default IFS),
 * and command substitution `$(…)` / backticks, whose inner command line is split as well.
 *
 * A word holding an expansion vigil cannot know (`$HOME`, `$(…)`) keeps its literal parts with a
 * `dynamic` flag, so a rule can treat it as "could be anything there".
 */

export interface Word {
  text: string;
  /** Contains an expansion whose value is only known when the shell runs (variables, substitutions). */
  dynamic: boolean;
  /** `text` with each expansion replaced by `*`: what the word could be, as a glob. */
  shape: string;
}

export interface SimpleCommand {
  argv: Word[];
}

export type Split = { ok: true; commands: SimpleCommand[] } | { ok: false; error: string };

const MAX_NESTING = 8;

export function splitCommandLine(line: string, depth = 0): Split {
  if (depth > MAX_NESTING) return { ok: false, error: 'command substitutions nested too deeply' };
  const commands: SimpleCommand[] = [];
  let argv: Word[] = [];
  let text = '';
  let shape = '';
  let dynamic = false;
  let inWord = false;
  const endWord = () => {
    if (inWord) argv.push({ text, dynamic, shape });
    text = shape = '';
    dynamic = inWord = false;
  };
  const endCommand = () => {
    endWord();
    if (argv.length) commands.push({ argv });
    argv = [];
  };
  const lit = (s: string) => {
    text += s;
    shape += s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
    inWord = true;
  };
  const expansion = (s: string) => {
    text += s;
    shape += '*';
    dynamic = inWord = true;
  };
  /** A `$(…)` or backtick body: split it too (its commands run), and the word becomes dynamic. */
  const substitute = (inner: string): string | undefined => {
    const r = splitCommandLine(inner, depth + 1);
    if (!r.ok) return r.error;
    commands.push(...r.commands);
    return undefined;
  };
  const n = line.length;
  let i = 0;
  /** `$…` at i (outside single quotes): returns the new index, or an error. */
  const dollar = (quoted: boolean): number | string => {
    const next = line[i + 1];
    if (next === '(') {
      const end = matching(line, i + 1);
      if (end < 0) return 'unterminated $(';
      // $(( … )) is arithmetic: a value, not a command.
      if (line[i + 2] !== '(') {
        const err = substitute(line.slice(i + 2, end));
        if (err) return err;
      }
      expansion(line.slice(i, end + 1));
      return end + 1;
    }
    if (next === '{') {
      const end = line.indexOf('}', i + 2);
      if (end < 0) return 'unterminated ${';
      const nameText = line.slice(i + 2, end);
      if (nameText === 'IFS' && !quoted) endWord();
      else expansion(line.slice(i, end + 1));
      return end + 1;
    }
    const m = /^[A-Za-z_][A-Za-z0-9_]*|^[0-9@*#?$!-]/.exec(line.slice(i + 1));
    if (!m) {
      lit('$');
      return i + 1;
    }
    if (m[0] === 'IFS' && !quoted) endWord();
    else expansion('$' + m[0]);
    return i + 1 + m[0].length;
  };
  while (i < n) {
    const c = line[i];
    if (c === '\\') {
      if (line[i + 1] === '\n') {
        i += 2; // continuation: the two characters vanish
        continue;
      }
      if (i + 1 < n) lit(line[i + 1]);
      i += 2;
      continue;
    }
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) return { ok: false, error: 'unterminated single quote' };
      lit(line.slice(i + 1, end));
      i = end + 1;
      continue;
    }
    if (c === '$' && line[i + 1] === "'") {
      // $'…' (bash): C-style escapes; the common ones are decoded, others kept literally.
      let j = i + 2;
      let s = '';
      for (; j < n && line[j] !== "'"; j++) {
        if (line[j] === '\\' && j + 1 < n) {
          const e = line[++j];
          if (e === 'x' && /^[0-9a-fA-F]{1,2}/.test(line.slice(j + 1))) {
            const h = /^[0-9a-fA-F]{1,2}/.exec(line.slice(j + 1))![0];
            s += String.fromCharCode(parseInt(h, 16));
            j += h.length;
          } else s += ({ n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"', ' ': ' ' } as Record<string, string>)[e] ?? `\\${e}`;
        } else s += line[j];
      }
      if (j >= n) return { ok: false, error: 'unterminated $\' quote' };
      lit(s);
      i = j + 1;
      continue;
    }
    if (c === '"') {
      inWord = true;
      let j = i + 1;
      for (; j < n && line[j] !== '"'; ) {
        const d = line[j];
        if (d === '\\' && j + 1 < n) {
          const e = line[j + 1];
          if (e === '\n') j += 2;
          else {
            lit('$`"\\'.includes(e) ? e : `\\${e}`);
            j += 2;
          }
        } else if (d === '$') {
          i = j;
          const r = dollar(true);
          if (typeof r === 'string') return { ok: false, error: r };
          j = r;
        } else if (d === '`') {
          const end = line.indexOf('`', j + 1);
          if (end < 0) return { ok: false, error: 'unterminated backtick' };
          const err = substitute(line.slice(j + 1, end));
          if (err) return { ok: false, error: err };
          expansion(line.slice(j, end + 1));
          j = end + 1;
        } else {
          lit(d);
          j++;
        }
      }
      if (j >= n) return { ok: false, error: 'unterminated double quote' };
      i = j + 1;
      continue;
    }
    if (c === '$') {
      const r = dollar(false);
      if (typeof r === 'string') return { ok: false, error: r };
      i = r;
      continue;
    }
    if (c === '`') {
      const end = line.indexOf('`', i + 1);
      if (end < 0) return { ok: false, error: 'unterminated backtick' };
      const err = substitute(line.slice(i + 1, end));
      if (err) return { ok: false, error: err };
      expansion(line.slice(i, end + 1));
      i = end + 1;
      continue;
    }
    if (c === ';' || c === '&' || c === '|' || c === '\n' || c === '(' || c === ')') {
      endCommand();
      i++;
      continue;
    }
    if (c === ' ' || c === '\t') {
      endWord();
      i++;
      continue;
    }
    if (c === '#' && !inWord) {
      const nl = line.indexOf('\n', i);
      if (nl < 0) break;
      i = nl;
      continue;
    }
    if ((c === '<' || c === '>') && !inWord) {
      // A redirection: its target word is not an argument.
      let j = i + 1;
      while (line[j] === '>' || line[j] === '&' || line[j] === '<') j++;
      while (line[j] === ' ' || line[j] === '\t') j++;
      const rest = splitCommandLine(line.slice(j).split(/[\s;&|]/)[0], depth + 1);
      if (!rest.ok) return rest;
      i = j + (line.slice(j).split(/[\s;&|]/)[0]?.length ?? 0);
      continue;
    }
    lit(c);
    i++;
  }
  endCommand();
  return { ok: true, commands };
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
