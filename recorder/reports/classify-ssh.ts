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

/** Options of wrappers that take the next word as their argument (`sudo -u root`, `nice -n 5`). */
const WRAPPER_ARG_OPTIONS = new Set(['-u', '-g', '-C', '-D', '-h', '-p', '-r', '-t', '-U', '-n']);

/** Index of the word naming the program run: after variable assignments and wrappers with their options. */
function programIndex(words: string[]): number {
  let i = 0;
  for (;;) {
    while (i < words.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[i])) i++;
    if (i >= words.length || !WRAPPERS.has(words[i])) return i;
    const wrapper = words[i++];
    // `sudo -e FILE` is sudoedit.
    if (wrapper === 'sudo' && words[i] === '-e') return words.length === i + 1 ? i : (words.splice(i, 1, 'sudoedit'), i);
    while (i < words.length && words[i].startsWith('-')) i += WRAPPER_ARG_OPTIONS.has(words[i]) ? 2 : 1;
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
