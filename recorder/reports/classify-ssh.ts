/**
 * Which SSH commands and file operations change a host: editors, service control, package managers,
 * file-changing utilities and output redirection in shell command lines; SFTP and scp writes.
 * A shell line is split into its simple commands (at ; & | && || and newlines, quotes respected), and each
 * is judged by its program name after wrappers such as sudo and env.
 */
export type SshChangeClass = 'editor' | 'service' | 'package' | 'file' | 'user' | 'system';

const PROGRAMS: Record<string, SshChangeClass> = {};
const add = (cls: SshChangeClass, names: string) => names.split(' ').forEach((n) => (PROGRAMS[n] = cls));
add('editor', 'vi vim nvim view nano pico emacs emacsclient ed ex micro joe mcedit sudoedit visudo vipw vigr crontab');
add('service', 'systemctl service rc-service initctl supervisorctl launchctl invoke-rc.d update-rc.d chkconfig reboot shutdown halt poweroff');
add('package', 'apt apt-get aptitude dpkg yum dnf rpm zypper apk pacman snap pip pip3 npm gem');
add('file', 'rm mv cp chmod chown chgrp ln mkdir rmdir touch truncate dd tee install rsync shred unlink patch tar unzip');
add('user', 'useradd usermod userdel groupadd groupmod groupdel passwd chpasswd adduser deluser');
add('system', 'sysctl mount umount iptables nft ufw modprobe kill pkill killall');

/** Words that run the command after them (xargs: with arguments read from its input). */
const WRAPPERS = new Set(['sudo', 'doas', 'env', 'nohup', 'nice', 'ionice', 'time', 'exec', 'command', 'builtin', 'stdbuf', 'timeout', 'xargs']);

/**
 * Per wrapper, its options that take an argument (`sudo -u root`, `nice -n 5`, `timeout -s KILL`). The same
 * letter means different things to different wrappers: `sudo -n` is a flag (non-interactive), `nice -n` takes
 * the niceness; a shared list would skip the program name after `sudo -n`. Long options taking a value
 * may also be written `--opt=value` (one word).
 */
const WRAPPER_ARG_OPTIONS: Record<string, ReadonlySet<string>> = {
  sudo: new Set(['-u', '-g', '-C', '-D', '-h', '-p', '-r', '-t', '-U', '-T', '-R', '--user', '--group', '--close-from', '--chdir', '--host', '--prompt', '--role', '--type', '--other-user', '--command-timeout', '--chroot']),
  doas: new Set(['-u', '-C']),
  env: new Set(['-u', '-C', '--unset', '--chdir', '--block-signal', '--default-signal', '--ignore-signal']),
  nice: new Set(['-n', '--adjustment']),
  ionice: new Set(['-c', '-n', '-p', '-P', '-u', '--class', '--classdata', '--pid', '--pgid', '--uid']),
  time: new Set(['-f', '-o', '--format', '--output']),
  exec: new Set(['-a']),
  stdbuf: new Set(['-i', '-o', '-e', '--input', '--output', '--error']),
  timeout: new Set(['-s', '-k', '--signal', '--kill-after']),
  // -i, -l and -e take their argument only attached (`-i{}`), so they are flags here.
  xargs: new Set(['-a', '-d', '-E', '-I', '-L', '-n', '-P', '-s', '--arg-file', '--delimiter', '--max-lines', '--max-args', '--max-procs', '--max-chars', '--process-slot-var']),
};
const NO_ARG_OPTIONS: ReadonlySet<string> = new Set();

/** Skip one wrapper's options starting at `i` (getopt style: `-nu root`, `-uroot`, `--user=root`, `--`); the index after them. */
function skipOptions(wrapper: string, words: string[], i: number): number {
  const takesArg = WRAPPER_ARG_OPTIONS[wrapper] ?? NO_ARG_OPTIONS;
  while (i < words.length && words[i].startsWith('-') && words[i] !== '-') {
    const w = words[i++];
    if (w === '--') break;
    // `env -S 'rm -rf /srv'`: the argument is itself the command line to run.
    const split = wrapper === 'env' ? /^(?:-S|--split-string=?)(.*)$/.exec(w) : null;
    if (split) {
      const line = split[1] || words[i] || '';
      words.splice(i, split[1] ? 0 : 1, ...line.split(/[ \t]+/).filter(Boolean));
      break;
    }
    if (w.startsWith('--')) {
      if (!w.includes('=') && takesArg.has(w)) i++;
      continue;
    }
    // A cluster of short options: the first one that takes an argument takes the rest of the word, or the
    // next word when it ends the cluster. (`nice -10` is a niceness, not options.)
    if (/^-\d+$/.test(w)) continue;
    for (let k = 1; k < w.length; k++) {
      if (takesArg.has(`-${w[k]}`)) {
        if (k === w.length - 1) i++;
        break;
      }
    }
  }
  return i;
}

