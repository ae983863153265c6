import type { VigilConfig } from '../../config/schema.ts';

/**
 * The bounds of a worker's shutdown (gateway.workers > 1), shared by the worker, which holds each step to
 * its bound, and the primary, which kills a worker only once all of them together have passed: a worker
 * whose steps each keep to their bound is never killed mid-close (its last records, the lock of a backend
 * account, a recording's upload outcome would be lost).
 */

/** Sessions still live when the drain window ends are cut; their session.end records get this long. */
export const END_SESSIONS_MS = 2_000;
/**
 * Locking the backend accounts of the sessions just ended: connecting to the backend (up to
 * gateway.connect_timeout) plus this for the lock's statements. Past it the worker goes without: an account
 * left open is locked by the next start's sweep.
 */
export const ACCOUNT_LOCK_MS = 5_000;
/** The worker waits this long for the primary to acknowledge its last records (IpcAuditSink.close). */
export const SINK_CLOSE_MS = 10_000;

/** How long recordings get to finish their uploads (recording.storage s3), as the primary gives its own. */
export const recordingsCloseMs = (drainMs: number): number => Math.max(drainMs, 2_000);
/** The step that closes them: their own grace, and a second to record what did not upload. */
export const recordingsStepMs = (drainMs: number): number => recordingsCloseMs(drainMs) + 1_000;
export const settleAccountsMs = (config: VigilConfig): number => config.gateway.connect_timeout + ACCOUNT_LOCK_MS;

/** The longest a worker's shutdown may take once asked to drain, step by step (./worker.ts). */
export function workerShutdownMs(drainMs: number, config: VigilConfig): number {
  return drainMs + END_SESSIONS_MS + settleAccountsMs(config) + recordingsStepMs(drainMs) + SINK_CLOSE_MS;
}
