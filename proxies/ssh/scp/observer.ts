import { ProtocolError } from '../../../src/errors.ts';
import type { ScpCommand } from './command.ts';
import { bytesToText } from '../sftp/decode.ts';

/**
 * Observes a legacy `scp -O` transfer (the rcp protocol over an exec channel) without taking part:
 * the sending side ("source") streams directives — `C<mode> <size> <name>` then the file bytes,
 * `D…`/`E` around directories, `T…` times — and the receiving side ("sink") answers each with a 0 byte
 * or an error line (`\x01`/`\x02` + text). One `file` per file with the bytes that went through and
 * how the sink answered; file contents are counted, never buffered.
 */
export type ScpOutcome = 'ok' | 'error' | 'incomplete';

export type ScpTransfer =
  | { op: 'file'; direction: ScpCommand['direction']; dirs: string[]; name: string; mode: string; size: number; bytes: number; outcome: ScpOutcome; error?: string }
  | { op: 'dir'; direction: ScpCommand['direction']; dirs: string[]; name: string; mode: string; outcome: ScpOutcome; error?: string }
  /** An error either side reported outside a file (missing source file, bad target, …). */
  | { op: 'error'; direction: ScpCommand['direction']; from: 'source' | 'sink'; message: string };

export class ScpObserveError extends ProtocolError {
  readonly fatal = true;
  constructor(message: string) {
    super(`scp stream: ${message}`, 'VIGIL_SCP_MALFORMED');
  }
}

export interface ScpObserverOptions {
  command: ScpCommand;
  onTransfer(t: ScpTransfer): void;
  /** After an error the observer stops; the relay goes on. */
  onError?(err: ScpObserveError): void;
}

interface FileState {
  dirs: string[];
  name: string;
  mode: string;
  size: number;
  bytes: number;
  /** The source's own read error, sent instead of the 0 byte after the data. */
  error?: string;
}

/** What the next sink answer refers to. */
type Expect =
  | { kind: 'start' }
  | { kind: 'times' }
  | { kind: 'end-dir' }
  | { kind: 'dir'; dirs: string[]; name: string; mode: string }
  | { kind: 'file-header'; file: FileState }
  | { kind: 'file-data'; file: FileState };

/**
 * Longest source line (before its newline) OpenSSH's scp sink reads as one: directives and error lines
 * go into a 2048-byte buffer, and what a longer line holds past it is read as the next directive. A
 * longer line would be one thing to vigil and two to the sink, so it is refused.
 */
const MAX_SOURCE_LINE = 2046;
/** A sink's error line (its own path and error text); a sink is not steered by what it sends. */
const MAX_SINK_LINE = 8192;
const MAX_EXPECT = 64;
const FILE_LINE = /^C([0-7]{4}) (\d+) (.+)$/s;
const DIR_LINE = /^D([0-7]{4}) (\d+) (.+)$/s;
const TIMES_LINE = /^T\d+ \d+ \d+ \d+$/;

export class ScpObserver {
  private readonly opts: ScpObserverOptions;
  private readonly direction: ScpCommand['direction'];
  private readonly expect: Expect[] = [{ kind: 'start' }];
  private readonly dirs: string[] = [];
  // Source side
  private srcState: 'line' | 'data' | 'data-end' | 'data-error' = 'line';
  private srcLine: number[] = [];
  private file: FileState | null = null;
  private remaining = 0;
  // Sink side
  private sinkLine: number[] | null = null;
  private stopped = false;

  constructor(opts: ScpObserverOptions) {
    this.opts = opts;
    this.direction = opts.command.direction;
  }

  /** Client → server bytes (call before forwarding them). */
  clientData(chunk: Buffer): void {
    this.guard(() => (this.direction === 'upload' ? this.source(chunk) : this.sink(chunk)));
  }

  /** Server → client bytes (call before forwarding them). */
  serverData(chunk: Buffer): void {
    this.guard(() => (this.direction === 'upload' ? this.sink(chunk) : this.source(chunk)));
  }

  /**
   * Channel closed: every file or directory sent and not answered is reported `incomplete` (a source may
   * send its next header before the answer to a file's data, so several may be in flight; the sink may
   * have written them all), and so is a file cut short.
   */
  end(): void {
    if (this.stopped) return;
    this.stopped = true;
    const reported = new Set<FileState>();
    for (const e of this.expect) {
      if (e.kind === 'dir') {
        this.emit({ op: 'dir', direction: this.direction, dirs: e.dirs, name: e.name, mode: e.mode, outcome: 'incomplete' });
      } else if ((e.kind === 'file-header' || e.kind === 'file-data') && !reported.has(e.file)) {
        reported.add(e.file);
        this.emitFile(e.file, 'incomplete');
      }
    }
    if (this.file && !reported.has(this.file)) this.emitFile(this.file, 'incomplete');
  }

  private guard(fn: () => void): void {
    if (this.stopped) return;
    try {
      fn();
    } catch (e) {
      this.stopped = true;
      const err = e instanceof ScpObserveError ? e : new ScpObserveError((e as Error).message);
      try {
        this.opts.onError?.(err);
      } catch {
        /* reporting must not break the relay */
      }
    }
  }

  private emit(t: ScpTransfer): void {
    try {
      this.opts.onTransfer(t);
    } catch {
      /* a consumer bug must not break the relay */
    }
  }

  private emitFile(f: FileState, outcome: ScpOutcome, error?: string): void {
    const t: ScpTransfer = { op: 'file', direction: this.direction, dirs: f.dirs, name: f.name, mode: f.mode, size: f.size, bytes: f.bytes, outcome };
    if (error ?? f.error) t.error = error ?? f.error;
    this.emit(t);
  }

