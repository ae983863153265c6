import type { Logger } from 'pino';
import { AuditIndex, chainHeadSeq } from './search-index.ts';

export interface IndexFollowerOptions {
  auditDir: string;
  /** How often to look for newly committed records. */
  intervalMs: number;
  /** Records per slice: the event loop is given back between slices, so proxies never wait long. */
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
  stop(): Promise<void>;
}

/**
 * Keep the search index up with the log inside the gateway: off the hot path (it reads segment files
 * after the writer has committed them, never the writer's queue), in slices of `batch` records with the
 * event loop yielded between them. A failure is logged and retried on the next tick: searches catch
 * up by themselves anyway, so the index lagging never loses anything.
 */
export function startIndexFollower(o: IndexFollowerOptions): IndexFollower {
  let index: AuditIndex | undefined;
  let indexedSeq = 0;
  let running: Promise<void> | undefined;
  let stopped = false;
  let failing = false;
  const run = async () => {
    try {
      index ??= AuditIndex.open(o.auditDir);
      for (;;) {
        const res = index.catchUp({ maxRecords: o.batch });
        indexedSeq = index.indexedSeq();
        if (res.done || stopped || o.paused?.()) break;
        await new Promise<void>((r) => setImmediate(r));
      }
      if (failing) o.log.info({ dir: o.auditDir }, 'audit search index: catching up again');
      failing = false;
    } catch (e) {
      if (!failing) o.log.warn({ err: e, dir: o.auditDir }, 'audit search index: catch-up failed (searches still catch up themselves); retrying');
      failing = true;
      index?.close();
      index = undefined;
    }
  };
  const timer = setInterval(() => {
    if (!running && !stopped && !o.paused?.()) running = run().finally(() => (running = undefined));
  }, o.intervalMs);
  timer.unref();
  return {
    lag() {
      const chainSeq = chainHeadSeq(o.auditDir);
      return { indexedSeq, chainSeq, lag: Math.max(0, chainSeq - indexedSeq) };
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
      index?.close();
      index = undefined;
    },
  };
}
