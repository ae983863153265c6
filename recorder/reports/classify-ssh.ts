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

/** Words that run the command after them. */
const WRAPPERS = new Set(['sudo', 'doas', 'env', 'nohup', 'nice', 'ionice', 'time', 'exec', 'command', 'builtin', 'stdbuf', 'timeout']);

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

/** Whether a shell command line changes the host, and how (undefined: no change recognised). */
export function classifyShellCommand(line: string): SshChangeClass | undefined {
  let found: SshChangeClass | undefined;
  for (const words of simpleCommands(line)) {
    const i = programIndex(words);
    const prog = (words[i] ?? '').split('/').pop() ?? '';
    let cls: SshChangeClass | undefined = PROGRAMS[prog];
    if (prog === 'sed' && words.slice(i + 1).some((w) => /^-[a-zA-Z]*i/.test(w) || w.startsWith('--in-place'))) cls = 'editor';
    if (!cls) {
      // Output redirected into a file other than /dev/null writes that file.
      const at = words.indexOf('>');
      if (at >= 0 && words[at + 1] !== undefined && words[at + 1] !== '/dev/null') cls = 'file';
    }
    found ??= cls;
  }
  return found;
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
