import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

describe('ssh proxy relay (stock OpenSSH client → vigil → real sshd)', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dir: string;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
    dir = tempDir('vigil-ssh-files-');
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('exec relays stdout, stderr and the exit code; session and exec events carry them', async () => {
    const r = await w.run('ssh', [...w.opts(alice), `${w.sshd.user}@web1@127.0.0.1`, 'echo out; echo err >&2; exit 7']);
    expect(r.stdout).toBe('out\n');
    expect(r.stderr).toContain('err\n');
    expect(r.code).toBe(7);
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === 'echo out; echo err >&2; exit 7');
    expect(exec.details.exit_status).toBe(7);
    expect(exec.outcome).toBe('failure');
    expect(exec.actor.user).toBe('alice');
    expect(exec.target).toMatchObject({ name: 'web1', protocol: 'ssh', login: w.sshd.user });
    expect(typeof exec.details.recording).toBe('string');
    const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === exec.session_id);
    expect(end.details).toMatchObject({ reason: 'client_closed', login: w.sshd.user, channel_kinds: ['exec'], exit_status: 7, recordings: [exec.details.recording] });
    expect(end.details.bytes_to_client).toBeGreaterThanOrEqual(8);
    const start = w.eventsOf('session.start', (e) => e.session_id === exec.session_id);
    expect(start).toHaveLength(1);
    expect(w.eventsOf('auth.success', (e) => e.session_id === exec.session_id)).toHaveLength(1);
  });

  it('binary output of a command without a terminal is relayed intact and recorded as its size and SHA-256', async () => {
    const file = path.join(dir, 'dump.bin');
    // Starts with a literal U+FFFD (EF BF BD): the chunk around it is still not text.
    const content = Buffer.concat([Buffer.from('\ufffd'), crypto.randomBytes(3 * 1024 * 1024), Buffer.from([0xff, 0xfe])]);
    fs.writeFileSync(file, content);
    fs.chmodSync(dir, 0o755);
    fs.chmodSync(file, 0o644);
    const command = `printf 'header line\\n'; cat ${file}`;
    const args = [...w.opts(alice), `${w.sshd.user}@web1@127.0.0.1`, command].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    // Asynchronously: the gateway runs in this process.
    const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const c = spawn('bash', ['-o', 'pipefail', '-c', `ssh ${args} | sha256sum`]);
      let stdout = '';
      let stderr = '';
      c.stdout.on('data', (d: Buffer) => (stdout += d));
      c.stderr.on('data', (d: Buffer) => (stderr += d));
      c.on('close', (status) => resolve({ status, stdout, stderr }));
    });
    expect(r.status, r.stderr).toBe(0);
    const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
    // The client got every byte.
    expect(r.stdout.split(' ')[0]).toBe(sha(Buffer.concat([Buffer.from('header line\n'), content])));
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === command);
    // The text before it is in the recording; from the first non-text chunk on, size and hash only. The
    // switch happens at a chunk boundary, so the hashed part ends with the file and is at most all of it.
    const bin = exec.details.binary_output as { offset: number; bytes: number; sha256: string };
    expect(bin.offset + bin.bytes).toBe(12 + content.length);
    expect(bin.sha256).toBe(sha(Buffer.concat([Buffer.from('header line\n'), content]).subarray(bin.offset)));
    const rec = w.gw.gw.services.recordings.pathOf(exec.details.recording as string);
    await waitFor(() => fs.existsSync(rec) && fs.readFileSync(rec, 'utf8').includes('vigil.binary.o'), 10_000, 'recording closed');
    expect(fs.statSync(rec).size).toBeLessThan(4096);
    const played = spawnSync('script', ['-qec', `asciinema play -s 100 ${rec}`, '/dev/null'], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, TERM: 'xterm' } });
    expect(played.status).toBe(0);
    expect(played.stdout).toContain(`SHA-256 ${bin.sha256}`);
  });

  it('TARGET alone uses the default login, and stdin reaches the command with EOF', async () => {
    const r = await w.run('ssh', [...w.opts(alice), 'web1@127.0.0.1', 'id -un; wc -c'], 'x'.repeat(100_000));
    expect(r.stdout.split('\n')[0]).toBe(w.sshd.user);
    expect(r.stdout.split('\n')[1]!.trim()).toBe('100000');
    expect(r.code).toBe(0);
  });

  it('exit-signal reaches the client', async () => {
    const r = await w.run('ssh', [...w.opts(alice), 'web1@127.0.0.1', 'kill -TERM $$']);
    // OpenSSH exits 255 when the remote command died from a signal.
    expect(r.code).toBe(255);
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === 'kill -TERM $$');
    expect(exec.details.exit_signal).toBe('TERM');
  });

  it('a pty exec gets the size the client asked for, and window changes reach the target', async () => {
    const r = await w.run('ssh', [...w.opts(alice, ['-tt']), 'web1@127.0.0.1', 'stty size'], undefined);
    // ssh -tt without a local tty sends its default 80x24 (rows cols).
    expect(r.stdout.trim()).toMatch(/^\d+ \d+$/);
    // Drive a real terminal with tmux so a resize produces a window-change request.
    const sock = path.join(dir, 'tmux.sock');
    const cmd = ['ssh', ...w.opts(alice, ['-t']), 'web1@127.0.0.1', 'stty size; read x; stty size; sleep 0.3'].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    execFileSync('tmux', ['-S', sock, 'new-session', '-d', '-x', '100', '-y', '30', `${cmd} > ${dir}/size.out 2>&1; tmux -S ${sock} wait-for -S done`]);
    try {
      await waitFor(() => fs.existsSync(`${dir}/size.out`) && fs.readFileSync(`${dir}/size.out`, 'utf8').includes('30 100'), 15_000, 'first stty size');
      execFileSync('tmux', ['-S', sock, 'resize-window', '-x', '120', '-y', '40']);
      await new Promise((r) => setTimeout(r, 300));
      execFileSync('tmux', ['-S', sock, 'send-keys', 'go', 'Enter']);
      await waitFor(() => fs.readFileSync(`${dir}/size.out`, 'utf8').includes('40 120'), 15_000, 'resized stty size');
      const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && String(e.details.command).startsWith('stty size; read x'));
      const cast = fs.readFileSync(w.gw.gw.services.recordings.pathOf(exec.details.recording as string), 'utf8');
      expect(cast).toContain('"r", "120x40"');
    } finally {
      try { execFileSync('tmux', ['-S', sock, 'kill-server'], { stdio: 'ignore' }); } catch { /* already gone */ }
    }
  });

  it('an interactive pty shell (driven through tmux) yields ssh.command events for edited and recalled lines', async () => {
    const sock = path.join(dir, 'tmux-shell.sock');
    const out = path.join(dir, 'shell.out');
    const cmd = ['ssh', ...w.opts(alice, ['-t']), 'web1@127.0.0.1'].map((a) => `'${a}'`).join(' ');
    execFileSync('tmux', ['-S', sock, 'new-session', '-d', '-x', '120', '-y', '40', `${cmd}; echo "exit=$?" > ${out}`]);
    const keys = (...k: string[]) => execFileSync('tmux', ['-S', sock, 'send-keys', ...k]);
    const screen = () => execFileSync('tmux', ['-S', sock, 'capture-pane', '-p']).toString();
    try {
      await waitFor(() => /[$#]\s*$/m.test(screen()), 15_000, 'shell prompt');
      // Type with a typo, fix it with cursor movement, then recall it from history.
      keys('-l', 'echo wrld');
      keys('Left', 'Left', 'Left');
      keys('-l', 'o');
      keys('Enter');
      await waitFor(() => screen().includes('\nworld'), 10_000, 'first output');
      keys('Up');
      keys('Enter');
      await waitFor(() => screen().split('\nworld').length >= 3, 10_000, 'second output');
      keys('-l', 'exit 3');
      keys('Enter');
      await waitFor(() => fs.existsSync(out) && fs.readFileSync(out, 'utf8').includes('exit=3'), 15_000, 'ssh exit');
    } finally {
      try { execFileSync('tmux', ['-S', sock, 'kill-server'], { stdio: 'ignore' }); } catch { /* done */ }
    }
    const cmds = await waitFor(() => {
      const c = w.eventsOf('ssh.command').map((e) => e.details.command);
      return c.includes('exit 3') ? c : undefined;
    }, 10_000, 'ssh.command events');
    expect(cmds).toEqual(['echo world', 'echo world', 'exit 3']);
    const ev = w.eventsOf('ssh.command')[0]!;
    expect(ev.details.source).toBe('terminal');
    expect(typeof ev.details.recording).toBe('string');
    const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === ev.session_id);
    expect(end.details).toMatchObject({ channel_kinds: ['shell'], exit_status: 3, recordings: [ev.details.recording] });

    // The shell's asciicast: header from the pty, output events, no keystrokes by default; plays in asciinema.
    const file = w.gw.gw.services.recordings.pathOf(ev.details.recording as string);
    await waitFor(() => fs.existsSync(file) && fs.readFileSync(file, 'utf8').includes('exit 3'), 10_000, 'recording flushed');
    const [header, ...lines] = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(header).toMatchObject({ version: 2, width: 120, height: 40 });
    expect(header.env?.TERM ?? header.term).toBeTruthy();
    expect(lines.some((l: [number, string, string]) => l[1] === 'o' && l[2].includes('world'))).toBe(true);
    expect(lines.some((l: [number, string, string]) => l[1] === 'i')).toBe(false);
    const played = spawnSync('script', ['-qec', `asciinema play -s 100 ${file}`, '/dev/null'], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, TERM: 'xterm' } });
    expect(played.status).toBe(0);
    expect(played.stdout).toContain('world');
  });

  it('scp (sftp mode) and scp -O (legacy) copy byte-identical files both ways; sftp events match', async () => {
    const src = path.join(dir, 'payload.bin');
    fs.writeFileSync(src, crypto.randomBytes(3 * 1024 * 1024 + 17));
    const remote = path.join(w.sshd.dir, 'up-sftp.bin');
    const r1 = await w.run('scp', [...w.opts(alice), src, `web1@127.0.0.1:${remote}`]);
    expect(r1.stderr).toBe('');
    expect(r1.code).toBe(0);
    expect(fs.readFileSync(remote).equals(fs.readFileSync(src))).toBe(true);
    const open = await w.gw.waitForEvent((e) => e.type === 'ssh.sftp' && e.details.op === 'open' && e.details.path === remote);
    expect(open.details.flags).toEqual(expect.arrayContaining(['write', 'create']));
    const close = await w.gw.waitForEvent((e) => e.type === 'ssh.sftp' && e.details.op === 'close' && e.details.path === remote);
    expect(close.details.bytes_written).toBe(fs.statSync(src).size);

    const back = path.join(dir, 'back-sftp.bin');
    const r2 = await w.run('scp', [...w.opts(alice), `web1@127.0.0.1:${remote}`, back]);
    expect(r2.code).toBe(0);
    expect(fs.readFileSync(back).equals(fs.readFileSync(src))).toBe(true);
    const closeRead = await w.gw.waitForEvent((e) => e.type === 'ssh.sftp' && e.details.op === 'close' && e.details.path === remote && e.details.bytes_read === fs.statSync(src).size);
    expect(closeRead.outcome).toBe('success');

    const legacy = path.join(w.sshd.dir, 'up-legacy.bin');
    const r3 = await w.run('scp', [...w.opts(alice), '-O', src, `web1@127.0.0.1:${legacy}`]);
    expect(r3.code).toBe(0);
    expect(fs.readFileSync(legacy).equals(fs.readFileSync(src))).toBe(true);
    await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === `scp -t ${legacy}`);
    const up = await w.gw.waitForEvent((e) => e.type === 'ssh.scp' && e.details.direction === 'upload');
    expect(up.details).toMatchObject({ op: 'file', path: 'payload.bin', size: fs.statSync(src).size, bytes: fs.statSync(src).size, result: 'ok' });
    const back2 = path.join(dir, 'back-legacy.bin');
    const r4 = await w.run('scp', [...w.opts(alice), '-O', `web1@127.0.0.1:${legacy}`, back2]);
    expect(r4.code).toBe(0);
    expect(fs.readFileSync(back2).equals(fs.readFileSync(src))).toBe(true);
    await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === `scp -f ${legacy}`);
    const down = await w.gw.waitForEvent((e) => e.type === 'ssh.scp' && e.details.direction === 'download');
    expect(down.details).toMatchObject({ op: 'file', path: 'up-legacy.bin', bytes: fs.statSync(src).size, result: 'ok' });
  });

  it('sftp batch: mkdir, put, rename, chmod, symlink, rm, rmdir each give an ssh.sftp event', async () => {
    const src = path.join(dir, 'small.txt');
    fs.writeFileSync(src, 'hello sftp\n');
    const base = path.join(w.sshd.dir, 'sftpdir');
    const batch = [`mkdir ${base}`, `put ${src} ${base}/a.txt`, `rename ${base}/a.txt ${base}/b.txt`, `chmod 600 ${base}/b.txt`, `symlink ${base}/b.txt ${base}/l`, `get ${base}/b.txt ${dir}/got.txt`, `rm ${base}/l`, `rm ${base}/b.txt`, `rmdir ${base}`].join('\n');
    const r = await w.run('sftp', [...w.opts(alice), '-b', '-', 'web1@127.0.0.1'], batch + '\n');
    expect(r.code).toBe(0);
    expect(fs.readFileSync(`${dir}/got.txt`, 'utf8')).toBe('hello sftp\n');
    const ops = async (op: string, pred: (d: Record<string, unknown>) => boolean) => w.gw.waitForEvent((e) => e.type === 'ssh.sftp' && e.details.op === op && pred(e.details));
    await ops('mkdir', (d) => d.path === base);
    await ops('close', (d) => d.path === `${base}/a.txt` && d.bytes_written === 11);
    await ops('rename', (d) => d.old_path === `${base}/a.txt` && d.new_path === `${base}/b.txt`);
    await ops('setstat', (d) => d.path === `${base}/b.txt`);
    await ops('symlink', (d) => d.link_path === `${base}/l` && d.target_path === `${base}/b.txt`);
    await ops('remove', (d) => d.path === `${base}/b.txt`);
    await ops('rmdir', (d) => d.path === base);
    const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && (e.details.channel_kinds as string[]).includes('sftp'));
    expect(end.details.recordings).toEqual([]);
  });

  it('a client that stops reading holds the target back instead of making the gateway buffer', async () => {
    const progress = path.join(dir, 'progress');
    const mib = 64;
    const child = spawn('ssh', [...w.opts(alice), 'web1@127.0.0.1', `for i in $(seq 1 ${mib}); do yes abcdefghijklmnopqrstuvwxyz | head -c 1048576; echo $i > ${progress}; done`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let received = 0;
    const onData = (d: Buffer) => (received += d.length);
    child.stdout!.on('data', onData);
    await waitFor(() => received > 1024 * 1024, 15_000, 'first MiB');
    // Stop reading: the pipe, ssh's window, vigil's channel buffers and sshd's window fill up, then the
    // remote command blocks. What sits in vigil is bounded by the SSH windows (2 MiB each way).
    child.stdout!.pause();
    const readProgress = () => (fs.existsSync(progress) ? Number(fs.readFileSync(progress, 'utf8')) : 0);
    // Wait until the remote command has stopped (no progress for a whole second).
    let last = -1;
    const stalledAt = await waitFor(async () => {
      await new Promise((r) => setTimeout(r, 1000));
      const now = readProgress();
      const stalled = now === last;
      last = now;
      return stalled ? now || -1 : undefined;
    }, 30_000, 'the remote command to block');
    expect(stalledAt).toBeLessThan(mib / 2);
    child.stdout!.resume();
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise((r) => child.once('close', r));
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(received).toBe(mib * 1024 * 1024);
  });

  it('env: allow-listed variables pass, others are refused with an ssh.request event', async () => {
    process.env.LANG = 'C.UTF-8';
    process.env.VIGIL_SECRET = 'do-not-pass';
    try {
      const r = await w.run('ssh', [...w.opts(alice, ['-o', 'SendEnv=LANG VIGIL_SECRET']), 'web1@127.0.0.1', 'echo "[$LANG][$VIGIL_SECRET]"']);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe('[C.UTF-8][]\n');
    } finally {
      delete process.env.VIGIL_SECRET;
    }
    const refused = await w.gw.waitForEvent((e) => e.type === 'ssh.request' && e.details.request === 'env' && e.details.name === 'VIGIL_SECRET');
    expect(JSON.stringify(refused)).not.toContain('do-not-pass');
  });
});
