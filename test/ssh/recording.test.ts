import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, spawnClient, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import type { AsciicastWriter, RecordingStore } from '../../recorder/types.ts';
import { waitFor } from '../support/tmp.ts';

describe('ssh proxy: recording switches and fail-closed recording', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  beforeAll(async () => {
    w = await startWorld({ config: { recording: { keystrokes: true } } });
    alice = await w.issue();
  }, 30_000);
  afterAll(() => w?.stop());

  it('recording.keystrokes adds i events with what the client sent', async () => {
    const r = await w.run('ssh', [...w.opts(alice), 'web1@127.0.0.1', 'cat'], 'typed-by-alice\n');
    expect(r.stdout).toBe('typed-by-alice\n');
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === 'cat');
    const file = w.gw.gw.services.recordings.pathOf(exec.details.recording as string);
    await waitFor(() => fs.existsSync(file) && fs.readFileSync(file, 'utf8').includes('"o"'), 10_000, 'recording written');
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n').slice(1).map((l) => JSON.parse(l) as [number, string, string]);
    expect(lines.filter((l) => l[1] === 'i').map((l) => l[2]).join('')).toBe('typed-by-alice\n');
    expect(lines.filter((l) => l[1] === 'o').map((l) => l[2]).join('')).toBe('typed-by-alice\n');
  });

  it('a recording that falls behind pauses the target instead of failing (queuedBytes/onDrained)', async () => {
    const store = w.gw.gw.services.recordings as RecordingStore;
    const real = store.openAsciicast.bind(store);
    let pauses = 0;
    let maxQueued = 0;
    // A writer whose "disk" stalls until the session waits for it, then takes 512 KiB every 100 ms: slower
    // than the session however fast or loaded the machine is.
    store.openAsciicast = (sessionId, channel, header) => {
      const writer = real(sessionId, channel, header);
      let queued = 0;
      let waiting: (() => void)[] = [];
      const timer = setInterval(() => {
        if (!waiting.length) return;
        queued = Math.max(0, queued - 512 * 1024);
        if (queued === 0 && waiting.length) {
          const cbs = waiting;
          waiting = [];
          for (const cb of cbs) cb();
        }
      }, 100);
      const slow: AsciicastWriter = {
        binarySummary: () => undefined,
        id: writer.id,
        get queuedBytes() {
          return queued;
        },
        output: (d) => {
          queued += d.length;
          maxQueued = Math.max(maxQueued, queued);
          writer.output(d);
        },
        input: (d) => writer.input(d),
        resize: (c, r) => writer.resize(c, r),
        onError: (cb) => writer.onError(cb),
        onDrained: (cb) => {
          pauses++;
          waiting.push(cb);
        },
        close: () => {
          clearInterval(timer);
          return writer.close();
        },
      };
      return slow;
    };
    try {
      const r = await w.run('ssh', [...w.opts(alice), 'web1@127.0.0.1', 'yes abcdefghijklmnopqrstuvwxyz | head -c 24M']);
      expect(r.code).toBe(0);
      expect(r.stdoutBuf.length).toBe(24 * 1024 * 1024);
    } finally {
      store.openAsciicast = real;
    }
    expect(pauses).toBeGreaterThan(0);
    // Bounded by the high-water mark plus what was in flight (SSH window and stream buffers).
    expect(maxQueued).toBeLessThan(16 * 1024 * 1024);
  });

  it('a recording that cannot be written ends the session (fail closed) and says why', async () => {
    const store = w.gw.gw.services.recordings as RecordingStore;
    const real = store.openAsciicast.bind(store);
    // Simulate the disk failing under the writer: it reports an error on its first output.
    store.openAsciicast = (sessionId, channel, header) => {
      const writer = real(sessionId, channel, header);
      let onError: ((e: Error) => void) | undefined;
      const failing: AsciicastWriter = {
        binarySummary: () => undefined,
        id: writer.id,
        output: (d) => {
          writer.output(d);
          onError?.(new Error('ENOSPC: no space left on device (simulated)'));
        },
        input: (d) => writer.input(d),
        resize: (c, r) => writer.resize(c, r),
        onError: (cb) => (onError = cb),
        get queuedBytes() {
          return writer.queuedBytes;
        },
        onDrained: (cb) => writer.onDrained(cb),
        close: () => writer.close(),
      };
      return failing;
    };
    try {
      const live = spawnClient('ssh', [...w.opts(alice), 'web1@127.0.0.1', 'echo first; sleep 20; echo never']);
      const code = await live.exited;
      expect(code).toBe(255);
      expect(live.stdout()).not.toContain('never');
      expect(live.stderr()).toMatch(/vigil: vigil cannot record this session/);
      const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.details.reason === 'recording_failed');
      expect(end.outcome).toBe('failure');
    } finally {
      store.openAsciicast = real;
    }
  });
});
