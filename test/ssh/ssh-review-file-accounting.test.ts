import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { encodePacket, T } from '../ssh-codec/sftp-support.ts';

/**
 * What the target did, compared with what vigil recorded: every byte written through sftp and every file
 * name scp carried must be on record as the target saw it.
 */

/** An sftp subsystem channel through `ssh -s`, packets in as bytes, replies parsed. */
function sftpChannel(args: string[]) {
  const child = spawn('ssh', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = Buffer.alloc(0);
  const replies: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => {
    out = Buffer.concat([out, d]);
    while (out.length >= 4 && out.length >= 4 + out.readUInt32BE(0)) {
      const n = out.readUInt32BE(0);
      replies.push(Buffer.from(out.subarray(4, 4 + n)));
      out = out.subarray(4 + n);
    }
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin.on('error', () => {});
  const exited = new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  return {
    child,
    exited,
    stderr: () => err,
    send: (b: Buffer) => child.stdin.write(b),
    reply: (i: number) => waitFor(() => replies[i], 15_000, `sftp reply ${i}`),
  };
}

describe('sftp: writes the target performed whose replies never came back', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dir: string;
  let holdFile: string;
  beforeAll(async () => {
    dir = tempDir('vigil-review-sftp-');
    fs.chmodSync(dir, 0o777);
    holdFile = path.join(dir, 'hold-replies');
    // The target's sftp-server does its work, but once `holdFile` exists its replies are lost on the way
    // back (a target or link that dies after acting): only the requests tell what was done.
    const holder = path.join(dir, 'holder.mjs');
    fs.writeFileSync(holder, `import fs from 'node:fs';\nprocess.stdin.on('data', (c) => { if (!fs.existsSync(${JSON.stringify(holdFile)})) process.stdout.write(c); });\n`);
    const wrapper = path.join(dir, 'sftp-wrapper.sh');
    fs.writeFileSync(wrapper, `#!/bin/sh\n/usr/lib/openssh/sftp-server | ${process.execPath} ${holder}\n`, { mode: 0o755 });
    w = await startWorld({ sshd: { overrides: { Subsystem: `sftp ${wrapper}` } } });
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the close record accounts for every byte the target wrote, confirmed or not', async () => {
    const s = sftpChannel([...w.opts(alice), '-s', `${w.sshd.user}@web1@127.0.0.1`, 'sftp']);
    s.send(encodePacket([{ u8: T.INIT }, { u32: 3 }]));
    await s.reply(0);
    const target = path.join(dir, 'uploaded.bin');
    // WRITE | CREAT | TRUNC
    s.send(encodePacket([{ u8: T.OPEN }, { u32: 1 }, { str: target }, { u32: 0x02 | 0x08 | 0x10 }, { attrs: {} }]));
    const opened = await s.reply(1);
    expect(opened[0], 'HANDLE reply').toBe(102);
    const handle = opened.subarray(9, 9 + opened.readUInt32BE(5));
    fs.writeFileSync(holdFile, '');
    const chunk = Buffer.alloc(4096, 0x61);
    const writes = 8;
    for (let i = 0; i < writes; i++) {
      s.send(encodePacket([{ u8: T.WRITE }, { u32: 10 + i }, { str: handle }, { u64: i * chunk.length }, { str: chunk }]));
    }
    // The target wrote it all.
    await waitFor(() => fs.existsSync(target) && fs.statSync(target).size === writes * chunk.length, 15_000, 'the target to write the file');
    s.child.stdin.end();
    await s.exited;
    const close = await w.gw.waitForEvent((e) => e.type === 'ssh.sftp' && e.details.op === 'close' && e.details.path === target);
    expect(close.outcome).toBe('unknown');
    const recorded = Number(close.details.bytes_written) + Number(close.details.bytes_written_unconfirmed ?? 0);
    expect(recorded, JSON.stringify(close.details)).toBe(fs.statSync(target).size);
  });
});

describe('legacy scp: file names that are not UTF-8', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dir: string;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
    dir = tempDir('vigil-review-scp-');
    fs.chmodSync(dir, 0o777);
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('two files whose names differ only in non-UTF-8 bytes are recorded under distinct, exact names', async () => {
    const local = path.join(dir, 'src');
    fs.mkdirSync(local);
    // Latin-1 "café.txt" and "cafè.txt": invalid UTF-8, distinct files on the target.
    for (const byte of [0xe9, 0xe8]) fs.writeFileSync(Buffer.concat([Buffer.from(`${local}/caf`), Buffer.from([byte]), Buffer.from('.txt')]), `${byte}\n`);
    const sink = path.join(dir, 'sink');
    fs.mkdirSync(sink);
    const r = await w.run('scp', [...w.opts(alice), '-O', '-r', local, `web1@127.0.0.1:${sink}`]);
    expect(r.code, r.stderr).toBe(0);
    const landed = fs.readdirSync(path.join(sink, 'src'), { encoding: 'buffer' }).map((b) => b.toString('latin1')).sort();
    expect(landed).toEqual(['caf\xe8.txt', 'caf\xe9.txt']);
    const files = () => w.eventsOf('ssh.scp', (e) => e.details.op === 'file');
    await waitFor(() => files().length >= 2, 10_000, 'two ssh.scp file events');
    expect(files().map((e) => e.details.path).sort()).toEqual(['src/caf\\xe8.txt', 'src/caf\\xe9.txt']);
  });
});

