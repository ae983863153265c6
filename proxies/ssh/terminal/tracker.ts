import xtermHeadless from '@xterm/headless';
import { InputClassifier, TypedLine, type InputEvent } from './input.ts';
import { asksForMore, expandsHistory } from './shell-input.ts';
import { commandLines, cursorRow, logicalLineAt, rowsText, textBeforeCursor } from './screen.ts';

const { Terminal } = xtermHeadless;
type Term = InstanceType<typeof Terminal>;
type IMarker = NonNullable<ReturnType<Term['registerMarker']>>;

/**
 * The largest terminal vigil takes from a client (pty request, window change): SSH carries the size as
 * 32-bit numbers, and a headless terminal's buffer grows with cols × rows (10000 × 10000 took ~1.2 GB).
 * Wider than any screen shows; a larger request is clamped to this, for the target, the recording and the
 * command tracker alike.
 */
export const MAX_TERMINAL_COLS = 1000;
export const MAX_TERMINAL_ROWS = 500;

/** `cols` × `rows` within MAX_TERMINAL_COLS × MAX_TERMINAL_ROWS (0, "not given", stays 0). */
export function clampTerminalSize(cols: number, rows: number): { cols: number; rows: number; clamped: boolean } {
  const c = Math.min(Math.max(0, Math.floor(cols) || 0), MAX_TERMINAL_COLS);
  const r = Math.min(Math.max(0, Math.floor(rows) || 0), MAX_TERMINAL_ROWS);
  return { cols: c, rows: r, clamped: c !== cols || r !== rows };
}

/** An interactive command as the screen showed it when Enter was pressed. */
export interface TerminalCommand {
  command: string;
  /** Marks the command as reconstructed from the terminal, not sent as an exec request. */
  source: 'terminal';
  /** The prompt it was typed at (trimmed), e.g. `alice@db1:/var/log$`: gives the auditor the context. */
  prompt: string;
  /**
   * False when the terminal did not echo the line (`stty -echo`): it was rebuilt from the keystrokes,
   * and reported because it was typed at the shell's own prompt (see `isShellLine`).
   */
  echo?: false;
  /** False when keys were pressed whose effect a keystroke rebuild cannot know (arrows, Tab, history). */
  exact?: false;
  /**
   * The channel closed before the screen showed this line, or it began a command the shell was still
   * asking the rest of (an open quote, a heredoc) when the session ended or the shell went back to its
   * first prompt, or it was typed while a program ran and Ctrl-C (which makes the tty drop what was typed
   * ahead) came before the shell read it: its Enter went to the shell, which may or may not have run it.
   * `command` is the keystrokes' rebuild (or the echoed line), or empty with `hidden` when the line may
   * have been the answer to a password prompt (typed ahead, or at a prompt not known to be the shell's).
   */
  unconfirmed?: true;
  hidden?: true;
}

/**
 * A line at the moment its Enter is pressed, before the Enter reaches the shell (for a record made before
 * the command can run). `command` when the keystrokes rebuild it exactly; `keys` (the raw keystrokes since
 * the line began) when they do not; neither, `hidden`, when it may be the answer to a password prompt or
 * a line typed with echo off that is not a shell command.
 */
export interface SubmittedLine {
  prompt: string;
  command?: string;
  keys?: string;
  exact?: false;
  hidden?: true;
  /** Where its Enter is in the chunk given to `input()` (the chunk whose flush calls `onSubmit`). */
  at: number;
  /**
   * A hidden line that may well be a command (typed ahead, or not echoed yet at a prompt not known to be
   * the shell's): the keystrokes' rebuild, for a guardrail to check, never to record as such. Absent when
   * the prompt asks for a secret.
   */
  unsure?: { text: string; exact: boolean };
}

export interface CommandTrackerOptions {
  cols: number;
  rows: number;
  onCommand(cmd: TerminalCommand): void;
  /**
   * Called (in order with output, like every input event) at each Enter that submits a typed line on the
   * normal screen; `input()` returns how many Enters a chunk has, `flush()` waits for these calls.
   */
  onSubmit?(line: SubmittedLine): void;
  /** Output bytes waiting to be parsed above which `output()` returns false (default 256 KiB). */
  highWaterMark?: number;
  /** Called when the parse backlog falls back under half the high-water mark after `output()` returned false. */
  onDrain?(): void;
  /**
   * Backlog past which output is dropped rather than queued (default 8 MiB), so a relay that ignores
   * `false` cannot make the tracker buffer without bound. Commands typed meanwhile may be missed.
   */
  maxBacklog?: number;
}

