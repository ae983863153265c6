import fs from 'node:fs';
import path from 'node:path';

/**
 * The oracle for command reconstruction: the backend sshd runs every session through a bash that logs
 * each command line it executes (a DEBUG trap appending `history 1` once per history entry, with
 * `lithist` so multi-line commands keep their newlines). Installed as the sshd's ForceCommand, so it
 * wraps interactive pty shells, shells without a pty reading a script on stdin, and `bash -s` alike;
 * exec requests (`bash -c`) are not logged, they are already `ssh.exec` events.
 */
export interface OracleShell {
  /** sshd_config lines to pass as `extraConfig`. */
  sshdConfig: string[];
  /** Command lines logged since the last `reset()`, in order. */
  commands(): string[];
  reset(): void;
  /** The prompt the interactive shell shows. */
  prompt: string;
  /** The rc file that sets the logging up, for a shell started as a command (`bash --rcfile … -i`). */
  rcfile: string;
}

const PROMPT = 'oracle$ ';
/** Printed before an interactive shell starts; never a command. */
export const BANNER = ['Welcome to the oracle host', 'Last login: never from nowhere'];

export function oracleShell(dir: string): OracleShell {
  const log = path.join(dir, 'oracle-commands.log');
  const rc = path.join(dir, 'oracle.rc');
  const wrapper = path.join(dir, 'oracle-shell.sh');
  fs.writeFileSync(
    rc,
    [
      // Only the shell that reads commands (interactive, or a script on stdin), not `bash -c`.
      'case $- in *c*) return ;; esac',
      // Only this shell: not the scripts it runs (which would inherit BASH_ENV).
      'unset BASH_ENV',
      `PS1='${PROMPT}'`,
      'set -o history',
      'HISTFILE=',
      'HISTSIZE=100000',
      'HISTCONTROL=',
      'HISTIGNORE=',
      'shopt -s lithist',
      '__oracle_seen=',
      '__oracle_log() {',
      '  local h',
      '  h=$(HISTTIMEFORMAT= builtin history 1)',
      '  [[ $h =~ ^\\ *([0-9]+)\\*?\\ \\ (.*)$ ]] || return 0',
      '  [[ ${BASH_REMATCH[1]} == "$__oracle_seen" ]] && return 0',
      '  __oracle_seen=${BASH_REMATCH[1]}',
      `  printf '%s\\0' "\${BASH_REMATCH[2]}" >> ${log}`,
      '}',
      'trap __oracle_log DEBUG',
      '',
    ].join('\n'),
  );
  fs.writeFileSync(
    wrapper,
    [
      '#!/bin/bash',
      `export BASH_ENV=${rc}`,
      // An exec request: run it as sshd would have.
      'if [ -n "${SSH_ORIGINAL_COMMAND+x}" ]; then exec /bin/bash --norc -c "$SSH_ORIGINAL_COMMAND"; fi',
      // A pty shell: a banner like a motd, and a moment for typed-ahead input to arrive before bash reads.
      `if [ -t 0 ]; then printf '${BANNER.join('\\n')}\\n'; sleep 0.3; exec /bin/bash --noprofile --rcfile ${rc} -i; fi`,
      'exec /bin/bash --noprofile --norc -s',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  return {
    sshdConfig: [`ForceCommand ${wrapper}`],
    prompt: PROMPT,
    rcfile: rc,
    commands: () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\0').slice(0, -1) : []),
    reset: () => fs.rmSync(log, { force: true }),
  };
}
