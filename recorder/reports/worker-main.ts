/** Inside the report worker thread (worker.ts): one report run, its result posted back. */
import { parentPort, workerData } from 'node:worker_threads';
import { openStateStore } from '../../src/store/index.ts';
import { generateReport, writeAtomically, type ReportedRun } from './generate.ts';
import type { ReportJob } from './worker.ts';

const job = workerData as ReportJob;
try {
  const store = await openStateStore(job.dataDir);
  try {
    const r = await generateReport({ auditDir: job.auditDir, publicKeyFile: job.publicKeyFile, store, roleTargets: job.roleTargets }, job.period, job.format, new Date(job.now));
    await writeAtomically(job.out, r.text);
    const run: ReportedRun = { model: { summary: r.model.summary, period: r.model.period, verification: r.model.verification }, bytes: r.bytes, sha256: r.sha256 };
    parentPort!.postMessage({ ok: true, run });
  } finally {
    await store.close();
  }
} catch (e) {
  parentPort!.postMessage({ ok: false, error: (e as Error).message });
}
