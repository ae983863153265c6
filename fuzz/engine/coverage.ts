import { Session } from 'node:inspector';

/**
 * Block coverage from V8's precise coverage (the same data `c8`/NODE_V8_COVERAGE use), read through the
 * in-thread inspector. Every `take()` returns the blocks executed since the previous one and resets the
 * counters. A feature is a (block, hit-count bucket) pair, as in AFL: reaching a block at all, or
 * looping through it a different order of magnitude of times, both count as new behaviour.
 */

/** The fuzz harness itself (fuzz/): never counted. */
const HARNESS = new URL('..', import.meta.url).href;

interface Range {
  startOffset: number;
  endOffset: number;
  count: number;
}
interface ScriptCoverage {
  scriptId: string;
  url: string;
  functions: { ranges: Range[] }[];
}

export class BlockCoverage {
  private readonly session = new Session();
  private readonly scriptIndex = new Map<string, number>();
  private readonly relevant = new Map<string, boolean>();
  /** Per script index: every block (key → start offset) a range was ever reported for. */
  private readonly catalog: { keys: Set<number>; blocks: { key: number; start: number }[]; sorted: boolean }[] = [];

  constructor(private readonly covers: string[]) {
    this.session.connect();
    this.post('Profiler.enable');
    this.post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
  }

  private post(method: string, params?: object): unknown {
    let out: unknown;
    let failure: Error | null = null;
    // An in-thread session answers synchronously.
    this.session.post(method, params ?? {}, (err, res) => {
      failure = err;
      out = res;
    });
    if (failure) throw failure;
    return out;
  }

  private isRelevant(url: string): boolean {
    let r = this.relevant.get(url);
    if (r === undefined) {
      r = !url.includes('/node_modules/') && !url.startsWith(HARNESS) && this.covers.some((c) => url.includes(c));
      this.relevant.set(url, r);
    }
    return r;
  }

  /**
   * Features executed since the last call, added to `into`: one per block reached, (block, bucket of
   * its count). V8 leaves out a nested range whose count equals its parent's (a branch taken on every
   * call of its function is folded into the function's range, and one never taken has count 0), so the
   * ranges reported are not the blocks reached. Every range V8 ever reported is remembered as a block;
   * a block's count is that of the innermost range reported around its start (its own when reported).
   */
  take(into: Set<number>): void {
    const res = this.post('Profiler.takePreciseCoverage') as { result: ScriptCoverage[] };
    for (const sc of res.result) {
      if (!this.isRelevant(sc.url)) continue;
      let si = this.scriptIndex.get(sc.url);
      if (si === undefined) {
        si = this.scriptIndex.size;
        this.scriptIndex.set(sc.url, si);
        this.catalog.push({ keys: new Set(), blocks: [], sorted: true });
      }
      const known = this.catalog[si];
      const ranges: Range[] = [];
      for (const fn of sc.functions) {
        for (const r of fn.ranges) {
          ranges.push(r);
          const key = (si * OFFSETS + r.startOffset) * 2 + (r.endOffset & 1);
          if (!known.keys.has(key)) {
            known.keys.add(key);
            known.blocks.push({ key, start: r.startOffset });
            known.sorted = false;
          }
        }
      }
      if (!known.sorted) {
        known.blocks.sort((a, b) => a.start - b.start);
        known.sorted = true;
      }
      // Sweep the blocks in offset order over the ranges (sorted by start, outer first): V8's ranges
      // nest, so the innermost range open at a block's start is the top of a stack.
      ranges.sort((a, b) => a.startOffset - b.startOffset || b.endOffset - a.endOffset);
      const open: Range[] = [];
      let next = 0;
      for (const b of known.blocks) {
        while (next < ranges.length && ranges[next].startOffset <= b.start) {
          const r = ranges[next++];
          while (open.length > 0 && open[open.length - 1].endOffset <= r.startOffset) open.pop();
          open.push(r);
        }
        while (open.length > 0 && open[open.length - 1].endOffset <= b.start) open.pop();
        const count = open.length > 0 ? open[open.length - 1].count : 0;
        if (count > 0) into.add(b.key * 8 + bucket(count));
      }
    }
  }

  /** Discards what was counted so far (before a measured run). */
  reset(): void {
    this.post('Profiler.takePreciseCoverage');
  }

  close(): void {
    this.session.disconnect();
  }
}

/** Offsets within a script: 24 bits (the sources are far smaller). 12 bits of script index remain. */
const OFFSETS = 0x1000000;

function bucket(count: number): number {
  if (count <= 3) return count - 1; // 0,1,2
  if (count <= 7) return 3;
  if (count <= 31) return 4;
  if (count <= 127) return 5;
  if (count <= 1023) return 6;
  return 7;
}

/** The block a feature belongs to, whatever its bucket: for the "coverage (blocks)" figure. */
export function blockOf(feature: number): number {
  return Math.floor(feature / 8);
}
