import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { waitFor } from '../support/tmp.ts';

/**
 * A real interactive bash on a pseudo-terminal, through util-linux `script` (node-pty is not
 * available): what we write to its stdin arrives as keystrokes on the pty, its stdout is exactly what
 * the terminal would show. `onOutput`/`onInput` see the bytes as a relay would.
 */
export class PtyShell {
  readonly child: ChildProcessWithoutNullStreams;
  private text = '';
  private outputListeners: ((b: Buffer) => void)[] = [];

  constructor(opts: { cwd: string; cols: number; rows: number; env?: Record<string, string>; shell?: string }) {
    const shell = opts.shell ?? 'bash --norc --noprofile -i';
    this.child = spawn('script', ['-qfec', `stty cols ${opts.cols} rows ${opts.rows}; exec ${shell}`, '/dev/null'], {
      cwd: opts.cwd,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: opts.cwd, TERM: 'xterm-256color', LANG: 'C.UTF-8', ...opts.env },
    });
    this.child.stdout.on('data', (b: Buffer) => {
      this.text += b.toString('latin1');
      for (const l of this.outputListeners) l(b);
    });
  }

  onOutput(fn: (b: Buffer) => void): void {
    this.outputListeners.push(fn);
  }

  /** All output so far, as latin1 text (for waiting on markers). */
  get output(): string {
    return this.text;
  }

  write(keys: string): void {
    this.child.stdin.write(keys);
  }

  /** Wait until the output grows past `marker` (searched after `since`). */
  async waitForOutput(marker: string | RegExp, since = 0, ms = 10_000): Promise<void> {
    await waitFor(() => (typeof marker === 'string' ? this.text.indexOf(marker, since) >= 0 : marker.test(this.text.slice(since))), ms, `output ${marker}`);
  }

  /** Wait until no output has arrived for `quietMs`. */
  async settle(quietMs = 150, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    let last = this.text.length;
    let since = Date.now();
    for (;;) {
      await new Promise((r) => setTimeout(r, 5));
      if (this.text.length !== last) { last = this.text.length; since = Date.now(); }
      if (Date.now() - since >= quietMs) return;
      if (Date.now() > deadline) throw new Error('output did not settle');
    }
  }

  /** End the session: EOF, then SIGHUP, then SIGKILL (a full-screen program may ignore the first two). */
  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.stdin.end();
    const hup = setTimeout(() => this.child.kill('SIGHUP'), 1_000);
    const kill = setTimeout(() => this.child.kill('SIGKILL'), 3_000);
    await exited;
    clearTimeout(hup);
    clearTimeout(kill);
  }
}
