import fs from 'node:fs';
import path from 'node:path';
import { listSegments, splitSegment } from '../audit/segments.ts';
import { parseRecordLine, parseSegmentName, isCheckpointLine, metaName, type CheckpointDetails } from '../audit/record.ts';
import { ANCHOR_FILE, readAnchorFile, updateAnchorFile, type PurgeEntry } from '../audit/anchor.ts';
import { VigilError } from '../../src/errors.ts';

const DAY = 86_400_000;

/**
 * How long events are kept. `classes` maps an event type or a dot-prefix of it (`db.query` covers
 * `db.query.start`) to a ceiling; the longest matching prefix wins, `defaultMs` otherwise. `floorMs` is
 * the minimum whatever the ceilings say: nothing younger than it is ever purged.
 */
export interface RetentionPolicy {
  floorMs: number;
  defaultMs: number;
  classes: Record<string, number>;
  /** Ceiling for session recordings (undefined: recordings are never purged). */
  recordingsMs?: number;
}

/** A legal hold: events (and recordings) matching every given field are never purged while it is active. */
export interface HoldFilter {
  id: string;
  user?: string;
  target?: string;
  session?: string;
  since?: string;
  until?: string;
}

export class RetentionError extends VigilError {}

/** The effective ceiling of an event type: its class's (longest prefix), never below the floor. */
export function ceilingFor(policy: RetentionPolicy, type: string): number {
  // Checkpoints only vouch for the chain around them: they go with their segment, bounded by the floor alone.
  if (type === 'audit.checkpoint') return policy.floorMs;
  let best = -1;
  let ms = policy.defaultMs;
  for (const [cls, v] of Object.entries(policy.classes)) {
    if ((type === cls || type.startsWith(cls + '.')) && cls.length > best) {
      best = cls.length;
      ms = v;
    }
  }
  return Math.max(ms, policy.floorMs);
}

interface EventView {
  type: string;
  time: string;
  actor?: { user?: string };
  target?: { name?: string };
  session_id?: string;
  details?: Record<string, unknown>;
}

/**
 * Whether an event concerns `user`: done by them, or done to them by someone else (an approval of their
 * request, a lock or certificate an admin made for them: `details.user`, or the target `user/NAME`).
 * A hold on a person keeps both.
 */
function concernsUser(ev: EventView, user: string): boolean {
  return ev.actor?.user === user || ev.details?.user === user || ev.target?.name === `user/${user}` || ev.details?.session_user === user;
}

/**
 * The session an event is about: its own (`session_id`), or the one an administrator acted on (session.kill,
 * session.watch_*: the envelope is the admin's, the session is in `details.session_id`).
 */
export function sessionOf(ev: EventView): string | undefined {
  if (ev.session_id) return ev.session_id;
  const acted = ev.details?.session_id;
  return typeof acted === 'string' && acted ? acted : undefined;
}

/** The hold an event falls under, if any. */
export function holdFor(ev: EventView, holds: readonly HoldFilter[]): HoldFilter | undefined {
  const t = Date.parse(ev.time);
  return holds.find(
    (h) =>
      (h.user === undefined || concernsUser(ev, h.user)) &&
      (h.target === undefined || ev.target?.name === h.target || ev.details?.session_target === h.target) &&
      (h.session === undefined || sessionOf(ev) === h.session) &&
      (h.since === undefined || !(t < Date.parse(h.since))) &&
      (h.until === undefined || !(t > Date.parse(h.until))),
  );
}

export interface SegmentSummary {
  name: string;
  firstSeq: number;
  lastSeq: number;
  minTime: string;
  maxTime: string;
  /** The last line: the sealing checkpoint (becomes the anchor when this is the last purged segment). */
  sealLine: string;
}

export interface PurgePlan {
  segments: SegmentSummary[];
  /** Why the oldest kept segment stays (undefined when nothing is kept but the open segment). */
  keptBecause?: string;
  /** Sessions with events under a hold: their recordings stay. */
  heldSessions: Set<string>;
  /** Segments older than anchor.json's first kept one: left by a purge interrupted before it deleted them. */
  leftovers: string[];
}

