import xtermHeadless from '@xterm/headless';
import { InputClassifier, type InputEvent } from './input.ts';
import { commandLines, cursorRow, logicalLineAt, textBeforeCursor } from './screen.ts';

const { Terminal } = xtermHeadless;
type Term = InstanceType<typeof Terminal>;
type IMarker = NonNullable<ReturnType<Term['registerMarker']>>;

/** An interactive command as the screen showed it when Enter was pressed. */
export interface TerminalCommand {
  command: string;
  /** Marks the command as reconstructed from the terminal, not sent as an exec request. */
  source: 'terminal';
  /** The prompt it was typed at (trimmed), e.g. `alice@db1:/var/log$`: gives the auditor the context. */
  prompt: string;
}

export interface CommandTrackerOptions {
  cols: number;
  rows: number;
  onCommand(cmd: TerminalCommand): void;
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
  /** Null when typed ahead before the shell showed its prompt. */
  text: string | null;
  /** Follows the prompt's row as the screen scrolls; absent for typed-ahead lines. */
  marker?: IMarker;
}

/** Enter pressed, its line not read yet. */
interface PendingEnter extends PromptMark {
  /** Newlines seen that did not settle it (see onNewline). */
  misses: number;
}

const EMPTY = new Uint8Array(0);
const MAX_PENDING = 16;
const MAX_MISSES = 64;

/**
 * Reconstructs interactive shell commands from a terminal session. The session's output drives a
 * headless xterm; the client's input is only inspected for Enter, Ctrl-C and "a key was pressed".
 * At a command's first keystroke the text before the cursor is taken as its prompt; at Enter the
 * line is read back from the screen once the shell has echoed it, so line editing, history recall and
 * tab completion come out as the shell displayed them. Nothing is reported while a full-screen
 * program has the alternate screen.
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
  private readonly pending: PendingEnter[] = [];
  private backlog = 0;
  private wantDrain = false;
  private disposed = false;
  /** Output bytes dropped because the backlog was past `maxBacklog`. */
  droppedBytes = 0;

  constructor(opts: CommandTrackerOptions) {
    this.opts = opts;
    this.highWater = opts.highWaterMark ?? 256 * 1024;
    this.maxBacklog = opts.maxBacklog ?? 8 * 1024 * 1024;
    // Scrollback only has to hold a command line longer than the screen.
    this.term = new Terminal({ cols: opts.cols, rows: opts.rows, scrollback: 200, allowProposedApi: true });
    // Readline (bash >= 5.1, and zsh) turns bracketed paste off right after accepting a line: the exact
    // moment the whole line, pasted newlines included, is on screen and nothing after it is yet.
    this.term.parser.registerCsiHandler({ prefix: '?', final: 'l' }, (params) => {
      if (params.includes(2004)) this.onLineAccepted();
      return false; // let xterm apply the mode change too
    });
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
    while (this.unsettledEnters > 0) {
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

  /** Bytes the client typed (or pasted). Call before forwarding them to the backend. */
  input(data: Uint8Array): void {
    if (this.disposed || data.length === 0) return;
    const events = this.classifier.classify(data);
    for (const e of events) if (e === 'enter') this.unsettledEnters++;
    this.term.write(EMPTY, () => this.onInput(events));
  }

  /** Window change, applied in order with the output around it. */
  resize(cols: number, rows: number): void {
    if (this.disposed) return;
    this.term.write(EMPTY, () => {
      if (!this.disposed) this.term.resize(cols, rows);
    });
  }

  /** Resolves once everything given so far has been parsed and evaluated. */
  flush(): Promise<void> {
    if (this.disposed) return Promise.resolve();
    return new Promise((resolve) => this.term.write(EMPTY, resolve));
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

  private onInput(events: InputEvent[]): void {
    if (this.disposed) return;
    for (const e of events) {
      if (!this.onNormalScreen) {
        // Keys for vim, less, top …
        if (e === 'enter') this.unsettledEnters--;
        continue;
      }
      if (e === 'key') {
        if (this.typing === undefined) this.typing = this.markPrompt();
      } else if (e === 'cancel') {
        this.typing?.marker?.dispose();
        this.typing = undefined;
      } else if (this.typing === undefined) {
        this.unsettledEnters--; // Enter on a line where nothing was typed
      } else {
        if (this.pending.length >= MAX_PENDING) this.settle();
        this.pending.push({ ...this.typing, misses: 0 });
        this.typing = undefined;
      }
    }
  }

  private markPrompt(): PromptMark {
    // Typed ahead while an earlier line is still unread: its prompt is not on screen yet.
    if (this.pending.length > 0) return { text: null };
    const text = textBeforeCursor(this.term.buffer.active);
    if (text) this.lastPrompt = text;
    return { text, marker: this.term.registerMarker(0) };
  }

  /** The oldest pending Enter is done with. */
  private settle(): void {
    this.pending.shift()?.marker?.dispose();
    this.unsettledEnters--;
  }

  /** Just before a newline that follows an Enter. */
  private onNewline(): void {
    const entry = this.pending[0];
    if (!entry || this.disposed) return;
    if (!this.onNormalScreen) return this.settle();
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
    const entry = this.pending[0];
    if (!entry || this.disposed || !this.onNormalScreen) return;
    const buf = this.term.buffer.active;
    const row = cursorRow(buf);
    this.report(entry, buf.cursorX === 0 && row > 0 ? row - 1 : row);
  }

  /** Read the command ending at `lastRow`, report it, settle the entry (unless it must wait). */
  private report(entry: PendingEnter, lastRow: number): void {
    const buf = this.term.buffer.active;
    const prompt = entry.text ?? this.lastPrompt;
    const top = entry.marker && !entry.marker.isDisposed && entry.marker.line >= 0 ? entry.marker.line : logicalLineAt(buf, lastRow).start;
    const { found, text } = commandLines(buf, lastRow, prompt ?? '', top);
    let command: string;
    if (found && prompt !== null) {
      command = text.slice(prompt.length);
    } else if (entry.text === null) {
      // A typed-ahead line not on screen yet: this was output in between; wait for the line itself.
      if (++entry.misses >= MAX_MISSES) this.settle();
      return;
    } else {
      // The prompt was redrawn differently: report the whole line rather than cut a command short.
      command = text;
    }
    this.settle();
    command = command.trim();
    if (!command) return;
    try {
      this.opts.onCommand({ command, source: 'terminal', prompt: (prompt ?? '').trim() });
    } catch {
      /* a consumer bug must not break tracking */
    }
  }
}
