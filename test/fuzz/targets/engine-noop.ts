import type { FuzzTarget } from '../../../fuzz/engine/target.ts';

/** The engine's own overhead: a target that does (almost) nothing. */
export const target: FuzzTarget = {
  name: 'engine-noop',
  covers: ['test/fuzz/targets/'],
  maxLen: 64,
  run(data) {
    if (data[0] === 1 && data[1] === 2) return;
  },
};
