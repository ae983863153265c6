import fs from 'node:fs';
import os from 'node:os';

/**
 * How many CPUs this process may really use: the CPUs it may be scheduled on (affinity, what
 * `os.availableParallelism()` sees) and, in a container, its CPU quota (docker --cpus, Kubernetes
 * limits.cpu), which Node 20 does not see: a container limited to 2 CPUs on a 32-core host would
 * otherwise fork 32 workers that share 2 CPUs' worth of time.
 */
export function availableCpus(read: (file: string) => string | undefined = readOrUndefined): number {
  const quota = cgroupCpuQuota(read);
  return Math.max(1, Math.min(os.availableParallelism(), quota ?? Infinity));
}

/** The CPU quota of this process's cgroup (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), rounded up; none: undefined. */
export function cgroupCpuQuota(read: (file: string) => string | undefined): number | undefined {
  const groups = parseProcCgroup(read('/proc/self/cgroup') ?? '');
  const v2 = groups.get('');
  if (v2 !== undefined) {
    const q = parseCpuMax(read(`/sys/fs/cgroup${dirOf(v2)}cpu.max`));
    if (q !== undefined) return q;
  }
  const v1 = groups.get('cpu') ?? groups.get('cpu,cpuacct') ?? groups.get('cpuacct,cpu');
  if (v1 !== undefined) {
    for (const mount of ['/sys/fs/cgroup/cpu', '/sys/fs/cgroup/cpu,cpuacct']) {
      const q = quotaOf(read(`${mount}${dirOf(v1)}cpu.cfs_quota_us`), read(`${mount}${dirOf(v1)}cpu.cfs_period_us`));
      if (q !== undefined) return q;
    }
  }
  return undefined;
}

/** `/proc/self/cgroup` lines `id:controllers:path`: controllers ('' for cgroup v2) → path. */
export function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(\/.*)$/.exec(line.trim());
    if (m) out.set(m[1], m[2]);
  }
  return out;
}

/** cgroup v2 `cpu.max`: "max 100000" (no limit) or "<quota> <period>". */
export function parseCpuMax(text: string | undefined): number | undefined {
  const [quota, period] = (text ?? '').trim().split(/\s+/);
  return quota === 'max' ? undefined : quotaOf(quota, period);
}

function quotaOf(quota: string | undefined, period: string | undefined): number | undefined {
  const q = Number(quota);
  const p = Number(period);
  if (!Number.isFinite(q) || !Number.isFinite(p) || q <= 0 || p <= 0) return undefined; // -1: no limit
  return Math.max(1, Math.ceil(q / p));
}

function dirOf(p: string): string {
  return p.endsWith('/') ? p : `${p}/`;
}

function readOrUndefined(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
