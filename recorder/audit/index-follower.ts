import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { chainHeadSeq } from './search-index.ts';
import { workerSource } from '../worker-thread.ts';

export interface IndexFollowerOptions {
  auditDir: string;
  /** How often to look for newly committed records. */
  intervalMs: number;
  /** Records per slice (one SQLite transaction each). */
  batch: number;
  log: Logger;
  /**
   * True while the log cannot be written (an outage, e.g. a full disk): the index waits. It lives on the
   * log's volume and must never take the space the log needs to recover.
   */
  paused?: () => boolean;
}

export interface IndexFollower {
  /** Records committed to the log but not yet in the index (the lag), and the indexed seq. */
  lag(): { indexedSeq: number; chainSeq: number; lag: number };
  /** One catch-up now (or the one under way), resolved when the thread has done it: the thread is up. */
  catchUpNow(): Promise<void>;
  stop(): Promise<void>;
}

/** What the worker thread (index-follower-worker.ts) is started with. */
export interface FollowerWorkerData {
  auditDir: string;
  batch: number;
  /** One Int32: 1 while the follower is paused (read by the worker between slices). */
  paused: SharedArrayBuffer;
}
export type FollowerRequest = { kind: 'catch-up' } | { kind: 'stop' };
export type FollowerReply = { kind: 'progress'; indexedSeq: number } | { kind: 'done'; error?: string };

/** How long stop() waits for a catch-up in progress to finish its slice before ending the thread. */
const STOP_GRACE_MS = 10_000;

/**
 * Keep the search index up with the log inside the gateway, off the hot path twice over: it reads
 * segment files after the writer has committed them (never the writer's queue), and it runs in a
 * worker thread, so indexing (most of the recording's CPU after the relay itself) never holds the event
 * loop that relays sessions. Every `intervalMs` the thread is asked to catch up, in slices of `batch`
 * records. A failure is logged and retried on the next tick: searches catch up by themselves anyway, so
 * the index lagging never loses anything. A thread that dies is started again at the next tick.
 */
export function startIndexFollower(o: IndexFollowerOptions): IndexFollower {
  const paused = new SharedArrayBuffer(4);
  const pausedFlag = new Int32Array(paused);
  let worker: Worker | undefined;
  let running = false;
  let stopped = false;
  let failing = false;
  let indexedSeq = 0;
  let exited: Promise<void> = Promise.resolve();
  let waiters: (() => void)[] = [];
  const settleWaiters = () => {
    const w = waiters;
    waiters = [];
    for (const resolve of w) resolve();
  };

  const onReply = (m: FollowerReply) => {
    if (m.kind === 'progress') {
      indexedSeq = m.indexedSeq;
      return;
    }
    running = false;
    settleWaiters();
    if (m.error !== undefined) {
      if (!failing) o.log.warn({ err: m.error, dir: o.auditDir }, 'audit search index: catch-up failed (searches still catch up themselves); retrying');
      failing = true;
    } else {
      if (failing) o.log.info({ dir: o.auditDir }, 'audit search index: catching up again');
      failing = false;
    }
  };
  const spawn = (): Worker => {
    const data: FollowerWorkerData = { auditDir: o.auditDir, batch: o.batch, paused };
    const w = new Worker(workerSource(import.meta.url, './index-follower-worker'), { eval: true, workerData: data });
    w.unref();
    w.on('message', onReply);
    w.on('error', (e) => {
      if (!failing) o.log.warn({ err: e, dir: o.auditDir }, 'audit search index: the indexing thread failed; starting it again');
      failing = true;
    });
    exited = new Promise((resolve) =>
      w.once('exit', () => {
        if (worker === w) worker = undefined;
        running = false;
        settleWaiters();
        resolve();
      }),
    );
    return w;
  };
  // Started with the gateway, not at the first tick: its memory (a V8 isolate, ~10-20 MiB) is part of the
  // gateway's footprint from the start rather than a jump some seconds into the first sessions.
  worker = spawn();
  const tick = (): void => {
    const isPaused = o.paused?.() ?? false;
    Atomics.store(pausedFlag, 0, isPaused ? 1 : 0);
    if (running || stopped || isPaused) return;
    worker ??= spawn();
    running = true;
    worker.postMessage({ kind: 'catch-up' } satisfies FollowerRequest);
  };
  const timer = setInterval(tick, o.intervalMs);
  timer.unref();
  return {
    lag() {
      const chainSeq = chainHeadSeq(o.auditDir);
      return { indexedSeq, chainSeq, lag: Math.max(0, chainSeq - indexedSeq) };
    },
    catchUpNow() {
      if (stopped) return Promise.resolve();
      const done = new Promise<void>((resolve) => waiters.push(resolve));
      tick();
      // Paused (the log unhealthy): nothing runs until it is writable again; do not wait for that.
      if (!running) settleWaiters();
      return done;
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      const w = worker;
      if (!w) return;
      // The thread finishes the slice in hand, closes the index and ends; one that does not is ended.
      w.postMessage({ kind: 'stop' } satisfies FollowerRequest);
      const grace = setTimeout(() => void w.terminate(), STOP_GRACE_MS);
      await exited;
      clearTimeout(grace);
    },
  };
}
