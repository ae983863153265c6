/**
 * Planning a retention purge in a worker thread. planPurge reads and parses every segment (all of them
 * when there are holds) synchronously: on the gateway's own thread the daily purge would stall every
 * session it relays for as long (as verifyAuditLog would: see audit/verify-worker.ts).
 */
import { runInWorker } from '../worker-thread.ts';
import type { HoldFilter, PurgePlan, RecordingPurge, RetentionPolicy } from './purge.ts';

export interface PlanJob {
  auditDir: string;
  recordingsDir: string;
  policy: RetentionPolicy;
  holds: HoldFilter[];
  now: number;
}

export interface PlanResult {
  plan: PurgePlan;
  recordings: RecordingPurge;
}

/** planPurge and planRecordingPurge in a new worker thread; `signal` ends it (gateway shutdown). */
export function planPurgeInWorker(job: PlanJob, signal?: AbortSignal): Promise<PlanResult> {
  return runInWorker<PlanResult>(import.meta.url, './plan-worker-main', job, 'retention purge planning', signal);
}
