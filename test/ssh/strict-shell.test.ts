import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { interactive, type SshWorld } from './harness.ts';
import { useOracleWorld } from './pty-driver.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { CommandTracker, type SubmittedLine } from '../../proxies/ssh/terminal/index.ts';
import { PtyShell } from '../ssh-codec/pty-shell.ts';
import { holdDurability } from '../support/durability.ts';

const sessionOf = async (w: SshWorld, start: AuditEvent) => {
  await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === start.session_id);
  return w.gw.events.filter((e) => e.session_id === start.session_id);
};

/**
 * Strict durability for interactive shells: the line an Enter submits is on record (`ssh.command.start`)
 * before the Enter reaches the shell; nothing of it in batched mode.
 */
describe('strict durability: pty shell lines are on record before their Enter is forwarded', () => {
  const world = useOracleWorld('vigil-strict-shell-', { worldWritableDir: true, config: { audit: { durability: 'strict' } } });

  it('touch MARKER does not run while its ssh.command.start is held; runs after, start before ssh.command', async () => {
    const marker = path.join(world.dir, 'held-marker');
    const command = `touch ${marker}; echo touched`;
    const s = interactive(world.w, world.alice);
    try {
      await s.until(world.oracle.prompt);
      const events = world.w.gw.gw.services.events;
      const hold = holdDurability(events);
      try {
        s.send(`${command}\r`);
        const start = await world.w.gw.waitForEvent((e) => e.type === 'ssh.command.start' && e.details.command === command);
        expect(start.details).toMatchObject({ source: 'terminal', prompt: world.oracle.prompt.trim() });
        // The record is written; the Enter waits for the test's release.
        await new Promise((r) => setTimeout(r, 500));
        expect(fs.existsSync(marker)).toBe(false);
        hold.release();
        // The echo of the typed line (it ends in 'touched' too), then the command's output.
        await s.until(command);
        await s.until('touched\r\n');
        expect(fs.existsSync(marker)).toBe(true);
      } finally {
        hold.restore();
      }
      await s.until(world.oracle.prompt);
      s.send('exit\r');
      await s.c.exited;
      const start = world.w.gw.events.find((e) => e.type === 'ssh.command.start' && e.details.command === command)!;
      const all = await sessionOf(world.w, start);
      const cmd = all.find((e) => e.type === 'ssh.command' && e.details.command === command);
      expect(cmd).toBeDefined();
      expect(all.indexOf(start)).toBeLessThan(all.indexOf(cmd!));
      // Every submitted line got its intent (here: the command and `exit`).
      expect(all.filter((e) => e.type === 'ssh.command.start').map((e) => e.details.command)).toEqual([command, 'exit']);
    } finally {
      s.c.child.kill('SIGKILL');
    }
  });

  it('a rejected record: the line never reaches the shell, stderr says why, the session ends audit_unavailable', async () => {
    const marker = path.join(world.dir, 'refused-marker');
    const s = interactive(world.w, world.alice);
    const events = world.w.gw.gw.services.events;
    const real = events.beforeForward.bind(events);
    try {
      await s.until(world.oracle.prompt);
      const mark = world.w.gw.events.length;
      events.beforeForward = () => Promise.reject(new Error('ENOSPC: no space left on device'));
      s.send(`touch ${marker}\r`);
      const code = await s.c.exited;
      events.beforeForward = real;
      expect(code).not.toBe(0);
      expect(s.c.stdout() + s.c.stderr()).toContain('vigil: audit log unavailable, command not run');
      const end = await world.w.gw.waitForEvent((e) => world.w.gw.events.indexOf(e) >= mark && e.type === 'session.end');
      expect(end.details.reason).toBe('audit_unavailable');
      expect(fs.existsSync(marker)).toBe(false);
    } finally {
      events.beforeForward = real;
      s.c.child.kill('SIGKILL');
    }
  });

  it('a password typed at a no-echo prompt is in no event; its line is on record as hidden', async () => {
    const secrets = ['Str1ct-S3cret-pw!', 'v4lue-typed-h1dden', 't0ken-n0-pr0mpt'];
    const s = interactive(world.w, world.alice);
    try {
      await s.until(world.oracle.prompt);
      s.send('read -s -p "Password: " pw; echo len=${#pw}\r');
      // The echo of the typed line holds 'Password: ' too: past it, the next one is read's prompt.
      await s.until('echo len=${#pw}');
      await s.until('Password: ');
      // As a person would: a moment after the prompt. Typed within microseconds of it, the reply can beat
      // `read -s` turning echo off, and then the tty itself shows it (on screen, so in the record too).
      await new Promise((r) => setTimeout(r, 300));
      s.send(`${secrets[0]}\r`);
      await s.until('len=17');
      await s.until(world.oracle.prompt);
      // A no-echo prompt that does not look like a password one, typed key by key: no echo shows, so hidden.
      s.send('read -s -p "Value: " v; echo vlen=${#v}\r');
      await s.until('echo vlen=${#v}');
      await s.until('Value: ');
      await new Promise((r) => setTimeout(r, 300));
      for (const k of `${secrets[1]}\r`) {
        s.send(k);
        await new Promise((r) => setTimeout(r, 5));
      }
      await s.until('vlen=18');
      await s.until(world.oracle.prompt);
      // No prompt at all on the line: nothing vouches for it being a command. Echo goes off before the
      // cue is printed (with `read -s` a fast typist beats it and the tty shows the token, as it would).
      s.send('stty -echo; echo enter the token; read tok; stty echo; echo tlen=${#tok}\r');
      await s.until('enter the token\r\n');
      s.send(`${secrets[2]}\r`);
      await s.until('tlen=15');
      await s.until(world.oracle.prompt);
      s.send('exit\r');
      await s.c.exited;
      const start = world.w.gw.events.find((e) => e.type === 'ssh.command.start' && e.details.command === 'read -s -p "Password: " pw; echo len=${#pw}')!;
      expect(start).toBeDefined();
      const all = await sessionOf(world.w, start);
      const text = JSON.stringify(all);
      for (const secret of secrets) expect(text).not.toContain(secret);
      const hidden = all.filter((e) => e.type === 'ssh.command.start' && e.details.hidden === true);
      expect(hidden.map((e) => e.details.prompt)).toEqual(['Password:', 'Value:', '']);
      for (const h of hidden) expect(h.details.command).toBeUndefined();
    } finally {
      s.c.child.kill('SIGKILL');
    }
  });
});

