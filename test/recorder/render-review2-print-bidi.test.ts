import { describe, expect, it } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { openRecordingStore } from '../../recorder/recordings/index.ts';
import { dataPaths } from '../../src/data-dir.ts';

/**
 * `vigil replay --print` shows the text a session left on its screen. A terminal session draws left to right
 * whatever it prints, but the auditor reads the printed text in a bidi-aware terminal, editor or browser:
 * a right-to-left override (U+202E) or isolate would show the command reordered from what was run, and a
 * line or paragraph separator (U+2028/2029) would break a line that was one. Those are shown escaped.
 */

async function record(data: string, sessionId: string, output: string): Promise<void> {
  const store = openRecordingStore(dataPaths(data).recordings, { coalesceSeconds: 0, smallWriteDelayMs: 0 });
  const w = store.openAsciicast(sessionId, 0, { width: 80, height: 24, timestamp: 1_764_000_000 });
  w.output(Buffer.from(output));
  await w.close();
}

describe('vigil replay --print: text direction controls are shown, not obeyed', () => {
  it('escapes bidi overrides, isolates, marks and line separators, keeps other text as it is', async () => {
    const data = tempDir();
    // Displayed by a bidi-aware viewer as `$ rm -rf /tmp/cache #hsup` … reversed: the reader cannot tell what ran.
    await record(data, 'sessbidi', '$ echo ok \u202e# /tmp/x\u202c; rm -rf / \u2066x\u2069\u200f\u2028next 漢字 🙂\r\n$ ');
    const r = await runCliCaptured(['replay', 'sessbidi', '--print', '--data', data]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe('$ echo ok \\u202e# /tmp/x\\u202c; rm -rf / \\u2066x\\u2069\\u200f\\u2028next 漢字 🙂\n$\n');
  });
});