/** Index of the word naming the program run: after variable assignments and wrappers with their options. */
function programIndex(words: string[]): number {
  let i = 0;
  for (;;) {
    while (i < words.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[i])) i++;
    if (i >= words.length || !WRAPPERS.has(words[i])) return i;
    const wrapper = words[i++];
    // `sudo -e FILE` is sudoedit.
    if (wrapper === 'sudo' && words[i] === '-e') return words.length === i + 1 ? i : (words.splice(i, 1, 'sudoedit'), i);
    i = skipOptions(wrapper, words, i);
    // timeout DURATION COMMAND
    if (wrapper === 'timeout' && /^\d/.test(words[i] ?? '')) i++;
  }
}

/** Split a shell line into simple commands, each as words; quotes kept together, `>` kept as a word. */
export function simpleCommands(line: string): string[][] {
  const out: string[][] = [];
  let words: string[] = [];
  let word = '';
  let quote: string | undefined;
  const endWord = () => {
    if (word) words.push(word);
    word = '';
  };
  const endCommand = () => {
    endWord();
    if (words.length) out.push(words);
    words = [];
  };
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = undefined;
      // Inside double quotes a backslash escapes only these (`bash -c "echo \"x\" > f"`).
      else if (quote === '"' && c === '\\' && '"\\$`'.includes(line[i + 1] ?? '')) word += line[++i];
      else word += c;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '\\' && i + 1 < line.length) word += line[++i];
    else if (c === ';' || c === '&' || c === '|' || c === '\n' || c === '(' || c === ')') endCommand();
    else if (c === '>') {
      endWord();
      // `2>&1` and `>&2` duplicate a descriptor and write no file.
      if (line[i + 1] === '&') {
        i++;
        while (i + 1 < line.length && /[0-9-]/.test(line[i + 1])) i++;
        continue;
      }
      if (line[i + 1] === '>') i++;
      words.push('>');
    } else if (c === ' ' || c === '\t') endWord();
    else word += c;
  }
  endCommand();
  return out;
}

/** What a shell command line does to the host, as far as its text shows. */
export interface ShellClassification {
  /** How it changes the host (absent: no change recognised). */
  change?: SshChangeClass;
  /**
   * Code it runs that the classifier cannot read (`python3 -c`, `perl -e`, `node -e`, shells nested too
   * deep): listed as unclassified rather than taken for no change.
   */
  opaque?: string;
}

/** Shells whose `-c` argument is itself a command line. */
const SHELLS = new Set(['sh', 'bash', 'dash', 'zsh', 'ksh', 'mksh', 'ash', 'fish']);
/** Shell options that take the next word (`bash -o pipefail -c …`). */
const SHELL_ARG_OPTIONS = new Set(['-o', '+o', '-O', '+O', '--rcfile', '--init-file']);
/** Programs that run a command line as another user with `-c` (`su - root -c '…'`). */
const SWITCH_USER = new Set(['su', 'runuser']);

/**
 * Interpreters and the options that give them code inline, which a shell-line classifier cannot read.
 * (A script file run by an interpreter is as opaque as any program and is judged like one, by its name.)
 */
const INLINE_CODE: { program: RegExp; code: RegExp; takesArg?: ReadonlySet<string> }[] = [
  { program: /^(python[0-9.]*|pypy[0-9]*)$/, code: /^-[A-Za-z]*c/, takesArg: new Set(['-W', '-X']) },
  { program: /^(node|nodejs|bun|deno)$/, code: /^(-e|-p|--eval|--print)(=|$)/, takesArg: new Set(['-r', '--require', '--import', '--loader', '-C']) },
  { program: /^php[0-9.]*$/, code: /^-r/, takesArg: new Set(['-c', '-d']) },
  { program: /^(lua[0-9.]*|luajit|Rscript|osascript|tclsh)$/, code: /^-e/ },
  { program: /^(pwsh|powershell)$/, code: /^-(c|command|e|ec|encodedcommand)$/i },
];

/** Nested command lines (`sudo sh -c "bash -c '…'"`) are followed this deep, then listed as unclassified. */
const MAX_NESTING = 4;

/** Whether a shell command line changes the host, and how (undefined: no change recognised). */
export function classifyShellCommand(line: string): SshChangeClass | undefined {
  return classifyShellLine(line).change;
}

/** What a shell command line does: the first change recognised in it, or code it runs unseen. */
export function classifyShellLine(line: string, depth = 0): ShellClassification {
  const out: ShellClassification = {};
  if (depth > MAX_NESTING) return { opaque: `command lines nested more than ${MAX_NESTING} deep` };
  for (const words of simpleCommands(line)) {
    const c = classifyWords(words, depth);
    out.change ??= c.change;
    out.opaque ??= c.opaque;
    if (out.change) break;
  }
  return out.change ? { change: out.change } : out;
}

/** One simple command, as words. */
function classifyWords(words: string[], depth: number): ShellClassification {
  const i = programIndex(words);
  const prog = (words[i] ?? '').split('/').pop() ?? '';
  const args = words.slice(i + 1);
  let cls: SshChangeClass | undefined = PROGRAMS[prog];
  if (prog === 'sed' && args.some((w) => /^-[a-zA-Z]*i/.test(w) || w.startsWith('--in-place'))) cls = 'editor';
  if (!cls) {
    const nested = nestedCommandLine(prog, args, depth);
    if (nested?.change) return nested;
    // Output redirected into a file other than /dev/null writes that file.
    const at = words.indexOf('>');
    if (at >= 0 && words[at + 1] !== undefined && words[at + 1] !== '/dev/null') return { change: 'file' };
    if (nested) return nested;
  }
  return { change: cls };
}

