import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import type { AuditEvent } from '../../src/events/envelope.ts';
import type { AuditChainStore, IndexedAuditRow, SharedAuditQuery } from '../../src/store/types.ts';
import { keyId, parseRecordLine, parseSegmentName, recordHash } from './record.ts';
import { readAnchorFile } from './anchor.ts';
import { listSegments } from './segments.ts';
import { canonicalJson } from './canonical.ts';
import { ChainDivergedError, SignedRecordReader, durableSignedSeq, type PurgedGap } from './signed-reader.ts';
import { chainHeadSeq } from './search-index.ts';

/**
 * The shared audit index: every replica keeps its own chain in its data dir and copies its *signed*
 * records (up to its newest checkpoint) into the state store's PostgreSQL tables, asynchronously, so any
 * replica can search, export, report and verify every replica's events. The append path never waits on
 * the database: a follower reads the committed segment files and inserts in batches.
 */

export const REPLICA_ID_FILE = 'replica-id';

/**
 * The stable id of the replica that owns a data dir: created once (host name and a random suffix, so two
 * containers with the same host name still differ) and kept in DATA/replica-id. Copying a data dir copies
 * the id; the shared index then sees two chains under one id and marks it diverged.
 */
export function replicaIdOf(dataDir: string): string {
  const file = path.join(dataDir, REPLICA_ID_FILE);
  try {
    return readId(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const host = os.hostname().toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40) || 'replica';
  const id = `${host}-${crypto.randomBytes(4).toString('hex')}`;
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, id + '\n', { mode: 0o644 });
  try {
    // link() fails if another process created it first: both then use the same (first) id.
    fs.linkSync(tmp, file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return readId(file);
}

function readId(file: string): string {
  const id = fs.readFileSync(file, 'utf8').trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(id)) throw new Error(`${file}: not a replica id`);
  return id;
}

export interface LocalChain {
  auditDir: string;
  replica: string;
  /** The audit signing public key (SPKI PEM), registered with the chain. */
  publicKeyPem: string;
}

export interface SyncResult {
  added: number;
  /** Everything durable and signed on disk (up to head.json) is in the index. */
  caughtUp: boolean;
  diverged?: { seq: number; problem: string };
  /** Records a retention purge removed from the chain before they were indexed (gone by policy, never copied). */
  purged?: PurgedGap;
}

/**
 * The last seq the local chain no longer holds: its anchor's, and never past its first segment (an anchor
 * written by a purge that has not removed its segments yet). 0 without an anchor, or when unreadable.
 */
export function locallyPurgedThrough(auditDir: string): number {
  const anchored = purgedThroughAnchor(auditDir);
  const first = listSegments(auditDir)[0];
  const firstSeq = first ? parseSegmentName(first)?.firstSeq : undefined;
  return firstSeq === undefined ? 0 : Math.min(anchored, firstSeq - 1);
}

/** The last seq the `audit.purged` event in this row removed from the chain; undefined for any other row. */
export function purgedThroughOf(r: IndexedAuditRow): number | undefined {
  if (!r.eventJson.includes('"type":"audit.purged"')) return undefined;
  const e = JSON.parse(r.eventJson) as { type?: string; details?: { last_seq?: unknown } };
  const last = e.details?.last_seq;
  return e.type === 'audit.purged' && typeof last === 'number' && Number.isSafeInteger(last) && last < r.seq ? last : undefined;
}

/**
 * The most record bytes one shipping transaction takes (a batch ends on a checkpoint, which the writer
 * signs at least every CHECKPOINT_MAX_BYTES, so only a single record larger than this goes over it, alone
 * with its checkpoint): a count alone lets a batch of large events (bulk INSERTs of a MiB each) grow to
 * gigabytes — more than the gateway's memory, PostgreSQL's 1 GB message limit or the client's query
 * timeout — and such a batch fails the same way on every retry, so the chain never moves again.
 */
export const SHIP_BATCH_BYTES = 4 * 1024 * 1024;

/**
 * How long a console search or export waits for this replica's follower to catch up before it answers
 * from what is indexed (and says how far behind that is): after a long outage the backlog can take hours.
 */
export const CATCH_UP_WAIT_MS = 2000;

/** Copies one local chain's signed records into the shared index, from where the index stands. */
export class SharedIndexer {
  private readonly reader: SignedRecordReader;
  private head?: { seq: number; hash: string };
  /** The head last seen in the database: kept while `head` is forgotten (an error, a conflict, diverged). */
  private lastSeq = 0;
  private registered = false;
  /**
   * Cuts claimed by `audit.purged` events in the index (their last_seq) that the index has not made yet.
   * An event is indexed as soon as it is signed, which can be before its purge removed anything, and a
   * purge narrowed by a legal hold placed meanwhile removes less than its first event says (a second,
   * narrower event follows, maybe in a later batch). So a claim is pruned only once the local chain no
   * longer holds what it names: rows of held records stay searchable on every replica.
   */
  private claims = new Set<number>();
  /** The index holds none of this replica's rows at or below this seq. */
  private prunedThrough = 0;
  diverged?: { seq: number; problem: string };

  constructor(
    private readonly chains: AuditChainStore,
    private readonly local: LocalChain,
  ) {
    this.reader = new SignedRecordReader(local.auditDir, local.publicKeyPem);
  }

  /**
   * Highest seq known to be in the shared index (0 before the database was first reached). After an error
   * the last one seen: the rows are still there, and lag must not jump to the whole chain for a blip.
   */
  get indexedSeq(): number {
    return this.head?.seq ?? this.lastSeq;
  }

  /** Forget the cached head and registration (after an error or a reset elsewhere). */
  invalidate(): void {
    this.head = undefined;
    this.registered = false;
  }

  /**
   * Index signed records, `batch` (and about SHIP_BATCH_BYTES) per transaction, until caught up, `maxRecords`
   * were added, or `halt()` says to stop (asked between transactions).
   */
  async sync(batch: number, maxRecords = Infinity, yieldBetween = false, halt?: () => boolean): Promise<SyncResult> {
    const res: SyncResult = { added: 0, caughtUp: false };
    if (!this.registered) {
      const pub = crypto.createPublicKey(this.local.publicKeyPem);
      await this.chains.registerChain({ replica: this.local.replica, keyId: keyId(pub), publicKey: pub.export({ type: 'spki', format: 'pem' }).toString(), host: os.hostname() });
      this.registered = true;
    }
    for (let conflicts = 0; res.added < maxRecords; ) {
      if (halt?.()) return res;
      if (!this.head) {
        const info = await this.chains.chain(this.local.replica);
        this.lastSeq = info?.indexedSeq ?? 0;
        if (info?.diverged) {
          this.diverged = info.diverged;
          return { ...res, diverged: info.diverged };
        }
        const head = { seq: info?.indexedSeq ?? 0, hash: info?.indexedHash ?? '' };
        try {
          this.reader.seek(head.seq, head.hash);
        } catch (e) {
          if (!(e instanceof ChainDivergedError)) throw e;
          return this.markDiverged(res, e);
        }
        await this.loadClaims();
        this.head = head;
        this.diverged = undefined;
      }
      let read;
      try {
        read = this.reader.readSigned(Math.min(batch, maxRecords - res.added), SHIP_BATCH_BYTES);
      } catch (e) {
        if (!(e instanceof ChainDivergedError)) throw e;
        return this.markDiverged(res, e);
      }
      if (read.records.length === 0 || !read.end) {
        // A purge gap with nothing signed after it yet waits for the next checkpoint: the rows below the
        // cut go in the transaction that adds the first records after it (the head must stay on a row).
        // A claim indexed before its purge was done is pruned once the chain has made the cut.
        const due = this.confirmedCut([]);
        if (due <= this.prunedThrough) {
          res.caughtUp = true;
          return res;
        }
        const out = await this.chains.appendRows(this.local.replica, this.head, [], chainHeadSeq(this.local.auditDir), { pruneThrough: due });
        if (!out.ok) {
          this.head = undefined;
          this.lastSeq = out.seq;
          if (++conflicts > 3) return res;
          continue;
        }
        this.pruned(due);
        continue;
      }
      const rows: IndexedAuditRow[] = read.records.map((r) => ({ replica: this.local.replica, seq: r.seq, prev: r.prev, hash: r.hash, eventJson: r.eventJson }));
      // Past a purge gap the rows below the cut go in the same transaction, as the purge removed them from
      // the chain: the index then starts where the chain does (its audit.purged event follows, and verify
      // accepts the cut once it is in). So do the rows below a cut an audit.purged event among them claims,
      // as far as the chain has made it.
      const through = Math.max(this.confirmedCut(rows), read.purged?.through ?? 0);
      const out = await this.chains.appendRows(this.local.replica, this.head, rows, chainHeadSeq(this.local.auditDir), { pruneThrough: through || undefined });
      if (!out.ok) {
        // Another process (a CLI search, reindex) moved the head: start again from where it is now.
        this.head = undefined;
        this.lastSeq = out.seq;
        if (++conflicts > 3) return res;
        continue;
      }
      this.head = { seq: out.seq, hash: out.hash };
      this.lastSeq = out.seq;
      for (const r of rows) {
        const claim = purgedThroughOf(r);
        if (claim !== undefined) this.claims.add(claim);
      }
      this.pruned(through);
      this.reader.advance(read.end);
      if (read.purged) res.purged = { from: res.purged?.from ?? read.purged.from, through: read.purged.through };
      res.added += rows.length;
      if (yieldBetween) await new Promise<void>((r) => setImmediate(r));
    }
    return res;
  }

  /**
   * The highest cut an `audit.purged` event (indexed, or among `rows`) claims that the local chain has made:
   * never past what the chain no longer holds, and always one an indexed event vouches for (verify accepts
   * the index starting right after it). 0 when there is none.
   */
  private confirmedCut(rows: IndexedAuditRow[]): number {
    const claims = [...this.claims];
    for (const r of rows) {
      const claim = purgedThroughOf(r);
      if (claim !== undefined) claims.push(claim);
    }
    if (claims.length === 0) return 0;
    const gone = locallyPurgedThrough(this.local.auditDir);
    return Math.max(0, ...claims.filter((c) => c <= gone));
  }

  private pruned(through: number): void {
    this.prunedThrough = Math.max(this.prunedThrough, through);
    for (const c of this.claims) if (c <= this.prunedThrough) this.claims.delete(c);
  }

  /** The claims of the indexed `audit.purged` events whose cut the index has not made yet (after a restart). */
  private async loadClaims(): Promise<void> {
    const first = (await this.chains.rows(this.local.replica, 0, 1))[0];
    this.prunedThrough = first ? first.seq - 1 : 0;
    this.claims = new Set();
    for (const r of await this.chains.search({ replica: this.local.replica, type: 'audit.purged' })) {
      const claim = purgedThroughOf(r);
      if (claim !== undefined && claim > this.prunedThrough) this.claims.add(claim);
    }
  }

  private async markDiverged(res: SyncResult, e: ChainDivergedError): Promise<SyncResult> {
    this.diverged = { seq: e.seq, problem: e.message };
    this.head = undefined;
    await this.chains.markDiverged(this.local.replica, e.seq, e.message);
    return { ...res, diverged: this.diverged };
  }
}

export interface SharedIndexLag {
  replica: string;
  /** Highest seq of this replica's chain in the shared index, and the chain's own head on disk. */
  indexedSeq: number;
  chainSeq: number;
  /** Records on disk not yet in the shared index (includes the few not yet signed by a checkpoint). */
  lagEvents: number;
  /**
   * Seconds since the index last held every durable signed record of this chain (0 while it does): grows
   * while the follower is failing, diverged or stuck, whatever its syncs say.
   */
  lagSeconds: number;
  /** 0 while the last sync failed (database unreachable) or the chain diverged. */
  up: boolean;
  diverged: boolean;
}

export interface SharedIndexFollower {
  readonly replica: string;
  lag(): SharedIndexLag;
  /**
   * Index what is signed now, however long that takes; errors are the caller's. For tools and tests that
   * must see the index caught up: a request path waits with `catchUp` instead.
   */
  syncNow(): Promise<SyncResult>;
  /**
   * Let the index catch up for at most `withinMs` (a search or export on this replica calls it first), then
   * say where it stands: the rest ships in the background, and the caller answers from what is indexed.
   * Never throws (a failing sync shows as `up: false`).
   */
  catchUp(withinMs: number): Promise<SharedIndexLag>;
  /**
   * Stop; the running sync stops after the transaction in flight. With `flushWithinMs`, first index what is
   * signed now, for at most that long: this resolves by then, whatever the backlog.
   */
  stop(opts?: { flushWithinMs?: number }): Promise<void>;
}

export interface SharedIndexFollowerOptions extends LocalChain {
  chains: AuditChainStore;
  intervalMs: number;
  batch: number;
  log: Logger;
  /** True while the local log cannot be written (outage): nothing new to index, and the disk is busy. */
  paused?: () => boolean;
}

/**
 * The gateway's follower of the shared index. Every `intervalMs` it indexes newly signed records, `batch`
 * per transaction, yielding the event loop between batches. While the database is down it logs once and
 * keeps trying: the next sync resumes from the head stored in the database, so nothing is lost or doubled.
 */
export function startSharedIndexFollower(o: SharedIndexFollowerOptions): SharedIndexFollower {
  const indexer = new SharedIndexer(o.chains, o);
  let running: Promise<SyncResult> | undefined;
  let stopped = false;
  let failing = false;
  let up = false;
  let caughtUpAt = Date.now();
  /** Once stopping: when the running sync is to stop (between transactions). */
  let haltAt = Infinity;
  const halt = () => Date.now() >= haltAt;
  const log = o.log.child({ replica: o.replica });
  /**
   * Whether the index holds every record the writer has made durable and signed (head.json), from the
   * index's head rather than from what a sync returned: a sync that finds nothing to read (a reader
   * stuck in front of a gap) is not caught up.
   */
  const holdsSigned = (): boolean => {
    try {
      if (indexer.diverged || indexer.indexedSeq < durableSignedSeq(o.auditDir)) return false;
    } catch {
      return false; // head.json unreadable: the sync says why
    }
    caughtUpAt = Date.now();
    return true;
  };
  const run = async (): Promise<SyncResult> => {
    try {
      const res = await indexer.sync(o.batch, Infinity, true, halt);
      holdsSigned();
      if (res.purged) {
        log.warn({ from: res.purged.from, through: res.purged.through }, 'shared audit index: records were purged by retention before they were indexed; the index continues after the purge (they are gone from this chain by policy, see its audit.purged event)');
      }
      if (res.diverged) {
        if (up || !failing) log.error({ seq: res.diverged.seq, problem: res.diverged.problem }, 'shared audit index: this chain diverged from what is indexed; indexing stopped (`vigil audit verify`, then `vigil audit reindex`)');
        up = false;
        failing = true;
        return res;
      }
      if (failing) log.info('shared audit index: indexing again');
      failing = false;
      up = true;
      return res;
    } catch (e) {
      if (!failing) log.warn({ err: (e as Error).message }, 'shared audit index: sync failed (the local log is unaffected); retrying');
      failing = true;
      up = false;
      indexer.invalidate();
      throw e;
    }
  };
  const once = (): Promise<SyncResult> => (running ??= run().finally(() => (running = undefined)));
  const timer = setInterval(() => {
    if (!running && !stopped && !o.paused?.()) once().catch(() => {});
  }, o.intervalMs);
  timer.unref();
  once().catch(() => {});
  const lag = (): SharedIndexLag => {
    const chainSeq = chainHeadSeq(o.auditDir);
    const lagEvents = Math.max(0, chainSeq - indexer.indexedSeq);
    return {
      replica: o.replica, indexedSeq: indexer.indexedSeq, chainSeq, lagEvents,
      lagSeconds: holdsSigned() ? 0 : Math.max(0, (Date.now() - caughtUpAt) / 1000),
      up: up && !indexer.diverged, diverged: indexer.diverged !== undefined,
    };
  };
  return {
    replica: o.replica,
    lag,
    async catchUp(withinMs) {
      if (!stopped && !indexer.diverged) await settledWithin(once(), withinMs);
      return lag();
    },
    async syncNow() {
      await running?.catch(() => {});
      return once();
    },
    async stop(opts = {}) {
      stopped = true;
      clearInterval(timer);
      const deadline = Date.now() + (opts.flushWithinMs ?? 0);
      haltAt = deadline;
      if (opts.flushWithinMs === undefined) {
        await running?.catch(() => {});
        return;
      }
      // The sync running now is the flush (it stops at the deadline); else one more, as signed records may
      // have come since. A transaction in flight at the deadline is not waited for: its commit or its
      // rollback leaves the index consistent either way.
      await settledWithin(running, deadline - Date.now());
      if (!indexer.diverged && Date.now() < deadline) await settledWithin(once(), deadline - Date.now());
    },
  };
}

/** Wait for `p` to settle, at most `ms` (its outcome is not wanted). */
async function settledWithin(p: Promise<unknown> | undefined, ms: number): Promise<void> {
  if (!p || ms <= 0) return;
  let t: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => {}), new Promise((r) => (t = setTimeout(r, ms)))]);
  clearTimeout(t);
}

