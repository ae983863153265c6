/**
 * Verifying the whole audit log in a worker thread. `verifyAuditLog` reads and checks every record
 * synchronously (about 3.4 ms per 1,000 records): on the gateway's own thread a large log would stall
 * every session it relays for as long. Same shape as the report worker (recorder/reports/worker.ts).
 */
import { runInWorker } from '../worker-thread.ts';
import type { VerifyResult } from './verify.ts';

export interface VerifyJob {
  auditDir: string;
  publicKeyFile: string;
}

/** Verify the log in a new worker thread; `signal` ends it (gateway shutdown) and the promise rejects. */
export function verifyAuditLogInWorker(job: VerifyJob, signal?: AbortSignal): Promise<VerifyResult> {
  return runInWorker<VerifyResult>(import.meta.url, './verify-worker-main', job, 'audit log verification', signal);
}
