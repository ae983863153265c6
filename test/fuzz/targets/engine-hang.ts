import type { FuzzTarget } from '../../../fuzz/engine/target.ts';

/** The engine's own test: one input shape ('Z' first) loops forever; the watchdog must name that input. */
export const target: FuzzTarget = {
  name: 'engine-hang',
  covers: ['test/fuzz/targets/'],
  maxLen: 64,
  run(data) {
    if (data[0] === 0x5a) for (;;);
  },
};
