import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from '../ssh/harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { waitFor } from '../support/tmp.ts';
import { fileTail, watchSlowly } from '../support/slow-watcher.ts';

/**
 * Watching a large session from its start: the recording so far is streamed in bounded chunks at the
 * watcher's pace instead of as one message built in memory (which took several times the recording's size,
 * and past ~512 MiB threw inside a promise callback and ended the gateway). Real parts: OpenSSH client, real
 * sshd behind the in-process gateway, its WebSocket watch API with a real auditor certificate.
 */

const MiB = 1024 * 1024;
const OUTPUT_BYTES = 64 * MiB;

let w: SshWorld;
let audrey: IssuedFiles;
let alice: IssuedFiles;

beforeAll(async () => {
  w = await startWorld();
  audrey = await w.gw.issue({ user: 'audrey', roles: ['auditor'] });
  alice = await w.issue();
}, 60_000);

afterAll(async () => {
  await w?.stop();
});

/** Lines of a file, read a MiB at a time (nothing the size of the recording is allocated by the test). */
function countLines(file: string): number {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(MiB);
  let lines = 0;
  try {
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) for (let i = buf.indexOf(0x0a); i !== -1 && i < n; i = buf.indexOf(0x0a, i + 1)) lines++;
  } finally {
    fs.closeSync(fd);
  }
  return lines;
}

describe('watching a large session from the start', () => {
  it('streams a 64 MiB recording in bounded messages at a slow watcher\'s pace: everything arrives once, memory stays bounded', async () => {
    // 64 MiB of output through a real session, which then stays open (the recording is live).
    const ssh = spawn('ssh', [...w.opts(alice), 'web1@127.0.0.1', `head -c ${OUTPUT_BYTES} /dev/zero | tr '\\0' A; echo; echo END-MARK; sleep 120`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    try {
      const start = await w.gw.waitForEvent((e) => e.type === 'session.start' && e.actor.user === 'alice');
      const id = start.session_id!;
      const recordings = w.gw.gw.services.recordings;
      await waitFor(async () => (await recordings.list(id)).length > 0, 10_000, 'the recording');
      const file = recordings.pathOf((await recordings.list(id))[0]);
      await waitFor(() => fs.existsSync(file) && fileTail(file, 4096).includes('END-MARK'), 60_000, 'the whole output recorded');
      const recordingBytes = fs.statSync(file).size;
      expect(recordingBytes).toBeGreaterThan(OUTPUT_BYTES);
      const fileEvents = countLines(file) - 1;

      const baseline = process.memoryUsage().rss;
      let peak = baseline;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
      let watched;
      try {
        watched = await watchSlowly(w.gw.ports.api, id, audrey, 'END-MARK', 120_000);
      } finally {
        clearInterval(sampler);
      }
      const { closed, largestMessage, header, outputBytes, events } = watched;
      expect(closed, `watch closed early: ${JSON.stringify(closed)}`).toBeUndefined();
      expect(largestMessage).toBeLessThanOrEqual(1 * MiB);
      expect(header).toMatchObject({ version: 2 });
      // Everything recorded arrived, once: the output (64 MiB of A, a newline, END-MARK and its newline)
      // and as many events as the file holds.
      expect(outputBytes).toBe(OUTPUT_BYTES + 1 + 'END-MARK\n'.length);
      expect(events).toBe(fileEvents);
      // Memory: below the recording's own size (building one message took about seven times it: 440 MiB for
      // 64 MiB). Typically ~8 MiB; garbage collection timing has reached 32 MiB under load, so the bound is
      // the size itself rather than half of it.
      expect(peak - baseline, `rss grew ${((peak - baseline) / MiB).toFixed(0)} MiB for a ${(recordingBytes / MiB).toFixed(0)} MiB recording`).toBeLessThan(recordingBytes);
    } finally {
      ssh.kill('SIGTERM');
    }
  }, 180_000);
});
