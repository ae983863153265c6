import path from 'node:path';
import type { Word } from './shell.ts';

/**
 * Commands that run another command given in their arguments (sudo, env, nice, timeout, exec…), read
 * with each one's own option table the way its getopt does: short options alone or combined (`-Eu
 * root`: the last letter that takes a value takes the rest of the word, or the next word), long options
 * with `=value` or the next word, unambiguous abbreviations of long options (GNU getopt_long accepts
 * `--user` as `--us`), `--` ending options. An option a table does not know makes the command
 * undecidable: guessing whether it takes a value could skip the program. Option sets are those of the
 * Debian 12 tools (`--help` and the getopt strings in util-linux 2.38, procps 4.0, systemd 252, strace 6.1,
 * fakeroot 1.31, iproute2 6.1, tmux 3.3a, shadow's sg), sudo 1.9, OpenBSD doas and bash's builtins.
 */

type LongKind = 'flag' | 'value' | 'optional';

interface OptionTable {
  /** Short options without a value. */
  flags: string;
  /** Short options whose value is the rest of the word or the next word. */
  values: string;
  /** Short options whose value can only be attached (`sudo -hHOST`; `-h` alone is a flag). */
  attachedOnly?: string;
  long?: Record<string, LongKind>;
  /** Operands before the command (timeout's DURATION, chroot's NEWROOT). */
  operandsBefore?: number;
  /** A first word not starting with `-` is an operand read before the options (setarch's ARCH). */
  leadingOperand?: boolean;
  /**
   * getopt permutes (no `+`): options may follow operands until `--`, unless POSIXLY_CORRECT is set, so
   * both readings are commands it may run.
   */
  permutes?: boolean;
  /** `NAME=value` words may come between the options and the command (env, sudo). */
  assignments?: boolean;
  /** `-` alone is an option (env: same as -i). */
  dashAlone?: boolean;
  /** `-5`, `--5`, `-+5`: an obsolete niceness (GNU nice). */
  numeric?: boolean;
  /** The value of these options is a command line of its own (env -S, --split-string). */
  splitString?: { short: string; long: string };
  /**
   * What the words after the options and operands run, when that is not simply them: watch joins them
   * into an `sh -c` line, flock takes `-c STRING`, chrt's priority must be a number.
   */
  runs?: (rest: Word[], seen: string[]) => { argv: Word[]; done?: boolean } | { unknown: string };
}

const literal = (text: string): Word => ({ text, shape: text, dynamic: false });

const GNU_HELP: Record<string, LongKind> = { '--help': 'flag', '--version': 'flag' };

const SETARCH: OptionTable = {
  flags: 'hVv3BFILRSTXZ',
  values: '',
  long: {
    '--32bit': 'flag', '--fdpic-funcptrs': 'flag', '--short-inode': 'flag', '--addr-compat-layout': 'flag', '--addr-no-randomize': 'flag',
    '--whole-seconds': 'flag', '--sticky-timeouts': 'flag', '--read-implies-exec': 'flag', '--mmap-page-zero': 'flag', '--3gb': 'flag',
    '--4gb': 'flag', '--uname-2.6': 'flag', '--verbose': 'flag', '--list': 'flag', '--help': 'flag', '--version': 'flag',
  },
};

