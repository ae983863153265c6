import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { openRecordingStore } from '../../recorder/recordings/index.ts';
import { dataPaths } from '../../src/data-dir.ts';

/**
 * `vigil replay` stopped with Ctrl-C mid-recording: the auditor's terminal must be given back as it was
 * (main screen, visible cursor, default colours, full scroll region), not left in the recorded program's state.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const VIGIL = path.join(ROOT, 'bin/vigil.js');
const ESC = '\x1b';

/** A recording made by the real recorder, whose output then pauses for an hour before its last event. */
async function recordFullScreenThenPause(data: string, sessionId: string): Promise<void> {
  const store = openRecordingStore(dataPaths(data).recordings, { coalesceSeconds: 0, smallWriteDelayMs: 0 });
  const w = store.openAsciicast(sessionId, 0, { width: 80, height: 24, timestamp: 1_764_000_000 });
  w.output(Buffer.from('$ top\r\n'));
  await new Promise((r) => setTimeout(r, 5));
  w.output(Buffer.from(`${ESC}[?1049h${ESC}[?25l${ESC}[2;20r${ESC}[7;31mfull-screen program running`));
  await w.close();
  // The last event an hour later: the player is waiting for it when interrupted.
  const file = store.pathOf(w.id);
  fs.appendFileSync(file, JSON.stringify([3600, 'o', `${ESC}[?1049l${ESC}[?25h$ `]) + '\n');
}

describe('vigil replay interrupted', () => {
  it('Ctrl-C during playback restores the terminal the recording changed, then exits 130', async () => {
    const data = tempDir();
    await recordFullScreenThenPause(data, 'sessint');
    const child = spawn(process.execPath, [VIGIL, 'replay', 'sessint', '--data', data], {
      cwd: ROOT,
      env: { ...process.env, VIGIL_FROM_SOURCE: '1', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    try {
      // Interrupted once the full-screen program is on the auditor's screen.
      await new Promise<void>((resolve, reject) => {
        const check = () => out.includes('full-screen program running') && (child.stdout.off('data', check), resolve());
        child.stdout.on('data', check);
        void exited.then(() => reject(new Error(`replay ended before it was interrupted: ${err}`)));
        check();
      });
      child.kill('SIGINT');
      const { code, signal } = await exited;
      const after = out.slice(out.indexOf('full-screen program running') + 'full-screen program running'.length);
      expect({ code, signal, after }, err).toEqual({ code: 130, signal: null, after: `${ESC}[r${ESC}[?1049l${ESC}[?25h${ESC}[0m` });
      expect(err).toContain('interrupted');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }, 60_000);
});