/** A record found through the shared index, with the replica whose chain holds it. */
export interface SharedRecord {
  replica: string;
  seq: number;
  hash: string;
  eventJson: string;
  event: AuditEvent;
}

export interface SharedSearchResult {
  records: SharedRecord[];
  /** Rows whose stored hash does not match their bytes (left out; `vigil audit verify` names them). */
  mismatched: number;
}

/** The row's event, when its hash still matches its bytes (a row edited in the database does not). */
export function checkedRecord(r: IndexedAuditRow): SharedRecord | undefined {
  if (recordHash(r.seq, r.prev, r.eventJson) !== r.hash) return undefined;
  let event: AuditEvent;
  try {
    event = JSON.parse(r.eventJson) as AuditEvent;
  } catch {
    return undefined;
  }
  return { replica: r.replica, seq: r.seq, hash: r.hash, eventJson: r.eventJson, event };
}

/** The order of merged results: event time, then replica, then seq. */
export function compareShared(a: SharedRecord, b: SharedRecord): number {
  return a.event.time < b.event.time ? -1 : a.event.time > b.event.time ? 1 : a.replica < b.replica ? -1 : a.replica > b.replica ? 1 : a.seq - b.seq;
}

/**
 * Search every replica's events in the shared index. `localTail`, when given, adds this replica's records
 * not in the shared index yet (the last second's, not signed by a checkpoint yet) from the local search:
 * on the replica that wrote them, they are found at once.
 */
