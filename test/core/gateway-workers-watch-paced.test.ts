import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedFiles } from '../support/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { apiRequest, endWorkersTest, issueCredentials, sshThroughGateway, twoSshWorkersConfig } from '../support/workers.ts';
import { fileTail, watchSlowly, watchSocket } from '../support/slow-watcher.ts';

/**
 * Watching a large session from its start when a cluster worker holds it (`vigil serve` with
 * gateway.workers: 2): the recording is read in the worker and relayed over IPC, and a watcher slower than
 * that channel paces the worker (credit granted back as the watcher's connection drains), as it paces a
 * local follow, instead of being cut off as "too slow" once the primary's buffer for it fills.
 * Real parts: OpenSSH client and sshd, `vigil serve` as its own process, its watch WebSocket.
 */

const MiB = 1024 * 1024;
const OUTPUT_BYTES = 24 * MiB;

let sshd: SshdHandle;
let gp: GatewayProcess | undefined;
let base: string;
let alice: IssuedFiles, audrey: IssuedFiles;

beforeAll(async () => {
  base = tempDir('vigil-workers-paced-');
  sshd = await startSshd();
  const config = twoSshWorkersConfig(base, sshd);
  ({ alice, audrey } = await issueCredentials(config, base, { alice: { user: 'alice', roles: ['engineer'] }, audrey: { user: 'audrey', roles: ['auditor'] } }));
  gp = await startGatewayProcess(config, base);
}, 180_000);

afterAll(() => endWorkersTest({ gp, backend: sshd, base }));

/** The recording files under the data dir (the worker writes them; this test has one session). */
const castFiles = (): string[] =>
  (fs.readdirSync(path.join(base, 'data'), { recursive: true }) as string[]).filter((f) => f.endsWith('.cast')).map((f) => path.join(base, 'data', f));

describe('watching a worker\'s large session from the start (gateway.workers: 2)', () => {
  it('a watcher slower than the IPC relay is paced, not cut off: every byte of the recording arrives, in bounded messages', async () => {
    // The output goes through a real session that then stays open (the recording is live).
    const ssh = spawn('ssh', sshThroughGateway(gp!, alice, sshd.user, base, `head -c ${OUTPUT_BYTES} /dev/zero | tr '\\0' A; echo; echo END-MARK; sleep 120`), { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      const file = await waitFor(() => castFiles()[0], 30_000, 'the recording');
      await waitFor(() => fileTail(file, 4096).includes('END-MARK'), 60_000, 'the whole output recorded');
      const recordingBytes = fs.statSync(file).size;
      expect(recordingBytes).toBeGreaterThan(OUTPUT_BYTES);
      const rows = (await apiRequest(gp!.ports.api, audrey, 'GET', '/v1/sessions?live=1')).body.sessions as { id: string; worker_pid?: number }[];
      expect(rows).toHaveLength(1);
      // Held by a worker: the from-start catch-up crosses the IPC channel.
      expect(rows[0].worker_pid).toBeGreaterThan(0);
      expect(rows[0].worker_pid).not.toBe(gp!.pid);

      // Slower than the worker can relay the recording.
      const { closed, largestMessage, outputBytes } = await watchSlowly(gp!.ports.api, rows[0].id, audrey, 'END-MARK', 150_000);
      expect(closed, `watch closed early: ${JSON.stringify(closed)}`).toBeUndefined();
      expect(largestMessage).toBeLessThanOrEqual(1 * MiB);
      // Everything recorded arrived, once: the output (the As, a newline, END-MARK and its newline).
      expect(outputBytes).toBe(OUTPUT_BYTES + 1 + 'END-MARK\n'.length);
      // The watcher left: the worker stopped its relay (and so its follow of the recording).
      await waitFor(() => gp!.output().includes('"why":"the watcher left"'), 20_000, 'the relay stopped after the watcher left');

      // A watcher that stops reading mid-catch-up holds the worker's reader parked (out of credit, the
      // recording open); once it goes, the worker lets go of the recording.
      const readers = () => openedBy(rows[0].worker_pid!, file);
      const writers = readers();
      const stalled = watchSocket(gp!.ports.api, rows[0].id, audrey);
      let stalledClose: number | undefined;
      stalled.on('close', (code) => (stalledClose = code));
      stalled.once('message', () => stalled.pause());
      await waitFor(() => readers() > writers, 20_000, 'the worker reading the recording for the stalled watcher');
      const stops = gp!.output().split('"why":"the watcher left"').length;
      stalled.terminate();
      await waitFor(() => gp!.output().split('"why":"the watcher left"').length > stops, 20_000, 'the relay stopped after the stalled watcher left');
      await waitFor(() => readers() === writers, 20_000, 'the worker closed the recording it read for the stalled watcher');
      // Paced, never cut: it was only ever behind by what the relay's credit allows.
      expect(stalledClose).not.toBe(1013);
    } finally {
      ssh.kill('SIGTERM');
    }
  }, 240_000);
});

/** How many open file descriptors of process `pid` point at `file`. */
function openedBy(pid: number, file: string): number {
  const dir = `/proc/${pid}/fd`;
  let n = 0;
  for (const fd of fs.readdirSync(dir)) {
    try {
      if (fs.readlinkSync(path.join(dir, fd)) === file) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}