export const WRAPPER_OPTIONS: Record<string, OptionTable> = {
  sudo: {
    flags: 'AbBEeHiKklNnPSsVv',
    values: 'aCcDgpRrTtUu',
    attachedOnly: 'h',
    assignments: true,
    long: {
      '--askpass': 'flag', '--auth-type': 'value', '--background': 'flag', '--bell': 'flag', '--close-from': 'value',
      '--login-class': 'value', '--chdir': 'value', '--preserve-env': 'optional', '--edit': 'flag', '--group': 'value',
      '--set-home': 'flag', '--help': 'flag', '--host': 'value', '--login': 'flag', '--remove-timestamp': 'flag',
      '--reset-timestamp': 'flag', '--list': 'flag', '--non-interactive': 'flag', '--no-update': 'flag',
      '--preserve-groups': 'flag', '--prompt': 'value', '--chroot': 'value', '--role': 'value', '--stdin': 'flag',
      '--shell': 'flag', '--type': 'value', '--command-timeout': 'value', '--other-user': 'value', '--user': 'value',
      '--version': 'flag', '--validate': 'flag',
    },
  },
  doas: { flags: 'Lns', values: 'aCu' },
  env: {
    flags: 'i0v',
    values: 'uCS',
    assignments: true,
    dashAlone: true,
    splitString: { short: 'S', long: '--split-string' },
    long: {
      ...GNU_HELP, '--ignore-environment': 'flag', '--null': 'flag', '--unset': 'value', '--chdir': 'value',
      '--split-string': 'value', '--block-signal': 'optional', '--default-signal': 'optional',
      '--ignore-signal': 'optional', '--list-signal-handling': 'flag', '--debug': 'flag',
    },
  },
  nice: { flags: '', values: 'n', numeric: true, long: { ...GNU_HELP, '--adjustment': 'value' } },
  ionice: {
    flags: 'thV',
    values: 'cnpPu',
    long: { '--class': 'value', '--classdata': 'value', '--pid': 'value', '--pgid': 'value', '--ignore': 'flag', '--uid': 'value', '--help': 'flag', '--version': 'flag' },
  },
  timeout: {
    flags: 'v',
    values: 'ks',
    operandsBefore: 1,
    long: { ...GNU_HELP, '--preserve-status': 'flag', '--foreground': 'flag', '--kill-after': 'value', '--signal': 'value', '--verbose': 'flag' },
  },
  stdbuf: { flags: '', values: 'ioe', long: { ...GNU_HELP, '--input': 'value', '--output': 'value', '--error': 'value' } },
  chroot: { flags: '', values: '', operandsBefore: 1, long: { ...GNU_HELP, '--groups': 'value', '--userspec': 'value', '--skip-chdir': 'flag' } },
  nohup: { flags: '', values: '', long: GNU_HELP },
  setsid: { flags: 'cfwhV', values: '', long: { '--ctty': 'flag', '--fork': 'flag', '--wait': 'flag', '--help': 'flag', '--version': 'flag' } },
  // bash's `time` reserved word (-p) and GNU time.
  time: {
    flags: 'apqvhV',
    values: 'fo',
    long: { '--append': 'flag', '--format': 'value', '--output': 'value', '--portability': 'flag', '--quiet': 'flag', '--verbose': 'flag', '--help': 'flag', '--version': 'flag' },
  },
  // bash builtins: short options only.
  command: { flags: 'pvV', values: '' },
  exec: { flags: 'cl', values: 'a' },
  builtin: { flags: '', values: '' },
  busybox: { flags: '', values: '' },
  // procps watch ("+bced::ghq:n:pvtwx"): without -x it joins its operands with spaces and runs them as
  // `sh -c`, so `watch 'rm -rf' /` is the shell line `rm -rf /`.
  watch: {
    flags: 'bceghptwxv',
    values: 'qn',
    attachedOnly: 'd',
    long: {
      '--beep': 'flag', '--color': 'flag', '--differences': 'optional', '--errexit': 'flag', '--chgexit': 'flag', '--equexit': 'value',
      '--interval': 'value', '--precise': 'flag', '--no-title': 'flag', '--no-wrap': 'flag', '--exec': 'flag', '--help': 'flag', '--version': 'flag',
    },
    runs: (rest, seen) => {
      if (seen.includes('-x') || seen.includes('--exec') || rest.length === 0) return { argv: rest };
      const line = rest.map((w) => w.text).join(' ');
      const joined: Word = { text: line, shape: line, dynamic: rest.some((w) => w.dynamic) };
      return { argv: [literal('sh'), literal('-c'), joined], done: true };
    },
  },
  // util-linux flock ("+sexnoFuw:E:hV?"): `flock FILE CMD…`, or `flock FILE -c STRING`, which $SHELL runs.
  flock: {
    flags: 'sexnoFuhV',
    values: 'wE',
    operandsBefore: 1,
    long: {
      '--shared': 'flag', '--exclusive': 'flag', '--unlock': 'flag', '--nonblock': 'flag', '--nonblocking': 'flag', '--nb': 'flag',
      '--timeout': 'value', '--wait': 'value', '--conflict-exit-code': 'value', '--close': 'flag', '--no-fork': 'flag', '--verbose': 'flag',
      '--help': 'flag', '--version': 'flag',
    },
    runs: (rest) => {
      const first = rest[0];
      if (first && !first.dynamic && (first.text === '-c' || first.text === '--command')) return { argv: [LOGIN_SHELL, literal('-c'), ...rest.slice(1, 2)], done: true };
      return { argv: rest };
    },
  },
  // util-linux taskset ("+apchV"): `taskset MASK CMD…` (with -p it changes a running pid and runs nothing).
  taskset: { flags: 'apchV', values: '', operandsBefore: 1, long: { '--all-tasks': 'flag', '--pid': 'flag', '--cpu-list': 'flag', '--help': 'flag', '--version': 'flag' } },
  // util-linux chrt ("+abdD:fiphmoP:T:rRvV"): `chrt [options] PRIORITY CMD…`. Newer util-linux lets the
  // priority be left out for some policies: a first operand that is not a number is undecidable.
  chrt: {
    flags: 'abdfiphmorRvV',
    values: 'DPT',
    long: {
      '--batch': 'flag', '--deadline': 'flag', '--fifo': 'flag', '--idle': 'flag', '--other': 'flag', '--rr': 'flag', '--reset-on-fork': 'flag',
      '--sched-runtime': 'value', '--sched-period': 'value', '--sched-deadline': 'value', '--all-tasks': 'flag', '--max': 'flag', '--pid': 'flag',
      '--verbose': 'flag', '--help': 'flag', '--version': 'flag',
    },
    runs: (rest) => {
      if (rest.length === 0) return { argv: rest };
      if (rest[0].dynamic || !/^[0-9]+$/.test(rest[0].text)) return { unknown: `chrt: the priority ${rest[0].text} is not a number, so where the command starts is not known` };
      return { argv: rest.slice(1) };
    },
  },
  // util-linux unshare ("+fhVmuinpCTUrR:w:S:G:c"): `unshare [options] [CMD…]`, the namespace options'
  // files only with `=`.
  unshare: {
    flags: 'fhVmuinpCTUrc',
    values: 'RwSG',
    long: {
      '--mount': 'optional', '--uts': 'optional', '--ipc': 'optional', '--net': 'optional', '--pid': 'optional', '--user': 'optional',
      '--cgroup': 'optional', '--time': 'optional', '--fork': 'flag', '--kill-child': 'optional', '--mount-proc': 'optional',
      '--map-user': 'value', '--map-users': 'value', '--map-group': 'value', '--map-groups': 'value', '--map-root-user': 'flag',
      '--map-current-user': 'flag', '--map-auto': 'flag', '--propagation': 'value', '--setgroups': 'value', '--keep-caps': 'flag',
      '--setuid': 'value', '--setgid': 'value', '--root': 'value', '--wd': 'value', '--monotonic': 'value', '--boottime': 'value',
      '--help': 'flag', '--version': 'flag',
    },
  },
  // util-linux nsenter ("+ahVt:m::u::i::n::p::C::U::T::S:G:r::w::W:FZ"): -m… take a file only attached.
  nsenter: {
    flags: 'ahVFZ',
    values: 'tSGW',
    attachedOnly: 'muinpCUTrw',
    long: {
      '--all': 'flag', '--target': 'value', '--mount': 'optional', '--uts': 'optional', '--ipc': 'optional', '--net': 'optional',
      '--pid': 'optional', '--cgroup': 'optional', '--user': 'optional', '--time': 'optional', '--setuid': 'value', '--setgid': 'value',
      '--preserve-credentials': 'flag', '--root': 'optional', '--wd': 'optional', '--wdns': 'value', '--no-fork': 'flag',
      '--follow-context': 'flag', '--help': 'flag', '--version': 'flag',
    },
  },
  // systemd 252 systemd-run ("+hrH:M:E:p:tPqGdSu:"): runs its operands as a unit's command (here, on
  // another host with -H, or later with --on-*: a command all the same).
  'systemd-run': {
    flags: 'hrtPqGdS',
    values: 'HMEpu',
    long: {
      '--help': 'flag', '--version': 'flag', '--user': 'flag', '--system': 'flag', '--scope': 'flag', '--unit': 'value', '--description': 'value',
      '--slice': 'value', '--slice-inherit': 'flag', '--remain-after-exit': 'flag', '--send-sighup': 'flag', '--service-type': 'value',
      '--wait': 'flag', '--uid': 'value', '--gid': 'value', '--nice': 'value', '--setenv': 'value', '--property': 'value', '--tty': 'flag',
      '--pty': 'flag', '--pipe': 'flag', '--quiet': 'flag', '--on-active': 'value', '--on-boot': 'value', '--on-startup': 'value',
      '--on-unit-active': 'value', '--on-unit-inactive': 'value', '--on-calendar': 'value', '--on-timezone-change': 'flag',
      '--on-clock-change': 'flag', '--timer-property': 'value', '--path-property': 'value', '--socket-property': 'value', '--no-block': 'flag',
      '--no-ask-password': 'flag', '--host': 'value', '--machine': 'value', '--collect': 'flag', '--working-directory': 'value',
      '--same-dir': 'flag', '--shell': 'flag',
    },
  },
  // util-linux prlimit ("+c::d::e::f::i::l::m::n::q::r::s::t::u::v::x::y::p:o:vVh"): each resource
  // letter's limit only attached (`-n5:6`, `--nofile=5`); `-v` is --as, its first use in the string.
  prlimit: {
    flags: 'Vh',
    values: 'po',
    attachedOnly: 'cdefilmnqrstuvxy',
    long: {
      '--core': 'optional', '--data': 'optional', '--nice': 'optional', '--fsize': 'optional', '--sigpending': 'optional', '--memlock': 'optional',
      '--rss': 'optional', '--nofile': 'optional', '--msgqueue': 'optional', '--rtprio': 'optional', '--stack': 'optional', '--cpu': 'optional',
      '--nproc': 'optional', '--as': 'optional', '--locks': 'optional', '--rttime': 'optional', '--pid': 'value', '--output': 'value',
      '--noheadings': 'flag', '--raw': 'flag', '--verbose': 'flag', '--help': 'flag', '--version': 'flag',
    },
  },
  // util-linux setpriv ("+dhV"): everything else is a long option.
  setpriv: {
    flags: 'dhV',
    values: '',
    long: {
      '--dump': 'flag', '--nnp': 'flag', '--no-new-privs': 'flag', '--ambient-caps': 'value', '--inh-caps': 'value', '--bounding-set': 'value',
      '--list-caps': 'flag', '--ruid': 'value', '--euid': 'value', '--rgid': 'value', '--egid': 'value', '--reuid': 'value', '--regid': 'value',
      '--clear-groups': 'flag', '--keep-groups': 'flag', '--init-groups': 'flag', '--groups': 'value', '--securebits': 'value',
      '--pdeathsig': 'value', '--selinux-label': 'value', '--apparmor-profile': 'value', '--reset-env': 'flag', '--help': 'flag', '--version': 'flag',
    },
  },
  // util-linux setarch ("+hVv3BFILRSTXZ"): `setarch [ARCH] [options] CMD…`; linux32, linux64, i386 and
  // x86_64 are setarch with the architecture in their name.
  setarch: { ...SETARCH, leadingOperand: true },
  linux32: SETARCH,
  linux64: SETARCH,
  i386: SETARCH,
  x86_64: SETARCH,
  // util-linux choom ("hn:p:V", permuted): `choom -n NUM [--] CMD…`.
  choom: { flags: 'hV', values: 'np', permutes: true, long: { '--adjust': 'value', '--pid': 'value', '--help': 'flag', '--version': 'flag' } },
  // fakeroot 1.31, a script calling getopt(1) with "+l:f:i:s:ub:vh" and its long options.
  fakeroot: {
    flags: 'uvh',
    values: 'lfisb',
    long: { '--lib': 'value', '--faked': 'value', '--unknown-is-real': 'flag', '--fd-base': 'value', '--version': 'flag', '--help': 'flag' },
  },
  // strace 6.1 ("+a:Ab:cCdDe:E:fFhiI:kno:O:p:P:qrs:S:tTu:U:vVwxX:yYzZ"); its undocumented long options
  // (--timestamps, --silent…) are left out, so they are undecidable.
  strace: {
    flags: 'AcCdDfFhiknqrtTvVwxyYzZ',
    values: 'abeEIoOpPsSuUX',
    long: {
      '--abbrev': 'value', '--absolute-timestamps': 'optional', '--attach': 'value', '--columns': 'value', '--const-print-style': 'value',
      '--daemonize': 'optional', '--debug': 'flag', '--decode-fds': 'optional', '--decode-pids': 'value', '--detach-on': 'value', '--env': 'value',
      '--failed-only': 'flag', '--fault': 'value', '--follow-forks': 'flag', '--help': 'flag', '--inject': 'value', '--instruction-pointer': 'flag',
      '--interruptible': 'value', '--kvm': 'value', '--no-abbrev': 'flag', '--output': 'value', '--output-append-mode': 'flag',
      '--output-separately': 'flag', '--quiet': 'optional', '--raw': 'value', '--read': 'value', '--relative-timestamps': 'optional',
      '--seccomp-bpf': 'flag', '--signal': 'value', '--stack-traces': 'flag', '--status': 'value', '--string-limit': 'value',
      '--strings-in-hex': 'optional', '--successful-only': 'flag', '--summary': 'flag', '--summary-columns': 'value', '--summary-only': 'flag',
      '--summary-sort-by': 'value', '--summary-syscall-overhead': 'value', '--summary-wall-clock': 'flag', '--syscall-number': 'flag',
      '--syscall-times': 'optional', '--tips': 'optional', '--trace': 'value', '--trace-path': 'value', '--user': 'value', '--verbose': 'value',
      '--version': 'flag', '--write': 'value',
    },
  },
};