export async function searchShared(chains: AuditChainStore, q: SharedAuditQuery, localTail?: { replica: string; indexedSeq: number; records: () => { seq: number; hash: string; event: AuditEvent }[] }): Promise<SharedSearchResult> {
  const rows = await chains.search(q);
  let mismatched = 0;
  const records: SharedRecord[] = [];
  for (const r of rows) {
    const rec = checkedRecord(r);
    if (rec) records.push(rec);
    else mismatched++;
  }
  if (localTail && (q.replica === undefined || q.replica === localTail.replica)) {
    const seen = new Set(records.filter((r) => r.replica === localTail.replica).map((r) => r.seq));
    for (const r of localTail.records()) {
      if (r.seq <= localTail.indexedSeq || seen.has(r.seq)) continue;
      records.push({ replica: localTail.replica, seq: r.seq, hash: r.hash, eventJson: canonicalJson(r.event), event: r.event });
    }
  }
  records.sort(compareShared);
  if (q.limit && records.length > q.limit) records.splice(0, records.length - q.limit);
  return { records, mismatched };
}

/**
 * Every matching record of the shared index as it stood when the stream started, oldest first, fetched a
 * page at a time (export, reports). Each page is its own query, and followers keep shipping meanwhile: a
 * replica's rows that arrive timed after the cursor would be read, and its rows timed before it would not,
 * leaving a hole inside that replica's chain. So every chain's indexed head is taken first and rows past it
 * are left out: the stream is exactly the index at its start (a chain registered since has none). Rows
 * whose bytes do not match their hash are left out and passed to `onLeftOut`.
 */
