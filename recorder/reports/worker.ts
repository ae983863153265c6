/**
 * Scheduled reports run in a worker thread: reading, classifying and above all verifying a month of the
 * audit log is seconds to minutes of CPU, which on the gateway's own thread would stall every session it
 * relays. The worker opens its own state store connection, writes the file and returns what the
 * `report.generated` event needs; the gateway records the event.
 */
import { runInWorker } from '../worker-thread.ts';
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
  return runInWorker<ReportedRun>(import.meta.url, './worker-main', job, 'report run', signal);
}