/**
 * `argv`: the command run in the end; `wrappers`: each wrapper with its arguments (a rule may name one);
 * `alternatives`: other commands it may run instead, when the reading depends on the environment (su's
 * getopt stops permuting under POSIXLY_CORRECT).
 */
export type Unwrapped = { argv: Word[]; wrappers: Word[][]; alternatives?: Word[][] } | { unknown: string; wrappers: Word[][] };

/** Words only known at run time that may each be read both as an option and as not one, per line. */
const MAX_OPTION_READINGS = 3;

/**
 * The command a line really runs: leading assignments and wrapper commands with their options removed.
 * `operands`: words only known at run time already read as not options (see `ambiguousReadings`).
 */
export function unwrap(input: Word[], operands: ReadonlySet<Word> = new Set(), readings = 0): Unwrapped {
  let argv = input;
  let i = 0;
  const wrappers: Word[][] = [];
  for (let guard = 0; guard < 32 && i < argv.length; guard++) {
    i = skipAssignments(argv, i);
    if (i >= argv.length) break;
    const name = programName(argv[i]);
    if (name === 'su' || name === 'runuser') {
      const readings = switchUserReadings(name, argv.slice(i + 1));
      if ('interactive' in readings) break;
      wrappers.push(argv.slice(i));
      if ('unknown' in readings) return { unknown: readings.unknown, wrappers };
      return mergeReadings(readings.runs.map((run) => unwrap(run)), wrappers);
    }
    if (name === 'script') {
      wrappers.push(argv.slice(i));
      const r = scriptCommands(argv.slice(i + 1));
      if ('unknown' in r) return { unknown: r.unknown, wrappers };
      const runs = r.commands.map((c) => [LOGIN_SHELL, literal('-c'), c]);
      return runs.length === 0 ? { argv: [], wrappers } : { argv: runs[0], wrappers, ...(runs.length > 1 ? { alternatives: runs.slice(1) } : {}) };
    }
    if (name === 'fish') {
      const r = readOptions(name, FISH_OPTIONS, argv, i + 1);
      if ('unknown' in r) return { unknown: r.unknown, wrappers: [...wrappers, argv.slice(i)] };
      // The script operand may become `-c CODE` too.
      const shifting = splittingWord(r.argv.slice(i + 1, r.next + 1));
      if (shifting) return { unknown: `fish: ${shifting.text} may become several words (options) when the shell runs`, wrappers: [...wrappers, argv.slice(i)] };
      const next = r.argv[r.next];
      if (next && !r.dashes && couldBeOption(next)) return { unknown: `fish: ${next.text} is only known when the shell runs and could be -c CODE`, wrappers: [...wrappers, argv.slice(i)] };
      if (r.seen.some((o) => FISH_CODE_OPTIONS.includes(o))) {
        return { unknown: 'fish: fish code (-c, -C) is not read by vigil: its syntax is not sh', wrappers: [...wrappers, argv.slice(i)] };
      }
      break; // a script file or an interactive shell, as for sh
    }
    if (name !== undefined && Object.hasOwn(SPECIAL_RUNNERS, name)) {
      wrappers.push(argv.slice(i));
      const r = SPECIAL_RUNNERS[name](argv.slice(i + 1));
      if ('unknown' in r) return { unknown: r.unknown, wrappers };
      if ('none' in r) break;
      argv = r.argv;
      i = 0;
      continue;
    }
    if (name === undefined || !Object.hasOwn(WRAPPER_OPTIONS, name)) break;
    const table = WRAPPER_OPTIONS[name];
    wrappers.push(argv.slice(i));
    let optionsAt = i + 1;
    if (table.leadingOperand && optionsAt < argv.length) {
      const first = argv[optionsAt];
      if (first.splits || couldBeOption(first)) return { unknown: `${name}: ${first.text} is only known when the shell runs and could be options`, wrappers };
      if (!(first.dynamic ? staticPrefix(first) : first.text).startsWith('-')) optionsAt++;
    }
    const r = readOptions(name, table, argv, optionsAt);
    if ('unknown' in r) return { unknown: r.unknown, wrappers };
    if (table.permutes && !r.dashes) {
      const rest = r.argv.slice(r.next);
      const permuted = permutedOperands(name, table, rest);
      if ('unknown' in permuted) return { unknown: permuted.unknown, wrappers };
      if (permuted.operands.length !== rest.length) return mergeReadings([unwrap(rest), unwrap(permuted.operands)], wrappers);
    }
    const next = r.argv[r.next];
    if (next && !r.dashes && couldBeOption(next) && !operands.has(next)) {
      if (next.splits) return { unknown: `${name}: ${next.text} may become several words when the shell runs, options among them`, wrappers };
      if (table.splitString) return { unknown: `${name}: ${next.text} is only known when the shell runs and could be -S with a command line`, wrappers };
      if (readings >= MAX_OPTION_READINGS) return { unknown: `${name}: too many words only known when the shell runs that could be options`, wrappers };
      const variants = ambiguousReadings(r.argv.slice(i), r.next - i);
      const marked = new Set([...operands, next]);
      return mergeReadings(variants.map((v) => unwrap(v, marked, readings + 1)), wrappers.slice(0, -1));
    }
    const wrapperAt = i;
    argv = r.argv;
    i = r.next;
    if (table.assignments) i = skipAssignments(argv, i);
    i += table.operandsBefore ?? 0;
    const shifting = splittingWord(argv.slice(wrapperAt + 1, i));
    if (shifting) return { unknown: `${name}: ${shifting.text} may become several words when the shell runs, so where the command starts is not known`, wrappers };
    if (table.runs) {
      const then = table.runs(argv.slice(i), r.seen);
      if ('unknown' in then) return { unknown: then.unknown, wrappers };
      if (then.done) return { argv: then.argv, wrappers };
      argv = then.argv;
      i = 0;
    }
  }
  return { argv: argv.slice(i), wrappers };
}