export async function* streamShared(chains: AuditChainStore, q: SharedAuditQuery, pageSize = 5000, onLeftOut?: (row: IndexedAuditRow) => void): AsyncGenerator<SharedRecord> {
  const upTo = new Map((await chains.chains()).map((c) => [c.replica, c.indexedSeq]));
  let after: SharedAuditQuery['after'];
  for (;;) {
    const rows = await chains.search({ ...q, limit: undefined, after, page: pageSize });
    for (const r of rows) {
      if (r.seq > (upTo.get(r.replica) ?? 0)) continue;
      const rec = checkedRecord(r);
      // Left out as search leaves it out; the caller says how many (an export that just drops them would
      // pass for complete).
      if (rec) yield rec;
      else onLeftOut?.(r);
    }
    if (rows.length < pageSize) return;
    // The cursor is the order's own key, the indexed time column: the event's bytes may say otherwise (an
    // edited row, left out above), and a cursor from them would read pages again for ever or skip the rest.
    const last = rows[rows.length - 1];
    if (typeof last.time !== 'string') throw new Error(`shared audit index: row ${last.seq} of replica ${last.replica} has no indexed time, so the rows after it cannot be paged (run \`vigil audit verify\`, then \`vigil audit reindex\` on that replica)`);
    after = { time: last.time, replica: last.replica, seq: last.seq };
  }
}

