import { describe, it, expect } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { TARGETS } from '../../fuzz/targets/index.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * The fuzz regression run (CI): every target runs briefly on its committed corpus under the real
 * coverage-guided engine (fuzz/run.ts, each target in its own worker with the hang and heap watchdog).
 * Every committed input is replayed first, including each fixed crash kept under
 * fuzz/corpus/<target>/crashes/, so a decoder that regresses on one of them fails here; then the
 * mutators run for the rest of the target's time. The run must end with 0 crashes, 0 hangs and 0
 * unbounded allocations, and every target must have executed inputs and reached code.
 */

const SECONDS_PER_TARGET = 0.5;
const root = path.resolve(import.meta.dirname, '../..');

interface Result {
  target: string;
  execs: number;
  blocks: number;
  corpus: number;
  crashes: number;
  hangs: number;
  allocs: number;
  findings: { kind: string; file: string; message: string }[];
}

function runFuzz(args: string[]): Promise<{ code: number | null; results: Result[]; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', path.join(root, 'fuzz/run.ts'), ...args, '--json'], { cwd: root, maxBuffer: 64 << 20, timeout: 170_000 }, (err, stdout, stderr) => {
      const line = stdout.trim().split('\n').pop() ?? '{}';
      let results: Result[] = [];
      try {
        results = (JSON.parse(line) as { results: Result[] }).results;
      } catch {
        /* reported below through the empty results */
      }
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, results, stderr });
    });
  });
}

describe('fuzz regression over the committed corpus', () => {
  it('every target runs its corpus and kept crashes with 0 crashes, 0 hangs, 0 unbounded allocations', { timeout: 180_000 }, async () => {
    const out = tempDir('vigil-fuzz-out-');
    const { code, results, stderr } = await runFuzz(['all', '--seconds', String(SECONDS_PER_TARGET), '--jobs', '2', '--seed', '1', '--out', out]);
    expect(results.map((r) => r.target), stderr).toEqual(Object.keys(TARGETS));
    for (const r of results) {
      expect({ target: r.target, findings: r.findings.map((f) => `${f.kind} ${f.file}: ${f.message.split('\n')[0]}`) }).toEqual({ target: r.target, findings: [] });
      expect(r.execs, r.target).toBeGreaterThan(0);
      expect(r.blocks, r.target).toBeGreaterThan(0);
    }
    expect(code).toBe(0);
    fs.rmSync(out, { recursive: true, force: true });
  });

  it('the harness stays out of the production import graph (src/, proxies/, recorder/ never import fuzz/)', () => {
    const offenders: string[] = [];
    const walk = (dir: string): void => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (/\.(ts|js|mjs)$/.test(e.name) && /from\s+['"][^'"]*\/fuzz\//.test(fs.readFileSync(p, 'utf8'))) offenders.push(path.relative(root, p));
      }
    };
    for (const d of ['src', 'proxies', 'recorder']) walk(path.join(root, d));
    expect(offenders).toEqual([]);
  });
});