/** The operands getopt keeps when it permutes: options may come anywhere until `--`. */
function permutedOperands(name: string, t: OptionTable, args: Word[]): { operands: Word[] } | { unknown: string } {
  const operands: Word[] = [];
  for (let k = 0; k < args.length; k++) {
    const w = args[k];
    if (!w.dynamic && w.text === '--') return { operands: [...operands, ...args.slice(k + 1)] };
    if (w.splits || couldBeOption(w)) return { unknown: `${name}: a word only known when the shell runs (${w.text}) could be options` };
    const text = w.dynamic ? staticPrefix(w) : w.text;
    if (!text.startsWith('-') || text === '-') {
      operands.push(w);
      continue;
    }
    const r = readOption(name, t, args, k);
    if ('unknown' in r) return r;
    k = r.next - 1;
  }
  return { operands };
}

function mergeReadings(readings: Unwrapped[], outer: Word[][]): Unwrapped {
  const wrappers = [...outer, ...readings.flatMap((r) => r.wrappers)];
  const unknown = readings.find((r) => 'unknown' in r);
  if (unknown && 'unknown' in unknown) return { unknown: unknown.unknown, wrappers };
  const runs = readings.flatMap((r) => ('argv' in r ? [r.argv, ...(r.alternatives ?? [])] : []));
  return { argv: runs[0], wrappers, ...(runs.length > 1 ? { alternatives: runs.slice(1) } : {}) };
}

type RunnerReading = { argv: Word[] } | { none: true } | { unknown: string };

/** A word that is `text` for sure. */
const isLiteral = (w: Word | undefined, text: string) => w !== undefined && !w.dynamic && w.text === text;

/**
 * Runners whose arguments are not read by a getopt table. `none`: they run nothing vigil can see (an
 * interactive shell), as `sh` alone.
 */
const SPECIAL_RUNNERS: Record<string, (args: Word[]) => RunnerReading> = {
  // shadow's sg ("sg [-] [GROUP [-c] COMMAND]"): COMMAND, one word, is run by /bin/sh -c; later words are
  // ignored.
  sg: (args) => {
    let k = isLiteral(args[0], '-') ? 1 : 0;
    const group = args[k];
    if (group === undefined) return { none: true };
    if (group.splits || couldBeOption(group)) return { unknown: `sg: ${group.text} is only known when the shell runs and could be the group, -c or the command` };
    k++;
    if (args[k] && (args[k].splits || (couldBeOption(args[k]) && k + 1 < args.length))) return { unknown: `sg: ${args[k].text} is only known when the shell runs and could be -c` };
    if (isLiteral(args[k], '-c')) k++;
    return args[k] ? { argv: [literal('sh'), literal('-c'), args[k]] } : { none: true };
  },
  // polkit's pkexec reads its options by exact name (no getopt): --user/-u NAME, --disable-internal-agent,
  // --keep-cwd, --help, --version; the first other word is the program.
  pkexec: (args) => {
    let k = 0;
    for (; k < args.length; k++) {
      const w = args[k];
      if (w.splits || couldBeOption(w)) return { unknown: `pkexec: ${w.text} is only known when the shell runs and could be an option` };
      if (w.dynamic || !w.text.startsWith('-')) break;
      if (w.text === '--user' || w.text === '-u') k++;
      else if (!['--disable-internal-agent', '--keep-cwd', '--help', '--version'].includes(w.text)) return { unknown: `pkexec: the option ${w.text} is not one vigil knows` };
    }
    return k < args.length ? { argv: args.slice(k) } : { none: true };
  },
  // ltrace and firejail are not installed where vigil's tables were made and firejail's options change
  // with each release: only their plain form (`ltrace CMD…`) is read.
  ltrace: (args) => plainRunner('ltrace', args),
  firejail: (args) => plainRunner('firejail', args),
  // csh code is not sh (its quoting, `!` history, `>&`): what -c runs is not read, as for fish.
  ip: ipReading,
  tmux: tmuxReading,
  screen: screenReading,
  csh: (args) => cshReading('csh', args),
  tcsh: (args) => cshReading('tcsh', args),
};

