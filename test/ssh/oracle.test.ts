import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, spawnClient, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { changes, loggingShell, missingFrom, snapshot, type FsChange } from './oracle-support.ts';

/** The paths an ssh.sftp event says it changed, by kind of change. */
function sftpClaims(e: AuditEvent): Array<{ path: string; kinds: FsChange['kind'][] }> {
  const d = e.details as Record<string, unknown>;
  const p = (k: string) => String(d[k]);
  switch (d.op) {
    case 'open':
      return (d.flags as string[]).includes('write') ? [{ path: p('path'), kinds: ['created', 'content'] }] : [];
    case 'close':
      return Number(d.bytes_written) > 0 ? [{ path: p('path'), kinds: ['created', 'content'] }] : [];
    case 'remove':
    case 'rmdir':
      return [{ path: p('path'), kinds: ['removed'] }];
    case 'mkdir':
      return [{ path: p('path'), kinds: ['created'] }];
    case 'setstat':
      return [{ path: p('path'), kinds: ['mode', 'content'] }];
    case 'rename':
      return [{ path: p('old_path'), kinds: ['removed'] }, { path: p('new_path'), kinds: ['created', 'content', 'mode'] }];
    case 'symlink':
      return [{ path: p('link_path'), kinds: ['created'] }];
    case 'hardlink':
      return [{ path: p('new_path'), kinds: ['created'] }];
    default:
      return [];
  }
}

describe('oracle: every change on the target file system has an event (sftp, scp)', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let local: string;
  let root: string;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
    local = tempDir('vigil-oracle-local-');
    root = path.join(w.sshd.dir, 'oracle-root');
    fs.mkdirSync(root);
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    fs.rmSync(local, { recursive: true, force: true });
  });

  it('stock sftp -b (put, get, rename, mkdir, rm, symlink, chmod, ln) and scp (sftp and -O) against a disk diff', async () => {
    const src = path.join(local, 'src.bin');
    fs.writeFileSync(src, crypto.randomBytes(300_000));
    fs.writeFileSync(path.join(root, 'preexisting.txt'), 'old\n');
    fs.writeFileSync(path.join(root, 'doomed.txt'), 'bye\n');
    const before = snapshot(root);
    const batch = [
      `mkdir ${root}/d`,
      `put ${src} ${root}/d/a.bin`,
      `put ${src} ${root}/b.bin`,
      `get ${root}/b.bin ${local}/got.bin`,
      `rename ${root}/b.bin ${root}/d/c.bin`,
      `symlink ${root}/d/a.bin ${root}/link`,
      `ln ${root}/d/a.bin ${root}/hard`,
      `chmod 600 ${root}/d/a.bin`,
      `chmod 640 ${root}/preexisting.txt`,
      `put ${src} ${root}/preexisting.txt`,
      `rm ${root}/doomed.txt`,
      `mkdir ${root}/e`,
      `rmdir ${root}/e`,
    ].join('\n');
    const r = await w.run('sftp', [...w.opts(alice), '-b', '-', 'web1@127.0.0.1'], batch + '\n');
    expect(r.code, r.stderr).toBe(0);
    const s1 = await w.run('scp', [...w.opts(alice), src, `web1@127.0.0.1:${root}/scp-sftp.bin`]);
    expect(s1.code, s1.stderr).toBe(0);
    const s2 = await w.run('scp', [...w.opts(alice), '-O', src, `web1@127.0.0.1:${root}/scp-legacy.bin`]);
    expect(s2.code, s2.stderr).toBe(0);
    const s3 = await w.run('scp', [...w.opts(alice), '-O', '-r', local, `web1@127.0.0.1:${root}/tree`]);
    expect(s3.code, s3.stderr).toBe(0);
    // Every session's end is on record (so everything before it is too).
    await waitFor(() => w.eventsOf('session.end').length === w.eventsOf('session.start').length && w.gw.gw.services.sessions.size === 0, 10_000, 'sessions to end');

    const diff = changes(before, snapshot(root));
    const claims: Array<{ path: string; kinds: FsChange['kind'][] }> = [];
    for (const e of w.eventsOf('ssh.sftp', (e) => e.outcome === 'success')) claims.push(...sftpClaims(e));
    // Legacy scp: an upload event names the file relative to the `scp -t TARGET` command of its session.
    for (const e of w.eventsOf('ssh.scp', (e) => e.details.direction === 'upload' && e.details.result === 'ok')) {
      const exec = w.eventsOf('ssh.exec.start', (x) => x.session_id === e.session_id)[0];
      const target = String(exec?.details.command ?? '').replace(/^scp (-r )?-t /, '');
      const rel = String(e.details.path);
      const kinds: FsChange['kind'][] = ['created', 'content', 'mode'];
      // `scp -r local host:T` creates T from local's own name level: T/<rest after the first component>.
      const rest = rel.split('/').slice(1).join('/');
      claims.push({ path: target, kinds }, { path: path.join(target, rel), kinds }, { path: path.join(target, rest), kinds });
    }
    const unexplained = diff.filter((c) => !claims.some((k) => k.path === c.path && k.kinds.includes(c.kind)));
    console.log(`sftp/scp oracle: ${diff.length} changes on disk, ${claims.length} claims from ${w.eventsOf('ssh.sftp').length} ssh.sftp + ${w.eventsOf('ssh.scp').length} ssh.scp events, ${unexplained.length} unexplained`);
    expect(unexplained).toEqual([]);
    expect(diff.length).toBeGreaterThanOrEqual(12);
  }, 60_000);
});

