import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from '../ssh/harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { runCliCaptured } from '../support/cli.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { openRecordingStore } from '../../recorder/recordings/index.ts';

/**
 * A recording kept on local disk (the default storage) gets its SHA-256 and size into the audit log when the
 * gateway closes its file (recording.closed), so `vigil replay` and evidence bundles detect a local copy
 * altered afterwards, as they do for recordings in object storage (recording.stored).
 */
const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

describe('recording.closed: the SHA-256 of a local recording in the audit log', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dir: string;
  let configFile: string;
  beforeAll(async () => {
    dir = tempDir('vigil-rec-closed-');
    configFile = path.join(dir, 'vigil.json');
    w = await startWorld({ configFile });
    alice = await w.issue();
  }, 30_000);
  afterAll(() => w?.stop());

  /** Run `command` through the gateway; its session id and its recording.closed event. */
  async function session(command: string) {
    const r = await w.run('ssh', [...w.opts(alice), 'web1@127.0.0.1', command]);
    expect(r.code).toBe(0);
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === command);
    const sid = exec.session_id!;
    const closed = await w.gw.waitForEvent((e) => e.type === 'recording.closed' && e.session_id === sid);
    return { sid, closed, file: w.gw.gw.services.recordings.pathOf(exec.details.recording as string), recording: exec.details.recording as string };
  }

  it('is logged when the channel ends, with the SHA-256 and size of the file on disk; replay verifies against it and fails on one altered byte', async () => {
    const { sid, closed, file, recording } = await session('echo closed-marker-$((6*7))');
    const onDisk = fs.readFileSync(file);
    expect(onDisk.toString()).toContain('closed-marker-42');
    expect(closed.outcome).toBe('success');
    expect(closed.details).toEqual({ recording, channel: 0, sha256: sha256(onDisk), bytes: onDisk.length });

    const ok = await runCliCaptured(['replay', sid, '--print', '--data', w.gw.dataDir]);
    expect(ok.err).toMatch(/^vigil: \S+\/ch0\.cast: verified: matches the SHA-256 its recording\.closed event \(seq \d+\) logged/);
    expect(ok.code).toBe(0);
    expect(ok.out).toContain('closed-marker-42');

    // One byte of the output changed (same size): the copy no longer matches what the gateway logged.
    const at = onDisk.indexOf('closed-marker-42') + 'closed-marker-'.length;
    const altered = Buffer.from(onDisk);
    altered[at] = '7'.charCodeAt(0);
    fs.writeFileSync(file, altered);
    const bad = await runCliCaptured(['replay', sid, '--print', '--data', w.gw.dataDir]);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain(`does not match the SHA-256 its recording.closed event`);
    expect(bad.err).toContain(`logged ${sha256(onDisk)} (${onDisk.length} bytes), read ${sha256(altered)}`);
    // --print shows nothing of a recording that does not match.
    expect(bad.out).not.toContain('closed-marker-72');
  }, 60_000);

  it('an evidence bundle checks a local recording against recording.closed: verified when intact, refused when altered', async () => {
    const { sid, file, closed } = await session('echo bundle-marker');
    const bundle = path.join(dir, `${sid}.tar`);
    // A bundle ends on a signed checkpoint: until one covers the session's last events, `audit bundle` says
    // to wait and run it again, which is what this does.
    const makeBundle = () =>
      waitFor(async () => {
        const m = await runCliCaptured(['audit', 'bundle', '--config', configFile, '--session', sid, '--since', '1h', '--out', bundle]);
        return m.code === 0 || !/not signed by a checkpoint yet/.test(m.err) ? m : undefined;
      }, 30_000, 'a checkpoint covering the session');
    const made = await makeBundle();
    expect(made.code, made.err).toBe(0);
    const verified = await runCliCaptured(['audit', 'verify-bundle', bundle, '--json']);
    expect(verified.code, verified.err).toBe(0);
    const report = JSON.parse(verified.out) as { ok: boolean; recordings: number; recordings_stored: number };
    expect(report).toMatchObject({ ok: true, recordings: 1, recordings_stored: 1 });

    const altered = fs.readFileSync(file);
    altered[altered.indexOf('bundle-marker')] = 'B'.charCodeAt(0);
    fs.writeFileSync(file, altered);
    fs.rmSync(bundle, { force: true });
    const refused = await makeBundle();
    expect(refused.code).not.toBe(0);
    expect(refused.err).toContain(`does not match what recording.closed (seq`);
    expect(refused.err).toContain(`logged ${closed.details.sha256 as string}`);
  }, 90_000);

  it('a recording that fails is logged with outcome failure, the error, and the hash of what reached the disk', async () => {
    // The recordings directory replaced by a file: the next recording cannot be created (a real failure
    // of the file system, not a simulated one), so the session is ended and nothing reached the disk.
    const recordings = path.join(w.gw.dataDir, 'recordings');
    fs.rmSync(recordings, { recursive: true, force: true });
    fs.writeFileSync(recordings, '');
    try {
      await w.run('ssh', [...w.opts(alice), 'web1@127.0.0.1', 'echo fails; sleep 5']);
      const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.details.reason === 'recording_failed', 15_000);
      const closed = await w.gw.waitForEvent((e) => e.type === 'recording.closed' && e.session_id === end.session_id);
      expect(closed.outcome).toBe('failure');
      expect(closed.details).toMatchObject({ channel: 0, bytes: 0, sha256: sha256(Buffer.alloc(0)) });
      expect(closed.details.error).toMatch(/ENOTDIR|EEXIST/);
    } finally {
      fs.rmSync(recordings, { force: true });
      fs.mkdirSync(recordings, { mode: 0o700 });
    }
  }, 60_000);

  it('the writer hashes exactly the bytes in the file, also when it failed part way', async () => {
    const store = openRecordingStore(tempDir('vigil-rec-digest-'), { maxQueuedBytes: 1024 * 1024 });
    const cast = store.openAsciicast('digest', 0, { width: 80, height: 24, timestamp: 0 });
    cast.output('first part, written\r\n');
    await waitFor(() => fs.existsSync(store.pathOf(cast.id)) && fs.readFileSync(store.pathOf(cast.id), 'utf8').includes('first part'), 10_000, 'first write');
    let failure: Error | undefined;
    cast.onError((e) => (failure = e));
    // More than the writer may fall behind in one go: the recording fails, and nothing more is written.
    cast.output(Buffer.alloc(2 * 1024 * 1024, 'x'));
    const written = await cast.close();
    const onDisk = fs.readFileSync(store.pathOf(cast.id));
    expect(failure?.message).toMatch(/fell more than 1048576 bytes behind/);
    expect(written).toEqual({ sha256: sha256(onDisk), bytes: onDisk.length, error: failure });
    expect(onDisk.toString()).toContain('first part, written');
    // Closing again answers the same.
    expect(await cast.close()).toEqual(written);
  });
});