describe('legacy scp: files the target wrote whose acknowledgements never came back', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dir: string;
  let holdFile: string;
  let scp: string;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
    dir = tempDir('vigil-review-scp-held-');
    fs.chmodSync(dir, 0o777);
    holdFile = path.join(dir, 'hold-replies');
    // The target's own scp, whose answers are lost on the way back once `holdFile` exists (a target or
    // link that dies after acting). Named scp, so vigil follows it as the legacy protocol.
    const holder = path.join(dir, 'holder.mjs');
    fs.writeFileSync(holder, `import fs from 'node:fs';\nprocess.stdin.on('data', (c) => { if (!fs.existsSync(${JSON.stringify(holdFile)})) process.stdout.write(c); });\n`);
    fs.mkdirSync(path.join(dir, 'bin'));
    scp = path.join(dir, 'bin', 'scp');
    fs.writeFileSync(scp, `#!/bin/sh\n/usr/bin/scp "$@" | ${process.execPath} ${holder}\n`, { mode: 0o755 });
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('every file and directory the sink created has an ssh.scp event', async () => {
    const sink = path.join(dir, 'sink');
    fs.mkdirSync(sink);
    const command = `${scp} -r -t ${sink}`;
    // A source that waits for each header's answer, as the protocol requires (the sink reads a refused
    // file's data as directives); the answers stop coming back once the target wrote sub/c.txt.
    const child = spawn('ssh', [...w.opts(alice), `${w.sshd.user}@web1@127.0.0.1`, command], { stdio: ['pipe', 'pipe', 'pipe'] });
    let answers = Buffer.alloc(0);
    child.stdout.on('data', (d: Buffer) => (answers = Buffer.concat([answers, d])));
    child.stdin.on('error', () => {});
    const exited = new Promise<number | null>((r) => child.once('close', (c) => r(c)));
    const answered = (n: number) => waitFor(() => answers.length >= n, 15_000, `${n} scp answers (got ${JSON.stringify(answers.toString())})`);
    await answered(1);
    child.stdin.write('C0644 3 a.txt\n');
    await answered(2);
    child.stdin.write('abc\0');
    await answered(3);
    child.stdin.write('D0755 0 sub\n');
    await answered(4);
    child.stdin.write('C0644 2 c.txt\n');
    await answered(5);
    fs.writeFileSync(holdFile, '');
    child.stdin.write('hi\0E\n');
    await waitFor(() => fs.existsSync(path.join(sink, 'sub/c.txt')) && fs.readFileSync(path.join(sink, 'sub/c.txt'), 'utf8') === 'hi', 15_000, 'the target to write sub/c.txt');
    child.stdin.end();
    await exited;
    expect(answers.toString()).toBe('\0\0\0\0\0');
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === command);
    await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === exec.session_id);
    const recorded = w.eventsOf('ssh.scp', (e) => e.session_id === exec.session_id).map((e) => `${e.details.path}:${e.details.result}`);
    expect(recorded).toEqual(['a.txt:ok', 'sub:ok', 'sub/c.txt:incomplete']);
  });
});

describe('sftp: the mode a file is created with', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dir: string;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
    dir = tempDir('vigil-review-sftp-mode-');
    fs.chmodSync(dir, 0o777);
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('an OPEN that creates a setuid file records the permissions it asked for', async () => {
    const s = sftpChannel([...w.opts(alice), '-s', `${w.sshd.user}@web1@127.0.0.1`, 'sftp']);
    s.send(encodePacket([{ u8: T.INIT }, { u32: 3 }]));
    await s.reply(0);
    const target = path.join(dir, 'setuid-tool');
    // WRITE | CREAT | EXCL, permissions 04755: the target's open(2) applies them.
    s.send(encodePacket([{ u8: T.OPEN }, { u32: 1 }, { str: target }, { u32: 0x02 | 0x08 | 0x20 }, { attrs: { perms: 0o4755 } }]));
    expect((await s.reply(1))[0], 'HANDLE reply').toBe(102);
    s.child.stdin.end();
    await s.exited;
    expect(fs.statSync(target).mode & 0o7777).toBe(0o4755);
    const open = await w.gw.waitForEvent((e) => e.type === 'ssh.sftp' && e.details.op === 'open' && e.details.path === target);
    expect(open.details.attrs, JSON.stringify(open.details)).toEqual({ permissions: '4755' });
  });
});
