/** Inside the verification worker thread (verify-worker.ts): one full verification, its result posted back. */
import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { verifyAuditLog, type VerifyResult } from './verify.ts';
import type { VerifyJob } from './verify-worker.ts';
import type { WorkerReply } from '../worker-thread.ts';

const job = workerData as VerifyJob;
let reply: WorkerReply<VerifyResult>;
try {
  reply = { ok: true, value: verifyAuditLog(job.auditDir, fs.readFileSync(job.publicKeyFile)) };
} catch (e) {
  reply = { ok: false, error: (e as Error).message };
}
parentPort!.postMessage(reply);
