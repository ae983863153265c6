/**
 * CLI start-up: wall time and CPU (user + system) of `vigil --help` and `vigil audit search --limit 20`,
 * run through the compiled code (`npm run build`, built here into a temp root holding only dist/, bin/ and
 * a node_modules link) and through tsx from the sources (VIGIL_FROM_SOURCE=1) for comparison. Each run is
 * a fresh process measured by /usr/bin/time; the two variants alternate; medians over the rounds.
 * The data dir has a CA and a few hundred audit events (certificates issued through the compiled CLI).
 * Targets (issue #20): --help <= 0.3 s, audit search --limit 20 <= 0.5 s. The load average is printed:
 * on a shared machine wall time follows the load, CPU time much less; an empty `node -e 0` is measured
 * too, as the floor no CLI can go under.
 *
 *   npm run bench:cli [-- --rounds 10]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { median } from './stats.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string' }, events: { type: 'string' } } });
const rounds = Number(values.rounds ?? 10);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-cli-'));

try {
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(root, 'node_modules'));
  fs.mkdirSync(path.join(root, 'bin'));
  fs.copyFileSync(path.join(ROOT, 'bin/vigil.js'), path.join(root, 'bin/vigil.js'));
  process.stdout.write('building (npm run build -- --no-check) …\n');
  execFileSync('npm', ['run', 'build', '--', '--out', path.join(root, 'dist'), '--no-check'], { cwd: ROOT, stdio: 'ignore' });

  const variants = {
    compiled: { bin: path.join(root, 'bin/vigil.js'), env: { ...process.env, VIGIL_FROM_SOURCE: '' } },
    tsx: { bin: path.join(ROOT, 'bin/vigil.js'), env: { ...process.env, VIGIL_FROM_SOURCE: '1' } },
  };
  const data = path.join(root, 'data');
  const run = (v: keyof typeof variants, args: string[]) => {
    const timing = path.join(root, 'time.txt');
    const r = spawnSync('/usr/bin/time', ['-f', '%e %U %S', '-o', timing, process.execPath, variants[v].bin, ...args], { env: variants[v].env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`vigil ${args.join(' ')} (${v}) exited ${r.status}: ${r.stderr}`);
    const [wall, user, sys] = fs.readFileSync(timing, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
    return { wall: wall!, cpu: user! + sys! };
  };
  run('compiled', ['init', '--data', data]);
  const events = Number(values.events ?? 200);
  for (let i = 0; i < events / 2; i++) run('compiled', ['cert', 'issue', '--data', data, '--user', `u${i}`, '--roles', 'dev', '--token']);

  // The same search as an engineer with a config file runs it (data_dir read from the file).
  const configFile = path.join(root, 'vigil.yaml');
  fs.writeFileSync(configFile, 'data_dir: data\nlog:\n  level: info\n');
  const cases = {
    '--help': ['--help'],
    'audit search --limit 20': ['audit', 'search', '--limit', '20', '--data', data],
    'audit search (--config)': ['audit', 'search', '--limit', '20', '--config', configFile],
  };
  const targets: Record<string, number> = { '--help': 0.3, 'audit search --limit 20': 0.5, 'audit search (--config)': 0.5 };
  const load0 = os.loadavg()[0]!;
  const rows: string[] = [];
  for (const [label, args] of Object.entries(cases)) {
    const samples: Record<string, { wall: number[]; cpu: number[] }> = { compiled: { wall: [], cpu: [] }, tsx: { wall: [], cpu: [] } };
    for (let i = 0; i < rounds; i++) {
      for (const v of ['compiled', 'tsx'] as const) {
        const t = run(v, args);
        samples[v]!.wall.push(t.wall);
        samples[v]!.cpu.push(t.cpu);
      }
    }
    const c = samples.compiled!;
    const t = samples.tsx!;
    rows.push(
      `vigil ${label.padEnd(24)} compiled: wall ${median(c.wall).toFixed(2)} s, cpu ${median(c.cpu).toFixed(2)} s   ` +
        `tsx: wall ${median(t.wall).toFixed(2)} s, cpu ${median(t.cpu).toFixed(2)} s   ` +
        `compiled/tsx wall ${(median(c.wall) / median(t.wall)).toFixed(2)}, cpu ${(median(c.cpu) / median(t.cpu)).toFixed(2)}   ` +
        `target ${targets[label]} s: ${median(c.wall) <= targets[label]! ? 'met' : 'NOT met'} (wall)`,
    );
  }
  // The floor: an empty Node process (`node -e 0`), measured the same way, after the rounds above.
  const floor = { wall: [] as number[], cpu: [] as number[] };
  for (let i = 0; i < rounds; i++) {
    const timing = path.join(root, 'time.txt');
    spawnSync('/usr/bin/time', ['-f', '%e %U %S', '-o', timing, process.execPath, '-e', '0']);
    const [wall, user, sys] = fs.readFileSync(timing, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
    floor.wall.push(wall!);
    floor.cpu.push(user! + sys!);
  }
  rows.push(`node -e 0 (floor)              wall ${median(floor.wall).toFixed(2)} s, cpu ${median(floor.cpu).toFixed(2)} s`);
  const load1 = os.loadavg()[0]!;
  process.stdout.write(`${rows.join('\n')}\nmedians of ${rounds} rounds, ${events / 2} certificates issued before; load average ${load0.toFixed(1)} → ${load1.toFixed(1)} on ${os.cpus().length} cores\n`);
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
