import fs from 'node:fs';
import path from 'node:path';
import { VigilError } from '../../src/errors.ts';

export const LOCK_FILE = 'writer.lock';

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
  return isAlive(pid) ? pid : undefined;
}

/**
 * Take the exclusive writer lock of an audit directory: a file holding the owner's pid, created with
 * O_EXCL. A lock whose pid is dead is taken over (renamed away first, so two takers cannot both win).
 * Throws VIGIL_AUDIT_LOCKED while a live process holds it. Returns the release function.
 */
export function acquireWriterLock(dir: string): () => void {
  const file = path.resolve(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, `${process.pid}\n`);
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      heldHere.add(file);
      return () => {
        heldHere.delete(file);
        if (readPid(file) === process.pid) fs.rmSync(file, { force: true });
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
      if (moved !== undefined && moved !== process.pid && isAlive(moved)) {
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
