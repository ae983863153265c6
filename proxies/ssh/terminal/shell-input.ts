/**
 * Commands of a shell that reads them from stdin without a terminal (`ssh host < script.sh`,
 * `ssh host bash -s < script`): the stream is split into complete commands the way a POSIX shell reads
 * it, line by line, keeping a command open across lines while a quote, a here-document, a compound
 * command (if/case/for/while/until/select/{ }/( )), a trailing backslash or a trailing |, && or || is
 * unfinished. The text is reported as sent, newlines included. Pure: no sockets, no events.
 */

const OPENERS = new Set(['if', 'case', 'for', 'while', 'until', 'select', '{']);
const CLOSERS: Record<string, string[]> = { fi: ['if'], esac: ['case'], done: ['for', 'while', 'until', 'select'], '}': ['{'] };
/** After these the next word is a command again (`then ls`, `do rm`, `! grep`). */
const LEADS_COMMAND = new Set(['then', 'do', 'else', 'elif', 'if', 'while', 'until', '!', '{', '}', 'time']);
const SEPARATORS = ';&|()';
/** A command longer than this is reported in pieces rather than buffered without bound. */
export const MAX_COMMAND_CHARS = 64 * 1024;

/** Shell options followed by a value (`--rcfile FILE`, `-o pipefail`, `-O extglob`): the value is not a script. */
const OPTIONS_WITH_VALUE = new Set(['--rcfile', '--init-file', '-o', '+o', '-O', '+O']);
const SHELLS = new Set(['sh', 'bash', 'dash', 'zsh', 'ksh', 'mksh', 'ash', 'posh', 'yash']);

/**
 * Does this exec command start a shell that reads its commands from stdin? A shell name with only
 * options (no `-c`, no script file), or with `-s` and positional arguments: `bash`, `bash -s`,
 * `sh -x`, `/bin/bash -s -- a b`, `sudo bash -s`.
 */
export function readsCommandsFromStdin(command: string): boolean {
  let words = command.trim().split(/\s+/);
  if (words[0] === 'sudo' || words[0] === 'exec') {
    words = words.slice(1);
    while (words[0]?.startsWith('-')) words = words.slice(1);
  }
  const name = (words[0] ?? '').split('/').pop()!;
  if (!SHELLS.has(name)) return false;
  for (let i = 1; i < words.length; i++) {
    const w = words[i]!;
    if (OPTIONS_WITH_VALUE.has(w)) {
      i++;
      continue;
    }
    if (/^-[a-zA-Z]*s[a-zA-Z]*$/.test(w) && !w.includes('c')) return true; // -s: the rest are $1 …
    if (w === '--') return false; // `bash -- file`: a script file follows
    if (!/^[-+]/.test(w)) return false; // a script file
    if (/^-[a-zA-Z]*c/.test(w) && !w.startsWith('--')) return false; // -c: the command is an argument
  }
  return true;
}

/** sudo options followed by a value. */
const SUDO_VALUE_OPTIONS = new Set(['-u', '-g', '-h', '-p', '-C', '-D', '-R', '-T', '-U', '-r', '-t']);

/**
 * Does this exec command start an interactive shell when given a terminal: a shell reading stdin (see
 * above), `su` without `-c`, `sudo -i`/`sudo -s`, or sudo running one of these.
 */
export function startsShell(command: string): boolean {
  if (readsCommandsFromStdin(command)) return true;
  const words = command.trim().split(/\s+/);
  if (words[0] === 'su') return !words.some((w) => w === '-c' || w.startsWith('--command') || w.startsWith('--session-command'));
  if (words[0] !== 'sudo') return false;
  let i = 1;
  let shellOption = false;
  for (; i < words.length && words[i]!.startsWith('-'); i++) {
    const w = words[i]!;
    if (w === '--login' || w === '--shell' || /^-[a-zA-Z]*[is][a-zA-Z]*$/.test(w)) shellOption = true;
    if (SUDO_VALUE_OPTIONS.has(w)) i++;
  }
  const rest = words.slice(i).join(' ');
  return rest ? startsShell(rest) : shellOption;
}