  private push(e: Expect): void {
    if (this.expect.length >= MAX_EXPECT) throw new ScpObserveError(`more than ${MAX_EXPECT} unanswered directives`);
    this.expect.push(e);
  }

  private source(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      // The sink reads a refused file's data, or a refused directory's contents, as directives of its own:
      // what follows a header is only known once the sink answered it (OpenSSH's source always waits).
      const undecided = this.expect.find((e): e is Extract<Expect, { kind: 'file-header' | 'dir' }> => e.kind === 'file-header' || e.kind === 'dir');
      if (undecided) {
        const what = undecided.kind === 'dir' ? `directory ${JSON.stringify(undecided.name)}` : `file ${JSON.stringify(undecided.file.name)}`;
        throw new ScpObserveError(`the source sent more before the sink accepted ${what}; the sink may read it as directives`);
      }
      switch (this.srcState) {
        case 'data': {
          const n = Math.min(this.remaining, chunk.length - off);
          this.file!.bytes += n;
          this.remaining -= n;
          off += n;
          if (this.remaining === 0) this.srcState = 'data-end';
          break;
        }
        case 'data-end': {
          const b = chunk[off++];
          if (b === 0) this.finishData();
          else if (b === 1 || b === 2) { this.srcState = 'data-error'; this.srcLine = []; }
          else throw new ScpObserveError(`byte ${b} after file data (expected 0 or an error)`);
          break;
        }
        case 'line':
        case 'data-error': {
          const nl = chunk.indexOf(0x0a, off);
          const end = nl < 0 ? chunk.length : nl;
          if (this.srcLine.length + (end - off) > MAX_SOURCE_LINE) throw new ScpObserveError(`source line longer than ${MAX_SOURCE_LINE} bytes (the sink would read its rest as another)`);
          for (let i = off; i < end; i++) this.srcLine.push(chunk[i]);
          off = end;
          if (nl < 0) break;
          off++;
          // File names are bytes: one that is not UTF-8 keeps its bytes (\xNN), as SFTP paths do, so
          // distinct files never share a recorded name.
          const line = bytesToText(Buffer.from(this.srcLine));
          this.srcLine = [];
          if (this.srcState === 'data-error') {
            this.file!.error = line;
            this.finishData();
          } else {
            this.directive(line);
          }
          break;
        }
      }
    }
  }

  private finishData(): void {
    this.push({ kind: 'file-data', file: this.file! });
    this.file = null;
    this.srcState = 'line';
  }

  private directive(line: string): void {
    const kind = line.charCodeAt(0);
    if (kind === 1 || kind === 2) {
      this.emit({ op: 'error', direction: this.direction, from: 'source', message: line.slice(1) });
      return;
    }
    let m: RegExpExecArray | null;
    if ((m = FILE_LINE.exec(line))) {
      const file: FileState = { dirs: [...this.dirs], name: m[3], mode: m[1], size: Number(m[2]), bytes: 0 };
      this.push({ kind: 'file-header', file });
      this.file = file;
      this.remaining = file.size;
      this.srcState = file.size === 0 ? 'data-end' : 'data';
    } else if ((m = DIR_LINE.exec(line))) {
      this.push({ kind: 'dir', dirs: [...this.dirs], name: m[3], mode: m[1] });
      this.dirs.push(m[3]);
    } else if (line === 'E') {
      this.push({ kind: 'end-dir' });
      this.dirs.pop();
    } else if (TIMES_LINE.test(line)) {
      this.push({ kind: 'times' });
    } else {
      throw new ScpObserveError(`unknown directive ${JSON.stringify(line.slice(0, 40))}`);
    }
  }

  private sink(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.sinkLine) {
        const nl = chunk.indexOf(0x0a, off);
        const end = nl < 0 ? chunk.length : nl;
        if (this.sinkLine.length + (end - off) > MAX_SINK_LINE) throw new ScpObserveError(`error line longer than ${MAX_SINK_LINE} bytes`);
        for (let i = off; i < end; i++) this.sinkLine.push(chunk[i]);
        off = end;
        if (nl < 0) break;
        off++;
        const message = bytesToText(Buffer.from(this.sinkLine));
        this.sinkLine = null;
        this.answer(message);
        continue;
      }
      const b = chunk[off++];
      if (b === 0) this.answer(undefined);
      else if (b === 1 || b === 2) this.sinkLine = [];
      else throw new ScpObserveError(`sink sent byte ${b} (expected 0 or an error)`);
    }
  }

  /** The sink's answer (undefined: ok) to the oldest unanswered directive. */
  private answer(error: string | undefined): void {
    const e = this.expect.shift();
    if (!e) {
      // OpenSSH's sink can report a failure on its own (e.g. a write error at the end); keep it.
      if (error !== undefined) this.emit({ op: 'error', direction: this.direction, from: 'sink', message: error });
      return;
    }
    switch (e.kind) {
      case 'file-header':
        if (error !== undefined) {
          // The source skips the data of a refused file.
          this.file = null;
          this.srcState = 'line';
          this.emitFile(e.file, 'error', error);
        }
        return;
      case 'file-data':
        this.emitFile(e.file, error !== undefined || e.file.error ? 'error' : 'ok', error);
        return;
      case 'dir': {
        const t: ScpTransfer = { op: 'dir', direction: this.direction, dirs: e.dirs, name: e.name, mode: e.mode, outcome: error === undefined ? 'ok' : 'error' };
        if (error !== undefined) {
          t.error = error;
          // The source skips a refused directory: it sends no E for it.
          if (this.dirs[this.dirs.length - 1] === e.name) this.dirs.pop();
        }
        this.emit(t);
        return;
      }
      default:
        if (error !== undefined) this.emit({ op: 'error', direction: this.direction, from: 'sink', message: error });
    }
  }
}
