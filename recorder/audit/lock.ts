import fs from 'node:fs';
import path from 'node:path';
import { VigilError } from '../../src/errors.ts';

export const LOCK_FILE = 'writer.lock';
/**
 * Beside the lock (which keeps holding only the pid, as every version reads it): which process that pid
 * was — the kernel's boot id and the process's start time — so that a pid the lock names can be told
 * apart from a later process that was given the same pid (after a reboot, or in a container restarted with
 * its pids counted from 1 again). Without it a lock left by a killed writer could keep every later writer
 * out for good. `ino` ties it to the lock file it was written for.
 */
export const LOCK_OWNER_FILE = 'writer.lock.owner';

interface LockOwner {
  pid: number;
  boot_id: string;
  start: string;
  ino: number;
}

// Locks held by this process. A lock file naming our own pid that is not in this set is stale (a previous
// process with the same pid, e.g. pid 1 in a container restarted with the same data volume).
const heldHere = new Set<string>();

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Boot id and start time (clock ticks since boot) of a process, from /proc; undefined where there is none. */
function processIdentity(pid: number): { boot_id: string; start: string } | undefined {
  try {
    const boot_id = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (in parentheses, which may hold spaces): state is field 3, starttime 22.
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    return boot_id && start && /^\d+$/.test(start) ? { boot_id, start } : undefined;
  } catch {
    return undefined;
  }
}

function readOwner(dir: string): LockOwner | undefined {
  try {
    const o = JSON.parse(fs.readFileSync(path.join(dir, LOCK_OWNER_FILE), 'utf8')) as LockOwner;
    return Number.isInteger(o.pid) && typeof o.boot_id === 'string' && typeof o.start === 'string' && Number.isInteger(o.ino) ? o : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether the live process `pid` is the one that took the lock file `file` (or may be): no only when the
 * owner record written for that very lock file names this pid and the process behind the pid now is a
 * different one (another boot, another start time). Anything unknown counts as yes: refusing a writer is
 * safe, two writers are not.
 */
function isLockHolder(file: string, pid: number): boolean {
  if (!isAlive(pid)) return false;
  const owner = readOwner(path.dirname(file));
  if (!owner || owner.pid !== pid) return true;
  let ino: number;
  try {
    ino = fs.statSync(file).ino;
  } catch {
    return true;
  }
  if (owner.ino !== ino) return true;
  const now = processIdentity(pid);
  return !now || (now.boot_id === owner.boot_id && now.start === owner.start);
}

/** Record who took the lock (see LOCK_OWNER_FILE); best effort: without it the pid alone decides. */
function writeOwner(dir: string, lockFd: number): void {
  const me = processIdentity(process.pid);
  if (!me) return;
  const file = path.join(dir, LOCK_OWNER_FILE);
  const tmp = `${file}.${process.pid}.partial`;
  try {
    const owner: LockOwner = { pid: process.pid, ...me, ino: fs.fstatSync(lockFd).ino };
    fs.writeFileSync(tmp, JSON.stringify(owner) + '\n', { mode: 0o600 });
    fs.renameSync(tmp, file);
  } catch {
    fs.rmSync(tmp, { force: true });
  }
}

function readPid(file: string): number | undefined {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** The pid holding the writer lock of `dir`, when it is alive. */
export function liveLockHolder(dir: string): number | undefined {
  const file = path.resolve(dir, LOCK_FILE);
  const pid = readPid(file);
  if (pid === undefined) return undefined;
  if (pid === process.pid) return heldHere.has(file) ? pid : undefined;
  return isLockHolder(file, pid) ? pid : undefined;
}

/**
 * Take the exclusive writer lock of an audit directory: a file holding the owner's pid, created with
 * O_EXCL. A lock whose pid is dead, or now belongs to another process than the one that took it (see
 * LOCK_OWNER_FILE), is taken over (renamed away first, so two takers cannot both win).
 * Throws VIGIL_AUDIT_LOCKED while a live process holds it. Returns the release function.
 */
export function acquireWriterLock(dir: string): () => void {
  const file = path.resolve(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      try {
        fs.writeSync(fd, `${process.pid}\n`);
        fs.fsyncSync(fd);
        writeOwner(path.dirname(file), fd);
      } finally {
        fs.closeSync(fd);
      }
      heldHere.add(file);
      return () => {
        heldHere.delete(file);
        if (readPid(file) !== process.pid) return;
        if (readOwner(path.dirname(file))?.pid === process.pid) fs.rmSync(path.join(path.dirname(file), LOCK_OWNER_FILE), { force: true });
        fs.rmSync(file, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const holder = liveLockHolder(dir);
    if (holder !== undefined) {
      throw new VigilError('VIGIL_AUDIT_LOCKED', `the audit log in ${dir} is held by a running process (pid ${holder})`);
    }
    // Stale: move it aside atomically; whoever loses the rename race retries and sees the winner's lock.
    const aside = `${file}.stale-${process.pid}-${attempt}`;
    try {
      fs.renameSync(file, aside);
      const moved = readPid(aside);
      // (A rename keeps the inode: the owner record still matches the moved lock.)
      if (moved !== undefined && moved !== process.pid && isLockHolder(aside, moved)) {
        // We lost a race and moved a fresh lock: put it back (unless yet another one appeared) and yield.
        try {
          fs.linkSync(aside, file);
        } catch {
          // another lock already there; it wins
        }
        fs.rmSync(aside, { force: true });
        throw new VigilError('VIGIL_AUDIT_LOCKED', `the audit log in ${dir} is held by a running process (pid ${moved})`);
      }
      fs.rmSync(aside, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  throw new VigilError('VIGIL_AUDIT_LOCKED', `could not take the audit writer lock in ${dir}`);
}