export class ShellInputSplitter {
  private readonly decoder = new TextDecoder('utf-8');
  /** Text of the line being received (no newline yet). */
  private line = '';
  /** Lines of the command being assembled, each with its newline. */
  private command = '';
  /** The command has something besides blanks and comments. */
  private hasCode = false;
  private quote: "'" | '"' | '`' | null = null;
  private readonly compound: string[] = [];
  private parens = 0;
  /** Here-document terminators announced on the current line, in order. */
  private heredocs: { word: string; stripTabs: boolean }[] = [];
  /** The here-document whose body is being read. */
  private heredoc: { word: string; stripTabs: boolean } | null = null;

  /** A command is open: lines were taken that do not complete it yet (an open quote, `\`, a heredoc …). */
  get unfinished(): boolean {
    return this.command !== '' || this.line !== '';
  }

  /** Complete commands found in `data` (and what came before it). */
  push(data: Uint8Array): string[] {
    const out: string[] = [];
    this.line += this.decoder.decode(data, { stream: true });
    let nl: number;
    while ((nl = this.line.indexOf('\n')) >= 0) {
      const line = this.line.slice(0, nl);
      this.line = this.line.slice(nl + 1);
      this.takeLine(line, out);
    }
    if (this.line.length + this.command.length > MAX_COMMAND_CHARS) {
      this.command += this.line;
      this.line = '';
      this.flush(out);
    }
    return out;
  }

  /** End of the stream: whatever is left, even unfinished, is reported (a shell would try to run it). */
  end(): string[] {
    const out: string[] = [];
    this.line += this.decoder.decode();
    if (this.line) {
      const line = this.line;
      this.line = '';
      this.takeLine(line, out, true);
    }
    this.flush(out);
    return out;
  }

  private flush(out: string[]): void {
    const text = this.command.replace(/\n$/, '');
    if (this.hasCode && text.trim()) out.push(text);
    this.command = '';
    this.hasCode = false;
    this.quote = null;
    this.compound.length = 0;
    this.parens = 0;
    this.heredocs = [];
    this.heredoc = null;
  }

  private takeLine(line: string, out: string[], last = false): void {
    this.command += line + (last ? '' : '\n');
    if (this.heredoc) {
      const body = this.heredoc.stripTabs ? line.replace(/^\t+/, '') : line;
      if (body === this.heredoc.word || body.replace(/\r$/, '') === this.heredoc.word) this.heredoc = this.heredocs.shift() ?? null;
      if (!this.heredoc && this.complete(false)) this.flush(out);
      return;
    }
    const continued = this.scan(line);
    this.heredoc = this.heredocs.shift() ?? null;
    if (!this.heredoc && this.complete(continued)) this.flush(out);
    else if (this.command.length > MAX_COMMAND_CHARS) this.flush(out);
  }

  private complete(continued: boolean): boolean {
    return !continued && this.quote === null && this.compound.length === 0 && this.parens === 0;
  }

