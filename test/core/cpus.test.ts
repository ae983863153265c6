import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { availableCpus, cgroupCpuQuota, parseCpuMax } from '../../src/config/cpus.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// A cgroup v1 cpu hierarchy this process may create groups in (root, as the suite runs here).
const V1_CPU = '/sys/fs/cgroup/cpu';
const canMakeGroups = (() => {
  try {
    fs.accessSync(`${V1_CPU}/cpu.cfs_quota_us`);
    fs.accessSync(V1_CPU, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
})();
const files = (m: Record<string, string>) => (f: string) => m[f];

describe('the CPUs gateway.workers defaults to', () => {
  it('a cgroup v2 quota (cpu.max) in the process own group, rounded up; "max" is no limit', () => {
    const proc = '0::/kubepods/pod1/c1\n';
    expect(cgroupCpuQuota(files({ '/proc/self/cgroup': proc, '/sys/fs/cgroup/kubepods/pod1/c1/cpu.max': '150000 100000\n' }))).toBe(2);
    expect(cgroupCpuQuota(files({ '/proc/self/cgroup': proc, '/sys/fs/cgroup/kubepods/pod1/c1/cpu.max': 'max 100000\n' }))).toBeUndefined();
    expect(cgroupCpuQuota(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '50000 100000' }))).toBe(1);
    expect(parseCpuMax('garbage')).toBeUndefined();
    expect(cgroupCpuQuota(files({}))).toBeUndefined();
  });

  it('a cgroup v1 CFS quota (cpu.cfs_quota_us / cpu.cfs_period_us); -1 is no limit', () => {
    const proc = '4:memory:/x\n3:cpu,cpuacct:/docker/abc\n0::/\n';
    const v1 = (quota: string) => files({ '/proc/self/cgroup': proc, '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us': quota, '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000' });
    expect(cgroupCpuQuota(v1('300000'))).toBe(3);
    expect(cgroupCpuQuota(v1('-1'))).toBeUndefined();
    // Never more than the CPUs the process may be scheduled on.
    expect(availableCpus(v1(String(100000 * (os.availableParallelism() + 8))))).toBe(os.availableParallelism());
  });

  it.runIf(canMakeGroups)('a process placed in a real cgroup limited to 1 CPU counts 1; this machine without a quota counts its CPUs', () => {
    expect(availableCpus()).toBe(os.availableParallelism());
    const group = `${V1_CPU}/vigil-cpus-test-${process.pid}`;
    fs.mkdirSync(group);
    try {
      fs.writeFileSync(`${group}/cpu.cfs_period_us`, '100000');
      fs.writeFileSync(`${group}/cpu.cfs_quota_us`, '100000');
      const code = "import('./src/config/cpus.ts').then((m) => console.log(m.availableCpus()))";
      const r = spawnSync('sh', ['-c', `echo $$ > ${group}/cgroup.procs && exec node --import tsx -e "${code}"`], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('1');
    } finally {
      fs.rmdirSync(group);
    }
  }, 60_000);
});