/** iproute2 takes any unambiguous start of a word it expects (`ip net e NAME CMD` is `ip netns exec`). */
const startsWord = (w: Word | undefined, word: string) => w !== undefined && !w.dynamic && w.text !== '' && word.startsWith(w.text);

/**
 * iproute2 ip: `ip netns exec NAME CMD…` and `ip vrf exec NAME CMD…` run CMD (objects and verbs taken by
 * their start, `net` for netns as ip's table has it). Global options (`-n NS`, `-all`…) are not read:
 * with one, a word that may be `exec` makes the line undecidable.
 */
function ipReading(args: Word[]): RunnerReading {
  const first = args[0];
  if (first === undefined) return { none: true };
  if (first.dynamic || first.text.startsWith('-')) {
    const execWord = args.find((w) => w.dynamic || startsWord(w, 'exec'));
    return execWord ? { unknown: `ip: with global options, where ${execWord.text} stands is not read by vigil` } : { none: true };
  }
  const object = first.text.length >= 3 && 'netns'.startsWith(first.text) ? 'netns' : startsWord(first, 'vrf') ? 'vrf' : undefined;
  if (!object) return { none: true };
  const verb = args[1];
  if (verb?.dynamic) return { unknown: `ip ${object}: ${verb.text} is only known when the shell runs and could be exec` };
  if (!startsWord(verb, 'exec')) return { none: true };
  const name = args[2];
  if (name?.splits) return { unknown: `ip ${object} exec: ${name.text} may become several words when the shell runs` };
  return args.length > 3 ? { argv: args.slice(3) } : { none: true };
}

/**
 * tmux 3.3a: global options ("2c:CDdf:lL:NqS:T:uUvV"; -c's string is run by the shell), then tmux
 * commands. new-session, new-window and split-window run their operands: one is a shell line, several
 * are run as they are. Other commands (send-keys, run-shell, if-shell, several commands joined by `;`…)
 * are undecidable unless they are known to run nothing.
 */
const TMUX_GLOBAL: OptionTable = { flags: '2CDdlNquUvV', values: 'cfLST' };
const TMUX_RUNNERS: Record<string, OptionTable> = {
  'new-session': { flags: 'AdDEPX', values: 'cefFnstxy' },
  'new-window': { flags: 'abdkPS', values: 'ceFnt' },
  'split-window': { flags: 'bdfhIPvZ', values: 'ceFlpt' },
};
const TMUX_ALIASES: Record<string, string> = { new: 'new-session', neww: 'new-window', splitw: 'split-window' };
const TMUX_QUIET = new Set([
  'attach-session', 'attach', 'detach-client', 'detach', 'has-session', 'has', 'kill-server', 'kill-session', 'list-sessions', 'ls',
  'list-windows', 'lsw', 'list-panes', 'lsp', 'kill-window', 'killw', 'kill-pane', 'killp', 'list-clients', 'lsc',
]);

function tmuxReading(args: Word[]): RunnerReading {
  const global = readOptions('tmux', TMUX_GLOBAL, args, 0);
  if ('unknown' in global) return global;
  if (global.seen.includes('-c')) return { unknown: 'tmux -c: the shell command is not read by vigil' };
  const rest = args.slice(global.next);
  const separator = rest.find((w) => w.dynamic || w.text.endsWith(';'));
  if (separator) return { unknown: `tmux: ${separator.text} may be or join another tmux command` };
  if (rest.length === 0) return { none: true };
  const command = TMUX_ALIASES[rest[0].text] ?? rest[0].text;
  if (TMUX_QUIET.has(command)) return { none: true };
  if (!Object.hasOwn(TMUX_RUNNERS, command)) return { unknown: `tmux: the command ${rest[0].text} is not one vigil reads` };
  const r = readOptions(`tmux ${command}`, TMUX_RUNNERS[command], rest, 1);
  if ('unknown' in r) return r;
  const operands = rest.slice(r.next);
  if (operands.length === 0) return { none: true };
  return operands.length === 1 ? { argv: [LOGIN_SHELL, literal('-c'), operands[0]] } : { argv: operands };
}

/**
 * GNU screen's own option loop (letters combined, a value attached or the next word): its operands are
 * the command of the new window. -X/-Q send commands to a running session, and attaching (-r, -R, -x, -D,
 * -d without -m) reads operands as a session name: both undecidable, as is every option not listed here.
 */
const SCREEN_OPTIONS: OptionTable = { flags: 'dmDRrUAaqiOx', values: 'Scehpts' };

function screenReading(args: Word[]): RunnerReading {
  const r = readOptions('screen', SCREEN_OPTIONS, args, 0);
  if ('unknown' in r) return r;
  if (r.dashes) return { unknown: 'screen: -- is not read by vigil' };
  const operands = args.slice(r.next);
  if (operands.length === 0) return { none: true };
  const attaching = ['-r', '-R', '-x', '-D'].some((o) => r.seen.includes(o)) || (r.seen.includes('-d') && !r.seen.includes('-m'));
  if (attaching) return { unknown: 'screen: attaching reads its operands as a session name or a command; vigil does not decide which' };
  return { argv: operands };
}

function plainRunner(name: string, args: Word[]): RunnerReading {
  const first = args[0];
  if (first === undefined) return { none: true };
  if (first.splits || couldBeOption(first) || (!first.dynamic && first.text.startsWith('-'))) return { unknown: `${name}: its options are not read by vigil` };
  return { argv: args };
}

function cshReading(name: string, args: Word[]): RunnerReading {
  for (const w of args) {
    if (w.splits || couldBeOption(w)) return { unknown: `${name}: ${w.text} is only known when the shell runs and could be -c` };
    const text = w.dynamic ? staticPrefix(w) : w.text;
    if (!text.startsWith('-')) break;
    if (text === '--' || text === '-') break;
    if (text.startsWith('--') || text.includes('c')) return { unknown: `${name}: csh code (-c) is not read by vigil: its syntax is not sh` };
  }
  return { none: true };
}

/**
 * util-linux su and runuser (one getopt string, "c:fg:G:lmpPs:u:hVw:"; -u is runuser's only). Unlike
 * the tools above their getopt permutes: options may follow the user (`su root -c CMD`) until `--`.
 * The first operand `-` means a login shell, the next is the user; the operands after it go to the
 * user's shell after `-f` and `-c CMD` (`su root -- -c CMD` runs CMD). `runuser -u USER` runs its
 * operands as a command (`runuser -u root rm -- -rf /` runs `rm -rf /`).
 */
const SWITCH_USER_LONG: Record<string, LongKind> = {
  '--preserve-environment': 'flag', '--whitelist-environment': 'value', '--group': 'value', '--supp-group': 'value',
  '--login': 'flag', '--command': 'value', '--session-command': 'value', '--fast': 'flag', '--shell': 'value',
  '--pty': 'flag', '--help': 'flag', '--version': 'flag',
};
const SWITCH_USER_OPTIONS: Record<'su' | 'runuser', OptionTable> = {
  su: { flags: 'flmpPhV', values: 'cgGsw', long: SWITCH_USER_LONG },
  runuser: { flags: 'flmpPhV', values: 'cgGswu', long: { ...SWITCH_USER_LONG, '--user': 'value' } },
};

