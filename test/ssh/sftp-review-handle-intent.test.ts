import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { encodePacket, T } from '../ssh-codec/sftp-support.ts';

/**
 * Strict durability records each file-changing request (ssh.sftp.start) before it is forwarded, naming
 * the file. A request through a handle names the file that handle is open on — which the target decides
 * only when it answers the OPEN (sftp-server hands a closed handle's number to the next file opened).
 */
describe('sftp strict: a request through a handle whose file is still being decided', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dir: string;
  beforeAll(async () => {
    w = await startWorld({ config: { audit: { durability: 'strict' } } });
    alice = await w.issue();
    dir = tempDir('vigil-review-handle-intent-');
    fs.chmodSync(dir, 0o777);
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('an fsetstat pipelined behind CLOSE + OPEN never goes on recorded against the file it does not touch', async () => {
    const child = spawn('ssh', [...w.opts(alice), '-s', `${w.sshd.user}@web1@127.0.0.1`, 'sftp'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = Buffer.alloc(0);
    const replies: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => {
      out = Buffer.concat([out, d]);
      while (out.length >= 4 && out.length >= 4 + out.readUInt32BE(0)) {
        replies.push(Buffer.from(out.subarray(4, 4 + out.readUInt32BE(0))));
        out = out.subarray(4 + out.readUInt32BE(0));
      }
    });
    child.stdin.on('error', () => {});
    const exited = new Promise<number | null>((r) => child.once('close', (c) => r(c)));
    const reply = (i: number) => waitFor(() => replies[i], 15_000, `sftp reply ${i}`);

    const first = path.join(dir, 'first.txt');
    const second = path.join(dir, 'second.txt');
    fs.writeFileSync(second, 'second\n', { mode: 0o644 });
    fs.chmodSync(second, 0o644);
    child.stdin.write(encodePacket([{ u8: T.INIT }, { u32: 3 }]));
    await reply(0);
    child.stdin.write(encodePacket([{ u8: T.OPEN }, { u32: 1 }, { str: first }, { u32: 0x02 | 0x08 }, { attrs: { perms: 0o644 } }]));
    const opened = await reply(1);
    expect(opened[0], 'HANDLE reply').toBe(102);
    const handle = opened.subarray(9, 9 + opened.readUInt32BE(5));
    // One write: close first.txt, open second.txt for reading (the target gives it the same handle),
    // then chmod 0600 through that handle.
    child.stdin.write(
      Buffer.concat([
        encodePacket([{ u8: T.CLOSE }, { u32: 2 }, { str: handle }]),
        encodePacket([{ u8: T.OPEN }, { u32: 3 }, { str: second }, { u32: 0x01 }, { attrs: {} }]),
        encodePacket([{ u8: T.FSETSTAT }, { u32: 4 }, { str: handle }, { attrs: { perms: 0o600 } }]),
      ]),
    );
    await waitFor(() => replies.length >= 5 || child.exitCode !== null, 15_000, 'the replies or the end of the channel');
    child.stdin.end();
    await exited;
    const ended = await w.gw.waitForEvent((e) => e.type === 'session.end' && w.eventsOf('ssh.sftp', (s) => s.session_id === e.session_id && s.details.path === first).length > 0);
    const intents = w.eventsOf('ssh.sftp.start', (e) => e.session_id === ended.session_id && e.details.op === 'setstat');
    // The chmod happened to second.txt (or, refused, to nothing): a record of it on first.txt is false.
    const changed = (fs.statSync(second).mode & 0o777) === 0o600;
    for (const i of intents) expect(i.details.path, `chmod of ${changed ? 'second.txt' : 'nothing'} recorded as ${JSON.stringify(i.details)}`).not.toBe(first);
    if (!changed) expect(w.eventsOf('ssh.sftp.undecodable', (e) => e.session_id === ended.session_id), 'a chmod refused by vigil').toHaveLength(1);
    if (changed) expect(w.eventsOf('ssh.sftp', (e) => e.session_id === ended.session_id && e.details.op === 'setstat').map((e) => e.details.path)).toEqual([second]);
  });
});