/** One segment as read for planning. */
interface ScannedSegment {
  sum: SegmentSummary;
  /** Why it stays on its own account (newest, an event within retention, an event under a hold). */
  keep?: string;
  /** The sessions its events are about (collected only when there are holds). */
  sessions: Set<string>;
}

/**
 * Which segments may go: the longest run of the oldest sealed segments in which every event is past its
 * class's ceiling and under no hold. Only a prefix can go, so the kept chain stays contiguous; the newest
 * segment (the one being written) never goes. A session with any held event is held whole: its other
 * events (what gives its recording meaning, e.g. the session of someone else a held admin watched or
 * killed) stay too, wherever they are in the log.
 */
export function planPurge(dir: string, policy: RetentionPolicy, holds: readonly HoldFilter[], now = Date.now()): PurgePlan {
  let names = listSegments(dir);
  const plan: PurgePlan = { segments: [], heldSessions: new Set(), leftovers: [] };
  const anchor = readAnchorFile(dir);
  const anchorRec = anchor ? parseRecordLine(anchor.record) : undefined;
  if (anchorRec && typeof anchorRec !== 'string') {
    plan.leftovers = names.filter((n) => parseSegmentName(n)!.firstSeq <= anchorRec.seq);
    names = names.slice(plan.leftovers.length);
  }
  // First every segment (all of them when there are holds: a held event late in the log holds its session's
  // earlier events), then the purgeable prefix.
  const scanned: ScannedSegment[] = [];
  for (let s = 0; s < names.length; s++) {
    const name = names[s];
    const { lines } = splitSegment(fs.readFileSync(path.join(dir, name), 'utf8'));
    const sum: SegmentSummary = { name, firstSeq: 0, lastSeq: 0, minTime: '', maxTime: '', sealLine: lines[lines.length - 1] ?? '' };
    const seg: ScannedSegment = { sum, sessions: new Set() };
    if (s === names.length - 1) seg.keep = `${name} is the newest segment (still being written)`;
    for (const line of lines) {
      const rec = parseRecordLine(line);
      if (typeof rec === 'string') throw new RetentionError('VIGIL_RETENTION_UNREADABLE', `cannot plan a purge: ${name}: ${rec}`);
      const ev = JSON.parse(rec.eventJson) as EventView;
      if (!sum.firstSeq) sum.firstSeq = rec.seq;
      sum.lastSeq = rec.seq;
      if (!sum.minTime || ev.time < sum.minTime) sum.minTime = ev.time;
      if (ev.time > sum.maxTime) sum.maxTime = ev.time;
      const hold = holds.length ? holdFor(ev, holds) : undefined;
      const session = holds.length ? sessionOf(ev) : undefined;
      if (session) seg.sessions.add(session);
      if (hold && session) plan.heldSessions.add(session);
      if (seg.keep) continue;
      if (hold) seg.keep = `${name} has seq ${rec.seq} under legal hold ${hold.id}`;
      else if (now - Date.parse(ev.time) < ceilingFor(policy, ev.type)) seg.keep = `${name} has seq ${rec.seq} (${ev.type}, ${ev.time}) within its retention`;
    }
    scanned.push(seg);
    // With no holds nothing past the first kept segment matters: stop reading.
    if (seg.keep && holds.length === 0) break;
  }
  for (let s = 0; s < scanned.length; s++) {
    const { sum, sessions } = scanned[s];
    let keep = scanned[s].keep;
    if (!keep) {
      const held = [...sessions].find((id) => plan.heldSessions.has(id));
      if (held) keep = `${sum.name} has events of session ${held}, which is under legal hold`;
    }
    if (!keep) {
      const seal = parseRecordLine(sum.sealLine);
      const d = typeof seal === 'string' || !isCheckpointLine(sum.sealLine) ? undefined : (JSON.parse(seal.eventJson).details as CheckpointDetails);
      if (d?.next_segment !== names[s + 1]) keep = `${sum.name} is not sealed by a checkpoint naming ${names[s + 1]}`;
    }
    if (keep) {
      plan.keptBecause = keep;
      break;
    }
    plan.segments.push(sum);
  }
  return plan;
}

