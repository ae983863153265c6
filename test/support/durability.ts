import { expect } from 'vitest';
import type { EventBus } from '../../src/events/bus.ts';

/**
 * Wrap `beforeForward` (strict mode) so the test decides when a durable record counts as durable:
 * everything forwarded behind it waits until `release()`. `restore()` puts the real one back.
 */
export function holdDurability(events: EventBus) {
  const real = events.beforeForward.bind(events);
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  events.beforeForward = (input, onFailure) => {
    const p = real(input, onFailure);
    expect(p).toBeInstanceOf(Promise);
    return p!.then(() => held);
  };
  return { release, restore: () => (events.beforeForward = real), real };
}
