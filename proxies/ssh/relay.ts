import type { Readable, Writable } from 'node:stream';

/** A chunk consumer besides the destination that can ask the source to wait (e.g. the terminal emulator). */
export interface TapGate {
  /** Register the callback to call when a tap that returned false can take more. */
  onDrain(resume: () => void): void;
}

/**
 * Copy `from` into `to` with explicit backpressure: when `to.write()` says its buffer is full the source
 * is paused until 'drain' (for ssh2 channels that stops SSH window adjustments, so the far peer stops
 * sending). `tap` sees every chunk (counting, recording, observers) before it is written; a tap that
 * returns false also holds the source until its `gate` drains; one that returns 'drop' keeps the chunk
 * from `to`. Does not end `to`: SSH EOF/close
 * ordering is the caller's business.
 */
export function relay(from: Readable, to: Writable, tap: (chunk: Buffer) => boolean | void | 'drop', onEnd?: () => void, gate?: TapGate): () => void {
  let holds = 0;
  const release = () => {
    if (--holds === 0) from.resume();
  };
  const hold = () => {
    if (holds++ === 0) from.pause();
  };
  let tapHeld = false;
  gate?.onDrain(() => {
    if (tapHeld) {
      tapHeld = false;
      release();
    }
  });
  const onDrain = () => release();
  const onData = (chunk: Buffer) => {
    const verdict = tap(chunk);
    // The tap could not account for this chunk: it must not reach `to` (the caller ends the relay).
    if (verdict === 'drop') return;
    if (verdict === false && gate && !tapHeld) {
      tapHeld = true;
      hold();
    }
    if (!to.writable) return;
    if (!to.write(chunk)) {
      hold();
      to.once('drain', onDrain);
    }
  };
  const onFromEnd = () => onEnd?.();
  from.on('data', onData);
  from.once('end', onFromEnd);
  return () => {
    from.off('data', onData);
    from.off('end', onFromEnd);
    to.off('drain', onDrain);
  };
}

/** Resolves once everything already written to `w` has been handed to the transport (or `ms` passed). */
export function flushed(w: Writable, ms = 5000): Promise<void> {
  if (!w.writable || w.writableLength === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    t.unref();
    w.write(Buffer.alloc(0), () => {
      clearTimeout(t);
      resolve();
    });
  });
}