/** Where a command began: the text before the cursor at its first keystroke, and that row. */
interface PromptMark {
  /** Null when typed ahead: before the shell first showed a prompt, or while an earlier line was unread. */
  text: string | null;
  /** Follows the prompt's row as the screen scrolls; absent for typed-ahead lines. */
  marker?: IMarker;
  /** The line as the keystrokes build it: found on screen for a typed-ahead line, the command for a no-echo one. */
  typed: TypedLine;
  /** A line editor (readline, zle) was reading this line: bracketed paste was on at its first key. */
  lineEditor: boolean;
  /** The screen the line was typed on (a line typed on the alternate screen is read there). */
  screen: 'normal' | 'alternate';
}

/** Enter pressed, its line not read yet. */
interface PendingEnter extends PromptMark {
  /** Newlines seen that did not settle it (see onNewline). */
  misses: number;
}

const EMPTY = new Uint8Array(0);
/** Whitespace-insensitive comparison of a typed line with its echo (a pasted Tab shows as spaces). */
const squash = (s: string) => s.replace(/\s+/g, ' ').trim();
/**
 * Prompts whose answer must not be stored: sudo, su, ssh, mysql -p, gpg, Kerberos, one-time codes.
 * Tested on the prompt's text, which has to end like a question (":" or "?"), so a shell prompt in a
 * directory called "passwords" does not match.
 */
const SECRET_PROMPT = /(pass(word|phrase|code)?|\bpin\b|secret|token|otp|verification code|credentials?)\b[^\n]*[:?]\s*$/i;
/** Lines typed ahead and not read yet (a pasted script); past this the oldest is given up on. */
const MAX_PENDING = 1024;
/** How many typed-ahead lines a screen line is compared with (one never shown is skipped over). */
const LOOKAHEAD = 8;
const MAX_MISSES = 64;
/**
 * How long `finish()` waits for the emulator to parse what it was given before reporting from the screen
 * as it stands. Shorter than the time session.end waits for a channel (connection.ts CHANNEL_SETTLE_MS), so
 * on a starved event loop too the channel's last commands are on record before its session ends.
 */
export const FINISH_WAIT_MS = 1500;
/**
 * Programs that take the alternate screen for themselves: while one of these has it, an Enter is a key
 * for the program (a line in vim, a search in less), not a shell line. Any other way onto the alternate
 * screen (`printf '\e[?1049h'`, a PS1 or .bashrc that switches, a program not listed here) leaves the
 * shell's lines read there as on the normal screen: the mode bit alone must not hide commands.
 */
const FULL_SCREEN = new Set([
  'vi', 'vim', 'nvim', 'view', 'vimdiff', 'rvim', 'ex', 'vimtutor', 'nano', 'pico', 'emacs', 'mg', 'joe', 'micro', 'ne', 'jed',
  'less', 'more', 'most', 'man', 'info', 'pinfo', 'top', 'htop', 'btop', 'atop', 'iotop', 'iftop', 'nethogs', 'glances', 'nmon', 'watch',
  'tmux', 'screen', 'byobu', 'mc', 'ranger', 'nnn', 'lf', 'ncdu', 'tig', 'mutt', 'neomutt', 'alpine', 'lynx', 'w3m', 'links', 'elinks',
  'dialog', 'whiptail', 'fzf', 'nmtui', 'alsamixer', 'cfdisk', 'cgdisk', 'psql', 'mysql', 'mariadb', 'k9s', 'lazygit', 'ctop',
]);
/** Words that run the command after them (`sudo vim`, `env TERM=xterm less`). */
const WRAPPERS = new Set(['sudo', 'doas', 'env', 'command', 'exec', 'nice', 'nohup', 'time', 'ionice', 'stdbuf', 'sudoedit']);

/** Whether a command line starts a program listed in FULL_SCREEN (after assignments and wrappers). */
export function startsFullScreen(command: string): boolean {
  const words = command.trim().split(/\s+/);
  for (const word of words) {
    if (/^[A-Za-z_][A-Za-z0-9_]*=/.test(word) || word.startsWith('-')) continue;
    const name = word.slice(word.lastIndexOf('/') + 1);
    if (WRAPPERS.has(name)) continue;
    return FULL_SCREEN.has(name);
  }
  return false;
}

/**
 * Reconstructs interactive shell commands from a terminal session. The session's output drives a
 * headless xterm; the client's input is only inspected for Enter, Ctrl-C and "a key was pressed".
 * At a command's first keystroke the text before the cursor is taken as its prompt; at Enter the
 * line is read back from the screen once the shell has echoed it, so line editing, history recall and
 * tab completion come out as the shell displayed them. Nothing is reported while a full-screen
 * program (FULL_SCREEN) has the alternate screen, except a line typed at a known shell prompt there; a
 * shell that got onto the alternate screen any other way is read there as on the normal screen.
 *
 * Ordering: xterm parses writes asynchronously, so every input event is queued behind the output
 * received before it (`write('', cb)`), and the line is read just before the first newline of output
 * after Enter — the newline readline (or the tty's echo) prints on accepting the line — because
 * command output may follow in the same chunk.
 */
