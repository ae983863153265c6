import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * Legacy scp: the sink's answer to a file or directory header decides how it reads what follows (a refused
 * file's "data" is read as directives). A source that does not wait for that answer must not get bytes to
 * the target that vigil counted as one thing and the target did as another.
 */
describe('legacy scp: a source that sends file data before the sink accepted the file', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dir: string;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
    dir = tempDir('vigil-review-scp-refused-');
    fs.chmodSync(dir, 0o777);
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('every file the target created is on record, or the channel stops before it is created', async () => {
    const sink = path.join(dir, 'sink');
    fs.mkdirSync(path.join(sink, 'blocker'), { recursive: true });
    fs.chmodSync(sink, 0o777);
    const command = `scp -t ${sink}`;
    // The sink refuses "blocker" (a directory: open(2) fails with EISDIR) and reads on: the bytes vigil
    // would count as blocker's 18 data bytes are, to the sink, the header and data of another file.
    const hidden = 'C0644 5 evil\nhello';
    const input = Buffer.from(`C0644 ${hidden.length} blocker\n${hidden}\0`);
    await w.run('ssh', [...w.opts(alice), `${w.sshd.user}@web1@127.0.0.1`, command], input);
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === command);
    await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === exec.session_id);
    const landed = fs.readdirSync(sink).filter((n) => n !== 'blocker');
    const recorded = w.eventsOf('ssh.scp', (e) => e.session_id === exec.session_id && e.details.op === 'file').map((e) => e.details.path);
    for (const name of landed) expect(recorded, `${name} was created on the target`).toContain(name);
    await waitFor(() => w.eventsOf('ssh.scp.undecodable', (e) => e.session_id === exec.session_id).length > 0, 10_000, 'ssh.scp.undecodable');
  });
});

/**
 * OpenSSH's scp reads a directive or error line into a 2048-byte buffer: a longer line is cut after 2047
 * bytes and its rest read as the next directive. vigil must see the lines the sink sees.
 */
describe('legacy scp: a line longer than the sink reads as one', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dir: string;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
    dir = tempDir('vigil-review-scp-long-');
    fs.chmodSync(dir, 0o777);
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a file header hidden after 2047 bytes of an error line is on record, or never reaches the sink', async () => {
    const sink = path.join(dir, 'sink');
    fs.mkdirSync(sink);
    fs.chmodSync(sink, 0o777);
    const command = `scp -t ${sink}`;
    // To vigil one error line; to the sink an error line of 2047 bytes, then the header of "evil" (created).
    const input = Buffer.from(`\x01${'x'.repeat(2046)}C0644 0 evil\n`);
    await w.run('ssh', [...w.opts(alice), `${w.sshd.user}@web1@127.0.0.1`, command], input);
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === command);
    await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === exec.session_id);
    const landed = fs.readdirSync(sink);
    const recorded = w.eventsOf('ssh.scp', (e) => e.session_id === exec.session_id && e.details.op === 'file').map((e) => e.details.path);
    for (const name of landed) expect(recorded, `${name} was created on the target`).toContain(name);
    await waitFor(() => w.eventsOf('ssh.scp.undecodable', (e) => e.session_id === exec.session_id).length > 0, 10_000, 'ssh.scp.undecodable');
  });

  it('a file name of the longest line the sink reads whole still goes through, on record', async () => {
    const sink = path.join(dir, 'sink-ok');
    fs.mkdirSync(sink);
    fs.chmodSync(sink, 0o777);
    const command = `scp -t ${sink}`;
    // 2046 bytes before the newline: the sink reads it whole (and refuses the name: too long for the file system).
    const name = 'n'.repeat(2046 - 'C0644 0 '.length);
    const r = await w.run('ssh', [...w.opts(alice), `${w.sshd.user}@web1@127.0.0.1`, command], Buffer.from(`C0644 0 ${name}\n`));
    expect(r.stdout, r.stderr).toContain('File name too long');
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === command);
    const file = await w.gw.waitForEvent((e) => e.type === 'ssh.scp' && e.session_id === exec.session_id && e.details.op === 'file');
    expect(file.details.path).toBe(name);
    expect(w.eventsOf('ssh.scp.undecodable', (e) => e.session_id === exec.session_id)).toHaveLength(0);
  });
});
