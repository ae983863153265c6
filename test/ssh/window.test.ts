import { describe, it, expect } from 'vitest';
import { PassThrough, Writable } from 'node:stream';
import { windowKeeper, RECEIVE_WINDOW } from '../../proxies/ssh/window.ts';
import { relay } from '../../proxies/ssh/relay.ts';

/** The parts of an ssh2 channel the window keeper reads, on a real stream so relay can pause it. */
function fakeChannel(window: number) {
  const adjustments: number[] = [];
  const ch = Object.assign(new PassThrough(), {
    incoming: { window },
    outgoing: { id: 7, state: 'open' },
    stderr: new PassThrough(),
    _client: { _protocol: { channelWindowAdjust: (id: number, amount: number) => adjustments.push(id === 7 ? amount : -1) } },
  });
  return { ch, adjustments };
}

/** What the peer does: each packet it sends uses up window. */
function receive(ch: ReturnType<typeof fakeChannel>['ch'], bytes: number): void {
  ch.incoming.window -= bytes;
  ch.write(Buffer.alloc(bytes));
}

describe('ssh receive window keeper', () => {
  it('keeps a flowing channel’s window topped up to RECEIVE_WINDOW, in steps rather than per packet', () => {
    const { ch, adjustments } = fakeChannel(2 * 1024 * 1024);
    const keep = windowKeeper(ch)!;
    keep();
    expect(ch.incoming.window).toBe(RECEIVE_WINDOW);
    expect(adjustments).toEqual([RECEIVE_WINDOW - 2 * 1024 * 1024]);
    ch.incoming.window -= 32 * 1024;
    keep();
    expect(adjustments).toHaveLength(1); // a small use is not worth a message yet
    ch.incoming.window -= 1024 * 1024;
    keep();
    expect(adjustments[1]).toBe(1024 * 1024 + 32 * 1024);
    expect(ch.incoming.window).toBe(RECEIVE_WINDOW);
  });

  it('grants nothing while stdout or stderr has unread data, or once the channel is closing', () => {
    const { ch, adjustments } = fakeChannel(1024 * 1024);
    const keep = windowKeeper(ch)!;
    ch.stderr.write(Buffer.alloc(10)); // a paused stderr relay
    keep();
    expect(adjustments).toEqual([]);
    ch.stderr.read();
    ch.outgoing.state = 'closing';
    keep();
    expect(adjustments).toEqual([]);
  });

  it('leaves anything that is not an ssh2 channel to its defaults', () => {
    expect(windowKeeper(new PassThrough())).toBeUndefined();
    expect(windowKeeper({ incoming: { window: 1 }, outgoing: { id: 1, state: 'open' } })).toBeUndefined();
  });

  it('through relay: the window grows while the destination takes data, not while it holds the source', async () => {
    const { ch, adjustments } = fakeChannel(2 * 1024 * 1024);
    let accept = true;
    const pending: (() => void)[] = [];
    const dest = new Writable({
      highWaterMark: 64 * 1024,
      write(_c, _e, cb) {
        if (accept) cb();
        else pending.push(cb);
      },
    });
    relay(ch, dest, () => {});
    receive(ch, 1024 * 1024);
    await new Promise((r) => setImmediate(r));
    expect(ch.incoming.window).toBe(RECEIVE_WINDOW);
    const granted = adjustments.length;
    accept = false; // a slow client: the destination stops taking data
    for (let i = 0; i < 8; i++) receive(ch, 512 * 1024);
    await new Promise((r) => setImmediate(r));
    expect(ch.isPaused()).toBe(true);
    // At most one grant from before the relay paused; the peer is left with a spent window.
    expect(adjustments.length).toBeLessThanOrEqual(granted + 1);
    expect(ch.incoming.window).toBeLessThanOrEqual(RECEIVE_WINDOW - 3.5 * 1024 * 1024);
    accept = true;
    for (const cb of pending.splice(0)) cb();
  });
});