export interface ReindexResult extends SyncResult {
  /**
   * Indexed rows the log no longer holds (a data dir restored from an older copy, or its files lost): the
   * replica's rows were moved to this chain instead of dropped, as they may be the only copy left.
   */
  archived?: { replica: string; rows: number; firstSeq: number; lastSeq: number };
}

/**
 * `vigil audit reindex`: drop this replica's rows from the shared index and copy its chain again. Other
 * replicas' rows are theirs: each replica reindexes its own chain. Rows the chain cannot give back (it
 * diverged: restored from a backup, or its files lost) are never dropped: every row of the replica then
 * goes to a chain of its own, `<replica>.diverged-<time>`, which still verifies from its rows and keys.
 */
export async function reindexShared(chains: AuditChainStore, local: LocalChain, batch = 5000): Promise<ReindexResult> {
  const indexer = new SharedIndexer(chains, local);
  await chains.registerChain({ replica: local.replica, ...keyOf(local.publicKeyPem), host: os.hostname() });
  const notInLog = await rowsNotInLog(chains, local);
  let archived: ReindexResult['archived'];
  if (notInLog) {
    const as = `${local.replica}.diverged-${new Date().toISOString().replace(/[-:.]/g, '')}`;
    archived = { replica: as, ...notInLog, rows: await chains.archiveChain(local.replica, as) };
  } else {
    await chains.resetChain(local.replica);
  }
  return { ...(await indexer.sync(batch)), ...(archived ? { archived } : {}) };
}

