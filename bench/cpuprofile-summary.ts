/**
 * Self time per function (and per file) of .cpuprofile files, as VIGIL_BENCH_PROFILE=1 writes them:
 *
 *   npx tsx bench/cpuprofile-summary.ts [--top 40] FILE.cpuprofile…
 *
 * Idle time ("(idle)") is left out of the percentages: they are shares of the CPU the process used.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '40' } }, allowPositionals: true });
const top = Number(values.top);
for (const file of positionals) {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  const fn = new Map<string, number>();
  const files = new Map<string, number>();
  let total = 0;
  for (const [id, t] of self) {
    const f = byId.get(id)!.callFrame;
    if (f.functionName === '(idle)') continue;
    total += t;
    const where = f.url ? path.relative(process.cwd(), f.url.replace(/^file:\/\//, '')) : '';
    const key = `${f.functionName || '(anonymous)'} ${where}${where ? ':' + (f.lineNumber + 1) : ''}`;
    fn.set(key, (fn.get(key) ?? 0) + t);
    const fk = where.includes('node_modules') ? where.replace(/.*node_modules\/((@[^/]+\/)?[^/]+).*/, 'npm:$1') : where || `(${f.functionName})`;
    files.set(fk, (files.get(fk) ?? 0) + t);
  }
  const show = (m: Map<string, number>, n: number) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, t]) => `  ${((100 * t) / total).toFixed(1).padStart(5)}%  ${(t / 1000).toFixed(0).padStart(6)} ms  ${k}`).join('\n');
  console.log(`${file}: ${(total / 1000).toFixed(0)} ms busy\nby function (self):\n${show(fn, top)}\nby file (self):\n${show(files, 25)}\n`);
}