describe('oracle: every command the target ran has ssh.exec.start and ssh.exec', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dir: string;
  let shell: ReturnType<typeof loggingShell>;
  beforeAll(async () => {
    dir = tempDir('vigil-oracle-exec-');
    fs.chmodSync(dir, 0o777);
    shell = loggingShell(dir);
    w = await startWorld({ sshd: shell.sshd });
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('commands ending every way, including a client killed with -9 during sleep 5', async () => {
    const dest = `${w.sshd.user}@web1@127.0.0.1`;
    const commands = ['true', 'false', 'echo out; echo err >&2', 'exit 42', "printf '%s' 'quote\\'s; and $(not expanded)'", 'wc -c', 'kill -9 $$'];
    for (const c of commands) await w.run('ssh', [...w.opts(alice), dest, c], 'input\n');
    const killed = 'echo started; sleep 5';
    const k = spawnClient('ssh', [...w.opts(alice), dest, killed]);
    await waitFor(() => k.stdout().includes('started'), 10_000, 'sleep to start');
    k.child.kill('SIGKILL');
    await k.exited;
    // Every session's end is on record (so everything before it is too).
    await waitFor(() => w.eventsOf('session.end').length === w.eventsOf('session.start').length && w.gw.gw.services.sessions.size === 0, 10_000, 'sessions to end');

    const ran = shell.ran();
    const starts = w.eventsOf('ssh.exec.start').map((e) => String(e.details.command));
    const ends = w.eventsOf('ssh.exec').map((e) => String(e.details.command));
    console.log(`exec oracle: target ran ${ran.length}, ssh.exec.start ${starts.length}, ssh.exec ${ends.length}, missing start ${missingFrom(ran, starts).length}, missing end ${missingFrom(ran, ends).length}`);
    expect(ran).toHaveLength(commands.length + 1);
    expect(missingFrom(ran, starts)).toEqual([]);
    expect(missingFrom(ran, ends)).toEqual([]);
    const k9 = w.eventsOf('ssh.exec', (e) => e.details.command === killed)[0];
    expect(k9).toMatchObject({ outcome: 'unknown', details: { end_reason: 'client_closed' } });
    expect(w.eventsOf('ssh.exec', (e) => e.details.command === 'kill -9 $$')[0]).toMatchObject({ outcome: 'failure', details: { exit_signal: 'KILL' } });
  }, 60_000);
});
