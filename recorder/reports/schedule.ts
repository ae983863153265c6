/**
 * Scheduled access-review reports (`reports.schedules`): the gateway writes each into
 * <data>/reports/<name>-<time>.<format> when its schedule fires and records `report.generated`. A run that
 * fails is logged (and recorded as a failed report.generated) and the schedule goes on; runs of one schedule
 * never overlap, and each runs in a worker thread (worker.ts). Timers wake at least once a minute, so a clock step is noticed within a minute.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { EventBus } from '../../src/events/bus.ts';
import { parseSchedule, type Schedule } from './cron.ts';
import { reportEvent } from './generate.ts';
import { runReportInWorker } from './worker.ts';
import type { ReportFormat } from './index.ts';
import type { StoreConfig } from '../../src/store/config.ts';

export interface ReportScheduleConfig {
  name: string;
  schedule: string;
  /** How far back each report looks from the time its run was due. */
  period: number;
  format: ReportFormat;
}

export interface ReportScheduleDeps {
  schedules: ReportScheduleConfig[];
  /** The data directory (the worker opens its own state store connection there). */
  dataDir: string;
  /** Role name → targets it reaches, for the access section; asked at each run (a config reload changes roles). */
  roleTargets: () => Record<string, string[]>;
  store?: StoreConfig;
  events: EventBus;
  log: Logger;
  paths: { audit: string; auditPublicKey: string; reports: string };
}

export interface ReportScheduler {
  stop(): Promise<void>;
}

const MAX_SLEEP_MS = 60_000;
const SYSTEM = { user: 'vigil', roles: ['system'] };
const GATEWAY = { ip: 'local', via: 'gateway' };

/** `2026-12-06T04:00:00.000Z` → `20261206T040000Z`: sortable and safe in a file name. */
const stamp = (d: Date) => d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');

export function startReportSchedules(d: ReportScheduleDeps): ReportScheduler {
  let stopped = false;
  const timers = new Set<NodeJS.Timeout>();
  const running = new Set<Promise<void>>();
  const shutdown = new AbortController();

  /**
   * One report for the run due at `due`. Its period ends at the due time, not at the moment the timer
   * fired or the previous run finished: timers fire late and runs take time, and a window anchored on
   * either would drift, leaving gaps (or overlaps) between consecutive reports. Anchored on due times, a
   * schedule whose interval equals the period gives periods that meet exactly.
   */
  const runOnce = async (job: ReportScheduleConfig, due: Date): Promise<void> => {
    const period = { since: new Date(due.getTime() - job.period).toISOString(), until: due.toISOString() };
    const file = path.join(d.paths.reports, `${job.name}-${stamp(due)}.${job.format}`);
    const how = { format: job.format, out: file, schedule: job.schedule, name: job.name, actor: SYSTEM, source: GATEWAY };
    try {
      fs.mkdirSync(d.paths.reports, { recursive: true, mode: 0o700 });
      // In a worker thread: a long report never stalls the sessions this process relays.
      const run = await runReportInWorker({ auditDir: d.paths.audit, publicKeyFile: d.paths.auditPublicKey, dataDir: d.dataDir, roleTargets: d.roleTargets(), store: d.store, period, format: job.format, out: file, now: new Date().toISOString() }, shutdown.signal);
      await d.events.emit(reportEvent(run, how));
      d.log.info({ report: job.name, file }, 'scheduled report written');
    } catch (e) {
      d.log.error({ err: e, report: job.name }, 'scheduled report failed');
      await d.events
        .emit({ type: 'report.generated', outcome: 'failure', actor: SYSTEM, source: GATEWAY, target: { name: 'report/access', protocol: 'vigil' }, details: { report: 'access', name: job.name, schedule: job.schedule, format: job.format, out: file, since: period.since, until: period.until, error: (e as Error).message } })
        .catch(() => {});
    }
  };

  /**
   * The slot after `due`, even when this run overran it (it then runs at once), so the periods stay
   * contiguous (@every counts from the due time too). Only when more than one slot passed meanwhile (a
   * clock step, a run far slower than its schedule) are the passed ones skipped, with a warning, rather
   * than run back to back.
   */
  const nextSlot = (job: ReportScheduleConfig, schedule: Schedule, due: Date): Date | undefined => {
    const next = schedule.next(due);
    const now = new Date();
    const after = next && schedule.next(next);
    if (!next || next > now || !after || after > now) return next;
    const resume = schedule.next(now);
    d.log.warn({ report: job.name, skipped_from: next.toISOString(), resume_at: resume?.toISOString() }, 'scheduled report runs skipped: more than one came due while the previous one ran');
    return resume;
  };

  const arm = (job: ReportScheduleConfig, schedule: Schedule, due: Date | undefined) => {
    if (stopped || due === undefined) return;
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (stopped) return;
      if (Date.now() < due.getTime()) return arm(job, schedule, due);
      const run = runOnce(job, due);
      running.add(run);
      void run.finally(() => {
        running.delete(run);
        arm(job, schedule, nextSlot(job, schedule, due));
      });
    }, Math.max(0, Math.min(due.getTime() - Date.now(), MAX_SLEEP_MS)));
    timer.unref();
    timers.add(timer);
  };

  for (const job of d.schedules) {
    const schedule = parseSchedule(job.schedule);
    arm(job, schedule, schedule.next(new Date()));
  }
  return {
    async stop() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      // A run under way is ended rather than awaited: shutdown must not wait for a month of log.
      shutdown.abort();
      await Promise.all([...running]);
    },
  };
}