/** What a program that runs other code runs: a shell's or su's `-c` line, eval, find's actions, an interpreter's inline code. */
function nestedCommandLine(prog: string, args: string[], depth: number): ShellClassification | undefined {
  if (SHELLS.has(prog)) {
    const line = shellCommandString(args);
    return line === undefined ? undefined : classifyShellLine(line, depth + 1);
  }
  if (SWITCH_USER.has(prog)) {
    const line = switchUserCommand(args);
    return line === undefined ? undefined : classifyShellLine(line, depth + 1);
  }
  if (prog === 'eval') return classifyShellLine(args.join(' '), depth + 1);
  if (prog === 'find') return findActions(args, depth);
  if (prog === 'perl' || prog === 'ruby') return scriptingFlags(prog, args);
  const interpreter = INLINE_CODE.find((x) => x.program.test(prog));
  if (interpreter) {
    for (let k = 0; k < args.length && args[k].startsWith('-'); k++) {
      if (interpreter.code.test(args[k])) return { opaque: `${prog} ${args[k].split('=')[0]}: inline code` };
      if (interpreter.takesArg?.has(args[k])) k++;
    }
  }
  return undefined;
}

/** The command string of `sh -c STRING`: the first word after the options when one of them is c. */
function shellCommandString(args: string[]): string | undefined {
  let command = false;
  for (let k = 0; k < args.length; k++) {
    const w = args[k];
    if (w === '--' || w === '-') return command ? args[k + 1] : undefined;
    if (SHELL_ARG_OPTIONS.has(w)) {
      k++;
      continue;
    }
    if (/^[-+][A-Za-z]+$/.test(w) && !w.startsWith('--')) {
      if (w.startsWith('-') && w.includes('c')) command = true;
      continue;
    }
    if (w.startsWith('--')) continue;
    return command ? w : undefined;
  }
  return undefined;
}

/** The command of `su [options] [user] -c COMMAND` (options and user in any order, as util-linux reads them). */
function switchUserCommand(args: string[]): string | undefined {
  for (let k = 0; k < args.length; k++) {
    const w = args[k];
    if (w === '--') return undefined;
    const long = /^--command(?:=(.*))?$/.exec(w);
    if (long) return long[1] ?? args[k + 1];
    if (/^-[A-Za-z]*c$/.test(w)) return args[k + 1];
    if (/^-[A-Za-z]*c./.test(w) && !w.startsWith('--')) return w.slice(w.indexOf('c') + 1);
  }
  return undefined;
}

/** find's actions: -delete and -fprint* change files; -exec/-execdir/-ok/-okdir run a command, judged as one. */
function findActions(args: string[], depth: number): ShellClassification | undefined {
  let opaque: string | undefined;
  for (let k = 0; k < args.length; k++) {
    const w = args[k];
    if (w === '-delete' || w === '-fprint' || w === '-fprint0' || w === '-fprintf' || w === '-fls') return { change: 'file' };
    if (w === '-exec' || w === '-execdir' || w === '-ok' || w === '-okdir') {
      let end = k + 1;
      while (end < args.length && args[end] !== ';' && args[end] !== '+') end++;
      const c = depth >= MAX_NESTING ? { opaque: `command lines nested more than ${MAX_NESTING} deep` } : classifyWords(args.slice(k + 1, end), depth + 1);
      if (c.change) return c;
      opaque ??= c.opaque;
      k = end;
    }
  }
  return opaque ? { opaque } : undefined;
}

/** perl and ruby: `-i` edits files in place; `-e` runs inline code. Letters that take the rest of the word end the cluster. */
function scriptingFlags(prog: string, args: string[]): ShellClassification | undefined {
  let opaque: string | undefined;
  for (const w of args) {
    if (!w.startsWith('-') || w === '--') break;
    for (const ch of w.slice(1)) {
      if (ch === 'i') return { change: 'editor' };
      if (ch === 'e' || ch === 'E') {
        opaque ??= `${prog} -${ch}: inline code`;
        break;
      }
      if ('MmIxdDFCl0'.includes(ch)) break;
    }
  }
  return opaque ? { opaque } : undefined;
}

/** SFTP operations that change files; `open` only when opened for anything but reading. */
const SFTP_WRITES = new Set(['remove', 'rename', 'mkdir', 'rmdir', 'setstat', 'fsetstat', 'symlink', 'hardlink', 'copy', 'posix-rename']);

export function isSftpWrite(details: Record<string, unknown>): boolean {
  const op = String(details.op ?? '');
  if (op === 'open') return Array.isArray(details.flags) && details.flags.some((f) => f !== 'read');
  return SFTP_WRITES.has(op);
}

export function isScpWrite(details: Record<string, unknown>): boolean {
  return details.direction === 'upload';
}
