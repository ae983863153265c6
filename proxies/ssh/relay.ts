import type { Readable, Writable } from 'node:stream';

/**
 * Copy `from` into `to` with explicit backpressure: when `to.write()` says its buffer is full the source
 * is paused until 'drain' (for ssh2 channels that stops SSH window adjustments, so the far peer stops
 * sending). `tap` sees every chunk (counting, recording, observers) before it is written.
 * Does not end `to`: SSH EOF/close ordering is the caller's business.
 */
export function relay(from: Readable, to: Writable, tap: (chunk: Buffer) => void, onEnd?: () => void): () => void {
  const onDrain = () => from.resume();
  const onData = (chunk: Buffer) => {
    tap(chunk);
    if (!to.writable) return;
    if (!to.write(chunk)) {
      from.pause();
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
