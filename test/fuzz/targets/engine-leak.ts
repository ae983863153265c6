import type { FuzzTarget } from '../../../fuzz/engine/target.ts';

/**
 * The engine's own test: every input keeps 24 MiB for good (a slow leak, far below the 64 MiB one input
 * may keep), so the worker's heap fills over ~32 inputs and no input does it alone.
 */
const kept: string[] = [];
const chunk = Buffer.alloc(1 << 19, 0x79);

export const target: FuzzTarget = {
  name: 'engine-leak',
  covers: ['test/fuzz/targets/'],
  maxLen: 64,
  run(data) {
    // Flat 512 KiB strings on the V8 heap (larger ones Node keeps outside it), each one distinct.
    for (let i = 0; i < 48; i++) kept.push(chunk.toString('latin1', 0, chunk.length - (data.length + i) % 7));
  },
};
