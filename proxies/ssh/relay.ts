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
/**
 * What a tap says about a chunk: false = hold the source until the gate drains (the chunk still goes on),
 * 'drop' = the chunk must not reach `to`, a promise = the chunk goes on once it resolves (dropped if it
 * rejects), the source waiting meanwhile; a promise that resolves to a Buffer sends that instead of the
 * chunk (a pty line a guardrail refused: its Enter replaced, what followed it dropped).
 */
export type TapVerdict = boolean | void | 'drop' | Promise<void | Buffer>;

/** `onBlocked(true)` when `to` stops taking chunks (its buffer or SSH window is full), `onBlocked(false)` once it drains. */
export function relay(from: Readable, to: Writable, tap: (chunk: Buffer) => TapVerdict, onEnd?: () => void, gate?: TapGate, onBlocked?: (blocked: boolean) => void): () => void {
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
  let blocked = false;
  const onDrain = () => {
    if (blocked) {
      blocked = false;
      onBlocked?.(false);
    }
    release();
  };
  let stopped = false;
  /** A chunk waiting for its tap's promise: the source's end is passed on only after it. */
  let inFlight: Promise<void> = Promise.resolve();
  const write = (chunk: Buffer) => {
    if (stopped || !to.writable) return;
    if (!to.write(chunk)) {
      hold();
      if (!blocked) {
        blocked = true;
        onBlocked?.(true);
      }
      to.once('drain', onDrain);
    }
  };
  const onData = (chunk: Buffer) => {
    const verdict = tap(chunk);
    // The tap could not account for this chunk: it must not reach `to` (the caller ends the relay).
    if (verdict === 'drop') return;
    if (verdict instanceof Promise) {
      hold();
      inFlight = verdict.then(
        (replacement) => {
          write(replacement instanceof Buffer ? replacement : chunk);
          release();
        },
        () => {
          /* refused: the chunk is dropped and the caller ends the relay */
        },
      );
      return;
    }
    if (verdict === false && gate && !tapHeld) {
      tapHeld = true;
      hold();
    }
    write(chunk);
  };
  const onFromEnd = () => void inFlight.then(() => !stopped && onEnd?.());
  from.on('data', onData);
  from.once('end', onFromEnd);
  return () => {
    stopped = true;
    from.off('data', onData);
    from.off('end', onFromEnd);
    to.off('drain', onDrain);
    if (blocked) onBlocked?.(false);
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
