/**
 * Scheduled reports run in a worker thread: reading, classifying and above all verifying a month of the
 * audit log is seconds to minutes of CPU, which on the gateway's own thread would stall every session it
 * relays. The worker opens its own state store connection, writes the file and returns what the
 * `report.generated` event needs; the gateway records the event.
 */
import { Worker } from 'node:worker_threads';
import { workerSource } from '../worker-thread.ts';
import type { ReportFormat } from './index.ts';
import type { ReportedRun } from './generate.ts';
import type { ReportPeriod } from './model.ts';
import type { StoreConfig } from '../../src/store/config.ts';

export interface ReportJob {
  auditDir: string;
  publicKeyFile: string;
  dataDir: string;
  roleTargets: Record<string, string[]>;
  /** The gateway's state store (default: the data dir's SQLite); with PostgreSQL the report covers every replica. */
  store?: StoreConfig;
  period: ReportPeriod;
  format: ReportFormat;
  out: string;
  /** ISO time the run is for (the model's generated_at). */
  now: string;
}

/** Run one report in a new worker thread; `signal` ends it (gateway shutdown) and the promise rejects. */
export function runReportInWorker(job: ReportJob, signal?: AbortSignal): Promise<ReportedRun> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(workerSource(import.meta.url, './worker-main'), { eval: true, workerData: job });
    let settled = false;
    const abort = () => {
      if (!settled) reject(new Error('report run stopped: the gateway is shutting down'));
      settled = true;
      void worker.terminate();
    };
    if (signal?.aborted) abort();
    signal?.addEventListener('abort', abort, { once: true });
    worker.once('exit', () => signal?.removeEventListener('abort', abort));
    worker.once('message', (m: { ok: true; run: ReportedRun } | { ok: false; error: string }) => {
      settled = true;
      if (m.ok) resolve(m.run);
      else reject(new Error(m.error));
    });
    worker.once('error', (e) => {
      if (!settled) reject(e);
      settled = true;
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`report worker exited with code ${code}`));
      settled = true;
    });
  });
}
