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
   * Features executed since the last call, as numbers (script index, block start, bucket packed), added
   * to `into`. Returns how many ranges with a non-zero count were seen.
   */
  take(into: Set<number>): number {
    const res = this.post('Profiler.takePreciseCoverage') as { result: ScriptCoverage[] };
    let hits = 0;
    for (const sc of res.result) {
      if (!this.isRelevant(sc.url)) continue;
      let si = this.scriptIndex.get(sc.url);
      if (si === undefined) {
        si = this.scriptIndex.size;
        this.scriptIndex.set(sc.url, si);
      }
      for (const fn of sc.functions) {
        for (const r of fn.ranges) {
          if (r.count === 0) continue;
          hits++;
          // 12 bits of script, 24 bits of offset (the sources are far smaller), 3 bits of bucket.
          into.add(((si * 0x1000000 + r.startOffset) * 8 + bucket(r.count)) * 2 + (r.endOffset & 1));
        }
      }
    }
    return hits;
  }

  /** Discards what was counted so far (before a measured run). */
  reset(): void {
    this.post('Profiler.takePreciseCoverage');
  }

  close(): void {
    this.session.disconnect();
  }
}

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
  return Math.floor(feature / 16) * 2 + (feature % 2);
}
