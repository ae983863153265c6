/** Inside the report worker thread (worker.ts): one report run, its result posted back. */
import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { replicaIdOf } from '../audit/shared-index.ts';
import { openStateStore } from '../../src/store/index.ts';
import { generateReport, writeAtomically, type ReportedRun } from './generate.ts';
import type { ReportJob } from './worker.ts';

const job = workerData as ReportJob;
try {
  const store = await openStateStore(job.dataDir, job.store);
  try {
    // Replicas on a PostgreSQL store: grants and certificates are the store's, and the events every
    // replica's (the gateway's follower keeps this replica's chain copied, about a second behind).
    const shared = store.auditChains
      ? { chains: store.auditChains, local: { replica: replicaIdOf(job.dataDir), auditDir: job.auditDir, publicKeyPem: fs.readFileSync(job.publicKeyFile, 'utf8') } }
      : undefined;
    const r = await generateReport({ auditDir: job.auditDir, publicKeyFile: job.publicKeyFile, store, roleTargets: job.roleTargets, shared }, job.period, job.format, new Date(job.now));
    await writeAtomically(job.out, r.text);
    const run: ReportedRun = { model: { summary: r.model.summary, period: r.model.period, verification: r.model.verification }, bytes: r.bytes, sha256: r.sha256 };
    parentPort!.postMessage({ ok: true, value: run });
  } finally {
    await store.close();
  }
} catch (e) {
  parentPort!.postMessage({ ok: false, error: (e as Error).message });
}