describe('strict durability with recording.keystrokes: a held chunk still reaches the recording', () => {
  const world = useOracleWorld('vigil-strict-rec-', { worldWritableDir: true, config: { audit: { durability: 'strict' }, recording: { keystrokes: true } } });

  it('the keystrokes of a line held for its record are in the recording once forwarded', async () => {
    const s = interactive(world.w, world.alice);
    try {
      await s.until(world.oracle.prompt);
      s.send('echo recorded-input\r');
      await s.until('recorded-input\r\n');
      await s.until(world.oracle.prompt);
      s.send('exit\r');
      await s.c.exited;
    } finally {
      s.c.child.kill('SIGKILL');
    }
    const start = await world.w.gw.waitForEvent((e) => e.type === 'ssh.command.start' && e.details.command === 'echo recorded-input');
    await sessionOf(world.w, start);
    const file = world.w.gw.gw.services.recordings.pathOf(String(start.details.recording));
    const input = () =>
      fs.readFileSync(file, 'utf8').trim().split('\n').slice(1).map((l) => JSON.parse(l) as [number, string, string]).filter((l) => l[1] === 'i').map((l) => l[2]).join('');
    await waitFor(() => input().includes('exit\r'), 10_000, 'recording flushed').catch(() => undefined);
    expect(input()).toContain('echo recorded-input\r');
    expect(input()).toContain('exit\r');
  });
});

describe('batched durability: no ssh.command.start', () => {
  const world = useOracleWorld('vigil-batched-shell-');

  it('commands are reported as before, with no intent records', async () => {
    const s = interactive(world.w, world.alice);
    try {
      await s.until(world.oracle.prompt);
      s.send('echo batched-one\r');
      await s.until('batched-one\r\n');
      await s.until(world.oracle.prompt);
      s.send('exit\r');
      await s.c.exited;
      const cmd = await world.w.gw.waitForEvent((e) => e.type === 'ssh.command' && e.details.command === 'echo batched-one');
      const all = await sessionOf(world.w, cmd);
      expect(all.filter((e) => e.type === 'ssh.command').map((e) => e.details.command)).toEqual(['echo batched-one', 'exit']);
      expect(world.w.gw.events.filter((e) => e.type === 'ssh.command.start')).toHaveLength(0);
    } finally {
      s.c.child.kill('SIGKILL');
    }
  });
});

/** The tracker's view of a line at its Enter (before the shell has it), on a real bash. */
describe('CommandTracker onSubmit on a real bash', () => {
  let dir: string;
  let sh: PtyShell;
  let tracker: CommandTracker;
  const submitted: SubmittedLine[] = [];
  beforeAll(async () => {
    dir = tempDir('vigil-submit-');
    tracker = new CommandTracker({ cols: 80, rows: 24, onCommand: () => undefined, onSubmit: (l) => submitted.push(l) });
    sh = new PtyShell({ cwd: dir, cols: 80, rows: 24, env: { PS1: 'vigil$ ', HISTFILE: path.join(dir, '.hist') } });
    sh.onOutput((b) => tracker.output(b));
    await sh.waitForOutput('vigil$');
    await sh.settle();
  });
  afterAll(async () => {
    await sh?.close();
    tracker?.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  /** What the relay does: the tracker sees the chunk first; the Enter reaches the shell only after flush(). */
  async function send(chunk: string): Promise<SubmittedLine[]> {
    const from = submitted.length;
    tracker.input(Buffer.from(chunk));
    await tracker.flush();
    sh.write(chunk);
    await sh.settle(100);
    return submitted.slice(from);
  }

  it('exact keystrokes give the command; history recall gives the raw keys; a line typed ahead is hidden', async () => {
    expect(await send('echo first-line\r')).toEqual([{ prompt: 'vigil$', command: 'echo first-line', at: 15 }]);
    expect(await send('\x1b[A\r')).toEqual([{ prompt: 'vigil$', keys: '\x1b[A', exact: false, at: 3 }]);
    // Two lines in one chunk: the second may be read by whatever the first runs, so it carries no text to
    // record (only its keystroke rebuild, `unsure`, for a guardrail to check).
    expect(await send('echo two-a\recho two-b\r')).toEqual([
      { prompt: 'vigil$', command: 'echo two-a', at: 10 },
      { prompt: 'vigil$', hidden: true, at: 21, unsure: { text: 'echo two-b', exact: true } },
    ]);
    // Nothing typed: nothing submitted.
    expect(await send('\r')).toEqual([]);
  });
});
