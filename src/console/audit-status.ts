import type { VerifyResult } from '../../recorder/audit/verify.ts';
import { verifyAuditLogInWorker, type VerifyJob } from '../../recorder/audit/verify-worker.ts';

/**
 * The verification behind the console's Audit chain page (`GET /console/api/audit/status`). A full
 * verification reads the whole log (about 3.4 ms per 1,000 records), so it runs in a worker thread, and
 * how often one may start is bounded: every console request is itself an audit event, so "verify again
 * when the chain moved" alone would verify on every call, and `?verify=now` in a loop would keep a core
 * busy for as long as someone asks.
 * - One run at a time: callers that arrive while it runs share its result.
 * - None starts within `minGapMs` of the last one finishing, `?verify=now` or not: the latest is served.
 * - Without `?verify=now` the latest result is served while younger than `maxAgeMs`, even if events were
 *   written since (the answer says how old it is and which seq it reached).
 */
export interface ChainVerification {
  /** The how-manieth verification this gateway ran: callers that got the same run share one. */
  run: number;
  /** The chain's last seq when the run started. */
  chainSeq: number;
  startedAt: number;
  finishedAt: number;
  result: VerifyResult;
}

/** After a run finishes, no other starts for this long; `?verify=now` meanwhile gets the latest result. */
export const VERIFY_MIN_GAP_MS = 5_000;
/** Without `?verify=now`, the latest result is served while younger than this although the chain moved. */
export const VERIFY_MAX_AGE_MS = 60_000;

export class ChainVerifier {
  private runs = 0;
  private running: Promise<ChainVerification> | undefined;
  /** The last finished run: its verification, or why it failed (served until the next may start). */
  private last: { finishedAt: number; outcome: ChainVerification | Error } | undefined;
  private readonly stopping = new AbortController();

  constructor(
    private readonly job: VerifyJob,
    private readonly bounds = { minGapMs: VERIFY_MIN_GAP_MS, maxAgeMs: VERIFY_MAX_AGE_MS },
  ) {}

  /** The verification to answer with: the running one, the latest, or a new run (see above). */
  current(chainSeq: number, now: boolean): Promise<ChainVerification> {
    if (this.running) return this.running;
    const last = this.last;
    if (last) {
      const age = Date.now() - last.finishedAt;
      const upToDate = !(last.outcome instanceof Error) && last.outcome.chainSeq === chainSeq;
      if (age < this.bounds.minGapMs || (!now && (upToDate || age < this.bounds.maxAgeMs))) {
        return last.outcome instanceof Error ? Promise.reject(last.outcome) : Promise.resolve(last.outcome);
      }
    }
    return this.start(chainSeq);
  }

  /** Gateway shutdown: a running worker is ended and its callers get an error. */
  close(): void {
    this.stopping.abort();
  }

  private start(chainSeq: number): Promise<ChainVerification> {
    const run = ++this.runs;
    const startedAt = Date.now();
    const done = verifyAuditLogInWorker(this.job, this.stopping.signal).then(
      (result) => {
        const v: ChainVerification = { run, chainSeq, startedAt, finishedAt: Date.now(), result };
        this.last = { finishedAt: v.finishedAt, outcome: v };
        return v;
      },
      (e: Error) => {
        // A failed run counts against the bound too, or a failing verification could be started in a loop.
        this.last = { finishedAt: Date.now(), outcome: e };
        throw e;
      },
    );
    this.running = done.finally(() => (this.running = undefined));
    return this.running;
  }
}

/** The `verify` member of the status answer: the fields the console reads, and how old the result is. */
export function verifyAnswer(v: ChainVerification) {
  const r = v.result;
  return {
    at: new Date(v.finishedAt).toISOString(), status: r.status, ok: r.ok, records: r.records, segments: r.segments, checkpoints: r.checkpoints,
    last_seq: r.lastSeq, checkpointed_seq: r.checkpointedSeq, tail_records: r.tailRecords, first_bad: r.firstBad,
    run: v.run, started_at: new Date(v.startedAt).toISOString(), duration_ms: v.finishedAt - v.startedAt, age_ms: Date.now() - v.finishedAt,
  };
}
