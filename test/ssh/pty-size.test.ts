import fs from 'node:fs';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';
import { certClient } from './cert-client.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { waitFor } from '../support/tmp.ts';
import { MAX_TERMINAL_COLS, MAX_TERMINAL_ROWS } from '../../proxies/ssh/terminal/tracker.ts';

const HUGE = 40_000;
const MiB = 1024 * 1024;
const CLAMPED = `${MAX_TERMINAL_ROWS} ${MAX_TERMINAL_COLS}`; // as `stty size` prints it: rows, then cols

/**
 * A client may ask for any terminal size (SSH carries it as 32-bit numbers); the gateway's headless
 * terminal grows with cols × rows, so vigil clamps the size (MAX_TERMINAL_COLS × MAX_TERMINAL_ROWS) for the
 * target, the recording and the command tracker alike. The ssh2 client library sends the sizes (stock
 * OpenSSH sends its real window), through the gateway to a real sshd.
 */
describe('ssh proxy: terminal size', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
  });

  it(`a ${HUGE}×${HUGE} pty request and window change are clamped: the shell works, the target and the recording get the clamped size, memory stays bounded`, async () => {
    const rssBefore = process.memoryUsage().rss;
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const c = await certClient(w, alice);
    try {
      const ch = await new Promise<ssh2.ClientChannel>((resolve, reject) =>
        c.shell({ term: 'xterm', cols: HUGE, rows: HUGE, width: 0, height: 0 }, (err, ch) => (err ? reject(err) : resolve(ch))),
      );
      let out = '';
      ch.on('data', (d: Buffer) => (out += d.toString('utf8')));
      ch.write('stty size; echo first-$((20+1))\n');
      await waitFor(() => out.includes('first-21'), 15_000, `the shell's answer; so far:\n${out}`);
      expect(out).toContain(CLAMPED);

      ch.setWindow(HUGE, HUGE, 0, 0);
      out = '';
      ch.write('stty size; echo second-$((40+2))\n');
      await waitFor(() => out.includes('second-42'), 15_000, `the shell's answer after the window change; so far:\n${out}`);
      expect(out).toContain(CLAMPED);
      expect(out).not.toContain(String(HUGE));

      // The command tracker (the headless terminal) still reads commands at that size.
      await waitFor(() => w.eventsOf('ssh.command').some((e) => String(e.details.command).includes('second-$((40+2))')), 10_000, 'the command recorded');

      // A command with a pty: the target is told the clamped size, and ssh.exec.start keeps what was asked for.
      const exec = await new Promise<ssh2.ClientChannel>((resolve, reject) =>
        c.exec('stty size', { pty: { term: 'xterm', cols: HUGE, rows: HUGE, width: 0, height: 0 } }, (err, ch) => (err ? reject(err) : resolve(ch))),
      );
      let execOut = '';
      exec.on('data', (d: Buffer) => (execOut += d.toString('utf8')));
      await new Promise<void>((r) => exec.once('close', () => r()));
      expect(execOut).toContain(CLAMPED);
      const execStart = await w.gw.waitForEvent((e) => e.type === 'ssh.exec.start' && e.details.command === 'stty size');
      expect(execStart.details).toMatchObject({ pty: true, pty_size_requested: `${HUGE}x${HUGE}` });

      ch.end('exit\n');
      const start = await w.gw.waitForEvent((e) => e.type === 'session.start' && e.actor.user === 'alice');
      c.end();
      await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === start.session_id);

      // The recording shows what the target was told: the clamped size in the header and in the resize.
      const ids = await w.gw.gw.services.recordings.list(start.session_id!);
      const shell = fs.readFileSync(w.gw.gw.services.recordings.pathOf(ids[0]), 'utf8').split('\n');
      expect(JSON.parse(shell[0])).toMatchObject({ width: MAX_TERMINAL_COLS, height: MAX_TERMINAL_ROWS });
      const resizes = shell.slice(1).filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e[1] === 'r');
      expect(resizes.map((e) => e[2])).toEqual([`${MAX_TERMINAL_COLS}x${MAX_TERMINAL_ROWS}`]);
    } finally {
      clearInterval(sampler);
      c.end();
    }
    // A terminal at the asked-for size would take gigabytes (12 bytes a cell); clamped, a few MiB.
    expect(peak - rssBefore, `rss grew ${((peak - rssBefore) / MiB).toFixed(0)} MiB`).toBeLessThan(256 * MiB);
  }, 60_000);
});