/** Stands for the target user's login shell, which vigil does not know: every shell's options apply. */
export const LOGIN_SHELL: Word = { text: '(login shell)', shape: '(login shell)', dynamic: false };

/**
 * The commands su/runuser may run, read both as getopt permutes and as it stops at the first operand
 * (POSIXLY_CORRECT in the environment). Interactive: a shell with nothing to run (`su -`), which a rule
 * may still block by name.
 */
function switchUserReadings(name: 'su' | 'runuser', args: Word[]): { runs: Word[][] } | { interactive: true } | { unknown: string } {
  const permuted = readSwitchUser(name, args, true);
  if ('unknown' in permuted) return permuted;
  const posix = readSwitchUser(name, args, false);
  if ('unknown' in posix) return posix;
  const runs = [permuted, posix].map((r) => switchUserRuns(r)).filter((r): r is Word[] => r !== undefined);
  if (runs.length === 0) return { interactive: true };
  const same = runs.length === 2 && runs[0].length === runs[1].length && runs[0].every((w, k) => w.text === runs[1][k].text && w.shape === runs[1][k].shape);
  return { runs: same ? [runs[0]] : runs };
}

interface SwitchUser {
  command?: Word;
  shell?: Word;
  fast: boolean;
  runAs: boolean;
  operands: Word[];
}

/** The argv su/runuser executes, or undefined for an interactive shell. */
function switchUserRuns(r: SwitchUser): Word[] | undefined {
  let operands = r.operands;
  if (!r.runAs && operands[0]?.text === '-' && !operands[0].dynamic) operands = operands.slice(1);
  if (r.runAs) return operands.length ? operands : undefined;
  const shellArgs = operands.slice(1); // after the user
  if (!r.command && shellArgs.length === 0) return undefined;
  const word = (text: string): Word => ({ text, shape: text, dynamic: false });
  return [
    r.shell ?? LOGIN_SHELL,
    ...(r.fast ? [word('-f')] : []),
    ...(r.command ? [word('-c'), r.command] : []),
    ...shellArgs,
  ];
}

function readSwitchUser(name: 'su' | 'runuser', args: Word[], permute: boolean): SwitchUser | { unknown: string } {
  const t = SWITCH_USER_OPTIONS[name];
  const out: SwitchUser = { fast: false, runAs: false, operands: [] };
  let k = 0;
  for (; k < args.length; k++) {
    const w = args[k];
    if (!w.dynamic && w.text === '--') {
      k++;
      break;
    }
    // `su root$X` with X=" -c CMD": the words su reads would shift.
    if (w.splits) return { unknown: `${name}: ${w.text} may become several words (options) when the shell runs` };
    const text = w.dynamic ? staticPrefix(w) : w.text;
    // With permutation, a word that could expand to options is undecidable wherever it stands.
    if (w.dynamic && (permute || out.operands.length === 0) && (text === '' || text.startsWith('-'))) {
      return { unknown: `${name}: a word only known when the shell runs (${w.text}) could be options` };
    }
    if (!text.startsWith('-') || text === '-') {
      out.operands.push(w);
      if (!permute) {
        k++;
        break;
      }
      continue;
    }
    const r = readOption(name, t, args, k);
    if ('unknown' in r) return r;
    k = r.next - 1;
    for (const o of r.options) {
      if (o === '-f' || o === '--fast') out.fast = true;
      if (o === '-u' || o === '--user') out.runAs = true;
    }
    const last = r.options[r.options.length - 1];
    if (['-c', '--command', '--session-command'].includes(last)) out.command = r.value;
    if (last === '-s' || last === '--shell') out.shell = r.value;
  }
  out.operands.push(...args.slice(k));
  return out;
}

/**
 * fish 3 ("+hPilNnvc:C:p:d:f:D:o:"): unlike sh, -c takes the code as its value, may be given more than
 * once, and -C (--init-command) runs code too. Fish syntax is not sh (`not rm -rf /`, `and …`, `(…)`
 * substitutions), so that code is not read as a shell line: it is undecidable.
 */
const FISH_OPTIONS: OptionTable = {
  flags: 'hPilNnv',
  values: 'cCpdfDo',
  long: {
    '--command': 'value', '--init-command': 'value', '--features': 'value', '--debug': 'value', '--debug-output': 'value',
    '--debug-stack-frames': 'value', '--interactive': 'flag', '--login': 'flag', '--no-config': 'flag', '--no-execute': 'flag',
    '--print-rusage-self': 'flag', '--print-debug-categories': 'flag', '--profile': 'value', '--profile-startup': 'value',
    '--private': 'flag', '--help': 'flag', '--version': 'flag',
  },
};
const FISH_CODE_OPTIONS = ['-c', '-C', '--command', '--init-command'];

/**
 * util-linux script ("aB:c:eE:fI:O:o:qm:T:t::Vh", permuted: options may follow the log file until
 * `--`): `-c STRING` is run by $SHELL, and without one script starts an interactive shell. Under
 * POSIXLY_CORRECT getopt stops at the first operand, so a later -c may not be the one that wins: every
 * -c given is a command it may run.
 */
const SCRIPT_OPTIONS: OptionTable = {
  flags: 'aefqVh',
  values: 'BcEIOomT',
  attachedOnly: 't',
  long: {
    '--append': 'flag', '--command': 'value', '--echo': 'value', '--return': 'flag', '--flush': 'flag', '--force': 'flag', '--log-in': 'value',
    '--log-out': 'value', '--log-io': 'value', '--log-timing': 'value', '--logging-format': 'value', '--output-limit': 'value', '--quiet': 'flag',
    '--timing': 'optional', '--help': 'flag', '--version': 'flag',
  },
};

function scriptCommands(args: Word[]): { commands: Word[] } | { unknown: string } {
  const commands: Word[] = [];
  for (let k = 0; k < args.length; k++) {
    const w = args[k];
    if (!w.dynamic && w.text === '--') break;
    if (w.splits) return { unknown: `script: ${w.text} may become several words (options) when the shell runs` };
    const text = w.dynamic ? staticPrefix(w) : w.text;
    if (w.dynamic && (text === '' || text.startsWith('-'))) return { unknown: `script: a word only known when the shell runs (${w.text}) could be options` };
    if (!text.startsWith('-') || text === '-') continue;
    const r = readOption('script', SCRIPT_OPTIONS, args, k);
    if ('unknown' in r) return r;
    k = r.next - 1;
    const last = r.options[r.options.length - 1];
    if (last === '-c' || last === '--command') {
      if (r.value === undefined) return { unknown: 'script: -c without a command' };
      commands.push(r.value);
    }
  }
  return { commands };
}

/**
 * One option word at `argv[i]` (a long option, or a cluster of short ones whose last may take a value):
 * each option named (`-c`, `--command`), the value of the last, and the index after them.
 */
