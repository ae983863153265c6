/** Inside the verification worker thread (verify-worker.ts): one full verification, its result posted back. */
import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { verifyAuditLog } from './verify.ts';
import type { VerifyJob, VerifyReply } from './verify-worker.ts';

const job = workerData as VerifyJob;
let reply: VerifyReply;
try {
  reply = { ok: true, result: verifyAuditLog(job.auditDir, fs.readFileSync(job.publicKeyFile)) };
} catch (e) {
  reply = { ok: false, error: (e as Error).message };
}
parentPort!.postMessage(reply);