export class CommandTracker {
  private readonly term: Term;
  private readonly opts: CommandTrackerOptions;
  private readonly classifier = new InputClassifier();
  private readonly highWater: number;
  private readonly maxBacklog: number;
  /**
   * Enters typed and not yet settled, counted as `input()` is called (so in order with `output()`);
   * while any is unsettled, output is split at every newline so the line can be read before it.
   * Settled asynchronously: dropped (nothing typed, full-screen program) or read (or given up on).
   */
  private unsettledEnters = 0;
  /** The command being typed; undefined until its first keystroke. */
  private typing: PromptMark | undefined;
  /** Last non-empty prompt seen, used for lines typed ahead. */
  private lastPrompt: string | null = null;
  /** The shell has shown a prompt: before that, a line typed is typed ahead, whatever the screen shows. */
  private promptSeen = false;
  /** Prompts at which an echoed command was read: a line typed there with echo off is a command too. */
  private readonly shellPrompts = new Set<string>();
  private readonly pending: PendingEnter[] = [];
  /** The lines submitted by the last `input()` chunk (what `retract` may take back). */
  private submittedEntries: PendingEnter[] = [];
  /**
   * Who has the alternate screen while it is active: `program` when the command that was running when it
   * was entered (or the last one read on it) starts a FULL_SCREEN program, `shell` otherwise.
   */
  private altOwner: 'program' | 'shell' = 'shell';
  /** The last command line read (what runs when a program switches screens). */
  private lastCommand = '';
  private backlog = 0;
  private wantDrain = false;
  private disposed = false;
  /** A command line read that the shell has not got all of yet (see `emit`). */
  private openCommand: TerminalCommand | undefined;
  /**
   * Lines typed while a program ran (no prompt before them, no line editor reading) whose tty echo was
   * read: queued in the tty for whoever reads next, they run only if the shell reads them — a Ctrl-C
   * first makes the tty flush them. Reported once that is known (see `releaseEchoed`).
   */
  private echoedUnread: TerminalCommand[] = [];
  /** Input given to `input()` that the emulator has not reached yet, oldest first (see `finish`). */
  private readonly queuedInput: InputEvent[][] = [];
  /** A line editor (readline, zle) accepted a line in this session: the shell redisplays what it reads. */
  private lineEditorSeen = false;
  /** Output bytes dropped because the backlog was past `maxBacklog`. */
  droppedBytes = 0;

  constructor(opts: CommandTrackerOptions) {
    this.opts = opts;
    this.highWater = opts.highWaterMark ?? 256 * 1024;
    this.maxBacklog = opts.maxBacklog ?? 8 * 1024 * 1024;
    // Scrollback only has to hold a command line longer than the screen.
    const size = clampTerminalSize(opts.cols, opts.rows);
    this.term = new Terminal({ cols: size.cols || 80, rows: size.rows || 24, scrollback: 200, allowProposedApi: true });
    // Readline (bash >= 5.1, and zsh) turns bracketed paste off right after accepting a line: the exact
    // moment the whole line, pasted newlines included, is on screen and nothing after it is yet.
    this.term.parser.registerCsiHandler({ prefix: '?', final: 'l' }, (params) => {
      if (params.includes(2004)) this.onLineAccepted();
      return false; // let xterm apply the mode change too
    });
    // ... and turns it on when it starts reading one: the shell is at its prompt.
    this.term.parser.registerCsiHandler({ prefix: '?', final: 'h' }, (params) => {
      if (params.includes(2004)) this.promptSeen = true;
      return false;
    });
    this.term.buffer.onBufferChange((buf) => this.onScreenChange(buf.type));
  }

  /**
   * The alternate screen was entered or left. Entered: decide who has it from the command running (the
   * line not read yet, else the last one read). Rows marked on the other screen mean nothing on this one:
   * pending lines are then found by their text. Keys typed ahead into a full-screen program are its own.
   */
  private onScreenChange(type: 'normal' | 'alternate'): void {
    if (this.disposed) return;
    if (type === 'alternate') {
      const running = this.pending.length > 0 ? this.pending[this.pending.length - 1]!.typed.text : this.lastCommand;
      this.altOwner = startsFullScreen(running) ? 'program' : 'shell';
    }
    for (const entry of this.pending) entry.marker?.dispose();
    if (this.typing && this.typing.screen !== type) {
      this.typing.marker?.dispose();
      if (type === 'alternate' && this.altOwner === 'program') this.typing = undefined;
    }
  }