function readOption(name: string, t: OptionTable, argv: Word[], i: number): { options: string[]; value?: Word; next: number } | { unknown: string } {
  const bad = (why: string) => ({ unknown: `${name}: ${why}` });
  const w = argv[i];
  const text = w.dynamic ? staticPrefix(w) : w.text;
  if (text.startsWith('--')) {
    const eq = text.indexOf('=');
    if (w.dynamic && eq < 0) return bad('an option only known when the shell runs');
    const given = eq < 0 ? text : text.slice(0, eq);
    const long = resolveLong(t.long ?? {}, given);
    if (long === undefined) return bad(`the option ${given} is not one vigil knows`);
    if (long.kind === 'flag' && eq >= 0) return bad(`${long.name} takes no value`);
    if (long.kind === 'value' && eq < 0) return { options: [long.name], value: argv[i + 1], next: Math.min(i + 2, argv.length) };
    if (eq < 0) return { options: [long.name], next: i + 1 };
    return { options: [long.name], value: attachedValue(w, w.text.indexOf('=') + 1), next: i + 1 };
  }
  const options: string[] = [];
  for (let k = 1; k < text.length; k++) {
    const c = text[k];
    options.push(`-${c}`);
    if (t.flags.includes(c)) continue;
    if (t.attachedOnly?.includes(c)) return { options, ...(k + 1 < w.text.length ? { value: attachedValue(w, k + 1) } : {}), next: i + 1 };
    if (!t.values.includes(c)) return bad(`the option -${c} is not one vigil knows`);
    if (k + 1 < w.text.length) return { options, value: attachedValue(w, k + 1), next: i + 1 };
    return { options, value: argv[i + 1], next: Math.min(i + 2, argv.length) };
  }
  if (w.dynamic) return bad('options only known when the shell runs');
  return { options, next: i + 1 };
}

/** The value attached to an option word from `at`; in a dynamic word, it could be anything. */
function attachedValue(w: Word, at: number): Word {
  const text = w.text.slice(at);
  return { text, shape: w.dynamic ? '*' : text, dynamic: w.dynamic };
}

/**
 * The program's base name (`/usr/bin/rm` is `rm`). A path with an expansion only in its directory part
 * (`~/bin/rm`, `"$D"/rm`) still names that program; an expansion in the name itself, or one the shell
 * splits into words (`$D/ls` with D="rm -rf / /x" runs rm): undefined.
 */
export function programName(w: Word): string | undefined {
  if (!w.dynamic) return path.posix.basename(w.text);
  if (w.splits) return undefined;
  const slash = w.shape.lastIndexOf('/');
  if (slash < 0) return undefined;
  const name = literalText(w.shape.slice(slash + 1));
  return name === undefined || name === '' ? undefined : name;
}

/** A shape's text when it holds no expansion or pattern (escapes removed), else undefined. */
function literalText(shape: string): string | undefined {
  let out = '';
  for (let k = 0; k < shape.length; k++) {
    const c = shape[k];
    if (c === '\\' && k + 1 < shape.length) out += shape[++k];
    else if (c === '*' || c === '?' || c === '[') return undefined;
    else out += c;
  }
  return out;
}

/**
 * A word only known at run time where the wrapper still reads options (`timeout "$T" 10 rm …` with
 * T=-k5 runs rm): it is read as not an option (it stays, marked in `operands`), as options that end with it
 * (a flag, `-k5`, `--signal=HUP`), as an option whose value is the next word (`-k`), and as `--`.
 * `at`: its index in `argv`, which starts with the wrapper.
 */
function ambiguousReadings(argv: Word[], at: number): Word[][] {
  return [argv, [...argv.slice(0, at), ...argv.slice(at + 1)], [...argv.slice(0, at), ...argv.slice(at + 2)], [...argv.slice(0, at), literal('--'), ...argv.slice(at + 1)]];
}

/** A word only known at run time that may begin with `-`. */
function couldBeOption(w: Word): boolean {
  return w.dynamic && staticPrefix(w) === '';
}

/** The first word the shell may split into several (see Word.splits). */
function splittingWord(words: Word[]): Word | undefined {
  return words.find((w) => w.splits);
}

function skipAssignments(argv: Word[], i: number): number {
  while (i < argv.length && !argv[i].dynamic && /^[A-Za-z_][A-Za-z0-9_]*=/.test(argv[i].text)) i++;
  return i;
}

/** Reads a wrapper's options from `argv[i]`; `argv` comes back changed when env -S spliced its words in. */
function readOptions(name: string, t: OptionTable, argv: Word[], i: number): { argv: Word[]; next: number; seen: string[]; dashes?: true } | { unknown: string } {
  const bad = (why: string) => ({ unknown: `${name}: ${why}` });
  const seen: string[] = [];
  while (i < argv.length) {
    const w = argv[i];
    const text = w.dynamic ? staticPrefix(w) : w.text;
    if (!text.startsWith('-') || (w.text === '-' && !t.dashAlone)) break;
    if (w.text === '--' && !w.dynamic) return { argv, next: i + 1, seen, dashes: true };
    if (w.text === '-') {
      i++;
      continue;
    }
    if (t.numeric && /^-[-+]?[0-9]/.test(text)) {
      i++;
      continue;
    }
    let value: { text: string; word?: Word } | undefined;
    /** The value is env -S's command line. */
    let splits = false;
    if (text.startsWith('--')) {
      const eq = text.indexOf('=');
      if (w.dynamic && eq < 0) return bad('an option only known when the shell runs');
      const given = eq < 0 ? text : text.slice(0, eq);
      const long = resolveLong(t.long ?? {}, given);
      if (long === undefined) return bad(`the option ${given} is not one vigil knows`);
      if (long.kind === 'flag' && eq >= 0) return bad(`${long.name} takes no value`);
      seen.push(long.name);
      if (long.kind === 'value' && eq < 0) {
        if (i + 1 >= argv.length) return { argv, next: i + 1, seen };
        value = { text: argv[i + 1].text, word: argv[i + 1] };
        i++;
      } else if (eq >= 0) value = { text: w.text.slice(w.text.indexOf('=') + 1) };
      splits = long.name === t.splitString?.long;
    } else {
      // A cluster of short options: the first letter that takes a value takes the rest of the word.
      let k = 1;
      for (; k < text.length; k++) {
        const c = text[k];
        seen.push(`-${c}`);
        if (t.flags.includes(c)) continue;
        if (t.attachedOnly?.includes(c)) break;
        if (!t.values.includes(c)) return bad(`the option -${c} is not one vigil knows`);
        if (k + 1 < w.text.length) value = { text: w.text.slice(k + 1) };
        else if (i + 1 < argv.length) {
          value = { text: argv[i + 1].text, word: argv[i + 1] };
          i++;
        }
        splits = c === t.splitString?.short;
        break;
      }
      // The rest of a dynamic word is only known when the shell runs: fine as a value, not as options.
      if (k >= text.length && w.dynamic) return bad('options only known when the shell runs');
    }
    i++;
    if (splits && value) {
      // env -S: its value is split into words that take its place, options included.
      const dynamic = value.word ? value.word.dynamic : w.dynamic;
      if (dynamic) return { unknown: `${name} -S with text only known when the shell runs` };
      const words = splitEnvString(value.text);
      if (typeof words === 'string') return { unknown: `${name} -S: ${words}` };
      argv = [...argv.slice(0, i), ...words, ...argv.slice(i)];
    }
  }
  return { argv, next: i, seen };
}

