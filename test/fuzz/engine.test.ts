import { describe, it, expect } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from '../support/tmp.ts';

/**
 * The fuzz engine's watchdog and budget (fuzz/run.ts + fuzz/engine/worker.ts), on targets built to
 * misbehave on one input shape ('Z' first, test/fuzz/targets/): the finding must name exactly that
 * input although it ran inside a batch of thousands, whose coverage is read once per batch.
 */

const root = path.resolve(import.meta.dirname, '../..');

interface Result {
  target: string;
  execs: number;
  blocks: number;
  corpus: number;
  crashes: number;
  hangs: number;
  allocs: number;
  heapRefills: number;
  findings: { kind: string; file: string; message: string; input: string }[];
}

function corpusWith(names: string[]): string {
  const dir = tempDir('vigil-fuzz-engine-');
  for (const n of names) {
    fs.mkdirSync(path.join(dir, n));
    fs.writeFileSync(path.join(dir, n, 'seed'), 'A');
  }
  return dir;
}

function runFuzz(args: string[]): Promise<{ code: number | null; results: Result[]; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', path.join(root, 'fuzz/run.ts'), ...args, '--json'], { cwd: root, maxBuffer: 64 << 20, timeout: 170_000 }, (err, stdout, stderr) => {
      let results: Result[] = [];
      try {
        results = (JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { results: Result[] }).results;
      } catch {
        /* reported through the empty results */
      }
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, results, stderr });
    });
  });
}

const modules = (...names: string[]): string[] => names.flatMap((n) => ['--module', path.join(root, 'test/fuzz/targets', `${n}.ts`)]);

describe('fuzz engine', () => {
  it('names the exact input that hangs (>1 s of CPU), that keeps >64 MiB, and that exhausts the heap (or runs out of time trying)', { timeout: 180_000 }, async () => {
    const corpus = corpusWith(['engine-hang', 'engine-heap', 'engine-oom']);
    const out = tempDir('vigil-fuzz-engine-out-');
    const { code, results, stderr } = await runFuzz([...modules('engine-hang', 'engine-heap', 'engine-oom'), '--corpus', corpus, '--out', out, '--seconds', '2', '--seed', '5', '--jobs', '1']);
    const by = new Map(results.map((r) => [r.target, r]));
    const summary = (name: string): string[] => (by.get(name)?.findings ?? []).map((f) => `${f.kind} ${Buffer.from(f.input, 'base64')[0] === 0x5a ? 'Z-input' : `other input ${f.input}`}`);
    // Each hang is confirmed by a replay in a fresh worker; mutation may make more 'Z' inputs after it.
    const hangs = summary('engine-hang');
    expect(hangs.length, stderr).toBeGreaterThan(0);
    expect(new Set(hangs)).toEqual(new Set(['hang Z-input']));
    expect(by.get('engine-hang')!.hangs).toBe(hangs.length);
    // Heap growth over 64 MiB on one input is reported from inside the worker, with that input.
    expect(summary('engine-heap'), stderr).toEqual(['alloc Z-input']);
    // Heap exhaustion kills the worker and the runner reads the input from shared memory; V8's last-resort
    // collections near a 768 MiB limit take more than 1 s of CPU, so the watchdog may call it a hang first.
    const oom = summary('engine-oom');
    expect(oom.length, stderr).toBeGreaterThan(0);
    for (const f of oom) expect(['alloc Z-input', 'hang Z-input']).toContain(f);
    for (const name of ['engine-hang', 'engine-oom']) {
      const f = by.get(name)!.findings[0];
      expect(fs.readFileSync(path.join(out, name, f.file))).toEqual(Buffer.from(f.input, 'base64'));
    }
    expect(code).toBe(1);
    fs.rmSync(corpus, { recursive: true, force: true });
    fs.rmSync(out, { recursive: true, force: true });
  });

  it('a heap that fills over many inputs is no finding: the input running then is replayed alone in a fresh worker, the refill counted', { timeout: 180_000 }, async () => {
    const corpus = corpusWith(['engine-leak']);
    const out = tempDir('vigil-fuzz-engine-out-');
    const { code, results, stderr } = await runFuzz([...modules('engine-leak'), '--corpus', corpus, '--out', out, '--seconds', '10', '--seed', '7']);
    expect(results.map((r) => ({ target: r.target, allocs: r.allocs, hangs: r.hangs, crashes: r.crashes, findings: r.findings.length })), stderr).toEqual([{ target: 'engine-leak', allocs: 0, hangs: 0, crashes: 0, findings: 0 }]);
    expect(results[0].heapRefills, stderr).toBeGreaterThan(0);
    expect(code).toBe(0);
    fs.rmSync(corpus, { recursive: true, force: true });
    fs.rmSync(out, { recursive: true, force: true });
  });

  it('--execs stops a target after exactly that many inputs, and coverage still guides (every block of the target is found)', { timeout: 120_000 }, async () => {
    const corpus = corpusWith(['engine-noop']);
    const out = tempDir('vigil-fuzz-engine-out-');
    const { code, results, stderr } = await runFuzz([...modules('engine-noop'), '--corpus', corpus, '--out', out, '--seconds', '600', '--execs', '300000', '--seed', '3']);
    expect(results.map((r) => [r.target, r.execs]), stderr).toEqual([['engine-noop', 300_000]]);
    // The function, the right operand of `&&`, and the early return: the last one is reached by one
    // input in ~65,000 and only from a kept input that already has data[0] === 1.
    expect(results[0].blocks).toBe(3);
    expect(code).toBe(0);
    fs.rmSync(corpus, { recursive: true, force: true });
    fs.rmSync(out, { recursive: true, force: true });
  });
});
