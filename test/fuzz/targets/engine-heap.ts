import type { FuzzTarget } from '../../../fuzz/engine/target.ts';

let kept: number[] = [];

/** The engine's own test: one input shape ('Z' first) keeps ~96 MiB on the heap; that input must be the finding. */
export const target: FuzzTarget = {
  name: 'engine-heap',
  covers: ['test/fuzz/targets/'],
  maxLen: 64,
  run(data) {
    if (data[0] === 0x5a && kept.length === 0) kept = new Array<number>(12_000_000).fill(0.5);
  },
};
