import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandTracker, type TerminalCommand } from '../../proxies/ssh/terminal/index.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { PtyShell } from './pty-shell.ts';

const COLS = 80;
const ROWS = 24;
const UP = '\x1b[A';
const LEFT = '\x1b[D';
const BS = '\x7f';
const CTRL_A = '\x01';
const CTRL_E = '\x05';
const CTRL_U = '\x15';
const CTRL_C = '\x03';
const ESC = '\x1b';
/** vim, or the vi of vim-tiny on a minimal machine (test/setup/install-deps.sh should provide one). */
const VI = ['vim', 'vi'].find((v) => (process.env.PATH ?? '').split(':').some((d) => fs.existsSync(path.join(d, v)))) ?? 'vim';

/** A real bash on a pty with a CommandTracker fed exactly as the relay feeds it. */
describe('CommandTracker on a real bash', () => {
  let dir: string;
  let sh: PtyShell;
  let tracker: CommandTracker;
  const commands: TerminalCommand[] = [];

  beforeAll(async () => {
    dir = tempDir('vigil-term-');
    fs.writeFileSync(path.join(dir, 'quarterly-report-2026.txt'), 'numbers\n');
    tracker = new CommandTracker({ cols: COLS, rows: ROWS, onCommand: (c) => commands.push(c) });
    sh = new PtyShell({ cwd: dir, cols: COLS, rows: ROWS, env: { PS1: 'vigil:\\W\\$ ', HISTFILE: path.join(dir, '.hist') } });
    sh.onOutput((b) => tracker.output(b));
    await sh.waitForOutput('vigil:');
    await sh.settle();
  });
  afterAll(async () => {
    await sh?.close();
    tracker?.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Type keys one at a time, letting the shell echo each, like a person. */
  async function type(...keys: string[]): Promise<void> {
    for (const k of keys) {
      tracker.input(Buffer.from(k));
      sh.write(k);
      await sh.settle(20);
    }
  }
  /** Commands reported since the last call, waiting for at least `n`. */
  let seen = 0;
  async function next(n = 1): Promise<string[]> {
    await sh.settle(100);
    await tracker.flush();
    await waitFor(() => commands.length >= seen + n, 5_000, `${n} command(s)`);
    const got = commands.slice(seen).map((c) => c.command);
    seen = commands.length;
    return got;
  }
  async function none(): Promise<void> {
    await sh.settle(200);
    await tracker.flush();
    expect(commands.slice(seen)).toEqual([]);
  }
  const chars = (s: string) => [...s];

  it('reports a command typed with backspace corrections, stripped of its prompt', async () => {
    await type(...chars('echo helo wrold'), ...BS.repeat(7), ...chars('lo world'), '\r');
    expect(await next()).toEqual(['echo hello world']);
    expect(commands.at(-1)).toEqual({ command: 'echo hello world', source: 'terminal', prompt: 'vigil:~#' });
  });

  it('follows Ctrl-A, Ctrl-E and arrow-key edits', async () => {
    await type(...chars('cho abd'), CTRL_A, 'e', CTRL_E, LEFT, 'c', '\r');
    expect(await next()).toEqual(['echo abcd']);
  });

  it('reports a history recall with up-arrow, as recalled and as edited', async () => {
    await type(UP, '\r');
    expect(await next()).toEqual(['echo abcd']);
    await type(UP, BS, 'x', '\r');
    expect(await next()).toEqual(['echo abcx']);
  });

  it('reports the tab-completed file name', async () => {
    await type(...chars('cat quar'), '\t', '\r');
    expect(await next()).toEqual(['cat quarterly-report-2026.txt']);
  });

  it('reads the line bash redrew below a Tab completion listing', async () => {
    fs.writeFileSync(path.join(dir, 'alpha-1.log'), '');
    fs.writeFileSync(path.join(dir, 'alpha-2.log'), '');
    await type(...chars('ls alp'), '\t', '\t', '\t', '2', '\t', '\r');
    expect(sh.output).toContain('alpha-1.log');
    expect(await next()).toEqual(['ls alpha-2.log']);
  });

  it('drops what Ctrl-U and Ctrl-C threw away, and ignores empty lines', async () => {
    await type(...chars('rm -rf /nope'), CTRL_U, ...chars('echo after-ctrl-u'), '\r');
    expect(await next()).toEqual(['echo after-ctrl-u']);
    await type(...chars('echo never'), CTRL_C);
    await type('\r', '\r', ' ', '\r');
    await none();
    await type(...chars('true'), '\r');
    expect(await next()).toEqual(['true']);
  });

  it('reads a command that wraps past the terminal width', async () => {
    const long = `echo ${'0123456789'.repeat(17)}`;
    await type(...chars(long), '\r');
    expect(await next()).toEqual([long]);
  });

  it('reports a line typed in one burst (Enter before any echo arrived)', async () => {
    const keys = 'echo burst-typed\r';
    tracker.input(Buffer.from(keys));
    sh.write(keys);
    expect(await next()).toEqual(['echo burst-typed']);
  });

  it('reports two lines typed ahead in one burst', async () => {
    const keys = 'echo first-ahead\recho second-ahead\r';
    tracker.input(Buffer.from(keys));
    sh.write(keys);
    expect(await next(2)).toEqual(['echo first-ahead', 'echo second-ahead']);
  });

  it('reports a pasted multi-line command as one, with its newline', async () => {
    await type('\x1b[200~echo pasted-1\recho pasted-2\x1b[201~', '\r');
    expect(await next()).toEqual(['echo pasted-1\necho pasted-2']);
  });

  it('reports vim as a command but nothing typed inside it', async () => {
    const file = path.join(dir, 'notes.txt');
    await type(...chars(`${VI} -u NONE -N ${file}`), '\r');
    expect(await next()).toEqual([`${VI} -u NONE -N ${file}`]);
    await sh.waitForOutput('\x1b[?1049h');
    await type('i', ...chars('ls -la'), '\r', ...chars('echo not-a-command'), '\r', ESC, ...chars(':wq'), '\r');
    await sh.waitForOutput('\x1b[?1049l');
    await none();
    expect(fs.readFileSync(file, 'utf8')).toBe('ls -la\necho not-a-command\n\n');
    await type(...chars('echo back'), '\r');
    expect(await next()).toEqual(['echo back']);
  });

  it('keeps reading right after a window change', async () => {
    // The pty shrinks (as a window-change request would make it) and the tracker is told the same.
    await type(...chars('stty cols 50'), '\r');
    expect(await next()).toEqual(['stty cols 50']);
    tracker.resize(50, ROWS);
    const long = `echo ${'abcdefghij'.repeat(8)}`;
    await type(...chars(long), '\r');
    expect(await next()).toEqual([long]);
  });
});

describe('CommandTracker on synthetic output', () => {
  it('treats a pasted newline as text, and stops at the real Enter', async () => {
    const seen: string[] = [];
    const t = new CommandTracker({ cols: 40, rows: 5, onCommand: (c) => seen.push(c.command) });
    t.output(Buffer.from('$ '));
    t.input(Buffer.from('\x1b[200~echo a\recho b\x1b[201~'));
    t.output(Buffer.from('echo a\r\necho b'));
    t.input(Buffer.from('\r'));
    t.output(Buffer.from('\r\na\r\nb\r\n$ '));
    await t.flush();
    // A shell without bracketed paste: read at the newline, from the prompt's row down to the cursor.
    expect(seen).toEqual(['echo a\necho b']);
    t.dispose();
  });

  it('applies backpressure: output() says when to pause, onDrain when to resume, and drops past maxBacklog', async () => {
    let drained = 0;
    const t = new CommandTracker({ cols: 80, rows: 24, onCommand: () => {}, highWaterMark: 1024, maxBacklog: 64 * 1024, onDrain: () => drained++ });
    const block = Buffer.alloc(4096, 0x41);
    expect(t.output(block)).toBe(false);
    for (let i = 0; i < 20; i++) t.output(block);
    expect(t.droppedBytes).toBeGreaterThan(0);
    await t.flush();
    expect(drained).toBe(1);
    expect(t.output(Buffer.from('x'))).toBe(true);
    t.dispose();
    expect(t.output(block)).toBe(true);
    t.input(Buffer.from('\r'));
  });
});