  /**
   * Bytes the backend sent to the client. Returns false when the parse backlog is past the high-water
   * mark (then wait for `onDrain`). The bytes are copied; the caller may reuse its buffer.
   */
  output(data: Uint8Array): boolean {
    if (this.disposed || data.length === 0) return true;
    if (this.backlog + data.length > this.maxBacklog) {
      this.droppedBytes += data.length;
      this.wantDrain = true;
      return false;
    }
    const chunk = Buffer.from(data);
    let from = 0;
    let search = 0;
    while (this.unsettledEnters > 0 || this.echoedUnread.length > 0) {
      const nl = chunk.indexOf(0x0a, search);
      if (nl < 0) break;
      this.write(chunk.subarray(from, nl));
      this.term.write(EMPTY, () => this.onNewline());
      from = nl;
      search = nl + 1;
    }
    this.write(chunk.subarray(from));
    if (this.backlog >= this.highWater) {
      this.wantDrain = true;
      return false;
    }
    return true;
  }

  /** Bytes the client typed (or pasted). Call before forwarding them to the backend. Returns the Enters in them. */
  input(data: Uint8Array): number {
    if (this.disposed || data.length === 0) return 0;
    const events = this.classifier.classify(data);
    let enters = 0;
    for (const e of events) if (e.type === 'enter') enters++;
    this.unsettledEnters += enters;
    this.queuedInput.push(events);
    this.term.write(EMPTY, () => {
      this.queuedInput.shift();
      this.onInput(events);
    });
    return enters;
  }

  /** Window change, applied in order with the output around it. */
  resize(cols: number, rows: number): void {
    if (this.disposed) return;
    this.term.write(EMPTY, () => {
      const size = clampTerminalSize(cols, rows);
      if (!this.disposed && size.cols > 0 && size.rows > 0) this.term.resize(size.cols, size.rows);
    });
  }

  /** Resolves once everything given so far has been parsed and evaluated. */
  flush(): Promise<void> {
    if (this.disposed) return Promise.resolve();
    return new Promise((resolve) => this.term.write(EMPTY, resolve));
  }