/**
 * The replica's indexed rows that its log does not hold with the same hash (below a retention purge's
 * anchor, gone by policy, they do not count): a reindex would lose them.
 */
async function rowsNotInLog(chains: AuditChainStore, local: LocalChain): Promise<{ rows: number; firstSeq: number; lastSeq: number } | undefined> {
  const records = localRecords(local.auditDir);
  let rec = records.next();
  let found: { rows: number; firstSeq: number; lastSeq: number } | undefined;
  for (let after = purgedThroughAnchor(local.auditDir); ; ) {
    const page = await chains.rows(local.replica, after, 5000);
    for (const row of page) {
      while (!rec.done && rec.value.seq < row.seq) rec = records.next();
      if (!rec.done && rec.value.seq === row.seq && rec.value.hash === row.hash) continue;
      found = { rows: (found?.rows ?? 0) + 1, firstSeq: found?.firstSeq ?? row.seq, lastSeq: row.seq };
    }
    if (page.length < 5000) return found;
    after = page[page.length - 1].seq;
  }
}

/** Seq and hash of every readable record of the log, in seq order (segment by segment). */
function* localRecords(auditDir: string): Generator<{ seq: number; hash: string }> {
  if (!fs.existsSync(auditDir)) return;
  for (const segment of listSegments(auditDir)) {
    const buf = fs.readFileSync(path.join(auditDir, segment));
    for (let i = 0, nl; (nl = buf.indexOf(0x0a, i)) >= 0; i = nl + 1) {
      const r = parseRecordLine(buf.toString('utf8', i, nl));
      if (typeof r !== 'string') yield { seq: r.seq, hash: r.hash };
    }
  }
}

/** The last seq a retention purge removed from the log (its anchor's checkpoint), 0 without one. */
function purgedThroughAnchor(auditDir: string): number {
  try {
    const anchor = readAnchorFile(auditDir);
    const r = anchor && parseRecordLine(anchor.record);
    return r && typeof r !== 'string' ? r.seq : 0;
  } catch {
    return 0; // unreadable: every row counts, so nothing is dropped that the log might not hold
  }
}

function keyOf(pem: string): { keyId: string; publicKey: string } {
  const pub = crypto.createPublicKey(pem);
  return { keyId: keyId(pub), publicKey: pub.export({ type: 'spki', format: 'pem' }).toString() };
}
