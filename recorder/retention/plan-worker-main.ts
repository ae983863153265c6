/** Inside the planning worker thread (plan-worker.ts): one purge plan, posted back. */
import { parentPort, workerData } from 'node:worker_threads';
import { planPurge, planRecordingPurge } from './purge.ts';
import type { PlanJob, PlanResult } from './plan-worker.ts';
import type { WorkerReply } from '../worker-thread.ts';

const job = workerData as PlanJob;
let reply: WorkerReply<PlanResult>;
try {
  const plan = planPurge(job.auditDir, job.policy, job.holds, job.now);
  reply = { ok: true, value: { plan, recordings: planRecordingPurge(job.recordingsDir, job.policy, job.holds, plan.heldSessions, job.now) } };
} catch (e) {
  reply = { ok: false, error: (e as Error).message };
}
parentPort!.postMessage(reply);