  /** Reads one line's syntax; true when the line asks for the next one (`\`, `|`, `&&`, `||`). */
  private scan(line: string): boolean {
    let atCommand = true;
    let word = '';
    let wordAtCommand = true;
    let lastToken = '';
    const endWord = () => {
      if (!word) return;
      if (wordAtCommand && OPENERS.has(word)) {
        this.compound.push(word);
      } else if (wordAtCommand && word in CLOSERS) {
        const i = this.compound.length - 1;
        if (i >= 0 && CLOSERS[word]!.includes(this.compound[i]!)) this.compound.pop();
      }
      atCommand = wordAtCommand && (LEADS_COMMAND.has(word) || /^[A-Za-z_][A-Za-z0-9_]*=/.test(word));
      if (wordAtCommand && ['for', 'case', 'select'].includes(word)) atCommand = false;
      lastToken = word;
      word = '';
    };
    for (let i = 0; i < line.length; i++) {
      const c = line[i]!;
      if (this.quote) {
        if (c === '\\' && this.quote !== "'") i++;
        else if (c === this.quote) this.quote = null;
        if (this.quote === null) lastToken = 'word';
        continue;
      }
      if (c === '\\') {
        this.hasCode = true;
        if (i === line.length - 1) return true;
        if (!word) wordAtCommand = atCommand;
        word += line[++i];
        continue;
      }
      if (c === "'" || c === '"' || c === '`') {
        if (!word) wordAtCommand = atCommand;
        this.hasCode = true;
        word += c; // a quoted word is never a keyword
        this.quote = c;
        continue;
      }
      if (c === ' ' || c === '\t' || c === '\r') {
        endWord();
        continue;
      }
      if (c === '#' && !word) break; // comment to the end of the line
      if (c === '<' && line[i + 1] === '<' && line[i + 2] !== '<') {
        endWord();
        i = this.heredocWord(line, i + 2) - 1;
        lastToken = 'word';
        continue;
      }
      if (SEPARATORS.includes(c)) {
        endWord();
        const inCase = this.compound[this.compound.length - 1] === 'case';
        if (c === '(' && !inCase) this.parens++;
        else if (c === ')' && !inCase && this.parens > 0) this.parens--;
        atCommand = true; // after `f()` comes the function's body, after `(x)` in a case its command
        lastToken = c === '&' && line[i + 1] === '&' ? '&&' : c === '|' && line[i + 1] === '|' ? '||' : c;
        if (lastToken.length === 2) i++;
        this.hasCode = true;
        continue;
      }
      if (!word) wordAtCommand = atCommand;
      word += c;
      this.hasCode = true;
    }
    endWord();
    if (this.quote) return false; // the quote continues on the next line; `complete` sees it
    return lastToken === '|' || lastToken === '&&' || lastToken === '||';
  }

  /** Parse the delimiter after `<<` at `from`; returns the index after it. */
  private heredocWord(line: string, from: number): number {
    let i = from;
    let stripTabs = false;
    if (line[i] === '-') { stripTabs = true; i++; }
    while (line[i] === ' ' || line[i] === '\t') i++;
    let word = '';
    let q: string | null = null;
    for (; i < line.length; i++) {
      const c = line[i]!;
      if (q) {
        if (c === q) q = null;
        else word += c;
      } else if (c === "'" || c === '"') q = c;
      else if (c === '\\') word += line[++i] ?? '';
      else if (' \t;&|<>()'.includes(c)) break;
      else word += c;
    }
    if (word) this.heredocs.push({ word, stripTabs });
    this.hasCode = true;
    return i;
  }
}

/**
 * Is this command line, read as a whole, still open: does a shell given it ask for more (PS2) before it
 * runs anything? (`echo 'open`, `echo a \\`, `cat <<EOF`, `for i in 1; do`.)
 */
export function asksForMore(text: string): boolean {
  const splitter = new ShellInputSplitter();
  splitter.push(new TextEncoder().encode(text + '\n'));
  return splitter.unfinished;
}

/**
 * Does bash's history expansion rewrite this line before running it (`!!`, `!$`, `!-2`, `!ls`, `^a^b`)?
 * Then the echoed line is not the text that ran. A `!` before a blank, `=`, `(` or the end, or inside
 * single quotes or after a backslash, is left alone by bash (`! grep`, `[ a != b ]`, `echo hi!`).
 */
export function expandsHistory(text: string): boolean {
  if (/^\s*\^/.test(text)) return true;
  let single = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (single) {
      if (c === "'") single = false;
    } else if (c === "'") single = true;
    else if (c === '\\') i++;
    else if (c === '!' && i + 1 < text.length && !/[\s=(]/.test(text[i + 1]!)) return true;
  }
  return false;
}
