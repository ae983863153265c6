import fs from 'node:fs';
import { verifyAuditLog } from '../audit/verify.ts';
import { verifyAuditLogInWorker } from '../audit/verify-worker.ts';
import { planPurgeInWorker } from './plan-worker.ts';
import { forgetPurged } from '../audit/search-index.ts';
import type { PurgeEntry } from '../audit/anchor.ts';
import type { RemoteRecordings } from '../types.ts';
import {
  planPurge, purgeEntry, applyPurge, planRecordingPurge, applyRecordingPurge,
  type HoldFilter, type PurgePlan, type RecordingPurge, type RetentionPolicy,
} from './purge.ts';

export interface PurgeRunOptions {
  auditDir: string;
  recordingsDir: string;
  publicKeyFile: string;
  policy: RetentionPolicy;
  /** Active legal holds, read just before planning. */
  holds: () => Promise<HoldFilter[]>;
  /** Write the `audit.purged` event durably; called before anything is removed. */
  record: (details: Record<string, unknown>) => Promise<unknown>;
  reason: string;
  dryRun?: boolean;
  now?: number;
  /** Recordings in object storage: purged by the same ceiling and holds as the local ones. */
  remote?: RemoteRecordings;
  /**
   * Verify and plan in worker threads (the gateway's daily run): both read the whole log synchronously,
   * which on the gateway's own thread would stall every session it relays meanwhile.
   */
  offThread?: boolean;
  /** Ends the workers (gateway shutdown); the purge then rejects before removing anything. */
  signal?: AbortSignal;
}

export type PurgeRunResult =
  | { status: 'refused'; problem: string }
  | { status: 'nothing' | 'dry-run' | 'purged'; plan: PurgePlan; entry?: PurgeEntry; recordings: RecordingPurge };

/**
 * One retention purge (`vigil audit purge`, and the gateway's daily run): refuse a log that does not
 * verify, plan against the policy and the active holds, record `audit.purged`, then anchor and remove.
 */
export async function runPurge(o: PurgeRunOptions): Promise<PurgeRunResult> {
  // A purge of a log that does not verify would destroy the evidence of what is wrong with it.
  const check = o.offThread
    ? await verifyAuditLogInWorker({ auditDir: o.auditDir, publicKeyFile: o.publicKeyFile }, o.signal)
    : verifyAuditLog(o.auditDir, fs.readFileSync(o.publicKeyFile));
  if (check.status === 'invalid') return { status: 'refused', problem: check.firstBad?.problem ?? 'invalid' };
  let holds = await o.holds();
  const now = o.now ?? Date.now();
  let remoteOld: string[] | undefined;
  let remoteError: string | undefined;
  if (o.remote && o.policy.recordingsMs !== undefined) {
    try {
      remoteOld = await o.remote.sessionsOlderThan(now - Math.max(o.policy.recordingsMs, o.policy.floorMs));
    } catch (e) {
      // Object storage away: the log and the local recordings are still purged; the stored ones wait.
      remoteError = (e as Error).message;
    }
  }
  const planLocally = (active: HoldFilter[]) => {
    const p = planPurge(o.auditDir, o.policy, active, now);
    return { plan: p, recordings: planRecordingPurge(o.recordingsDir, o.policy, active, p.heldSessions, now) };
  };
  const planWith = async (active: HoldFilter[]) => {
    const { plan: p, recordings: r } = o.offThread
      ? await planPurgeInWorker({ auditDir: o.auditDir, recordingsDir: o.recordingsDir, policy: o.policy, holds: active, now }, o.signal)
      : planLocally(active);
    if (remoteOld) r.remote = remoteOld.filter((s) => !p.heldSessions.has(s) && !active.some((h) => h.session === s));
    if (remoteError !== undefined) r.remoteError = remoteError;
    return { plan: p, recordings: r };
  };
  let { plan, recordings } = await planWith(holds);
  // Planning reads the whole log (and object storage was listed): a hold placed meanwhile must count.
  // Read the holds again right before anything is recorded or removed, and plan again while new ones appear.
  if (!o.dryRun) {
    for (;;) {
      const latest = await o.holds();
      const known = new Set(holds.map((h) => h.id));
      if (latest.every((h) => known.has(h.id))) break;
      // Released holds stay in the set for this run: keeping more than needed is safe, less is not.
      holds = [...holds, ...latest.filter((h) => !known.has(h.id))];
      ({ plan, recordings } = await planWith(holds));
    }
  }
  if (o.signal?.aborted) throw new Error('retention purge stopped: the gateway is shutting down');
  let entry = purgeEntry(plan, o.reason, new Date(now));
  if (o.dryRun) return { status: 'dry-run', plan, entry, recordings };
  if (!entry && recordings.sessions.length === 0 && !recordings.remote?.length) {
    // Segments an interrupted purge recorded and anchored but did not delete yet: finish that purge.
    if (plan.leftovers.length) {
      applyPurge(o.auditDir, plan, undefined);
      forgetPurged(o.auditDir);
    }
    return { status: 'nothing', plan, recordings };
  }
  // Recorded before anything is removed: a purge is never unrecorded, and verify requires this event to
  // accept the anchor.
  const recordPurge = (narrowedBy?: string[]) =>
    o.record({
      reason: o.reason,
      ...(entry ? { segments: entry.segments, first_seq: entry.first_seq, last_seq: entry.last_seq, min_time: entry.min_time, max_time: entry.max_time } : { segments: [] }),
      recording_sessions: [...new Set([...recordings.sessions, ...(recordings.remote ?? [])])].sort(),
      ...(recordings.remote?.length ? { recording_storage: o.remote?.location, stored_recording_sessions: recordings.remote } : {}),
      holds: holds.map((h) => h.id),
      ...(narrowedBy ? { narrowed_by_holds: narrowedBy } : {}),
    });
  await recordPurge();
  // Writing the event takes a while (a group commit, or the running gateway's spool): a hold placed
  // meanwhile must still win. Read the holds once more, now with nothing but the removal left to do, and
  // remove only what they allow; a purge narrowed that way is recorded again (that event vouches for the
  // anchor), until no new hold appears.
  for (;;) {
    const latest = await o.holds();
    const known = new Set(holds.map((h) => h.id));
    const added = latest.filter((h) => !known.has(h.id));
    if (added.length === 0) break;
    holds = [...holds, ...added];
    const allowed = await planWith(holds);
    const stillGoes = new Set(allowed.plan.segments.map((s) => s.name));
    const segments = plan.segments.filter((s) => stillGoes.has(s.name));
    const local = recordings.sessions.filter((s) => allowed.recordings.sessions.includes(s));
    const remote = recordings.remote?.filter((s) => allowed.recordings.remote?.includes(s));
    if (segments.length === plan.segments.length && local.length === recordings.sessions.length && (remote?.length ?? 0) === (recordings.remote?.length ?? 0)) continue;
    plan = { ...plan, segments, keptBecause: allowed.plan.keptBecause, heldSessions: allowed.plan.heldSessions };
    recordings = { ...recordings, sessions: local, ...(remote ? { remote } : {}) };
    entry = purgeEntry(plan, o.reason, new Date(now));
    await recordPurge(added.map((h) => h.id));
  }
  applyPurge(o.auditDir, plan, entry);
  // The search index holds copies of what went: purged with the segments (a search would drop them too).
  forgetPurged(o.auditDir);
  applyRecordingPurge(o.recordingsDir, recordings);
  if (recordings.remote?.length) await o.remote!.deleteSessions(recordings.remote);
  return { status: 'purged', plan, entry, recordings };
}
