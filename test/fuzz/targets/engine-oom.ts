import type { FuzzTarget } from '../../../fuzz/engine/target.ts';

/** The engine's own test: one input shape ('Z' first) allocates without bound until the worker's heap is exhausted. */
export const target: FuzzTarget = {
  name: 'engine-oom',
  covers: ['test/fuzz/targets/'],
  maxLen: 64,
  run(data) {
    if (data[0] !== 0x5a) return;
    const hoard: string[] = [];
    // Flat 512 KiB strings on the V8 heap (larger ones Node keeps outside it): the heap limit must come
    // long before the 1 s CPU limit, else this is reported as a hang.
    const bytes = Buffer.alloc(1 << 19, 0x78);
    for (;;) hoard.push(bytes.toString('latin1'));
  },
};