/** What one purge removed, as written into anchor.json and the `audit.purged` event. */
export function purgeEntry(plan: PurgePlan, reason: string, now = new Date()): PurgeEntry | undefined {
  const segs = plan.segments;
  if (segs.length === 0) return undefined;
  return {
    time: now.toISOString(),
    segments: segs.map((s) => s.name),
    first_seq: segs[0].firstSeq,
    last_seq: segs[segs.length - 1].lastSeq,
    min_time: segs.map((s) => s.minTime).sort()[0],
    max_time: segs.map((s) => s.maxTime).sort().reverse()[0],
    reason,
  };
}

/**
 * Anchor the kept chain, then remove the purged segments. The anchor is written first: a crash in between
 * leaves old segments that verify skips (they precede the anchor) and the next purge removes.
 */
export function applyPurge(dir: string, plan: PurgePlan, entry: PurgeEntry | undefined): void {
  for (const name of plan.leftovers) {
    fs.rmSync(path.join(dir, name), { force: true });
    fs.rmSync(path.join(dir, metaName(name)), { force: true });
  }
  if (!entry) return;
  const last = plan.segments[plan.segments.length - 1];
  updateAnchorFile(dir, (prior) => {
    // Two purges at once (the daily job and the CLI) must not move the anchor back to a segment already gone.
    const priorSeq = prior ? parseRecordLine(prior.record) : undefined;
    const keepPrior = priorSeq !== undefined && typeof priorSeq !== 'string' && priorSeq.seq >= last.lastSeq;
    return { version: 1, record: keepPrior ? prior!.record : last.sealLine, purges: [...(prior?.purges ?? []), entry] };
  });
  for (const s of plan.segments) {
    fs.rmSync(path.join(dir, s.name), { force: true });
    fs.rmSync(path.join(dir, metaName(s.name)), { force: true });
  }
}

export interface RecordingPurge {
  /** Sessions whose local recordings go. */
  sessions: string[];
  /** Sessions whose recordings in object storage go (recording.storage kind s3). */
  remote?: string[];
  /** Object storage could not be listed: its recordings were left for the next run. */
  remoteError?: string;
}

/**
 * Session recordings (`<dir>/<session>/ch*.cast`) whose newest file is older than the recordings ceiling
 * (never below the floor) and whose session is under no hold. Sessions are matched by id; holds on a user
 * or target reach recordings through the held sessions found in the audit log.
 */
export function planRecordingPurge(dir: string, policy: RetentionPolicy, holds: readonly HoldFilter[], heldSessions: ReadonlySet<string>, now = Date.now()): RecordingPurge {
  if (policy.recordingsMs === undefined || !fs.existsSync(dir)) return { sessions: [] };
  const ceiling = Math.max(policy.recordingsMs, policy.floorMs);
  const out: string[] = [];
  for (const session of fs.readdirSync(dir).sort()) {
    const sub = path.join(dir, session);
    if (!fs.statSync(sub).isDirectory()) continue;
    if (heldSessions.has(session) || holds.some((h) => h.session === session)) continue;
    const newest = Math.max(0, ...fs.readdirSync(sub).map((f) => fs.statSync(path.join(sub, f)).mtimeMs));
    if (now - newest >= ceiling) out.push(session);
  }
  return { sessions: out };
}

export function applyRecordingPurge(dir: string, p: RecordingPurge): void {
  for (const s of p.sessions) fs.rmSync(path.join(dir, s), { recursive: true, force: true });
}

export { ANCHOR_FILE, DAY };