function resolveLong(table: Record<string, LongKind>, given: string): { name: string; kind: LongKind } | undefined {
  if (table[given]) return { name: given, kind: table[given] };
  const candidates = Object.keys(table).filter((n) => n.startsWith(given));
  return candidates.length === 1 ? { name: candidates[0], kind: table[candidates[0]] } : undefined;
}

/** The literal text of a word before its first expansion. */
function staticPrefix(w: Word): string {
  let out = '';
  for (let k = 0; k < w.shape.length; k++) {
    const c = w.shape[k];
    if (c === '\\' && k + 1 < w.shape.length) out += w.shape[++k];
    else if (c === '*' || c === '?' || c === '[') break;
    else out += c;
  }
  return out;
}

/**
 * The words of an `env -S` string as GNU env splits them: blanks separate, '…' and "…" quote, `\_` is a
 * blank outside double quotes (a space inside), `\c` ends the string, `#` at the start of a word begins a
 * comment, `${NAME}` is expanded (a value vigil does not know). A string env itself refuses is an error.
 */
export function splitEnvString(s: string): Word[] | string {
  const words: Word[] = [];
  let text = '';
  let shape = '';
  let inWord = false;
  let dynamic = false;
  const end = () => {
    if (inWord) words.push({ text, shape, dynamic });
    text = shape = '';
    inWord = dynamic = false;
  };
  const add = (c: string) => {
    text += c;
    shape += /[*?[\]\\{}]/.test(c) ? `\\${c}` : c;
    inWord = true;
  };
  const escapes: Record<string, string> = { f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\', '"': '"', "'": "'", '#': '#', $: '$', _: ' ' };
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else if (c === '\\' && (s[i + 1] === '\\' || s[i + 1] === "'")) add(s[++i]);
      else add(c);
      continue;
    }
    if (c === '\\') {
      const e = s[++i];
      if (e === undefined) return 'a backslash at the end';
      if (e === 'c') {
        if (quote) return '\\c inside double quotes';
        break;
      }
      if (e === '_' && !quote) end();
      else if (e in escapes) add(escapes[e]);
      else return `the escape \\${e}`;
      continue;
    }
    if (c === '$') {
      const m = /^\$\{[A-Za-z_][A-Za-z0-9_]*\}/.exec(s.slice(i));
      if (!m) return 'a $ that is not ${NAME}';
      text += m[0];
      shape += '*';
      inWord = dynamic = true;
      i += m[0].length - 1;
      continue;
    }
    if (c === '"') {
      quote = quote ? undefined : '"';
      inWord = true;
      continue;
    }
    if (quote) add(c);
    else if (c === "'") {
      quote = "'";
      inWord = true;
    } else if (' \t\n\v\f\r'.includes(c)) end();
    else if (c === '#' && !inWord) break;
    else add(c);
  }
  if (quote) return 'an unterminated quote';
  end();
  return words;
}

const BASH_LONG: Record<string, LongKind> = {
  '--debugger': 'flag', '--dump-po-strings': 'flag', '--dump-strings': 'flag', '--help': 'flag', '--init-file': 'value',
  '--login': 'flag', '--noediting': 'flag', '--noprofile': 'flag', '--norc': 'flag', '--posix': 'flag',
  '--pretty-print': 'flag', '--rcfile': 'value', '--restricted': 'flag', '--verbose': 'flag', '--version': 'flag',
};
/** Each shell's single-letter options, and the letters whose value is the next word (`-o pipefail`). */
const SHELL_OPTIONS: Record<string, { flags: RegExp; values: string; long: Record<string, LongKind> | 'any' }> = {
  bash: { flags: /^[abcefhiklmnprstuvxBCDEHPT]$/, values: 'oO', long: BASH_LONG },
  rbash: { flags: /^[abcefhiklmnprstuvxBCDEHPT]$/, values: 'oO', long: BASH_LONG },
  sh: { flags: /^[abcCefhilmnpqsuvxEIV]$/, values: 'o', long: {} },
  dash: { flags: /^[abcCefhilmnpqsuvxEIV]$/, values: 'o', long: {} },
  ash: { flags: /^[abcCefhilmnpqsuvxEIV]$/, values: 'o', long: {} },
  ksh: { flags: /^[abcefhiklmnprstuvxCDEU]$/, values: 'oR', long: {} },
  mksh: { flags: /^[abcefhiklmnprsuvxCU]$/, values: 'oT', long: {} },
  // zsh: every letter and digit is some option; `--NAME` sets one by name, except --emulate NAME.
  zsh: { flags: /^[A-Za-z0-9]$/, values: 'o', long: 'any' },
};
export const SHELLS = new Set(Object.keys(SHELL_OPTIONS));

/**
 * What `sh -c` runs: the first operand after the shell's options when `-c` is among them (alone,
 * combined as `-ec`, before or after other options, `--` ending them). None: the shell reads a script
 * file or its input, which vigil cannot see.
 */
export function shellCommandString(shell: string, args: Word[]): { script: Word } | { none: true } | { unknown: string } {
  const t = SHELL_OPTIONS[shell];
  let commandString = false;
  let i = 0;
  while (i < args.length) {
    const w = args[i];
    // `bash "$X" 'rm -rf /'` with X=-c, `bash $X` with X="-c rm\${IFS}-rf\${IFS}/": only a lone script name is sure.
    if (couldBeOption(w)) {
      if (w.splits || i + 1 < args.length) return { unknown: `${shell}: ${w.text} is only known when the shell runs and could be options (-c) for the words after it` };
      break;
    }
    if (!(w.text.startsWith('-') || w.text.startsWith('+')) || w.text === '+') break;
    if (w.dynamic) return { unknown: `${shell}: an option only known when the shell runs` };
    i++;
    if (w.text === '--' || w.text === '-') break;
    if (w.text.startsWith('--')) {
      const eq = w.text.indexOf('=');
      const name = eq < 0 ? w.text : w.text.slice(0, eq);
      const kind = t.long === 'any' ? (name === '--emulate' ? 'value' : 'flag') : t.long[name];
      if (!kind) return { unknown: `${shell}: the option ${name} is not one vigil knows` };
      if (kind === 'value' && eq < 0) i++;
      continue;
    }
    for (const c of w.text.slice(1)) {
      if (c === 'c') commandString = true;
      else if (t.values.includes(c)) i++;
      else if (!t.flags.test(c)) return { unknown: `${shell}: the option -${c} is not one vigil knows` };
    }
  }
  if (!commandString || i >= args.length) return { none: true };
  return { script: args[i] };
}
