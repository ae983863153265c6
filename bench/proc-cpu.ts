/** CPU time of external processes from /proc, for benches that compare vigil with pgbouncer, sshd, … */
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';

const TICK_US = 1e6 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** user + system CPU (µs) of `pid` and, with `children`, of its child processes now alive (0 once it is gone). */
export function cpuOf(pid: number, children = false): number {
  const one = (p: number) => {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(f[11]) + Number(f[12])) * TICK_US; // utime, stime (fields 14 and 15)
    } catch {
      return 0;
    }
  };
  let total = one(pid);
  if (children) {
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
      for (const c of fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) total += one(Number(c));
    }
  }
  return total;
}

/**
 * user + system CPU (µs) of this process's main thread and of all its other threads (worker threads, the
 * libuv pool, V8's helpers), from /proc/self/task: where a gateway's CPU goes besides the event loop.
 * Threads that ended in between are missed (their time is in process.cpuUsage only).
 */
export function threadSplit(): { main: number; other: number } {
  let main = 0;
  let other = 0;
  for (const [k, t] of threadTimes()) {
    if (k.startsWith('main:')) main += t.user + t.sys;
    else other += t.user + t.sys;
  }
  return { main, other };
}

/**
 * user and system CPU (µs) of each of this process's threads, keyed `comm:tid` (the index follower is a
 * worker thread, V8's GC helpers and the libuv pool have names of their own): diff two of these to see
 * where a run's CPU went, thread by thread (VIGIL_BENCH_THREADS=1 in bench:postgres).
 */
export function threadTimes(): Map<string, { user: number; sys: number }> {
  const out = new Map<string, { user: number; sys: number }>();
  for (const t of fs.readdirSync('/proc/self/task')) {
    try {
      const stat = fs.readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(`${Number(t) === process.pid ? 'main' : comm}:${t}`, { user: Number(f[11]) * TICK_US, sys: Number(f[12]) * TICK_US });
    } catch {
      // The thread ended meanwhile.
    }
  }
  return out;
}
