import fs from 'node:fs';
import path from 'node:path';
import type { StartSshdOptions } from '../support/sshd.ts';

/**
 * The target's own account of what it ran: sshd's ForceCommand is a wrapper that appends the client's
 * command (base64, one line, one write) to `log` before running it — the oracle the audit log is held to.
 */
export function loggingShell(dir: string): { sshd: StartSshdOptions; ran: () => string[] } {
  const log = path.join(dir, 'ran.log');
  const wrapper = path.join(dir, 'log-and-run.sh');
  fs.writeFileSync(
    wrapper,
    ['#!/bin/sh', `line=$(printf '%s' "$SSH_ORIGINAL_COMMAND" | base64 -w0)`, `echo "$line" >> ${log}`, 'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"', ''].join('\n'),
    { mode: 0o755 },
  );
  return {
    sshd: { overrides: { ForceCommand: wrapper } },
    ran: () =>
      fs.existsSync(log)
        ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => Buffer.from(l, 'base64').toString('utf8'))
        : [],
  };
}

/** Multiset difference: items of `a` not matched one-for-one in `b`. */
export function missingFrom(a: string[], b: string[]): string[] {
  const left = new Map<string, number>();
  for (const x of b) left.set(x, (left.get(x) ?? 0) + 1);
  const out: string[] = [];
  for (const x of a) {
    const n = left.get(x) ?? 0;
    if (n > 0) left.set(x, n - 1);
    else out.push(x);
  }
  return out;
}

export interface FsEntry {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  size: number;
  mtimeMs: number;
  link?: string;
}

/** Every path under `root` (absolute), without following symlinks. */
export function snapshot(root: string): Map<string, FsEntry> {
  const out = new Map<string, FsEntry>();
  const walk = (dir: string) => {
    for (const name of fs.readdirSync(dir)) {
      const p = path.join(dir, name);
      const st = fs.lstatSync(p);
      const type = st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
      out.set(p, { type, mode: st.mode & 0o7777, size: st.size, mtimeMs: st.mtimeMs, ...(type === 'symlink' ? { link: fs.readlinkSync(p) } : {}) });
      if (type === 'dir') walk(p);
    }
  };
  walk(root);
  return out;
}

export type FsChange = { path: string; kind: 'created' | 'removed' | 'content' | 'mode' };

/** What differs between two snapshots, per path. */
export function changes(before: Map<string, FsEntry>, after: Map<string, FsEntry>): FsChange[] {
  const out: FsChange[] = [];
  for (const [p, a] of after) {
    const b = before.get(p);
    if (!b || b.type !== a.type || b.link !== a.link) out.push({ path: p, kind: 'created' });
    else {
      // A directory's size and mtime move exactly when its entries do; those are checked themselves.
      if (a.type !== 'dir' && (b.size !== a.size || b.mtimeMs !== a.mtimeMs)) out.push({ path: p, kind: 'content' });
      if (b.mode !== a.mode) out.push({ path: p, kind: 'mode' });
    }
  }
  for (const p of before.keys()) if (!after.has(p)) out.push({ path: p, kind: 'removed' });
  return out;
}

/** Pids whose command line is exactly `commandLine`. */
export function pidsOf(commandLine: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').join(' ').trim() === commandLine) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Ancestors of `pid` below this test process's direct child (the sshd listener): the per-connection sshd. */
export function sessionAncestors(pid: number): number[] {
  const out: number[] = [];
  let cur = pid;
  for (let i = 0; i < 20; i++) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${cur}/stat`, 'utf8');
    } catch {
      return out;
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === process.pid || ppid <= 1) return out;
    out.push(cur);
    cur = ppid;
  }
  return out;
}

/** SIGKILL the target's per-connection sshd that runs `pid` (the connection to vigil drops at once). */
export function killTargetConnectionOf(pid: number): void {
  for (const p of sessionAncestors(pid).reverse()) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

/**
 * Remote commands outlive a client that vanished (sshd gives a command without a pty no signal when its
 * channel closes): kill those a test left behind, shell wrapper first.
 */
export function killRemote(commands: string[]): void {
  const lines = commands.flatMap((c) => [`bash -c ${c}`, `sh -c ${c}`, `/bin/sh -c ${c}`, ...[...c.matchAll(/sleep \d+/g)].map((m) => m[0])]);
  for (const line of lines) {
    for (const pid of pidsOf(line)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}