  /**
   * The channel is closing: parse what was given, report every line still waiting for its echo as
   * unconfirmed (nothing forwarded goes unrecorded), then dispose. Bounded by `maxWaitMs`: an emulator
   * still behind then (a starved event loop, output that is slow to parse) has the input it did not reach
   * evaluated on the screen as it stands, and its lines reported the same way, at once — the session's
   * end is never recorded before them. Resolves once every record is made.
   */
  finish(maxWaitMs = FINISH_WAIT_MS): Promise<void> {
    if (this.disposed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (caughtUp: boolean) => {
        try {
          this.reportUnread(caughtUp);
        } catch {
          /* a tracker bug must not break the channel's close; the records made so far stand */
        }
        resolve();
      };
      // Reported from the timer's own callback, not a promise continuation: nothing runs in between.
      const timer = setTimeout(() => done(false), maxWaitMs);
      this.term.write(EMPTY, () => {
        clearTimeout(timer);
        done(true);
      });
    });
  }

  /** The last records of a closing channel (see `finish`); `caughtUp`: the emulator parsed all it was given. */
  private reportUnread(caughtUp: boolean): void {
    if (this.disposed) return;
    try {
      // Lines whose Enter the emulator has not reached: read against the screen it has so far, which the
      // conservative rules for typed-ahead lines cover (a line not known to be a shell command is hidden).
      for (const events of this.queuedInput.splice(0)) this.onInput(events);
      // Typed before the lines still pending: first.
      this.releaseEchoed(false);
      for (const entry of this.pending.splice(0)) {
        const typed = entry.typed.text.trim();
        if (!typed) continue;
        const prompt = (entry.text ?? this.lastPrompt ?? '').trim();
        const known = entry.text !== null && this.isShellLine(entry, entry.text);
        if (known) this.emit({ command: typed, source: 'terminal', prompt, unconfirmed: true, ...(entry.typed.exact ? {} : { exact: false as const }) });
        else this.emit({ command: '', source: 'terminal', prompt, unconfirmed: true, hidden: true });
      }
      // The shell was still asking for the rest of a command: it never ran.
      if (this.openCommand) this.deliver({ ...this.openCommand, unconfirmed: true });
      this.openCommand = undefined;
    } finally {
      if (caughtUp) this.dispose();
      else {
        // Still parsing: stop reporting now (its callbacks check `disposed`), free the emulator once it is done.
        this.disposed = true;
        this.pending.length = 0;
        this.term.write(EMPTY, () => this.term.dispose());
      }
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.pending.length = 0;
    this.term.dispose(); // markers go with it
  }

  private write(bytes: Buffer): void {
    if (bytes.length === 0) return;
    const n = bytes.length;
    this.backlog += n;
    this.term.write(bytes, () => {
      this.backlog -= n;
      if (this.wantDrain && this.backlog <= this.highWater / 2 && !this.disposed) {
        this.wantDrain = false;
        this.opts.onDrain?.();
      }
    });
  }

  private get onNormalScreen(): boolean {
    return this.term.buffer.active.type === 'normal';
  }

  /** Lines are read on the screen now shown: the normal one, or an alternate one no full-screen program has. */
  private get reading(): boolean {
    return this.onNormalScreen || this.altOwner === 'shell';
  }

  /** Whether this pending line is read now: on a screen lines are read on, or typed at a shell prompt on this alternate screen. */
  private readsLine(entry: PromptMark): boolean {
    return this.reading || entry.screen === 'alternate';
  }

  /**
   * The cursor is right after a prompt the shell read commands at (a shell's prompt shown inside a
   * full-screen program such as tmux, or a program that only claims to be one, e.g. a function named vim).
   */
  private atShellPrompt(): boolean {
    const text = textBeforeCursor(this.term.buffer.active);
    return text.trim() !== '' && (this.shellPrompts.has(text) || text === this.lastPrompt);
  }

  private onInput(events: InputEvent[]): void {
    if (this.disposed) return;
    this.submittedEntries = [];
    for (const e of events) {
      if (!this.reading && this.typing === undefined && !(e.type === 'keys' && this.atShellPrompt())) {
        // Keys for vim, less, top …
        if (e.type === 'enter') this.unsettledEnters--;
        continue;
      }
      if (e.type === 'keys') {
        this.typing ??= this.markPrompt();
        this.typing.typed.apply(e.ops, e.raw);
      } else if (e.type === 'eof') {
        // On a line where nothing was typed it is end of input, not a key of the next line: that line
        // begins at the prompt drawn after it. On a typed line, readline deletes a character.
        if (this.typing && this.typing.typed.raw !== '') this.typing.typed.apply(['other'], '\x04');
        else {
          this.typing?.marker?.dispose();
          this.typing = undefined;
        }
      } else if (e.type === 'cancel') {
        // Ctrl-C interrupts the program and the tty drops the lines queued for the shell: whether the
        // shell read any of them first is not known.
        this.releaseEchoed(false);
        this.typing?.marker?.dispose();
        this.typing = undefined;
      } else if (this.typing === undefined) {
        this.unsettledEnters--; // Enter on a line where nothing was typed
      } else {
        if (this.pending.length >= MAX_PENDING) this.settle();
        if (this.opts.onSubmit) this.submit(this.typing, e.at);
        const entry = { ...this.typing, misses: 0 };
        this.pending.push(entry);
        this.submittedEntries.push(entry);
        this.typing = undefined;
      }
    }
  }

  /**
   * What can be said of a line before its Enter reaches the shell. Its text is kept only where
   * `ssh.command` would report it: never at a password prompt, and with echo off only for a shell's own
   * line. A line typed ahead (its prompt not on screen yet) may be read by whatever runs before it, a
   * password prompt included, so it is hidden too; the `ssh.command` that follows has it if it was a command.
   */
  private submit(mark: PromptMark, at: number): void {
    const prompt = (mark.text ?? this.lastPrompt ?? '').trim();
    const hidden = (unsure: boolean): void =>
      this.emitSubmit({ prompt, hidden: true, at, ...(unsure ? { unsure: { text: mark.typed.text.trim(), exact: mark.typed.exact } } : {}) });
    if (SECRET_PROMPT.test(prompt)) return hidden(false);
    if (mark.text === null) return hidden(true);
    const shellLine = mark.lineEditor || (prompt !== '' && this.shellPrompts.has(mark.text));
    // Elsewhere the text is kept only once the screen shows the line echoed (keys of the chunk that holds
    // the Enter are not echoed yet: a line typed in one go at such a prompt is hidden).
    if (!shellLine && !this.echoShown(mark)) return hidden(true);
    if (mark.typed.exact) return this.emitSubmit({ prompt, command: mark.typed.text.trim(), at });
    this.emitSubmit({ prompt, keys: mark.typed.raw, exact: false, at });
  }

  /**
   * The cursor's line up to the cursor as the screen shows it now (prompt and echoed keys), for redrawing
   * it after a message written to the user's terminal; empty on the alternate screen.
   */
  currentLine(): string {
    if (this.disposed || !(this.reading || this.submittedEntries.some((e) => e.screen === 'alternate'))) return '';
    return textBeforeCursor(this.term.buffer.active);
  }

  /**
   * The last `count` submitted lines never reach the program (a guardrail refused the first of them and
   * dropped the rest of its chunk), nor do the keys typed after them: forget them, so the next line's
   * echo is not taken for theirs. Call after `flush()`, before more input.
   */
  retract(count: number): void {
    if (this.disposed) return;
    for (const entry of this.submittedEntries.splice(Math.max(0, this.submittedEntries.length - count))) {
      const i = this.pending.indexOf(entry);
      // Already settled (output read as its line meanwhile): nothing left to take back.
      if (i >= 0) this.settle(i);
    }
    this.typing?.marker?.dispose();
    this.typing = undefined;
  }

  /** Something was echoed after the line's prompt (read from the screen as it is now). */
  private echoShown(mark: PromptMark): boolean {
    if (!mark.text || !mark.marker || mark.marker.isDisposed || mark.marker.line < 0) return false;
    const buf = this.term.buffer.active;
    const { found, text } = commandLines(buf, logicalLineAt(buf, cursorRow(buf)).end, mark.text, mark.marker.line);
    return found && text.slice(mark.text.length).trim() !== '';
  }

  private emitSubmit(line: SubmittedLine): void {
    try {
      this.opts.onSubmit?.(line);
    } catch {
      /* a consumer bug must not break tracking */
    }
  }

  private markPrompt(): PromptMark {
    const lineEditor = this.term.modes.bracketedPasteMode;
    const screen = this.term.buffer.active.type;
    // Typed ahead while an earlier line is still unread: its prompt is not on screen yet.
    if (this.pending.length > 0) return { text: null, typed: new TypedLine(), lineEditor, screen };
    const text = textBeforeCursor(this.term.buffer.active);
    // Nothing before the cursor and no prompt yet: the shell has not started reading (banner, motd, or
    // nothing at all on screen). The line is found later by its text, wherever the tty or shell echoes it.
    if (!text && !this.promptSeen) return { text: null, typed: new TypedLine(), lineEditor, screen };
    if (text) {
      this.lastPrompt = text;
      this.promptSeen = true;
    }
    return { text, marker: this.term.registerMarker(0), typed: new TypedLine(), lineEditor, screen };
  }

  /** The oldest pending Enter is done with. */
  private settle(index = 0): void {
    this.pending.splice(index, 1)[0]?.marker?.dispose();
    this.unsettledEnters--;
  }

  /** Just before a newline that follows an Enter. */
  private onNewline(): void {
    const entry = this.pending[0];
    if (this.disposed) return;
    // Output past an echoed line, not the echo of another line: what was queued is being read (a program
    // echoing it, the shell running it).
    if (!entry) return this.releaseEchoed(true);
    if (!this.readsLine(entry)) return this.settle();
    const buf = this.term.buffer.active;
    if (this.term.modes.bracketedPasteMode) {
      // A readline shell: the line is complete when bracketed paste goes off (onLineAccepted). A program
      // that never turns it off still gets its line read here, once enough newlines went by.
      if (++entry.misses >= MAX_MISSES) this.report(entry, logicalLineAt(buf, cursorRow(buf)).end);
      return;
    }
    // The cursor is still on the accepted line (its last row once readline moved to the end).
    this.report(entry, logicalLineAt(buf, cursorRow(buf)).end);
  }

  /** Bracketed paste turned off: readline accepted the line and moved below it. */
  private onLineAccepted(): void {
    if (this.disposed) return;
    this.lineEditorSeen = true;
    if (this.echoedUnread.length > 0) {
      // The line editor read a line: the first queued one (it redisplays it after its prompt), or a later
      // one when the queued ones went to a program before.
      const first = this.echoedUnread[0]!;
      const buf = this.term.buffer.active;
      const row = cursorRow(buf);
      const { start } = logicalLineAt(buf, buf.cursorX === 0 && row > 0 ? row - 1 : row);
      const shown = rowsText(buf, start, buf.cursorX === 0 && row > 0 ? row - 1 : row).trimEnd();
      if (shown.endsWith(first.command)) {
        this.echoedUnread.shift();
        return this.emit(first);
      }
      this.releaseEchoed(true);
    }
    const entry = this.pending[0];
    if (!entry || this.disposed || !this.readsLine(entry)) return;
    const buf = this.term.buffer.active;
    const row = cursorRow(buf);
    // With echo off readline prints no newline before this: the cursor is back at the start of the
    // prompt's own row, not below it. Never read above the row the line began on.
    const promptRow = entry.marker && !entry.marker.isDisposed ? entry.marker.line : -1;
    this.report(entry, buf.cursorX === 0 && row > 0 && row - 1 >= promptRow ? row - 1 : row, true);
  }

  /** Read the command ending at `lastRow`, report it, settle the entry (unless it must wait). */
  private report(entry: PendingEnter, lastRow: number, accepted = false): void {
    if (entry.text === null) return this.reportTypedAhead(entry, lastRow, accepted);
    const buf = this.term.buffer.active;
    const prompt = entry.text;
    const top = entry.marker && !entry.marker.isDisposed && entry.marker.line >= 0 ? entry.marker.line : logicalLineAt(buf, lastRow).start;
    const { found, text } = commandLines(buf, lastRow, prompt, top);
    this.settle();
    // The answer to a password prompt is never reported, echoed or not; what follows it on the prompt's
    // line is the program's output, not input.
    if (!entry.lineEditor && SECRET_PROMPT.test(prompt.trim())) return;
    // Not found: the prompt was redrawn differently; report the whole line rather than cut a command short.
    const shown = (found ? text.slice(prompt.length) : text).trim();
    const typed = entry.typed.text.trim();
    // Without a line editor the tty echoes keys as typed: a screen line that differs from an exact rebuild
    // of the keys is output written after input that was not echoed (`read -s` on a bare line).
    const echoed = !shown ? false : entry.lineEditor || !entry.typed.exact || !typed || squash(shown) === squash(typed);
    // Typed before the prompt was drawn (nothing before the cursor at the first key; a readline shell may
    // already have turned bracketed paste on): the shell drew its prompt, then the line.
    if (shown && !prompt.trim()) {
      const late = this.latePrompt(entry, shown, typed);
      if (late) {
        // The answer to a password prompt drawn late is no more a command than one drawn in time.
        if (!entry.lineEditor && SECRET_PROMPT.test(late.prompt.trim())) return;
        if (late.prompt) this.lastPrompt = late.prompt;
        return this.emit({ command: late.command, source: 'terminal', prompt: late.prompt.trim() });
      }
    }
    if (echoed) {
      if (found && prompt.trim()) this.shellPrompts.add(prompt);
      const cmd: TerminalCommand = { command: shown, source: 'terminal', prompt: prompt.trim() };
      // Typed while a program ran, at a shell with a line editor: the tty's echo, not the shell reading it.
      if (!accepted && this.lineEditorSeen && !entry.lineEditor && !prompt.trim() && entry.screen === 'normal') {
        this.echoedUnread.push(cmd);
        return;
      }
      return this.emit(cmd);
    }
    if (!typed) return;
    // Keys were typed and not echoed: a command typed after `stty -echo`, or the answer to a password
    // prompt. Only the first is reported.
    if (!this.isShellLine(entry, prompt)) return;
    this.emit({ command: typed, source: 'terminal', prompt: prompt.trim(), echo: false, ...(entry.typed.exact ? {} : { exact: false as const }) });
  }

  /**
   * The prompt a shell drew after the line's first key, in front of the echoed line: the exact keys end
   * the screen line; failing an exact rebuild (Tab, history), a line editor's line that starts with the
   * last prompt seen. Undefined when the screen line is the command alone.
   */
  private latePrompt(entry: PendingEnter, shown: string, typed: string): { command: string; prompt: string } | undefined {
    if (entry.typed.exact) {
      if (!typed || shown === typed || !shown.endsWith(typed)) return undefined;
      return { command: typed, prompt: shown.slice(0, shown.length - typed.length) };
    }
    const last = this.lastPrompt?.trim();
    if (!entry.lineEditor || !last || !shown.startsWith(last)) return undefined;
    const command = shown.slice(last.length).trim();
    return command ? { command, prompt: last } : undefined;
  }

  /**
   * A line typed with echo off is taken for a shell command when a line editor was reading it (bracketed
   * paste on: readline or zle at the shell prompt — getpass, `read -s`, sudo, ssh and su never turn it on)
   * or when it was typed at a prompt where echoed commands were read before; and never when the prompt
   * asks for a password, passphrase, PIN or code.
   */
  private isShellLine(entry: PendingEnter, prompt: string): boolean {
    if (SECRET_PROMPT.test(prompt.trim())) return false;
    return entry.lineEditor || (prompt.trim() !== '' && this.shellPrompts.has(prompt));
  }

  /**
   * A typed-ahead line: its prompt was not on screen when it was typed. It is the line on screen that
   * ends with what was typed (the tty's echo before the shell started reading, or the shell's redisplay
   * after its prompt); failing an exact rebuild of the keys, the line after the last prompt seen.
   * Other lines (output in between) leave it waiting. The line shown may be a later typed-ahead one.
   */
  private reportTypedAhead(entry: PendingEnter, lastRow: number, accepted: boolean): void {
    for (let i = 0; i < Math.min(this.pending.length, LOOKAHEAD) && this.pending[i]!.text === null; i++) {
      const match = this.findTyped(this.pending[i]!, lastRow);
      if (!match) continue;
      // Out of order when a later line shows first: the tty echoes lines that arrive while a command
      // runs, before the shell redisplays the earlier ones. The earlier ones keep waiting (one never
      // shown — typed ahead into a password prompt — is given up on after MAX_MISSES, unreported).
      this.settle(i);
      if (match.prompt.trim()) {
        this.lastPrompt = match.prompt;
        // Only a line editor's line vouches for its prompt being the shell's (see isShellLine).
        if (this.term.modes.bracketedPasteMode) this.shellPrompts.add(match.prompt);
      }
      return this.emit({ command: match.command, source: 'terminal', prompt: match.prompt.trim() });
    }
    const buf = this.term.buffer.active;
    if (accepted && this.lastPrompt !== null && entry.lineEditor && entry.typed.text.trim() && !SECRET_PROMPT.test(this.lastPrompt.trim())) {
      // The line editor accepted a line it did not show, at the shell's prompt: typed ahead with echo off.
      // Only when this is the one typed-ahead line waiting; with more, which one the shell read is a guess.
      const { found, text } = commandLines(buf, lastRow, this.lastPrompt, logicalLineAt(buf, lastRow).start);
      const waiting = this.pending.filter((p) => p.text === null).length;
      if (found && !text.slice(this.lastPrompt.length).trim() && waiting === 1) {
        this.settle();
        return this.emit({ command: entry.typed.text.trim(), source: 'terminal', prompt: this.lastPrompt.trim(), echo: false, ...(entry.typed.exact ? {} : { exact: false as const }) });
      }
    }
    if (!entry.typed.exact && this.lastPrompt !== null) {
      const { found, text } = commandLines(buf, lastRow, this.lastPrompt, logicalLineAt(buf, lastRow).start);
      const command = found ? text.slice(this.lastPrompt.length).trim() : '';
      if (command) {
        this.settle();
        return this.emit({ command, source: 'terminal', prompt: this.lastPrompt.trim() });
      }
    }
    // Not on screen yet: this was output in between. A line never shown is given up on after a while —
    // but the tty's echo of other typed-ahead lines (a long paste arriving while a command runs) does
    // not count towards that: the shell has yet to read them, and this one before them.
    const { start } = logicalLineAt(buf, lastRow);
    const line = rowsText(buf, start, lastRow).trimEnd();
    const echoOfTyped = this.pending.some((p) => p !== entry && p.text === null && p.typed.exact && p.typed.text.trim() !== '' && line.endsWith(p.typed.text.split('\n').pop()!.trimEnd()));
    if (!echoOfTyped && ++entry.misses >= MAX_MISSES) this.settle();
  }

  /** The screen lines ending at `lastRow`, if they end with the exact keystrokes of `entry`. */
  private findTyped(entry: PendingEnter, lastRow: number): { command: string; prompt: string } | undefined {
    const typed = entry.typed.text;
    if (!entry.typed.exact || !typed.trim()) return undefined;
    const buf = this.term.buffer.active;
    const rows: string[] = [];
    let end = lastRow;
    for (let i = typed.split('\n').length; i > 0 && end >= 0; i--) {
      const { start } = logicalLineAt(buf, end);
      rows.unshift(rowsText(buf, start, end));
      end = start - 1;
    }
    const shown = rows.join('\n');
    const body = shown.endsWith(typed) ? typed : shown.endsWith(typed.trimEnd()) ? typed.trimEnd() : undefined;
    if (body === undefined) return undefined;
    return { command: body.trim(), prompt: shown.slice(0, shown.length - body.length) };
  }

  /**
   * A command line is reported once the shell has all of it: a line that leaves the command open (an open
   * quote, a trailing `\\`, a heredoc, `for … do`) waits for the lines typed at the continuation prompt,
   * and the whole is one command, as the shell runs it — never its pieces (`EOF`, `quote'`) as commands.
   * A line the shell rewrites before running it (history expansion: `!!`, `!$`) is not exact.
   */
  private emit(cmd: TerminalCommand): void {
    if (!cmd.command && !cmd.hidden) return;
    const held = this.openCommand;
    if (held) {
      this.openCommand = undefined;
      // Back at the prompt the command began at (Ctrl-C at the continuation prompt, or not a shell that
      // wanted more): whether that line ran is not known. A hidden or unconfirmed line ends it the same way.
      if (cmd.hidden || cmd.unconfirmed || cmd.prompt === held.prompt) this.deliver({ ...held, unconfirmed: true });
      else cmd = { ...held, command: `${held.command}\n${cmd.command}`, ...(cmd.echo === false ? { echo: false } : {}), ...(cmd.exact === false ? { exact: false } : {}) };
    }
    if (!cmd.hidden && !cmd.unconfirmed && asksForMore(cmd.command)) {
      this.openCommand = cmd;
      return;
    }
    if (!cmd.hidden && expandsHistory(cmd.command)) cmd = { ...cmd, exact: false };
    this.deliver(cmd);
  }

  /** Report the echoed lines still queued: as run (`read`), or unconfirmed (the tty may have dropped them). */
  private releaseEchoed(read: boolean): void {
    for (const cmd of this.echoedUnread.splice(0)) this.emit(read ? cmd : { ...cmd, unconfirmed: true });
  }

  private deliver(cmd: TerminalCommand): void {
    if (!cmd.hidden) {
      this.lastCommand = cmd.command;
      // A command read on the alternate screen decides who has it next (a shell in tmux starting vim).
      if (!this.onNormalScreen) this.altOwner = startsFullScreen(cmd.command) ? 'program' : 'shell';
    }
    try {
      this.opts.onCommand(cmd);
    } catch {
      /* a consumer bug must not break tracking */
    }
  }
}
