/**
 * Where an access-review report's inputs come from: the audit log (read with the audit readers, as audit
 * search and export do, and verified with only the public key) and the state store.
 */
import fs from 'node:fs';
import type { AuditChainStore, StateStore } from '../../src/store/types.ts';
import { streamShared } from '../audit/shared-index.ts';
import { verifySharedIndex } from '../audit/verify-shared.ts';
import { iso } from '../audit/read.ts';
import type { TargetConfig, VigilConfig } from '../../src/config/schema.ts';
import type { RoleConfig } from '../../src/authz/config.ts';
import { roleReachesTarget } from '../../src/authz/policy.ts';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { recordsOf, type AuditRecord } from '../audit/read.ts';
import { parseSegmentName } from '../audit/record.ts';
import { listSegments } from '../audit/segments.ts';
import { verifyAuditLog } from '../audit/verify.ts';
import { streamAuditRecords } from '../export/stream.ts';
import { buildReportModel, type ReportModel, type ReportPeriod, type VerificationSummary } from './model.ts';
import { loadSqlParsers } from './classify-sql.ts';

export interface ReportSources {
  auditDir: string;
  publicKeyFile: string;
  store: StateStore;
  /** Role name → targets it reaches (roleTargetsOf(config)); without it the report names no targets for roles. */
  roleTargets?: Record<string, string[]>;
  /** Replicas on a PostgreSQL store: read every replica's events from the shared index (this data dir's chain is `local`). */
  shared?: { chains: AuditChainStore; local?: { replica: string; auditDir: string } };
}

/** What each configured role reaches under the policy (the connect-time rule, authz/policy.ts). */
export function roleTargetsOf(config: Pick<VigilConfig, 'roles' | 'targets'>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const role of config.roles as RoleConfig[]) out[role.name] = (config.targets as TargetConfig[]).filter((t) => roleReachesTarget(role, t)).map((t) => t.name);
  return out;
}

/** Verify the whole chain and name the signed checkpoint its verified part ends on. */
export async function verificationSummary(auditDir: string, publicKeyFile: string): Promise<VerificationSummary> {
  let res;
  try {
    res = verifyAuditLog(auditDir, fs.readFileSync(publicKeyFile));
  } catch (e) {
    return { status: 'unreadable', ok: false, records: 0, segments: 0, checkpoints: 0, last_seq: 0, problem: (e as Error).message };
  }
  const out: VerificationSummary = {
    status: res.status, ok: res.ok, records: res.records, segments: res.segments, checkpoints: res.checkpoints, last_seq: res.lastSeq,
    ...(res.firstBad ? { problem: res.firstBad.problem } : {}),
  };
  if (res.checkpointedSeq > 0) {
    const cp = await recordAt(auditDir, res.checkpointedSeq);
    if (cp) {
      const d = cp.event.details as { seq?: number; head?: string; key_id?: string };
      out.checkpoint = { seq: cp.seq, signs_seq: Number(d.seq), time: cp.event.time, head: String(d.head), ...(d.key_id ? { key_id: d.key_id } : {}) };
    }
  }
  return out;
}

/** The record with sequence number `seq`, read from the one segment that holds it. */
async function recordAt(auditDir: string, seq: number): Promise<AuditRecord | undefined> {
  const segment = listSegments(auditDir).filter((n) => (parseSegmentName(n)?.firstSeq ?? Infinity) <= seq).at(-1);
  if (!segment) return undefined;
  const text = await fsp.readFile(path.join(auditDir, segment), 'utf8');
  for (const r of recordsOf(text, (line) => line.startsWith(`{"seq":${seq},`))) if (r.seq === seq) return r;
  return undefined;
}

/** A period bound (ISO, UTC) in the 6-digit form of event times, exactly as given: `…00.000Z` → `…00.000000Z`. */
function eventTimeBound(t: string): string {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?Z$/.exec(t);
  if (m) return `${m[1]}.${(m[2] ?? '').padEnd(6, '0')}Z`;
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) throw new Error(`report period bound ${JSON.stringify(t)} is not a time`);
  return iso(d)!;
}

/** Build the report of `period` from the audit log and the store. */
export async function collectReport(src: ReportSources, period: ReportPeriod, now = new Date()): Promise<ReportModel> {
  await loadSqlParsers();
  const verification = await verificationSummary(src.auditDir, src.publicKeyFile);
  const [access, certs, revocations] = await Promise.all([src.store.listAccess(), src.store.listIssuedCerts(period), src.store.listRevocations()]);
  // Streamed: a month of events is read in fixed-size chunks, never held whole. The period's bounds may
  // carry microseconds (an --until of 23:59:59Z is 23:59:59.999999Z): the readers take Dates (milliseconds),
  // so they are asked for the whole milliseconds around it and the exact bounds applied to event times here.
  const bounds = { since: eventTimeBound(period.since), until: eventTimeBound(period.until) };
  const query = { since: new Date(Math.floor(Date.parse(period.since))), until: new Date(Math.floor(Date.parse(period.until)) + 1), hideCheckpoints: true };
  if (src.shared) {
    const v = await verifySharedIndex(src.shared.chains, src.shared.local);
    const bad = v.chains.find((c) => !c.ok)?.firstBad ?? v.local?.firstBad;
    verification.shared_index = { chains: v.chains.map((c) => c.replica), ok: v.ok, ...(bad ? { problem: bad.problem } : {}) };
    if (!v.ok) verification.ok = false;
  }
  // Records whose bytes fail their hash are not read into the figures, and the report says how many: an
  // altered `rm -rf` must not vanish from an access review without a word.
  verification.records_left_out = 0;
  const leftOut = () => void (verification.records_left_out! += 1);
  const records = src.shared
    ? streamShared(src.shared.chains, { since: bounds.since, until: bounds.until, hideCheckpoints: true }, undefined, leftOut)
    : streamAuditRecords(src.auditDir, query, { onLeftOut: leftOut });
  async function* events() {
    for await (const r of records) if (r.event.time >= bounds.since && r.event.time <= bounds.until) yield r.event;
  }
  const model = await buildReportModel({ period, now, events: events(), access, certs, revocations, verification, roleTargets: src.roleTargets });
  if (verification.records_left_out) verification.ok = false;
  return model;
}
