import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { VigilError } from '../../src/errors.ts';
import { parseRecordLine, parseSegmentName } from './record.ts';
import { listSegments } from './segments.ts';
import { searchableDetailsText } from './searchable.ts';
import { matcher, iso, isoUntil, type AuditQuery, type AuditRecord } from './read.ts';

/**
 * The search index: a SQLite database beside the segment files (`audit/index.sqlite`) with one row per
 * record (time, seq, type, user, target, session, outcome, source and where the line lies in its segment)
 * and an FTS5 table over statement/command/path text. The chain stays the source of truth: a search
 * finds sequence numbers here, then reads the records themselves from the segments and checks them
 * against the query again, so a stale or damaged index can cost time but never change an answer.
 *
 * The index follows the segments: it reads what the writer has made durable, never the writer's memory;
 * a segment that is gone (purged) takes its rows with it; a segment whose indexed end no longer reads
 * as the record the index saw (cut back after a crash or an outage) is indexed again from its start.
 * Rows missing from the middle (deleted from the file) are what the follower cannot see, since it only
 * reads on from each segment's indexed end: every search first checks that each segment's indexed seq
 * range is complete (findIndexGaps) and indexes a segment that is not again.
 */
export const INDEX_FILE = 'index.sqlite';
// 2: `sql` and `query` (the database proxies' statement text) became searchable; an index of version 1 is
// rebuilt from the chain at its next open.
const SCHEMA_VERSION = '3';

export class AuditIndexError extends VigilError {}

export interface TextQuery extends AuditQuery {
  /** An FTS5 query over statement/command/path text (`"exact phrase"`, `prefix*`, AND/OR/NOT, NEAR). */
  text?: string;
}

export interface CatchUpResult {
  /** Records added, and records dropped (purged segments, or segments cut back since). */
  added: number;
  removed: number;
  /** False when `maxRecords` stopped it before the end of the chain. */
  done: boolean;
}

export interface IndexStatus {
  /** Highest indexed seq (0 when empty). */
  indexedSeq: number;
  /** Seq of the last complete record in the newest segment (0 when none). */
  chainSeq: number;
  records: number;
  segments: number;
  bytes: number;
}

export interface AuditIndexOptions {
  /** Told when a search finds rows missing and indexes segments again (default: a process warning). */
  notice?: (message: string) => void;
}

/** A segment whose indexed seq range lacks rows. */
export interface IndexGap {
  segment: string;
  firstSeq: number;
  lastSeq: number;
  /** Rows in the range, and rows a complete range has (lastSeq - firstSeq + 1). */
  rows: number;
  expected: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS segments (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, first_seq INTEGER NOT NULL,
  bytes INTEGER NOT NULL, last_line_start INTEGER NOT NULL, last_seq INTEGER NOT NULL, last_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY, seg INTEGER NOT NULL, off INTEGER NOT NULL, len INTEGER NOT NULL,
  time TEXT, type TEXT, user TEXT, target TEXT, session TEXT, outcome TEXT, source TEXT
);
CREATE VIRTUAL TABLE IF NOT EXISTS event_text USING fts5(body, content='', contentless_delete=1);
`;
/**
 * The filter indexes cover what a search reads (seq, seg, off, len): a match costs one index entry, not
 * also a descent of the events table, which at 10^7 rows was most of a search's time (a 100,000-row
 * answer: ~1 s of CPU in table lookups, 0.01 s from the index alone). seq second: the matches of one
 * user/target/type/session come in seq order, unsorted, and `seq < ?` pages seek.
 * A segment's rows are found by its seq range, not by an index on `seg` (an earlier schema had one and
 * loses it here): each index costs the follower ~1 µs per record, ~7 % of indexing.
 */
const INDEXES = `
DROP INDEX IF EXISTS events_seg;
CREATE INDEX IF NOT EXISTS events_time ON events(time, seq, seg, off, len);
CREATE INDEX IF NOT EXISTS events_type ON events(type, seq, seg, off, len);
CREATE INDEX IF NOT EXISTS events_user ON events(user, seq, seg, off, len);
CREATE INDEX IF NOT EXISTS events_target ON events(target, seq, seg, off, len);
CREATE INDEX IF NOT EXISTS events_session ON events(session, seq, seg, off, len);
`;
/** Schema 2 had the same tables with one-column filter indexes: dropped, and built again by INDEXES. */
const FROM_SCHEMA_2 = `
DROP INDEX IF EXISTS events_time; DROP INDEX IF EXISTS events_type; DROP INDEX IF EXISTS events_user;
DROP INDEX IF EXISTS events_target; DROP INDEX IF EXISTS events_session;
UPDATE meta SET value = '3' WHERE key = 'version';
`;

/**
 * Plan thresholds. `probe`: filters leaving at most this many records are checked against the text
 * record by record. `broad`: filters matching more than this many records have their newest N found by
 * walking seqs. `streamSlice`: matches read and parsed at a time when streaming. (Tests lower them to
 * take every plan on a small log.)
 */
export const searchPlan = { probe: 50_000, broad: 20_000, streamSlice: 2048 };

/** Read this much of a segment per transaction (bounds memory and the time one batch holds the loop). */
const CHUNK_BYTES = 4 * 1024 * 1024;

/** The searchable text of an event (see searchable.ts). */
export function searchableText(e: AuditEvent): string | undefined {
  return searchableDetailsText(e.details);
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : v === undefined || v === null ? null : JSON.stringify(v));

interface SegmentRow {
  id: number;
  name: string;
  first_seq: number;
  bytes: number;
  last_line_start: number;
  last_seq: number;
  last_hash: string;
}

/** The upper bound of strings starting with `prefix` (binary collation). */
function prefixEnd(prefix: string): string {
  return prefix + '\u{10FFFF}';
}

export class AuditIndex {
  readonly file: string;
  private readonly db: Database.Database;
  private readonly stmt;

  private readonly notice: (message: string) => void;

  private constructor(
    readonly auditDir: string,
    db: Database.Database,
    opts: AuditIndexOptions = {},
  ) {
    this.file = path.join(auditDir, INDEX_FILE);
    this.db = db;
    this.notice = opts.notice ?? ((message) => process.emitWarning(message, { code: 'VIGIL_AUDIT_INDEX_INCOMPLETE' }));
    this.stmt = {
      segments: db.prepare<[], SegmentRow>('SELECT * FROM segments ORDER BY first_seq'),
      segmentByName: db.prepare<[string], SegmentRow>('SELECT * FROM segments WHERE name = ?'),
      insertSegment: db.prepare('INSERT INTO segments (name, first_seq, bytes, last_line_start, last_seq, last_hash) VALUES (?, ?, 0, 0, 0, \'\')'),
      progress: db.prepare('UPDATE segments SET bytes = ?, last_line_start = ?, last_seq = ?, last_hash = ? WHERE id = ?'),
      insertEvent: db.prepare('INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
      appendEvent: db.prepare('INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
      deleteText: db.prepare('DELETE FROM event_text WHERE rowid = ?'),
      insertText: db.prepare('INSERT INTO event_text (rowid, body) VALUES (?, ?)'),
      // A segment's records lie between its first seq and the last the index took from it.
      textOfSegment: db.prepare<[number, number, number], number>('SELECT seq FROM events WHERE seq BETWEEN ? AND ? AND seg = ?').pluck(),
      deleteEventsOfSegment: db.prepare('DELETE FROM events WHERE seq BETWEEN ? AND ? AND seg = ?'),
      deleteSegment: db.prepare('DELETE FROM segments WHERE id = ?'),
      maxSeq: db.prepare<[], number | null>('SELECT max(seq) FROM events').pluck(),
      deleteEventsInRange: db.prepare('DELETE FROM events WHERE seq BETWEEN ? AND ?'),
      count: db.prepare<[], number>('SELECT count(*) FROM events').pluck(),
    };
  }

  /**
   * Open (or create) the index of an audit directory. An index that cannot be opened or has another
   * schema version is removed and started afresh: it is only ever a copy of what the segments say.
   */
  static open(auditDir: string, opts: AuditIndexOptions = {}): AuditIndex {
    const file = path.join(auditDir, INDEX_FILE);
    fs.mkdirSync(auditDir, { recursive: true, mode: 0o700 });
    try {
      return AuditIndex.openFile(auditDir, file, opts);
    } catch (e) {
      if (!isUnusable(e)) throw e;
      AuditIndex.remove(auditDir);
      return AuditIndex.openFile(auditDir, file, opts);
    }
  }

  /** Delete the index files (the database and its WAL). */
  static remove(auditDir: string): void {
    const file = path.join(auditDir, INDEX_FILE);
    for (const f of [file, `${file}-wal`, `${file}-shm`, `${file}-journal`]) fs.rmSync(f, { force: true });
  }

  private static openFile(auditDir: string, file: string, opts: AuditIndexOptions): AuditIndex {
    const db = new Database(file);
    try {
      fs.chmodSync(file, 0o600);
      db.pragma('journal_mode = WAL');
      db.pragma('busy_timeout = 10000');
      // A crash may lose the last batches (the next catch-up redoes them) but never corrupts the file.
      db.pragma('synchronous = NORMAL');
      // Purged events are overwritten on disk, not merely unlinked.
      db.pragma('secure_delete = ON');
      // A search reads one index entry per match, scattered over the file: read through a memory map
      // (no read() call and copy per page) and keep more pages cached. At 10^7 events this took a
      // 100,000-match fetch from ~0.7-0.9 s to ~0.25-0.3 s of CPU. SQLite clamps the size to what it was
      // built for.
      db.pragma(`mmap_size = ${MMAP_BYTES}`);
      db.pragma(`cache_size = ${SEARCH_CACHE_KIB}`);
      db.exec(SCHEMA);
      const v = db.prepare<[], string | undefined>("SELECT value FROM meta WHERE key = 'version'").pluck().get();
      if (v === undefined) db.prepare("INSERT INTO meta VALUES ('version', ?)").run(SCHEMA_VERSION);
      else if (v === '2') db.exec(`BEGIN IMMEDIATE; ${FROM_SCHEMA_2} COMMIT;`);
      else if (v !== SCHEMA_VERSION) throw new UnusableIndexError(`index schema ${v}, expected ${SCHEMA_VERSION}`);
      // Always present outside a rebuild (one interrupted by a crash gets them here).
      db.exec(INDEXES);
    } catch (e) {
      db.close();
      throw e;
    }
    return new AuditIndex(auditDir, db, opts);
  }

  close(): void {
    this.db.close();
  }

  /**
   * Bring the index up to the chain: drop segments that are gone, re-index segments whose indexed end
   * no longer matches the file, add complete records past the indexed end. Each chunk of a segment is one
   * transaction; `maxRecords` stops after about that many records (the rest is done by the next call).
   */
  catchUp(opts: { maxRecords?: number } = {}): CatchUpResult {
    const res: CatchUpResult = { added: 0, removed: 0, done: true };
    const onDisk = listSegments(this.auditDir);
    const tx = this.tx;
    res.removed += this.forgetMissing(onDisk);
    const indexed = this.stmt.segments.all();
    // The first indexed segment that no longer matches its file: it and every later one are redone.
    for (const row of indexed) {
      if (this.stillMatches(row)) continue;
      res.removed += tx.immediate(() => {
        let n = 0;
        for (const later of this.stmt.segments.all()) if (later.first_seq >= row.first_seq) n += this.dropSegment(later);
        return n;
      });
      break;
    }
    const known = new Map(this.stmt.segments.all().map((r) => [r.name, r.bytes]));
    for (const name of onDisk) {
      const first = parseSegmentName(name)!.firstSeq;
      // Fully indexed already (the common case for every sealed segment): no transaction needed.
      if (known.get(name) === sizeOf(path.join(this.auditDir, name))) continue;
      for (;;) {
        const left = opts.maxRecords === undefined ? Infinity : opts.maxRecords - res.added;
        const step = tx.immediate(() => this.indexChunk(name, first, left));
        res.added += step.added;
        if (step.atEnd) break;
        if (opts.maxRecords !== undefined && res.added >= opts.maxRecords) {
          res.done = false;
          return res;
        }
      }
    }
    return res;
  }

  private txFn?: Database.Transaction<(fn: () => unknown) => unknown>;

  /** Run `fn` in a BEGIN IMMEDIATE transaction (one writer at a time across processes). */
  private get tx(): { immediate: <T>(fn: () => T) => T } {
    const t = (this.txFn ??= this.db.transaction((fn: () => unknown) => fn()));
    return { immediate: <T>(fn: () => T): T => t.immediate(fn) as T };
  }

  /** Drop the rows of segments no longer on disk (purged); returns how many records went. */
  forgetMissing(onDisk = listSegments(this.auditDir)): number {
    const present = new Set(onDisk);
    let removed = 0;
    for (const row of this.stmt.segments.all()) {
      if (!present.has(row.name)) removed += this.tx.immediate(() => this.dropSegment(row));
    }
    return removed;
  }

  /** Remove a segment's rows; returns how many records went. */
  private dropSegment(row: SegmentRow): number {
    const seqs = this.stmt.textOfSegment.all(row.first_seq, row.last_seq, row.id);
    for (const seq of seqs) this.stmt.deleteText.run(seq);
    this.stmt.deleteEventsOfSegment.run(row.first_seq, row.last_seq, row.id);
    this.stmt.deleteSegment.run(row.id);
    return seqs.length;
  }

  /** Whether the record the index saw last in this segment is still there, byte for byte where it was. */
  private stillMatches(row: SegmentRow): boolean {
    if (row.bytes === 0) return true;
    let fd: number;
    try {
      fd = fs.openSync(path.join(this.auditDir, row.name), 'r');
    } catch {
      return false;
    }
    try {
      if (fs.fstatSync(fd).size < row.bytes) return false;
      const buf = Buffer.alloc(row.bytes - row.last_line_start);
      fs.readSync(fd, buf, 0, buf.length, row.last_line_start);
      if (buf[buf.length - 1] !== 0x0a) return false;
      const rec = parseRecordLine(buf.subarray(0, buf.length - 1).toString('utf8'));
      return typeof rec !== 'string' && rec.seq === row.last_seq && rec.hash === row.last_hash;
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Index the next chunk of complete lines of one segment (inside a transaction). */
  private indexChunk(name: string, firstSeq: number, maxLines = Infinity): { added: number; atEnd: boolean } {
    let row = this.stmt.segmentByName.get(name);
    if (!row) {
      this.stmt.insertSegment.run(name, firstSeq);
      row = this.stmt.segmentByName.get(name)!;
    }
    let fd: number;
    try {
      fd = fs.openSync(path.join(this.auditDir, name), 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { added: 0, atEnd: true }; // purged meanwhile: next catch-up drops it
      throw e;
    }
    let buf: Buffer;
    let read: number;
    try {
      const size = fs.fstatSync(fd).size;
      if (size <= row.bytes) return { added: 0, atEnd: true };
      const want = Number.isFinite(maxLines) ? Math.min(CHUNK_BYTES, Math.max(64 * 1024, maxLines * 1024)) : CHUNK_BYTES;
      buf = Buffer.allocUnsafe(Math.min(want, size - row.bytes));
      read = fs.readSync(fd, buf, 0, buf.length, row.bytes);
      // A record longer than the chunk: read on until its newline.
      while (buf.lastIndexOf(0x0a, read - 1) < 0 && row.bytes + read < size) {
        const more = Buffer.allocUnsafe(Math.min(buf.length * 2, size - row.bytes));
        buf.copy(more, 0, 0, read);
        buf = more;
        read += fs.readSync(fd, buf, read, buf.length - read, row.bytes + read);
      }
    } finally {
      fs.closeSync(fd);
    }
    const end = buf.lastIndexOf(0x0a, read - 1);
    if (end < 0) return { added: 0, atEnd: true }; // only a partial (torn or still being written) line
    let added = 0;
    let at = 0;
    let lastStart = row.last_line_start;
    let lastSeq = row.last_seq;
    let lastHash = row.last_hash;
    // Records past the highest indexed seq (all the follower ever meets: the log only grows) are appended
    // with a plain INSERT and no text to delete first. INSERT OR REPLACE makes SQLite keep a statement
    // journal — the original of every page each row changes (the table, five indexes), written to a temp
    // file — which was two thirds of the indexing CPU (~55 → ~17 µs per record). A seq already present
    // (a segment cut back and indexed again, a duplicate) is replaced as before.
    let above = this.stmt.maxSeq.get() ?? 0;
    while (at <= end && added < maxLines) {
      const nl = buf.indexOf(0x0a, at);
      const line = buf.toString('utf8', at, nl);
      const rec = parseRecordLine(line);
      if (typeof rec === 'string') throw new AuditIndexError('VIGIL_AUDIT_INDEX_UNREADABLE', `cannot index ${name} at byte ${row.bytes + at}: ${rec}; run \`vigil audit verify\``);
      const e = JSON.parse(rec.eventJson) as AuditEvent;
      const off = row.bytes + at;
      const fresh = rec.seq > above;
      (fresh ? this.stmt.appendEvent : this.stmt.insertEvent).run(rec.seq, row.id, off, nl - at, str(e.time), str(e.type), str(e.actor?.user), str(e.target?.name), str(e.session_id), str(e.outcome), str(e.source?.ip));
      if (fresh) above = rec.seq;
      const text = searchableText(e);
      if (text !== undefined) {
        if (!fresh) this.stmt.deleteText.run(rec.seq);
        this.stmt.insertText.run(rec.seq, text);
      }
      lastStart = off;
      lastSeq = rec.seq;
      lastHash = rec.hash;
      added++;
      at = nl + 1;
    }
    this.stmt.progress.run(row.bytes + at, lastStart, lastSeq, lastHash, row.id);
    return { added, atEnd: false };
  }

  /** Segments whose indexed range lacks rows (see findIndexGaps). */
  gaps(): IndexGap[] {
    return findIndexGaps(this.db);
  }

  /**
   * catchUp(), then make sure no rows are missing before answering from the index: a search must not come
   * back short because rows were deleted from index.sqlite. The check is cheap (findIndexGaps); a segment
   * found incomplete is dropped and indexed again from the log, and that is said (`notice`).
   */
  private catchUpComplete(): void {
    this.catchUp();
    const gaps = this.gaps();
    if (gaps.length === 0) return;
    const missing = gaps.reduce((n, g) => n + g.expected - g.rows, 0);
    this.notice(`the search index lacks ${missing} record(s) of ${describeGaps(gaps)}; indexing ${gaps.length === 1 ? 'it' : 'them'} again from the log (run \`vigil audit verify\`: rows do not go missing by themselves)`);
    this.tx.immediate(() => {
      for (const g of gaps) {
        const row = this.stmt.segmentByName.get(g.segment);
        if (row) this.forgetSegmentRange(row);
      }
    });
    this.catchUp();
    const still = this.gaps();
    // Indexed afresh from the segments: what is still missing is missing from the log itself.
    if (still.length > 0) this.notice(`records are missing from the log itself in ${describeGaps(still)}; run \`vigil audit verify\``);
  }

  /**
   * Drop a segment's whole indexed seq range, text included (a row deleted from `events` leaves its text
   * behind), so the next catch-up indexes the segment from its start.
   */
  private forgetSegmentRange(row: SegmentRow): void {
    for (let seq = row.first_seq; seq <= row.last_seq; seq++) this.stmt.deleteText.run(seq);
    this.stmt.deleteEventsInRange.run(row.first_seq, row.last_seq);
    this.stmt.deleteSegment.run(row.id);
  }

  /** Drop everything and index the whole chain again (`vigil audit index rebuild`). */
  rebuild(): CatchUpResult {
    // One transaction: a gateway's follower indexing meanwhile sees the old index or the empty one.
    // Nothing here needs overwriting (purges already did that): no secure_delete for the bulk delete.
    this.db.pragma('secure_delete = OFF');
    this.db.exec(`
      BEGIN IMMEDIATE;
      DROP INDEX IF EXISTS events_time; DROP INDEX IF EXISTS events_type;
      DROP INDEX IF EXISTS events_user; DROP INDEX IF EXISTS events_target; DROP INDEX IF EXISTS events_session;
      DELETE FROM events; DELETE FROM segments; DELETE FROM event_text;
      COMMIT;`);
    this.db.pragma('secure_delete = ON');
    // Bulk load without the secondary indexes, then build them once (several times faster than
    // maintaining five B-trees per row). After a crash in between, the next open builds them.
    // A crash during a rebuild only means rebuilding again: no fsync per batch, and a bigger page cache
    // for the index builds' sorts.
    this.db.pragma('synchronous = OFF');
    this.db.pragma('cache_size = -262144');
    let res: CatchUpResult;
    try {
      res = this.catchUp();
      this.db.exec(INDEXES);
    } finally {
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma(`cache_size = ${SEARCH_CACHE_KIB}`);
    }
    this.db.exec("INSERT INTO event_text(event_text) VALUES ('optimize'); ANALYZE;");
    return res;
  }

  /** After a purge: merge FTS5's segments so the purged text is gone from the file, not only unreachable. */
  compactText(): void {
    this.db.exec("INSERT INTO event_text(event_text) VALUES ('optimize')");
  }

  /** Highest indexed seq (0 when empty); cheap, unlike status(). */
  indexedSeq(): number {
    return this.stmt.maxSeq.get() ?? 0;
  }

  status(): IndexStatus {
    const segs = this.stmt.segments.all();
    let bytes = 0;
    for (const f of [this.file, `${this.file}-wal`]) {
      try {
        bytes += fs.statSync(f).size;
      } catch {
        // no WAL right now
      }
    }
    return { indexedSeq: this.stmt.maxSeq.get() ?? 0, chainSeq: chainHeadSeq(this.auditDir), records: this.stmt.count.get() ?? 0, segments: segs.length, bytes };
  }

  /**
   * The records matching `q`, oldest first (the newest `q.limit` when set): the same answer as
   * searchAuditLog, plus `text`. Catch up first, so nothing durable is missed.
   */
  search(q: TextQuery): AuditRecord[] {
    this.catchUpComplete();
    try {
      return this.lookup(q);
    } catch (e) {
      // A segment purged or cut back between catch-up and read: catch up again and answer from that.
      if (!(e instanceof StaleIndexError)) throw e;
    }
    this.catchUp();
    try {
      return this.lookup(q);
    } catch (e) {
      // Rows that point at other records than they name (the file was edited): start over from the chain.
      if (!(e instanceof StaleIndexError)) throw e;
    }
    this.rebuild();
    return this.lookup(q);
  }

  private lookup(q: TextQuery): AuditRecord[] {
    return [...this.lookupRecords(q, 0)];
  }

  /** The matches of `q` with seq > `afterSeq`, oldest first (the newest `q.limit`: collected, then sorted). */
  private *lookupRecords(q: TextQuery, afterSeq: number): Generator<AuditRecord> {
    const where: string[] = afterSeq > 0 ? [`seq > ${Math.floor(afterSeq)}`] : [];
    const params: unknown[] = [];
    if (q.user !== undefined) where.push('user = ?'), params.push(q.user);
    if (q.target !== undefined) where.push('target = ?'), params.push(q.target);
    if (q.session !== undefined) where.push('session = ?'), params.push(q.session);
    if (q.type !== undefined) where.push('type >= ? AND type < ?'), params.push(q.type, prefixEnd(q.type));
    else if (q.hideCheckpoints) where.push("type IS NOT 'audit.checkpoint'");
    const since = iso(q.since);
    const until = isoUntil(q.until);
    if (since !== undefined) where.push('time >= ?'), params.push(since);
    if (until !== undefined) where.push('time <= ?'), params.push(until);
    let from = 'events';
    if (q.text !== undefined) {
      // Two plans: when the other filters leave few records, probe the full-text index once per record
      // (FTS5 seeks each term's doclist to that rowid); otherwise walk the text matches. Which is
      // cheaper depends on how common the words are, which only the filters' count can tell.
      const narrow =
        where.length > 0 &&
        (this.db.prepare(`SELECT count(*) FROM (SELECT 1 FROM events WHERE ${where.join(' AND ')} LIMIT ${searchPlan.probe + 1})`).pluck().get(...params) as number) <= searchPlan.probe;
      if (narrow) {
        from = 'events CROSS JOIN event_text ON event_text.rowid = events.seq';
        where.push('event_text MATCH ?');
      } else where.push('seq IN (SELECT rowid FROM event_text WHERE event_text MATCH ?)');
      params.push(q.text);
    }
    const countUpTo = (cap: number) =>
      this.db.prepare(`SELECT count(*) FROM (SELECT 1 FROM events WHERE ${where.length ? where.join(' AND ') : '1'} LIMIT ${cap + 1})`).pluck().get(...params) as number;
    // The newest N of a broad filter (many matches): walking seqs downwards finds them at once, where
    // the filter's index would fetch and sort every match first.
    if (q.limit && q.text === undefined && where.length > 0 && countUpTo(searchPlan.broad) > searchPlan.broad) from = 'events NOT INDEXED';
    const match = matcher(q);
    const segNames = new Map(this.stmt.segments.all().map((r) => [r.id, r.name]));
    const cond = where.length ? where.join(' AND ') : '1';
    const run = <T>(sql: string, args: unknown[]): T[] => {
      try {
        return this.db.prepare(sql).all(...args) as T[];
      } catch (e) {
        const msg = (e as Error).message;
        if (q.text !== undefined && /fts5|syntax error|no such column|unterminated|unknown special query/i.test(msg)) {
          throw new AuditIndexError('VIGIL_AUDIT_SEARCH_TEXT', `invalid --text query ${JSON.stringify(q.text)}: ${msg.replace(/^fts5: /, '')} (FTS5 syntax: words, "exact phrase", prefix*, AND/OR/NOT, NEAR(a b, 5); quote text with punctuation)`);
        }
        throw e;
      }
    };
    type Hit = { seq: number; seg: number; off: number; len: number };
    if (!q.limit) {
      const hits = run<Hit>(`SELECT seq, seg, off, len FROM ${from} WHERE ${cond} ORDER BY seq`, params);
      // Read and parsed a slice at a time: a consumer that writes each record out holds one slice, not
      // every match (at 10^5 matches the parsed events alone kept the garbage collector busy).
      const slice = searchPlan.streamSlice;
      for (let i = 0; i < hits.length; i += slice) {
        for (const r of this.readHits(hits.slice(i, i + slice), segNames)) if (match('', r.event)) yield r;
      }
      return;
    }
    // Newest first, page by page, until `limit` records pass the chain-side check.
    const out: AuditRecord[] = [];
    let below = Number.MAX_SAFE_INTEGER;
    const page = Math.max(q.limit, 256);
    for (;;) {
      const hits = run<Hit>(`SELECT seq, seg, off, len FROM ${from} WHERE ${cond} AND seq < ? ORDER BY seq DESC LIMIT ?`, [...params, below, page]);
      for (const r of this.readHits(hits, segNames)) {
        if (match('', r.event)) out.push(r);
        if (out.length === q.limit) break;
      }
      if (out.length === q.limit || hits.length < page) break;
      below = hits[hits.length - 1].seq;
    }
    yield* out.sort((a, b) => a.seq - b.seq);
  }

  /**
   * search(), streamed: records are yielded as they are read, oldest first. A row found stale midway
   * (a segment purged or cut back meanwhile) means catching up and going on after the last record given.
   */
  *searchStream(q: TextQuery): Generator<AuditRecord> {
    this.catchUpComplete();
    let after = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        for (const r of this.lookupRecords(q, after)) {
          yield r;
          after = r.seq;
        }
        return;
      } catch (e) {
        if (!(e instanceof StaleIndexError)) throw e;
        if (attempt === 0) this.catchUp();
        else if (attempt === 1) this.rebuild();
        else throw e;
      }
    }
  }

  /**
   * Records with seq > `afterSeq` whose type is one of `types`, oldest first, at most `limit` (the
   * console's session catalog follows the log with this). Catches up first; a stale row means catching
   * up again, as search does.
   */
  recordsAfter(afterSeq: number, types: string[], limit: number): AuditRecord[] {
    this.catchUpComplete();
    const sql = `SELECT seq, seg, off, len FROM events WHERE seq > ? AND type IN (${types.map(() => '?').join(', ')}) ORDER BY seq LIMIT ?`;
    for (let attempt = 0; ; attempt++) {
      try {
        const segNames = new Map(this.stmt.segments.all().map((r) => [r.id, r.name]));
        return this.readHits(this.db.prepare(sql).all(afterSeq, ...types, limit) as { seq: number; seg: number; off: number; len: number }[], segNames);
      } catch (e) {
        if (!(e instanceof StaleIndexError) || attempt > 0) throw e;
        this.catchUp();
      }
    }
  }

  /** How many records of each of `types` each session has in (afterSeq, uptoSeq], from the index rows alone. */
  countBySession(afterSeq: number, uptoSeq: number, types: string[]): { session: string; type: string; n: number }[] {
    return this.db
      .prepare(`SELECT session, type, count(*) AS n FROM events WHERE seq > ? AND seq <= ? AND session IS NOT NULL AND type IN (${types.map(() => '?').join(', ')}) GROUP BY session, type`)
      .all(afterSeq, uptoSeq, ...types) as { session: string; type: string; n: number }[];
  }

  /** The records themselves, read from the segments at the indexed offsets and checked to be those seqs. */
  private readHits(hits: { seq: number; seg: number; off: number; len: number }[], segNames: Map<number, string>): AuditRecord[] {
    const out: AuditRecord[] = new Array(hits.length);
    const fds = new Map<number, number>();
    let buf = Buffer.allocUnsafe(READ_WINDOW);
    let winSeg = -1;
    let winStart = 0;
    let winEnd = 0;
    try {
      for (let i = 0; i < hits.length; i++) {
        const h = hits[i];
        let fd = fds.get(h.seg);
        if (fd === undefined) {
          const name = segNames.get(h.seg);
          if (name === undefined) throw new StaleIndexError(`segment id ${h.seg}`);
          try {
            fd = fs.openSync(path.join(this.auditDir, name), 'r');
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new StaleIndexError(name);
            throw e;
          }
          fds.set(h.seg, fd);
        }
        // Hits are in file order. Records close together (a session, a time range) are read with one
        // call; scattered ones one call each, never reading the bytes between them.
        if (h.seg !== winSeg || h.off < winStart || h.off + h.len > winEnd) {
          let end = h.off + h.len;
          for (let j = i + 1; j < hits.length; j++) {
            const next = hits[j];
            if (next.seg !== h.seg || next.off < end || next.off - end > READ_GAP || next.off + next.len - h.off > READ_WINDOW) break;
            end = next.off + next.len;
          }
          if (buf.length < end - h.off) buf = Buffer.allocUnsafe(Math.max(end - h.off, buf.length * 2));
          winSeg = h.seg;
          winStart = h.off;
          winEnd = h.off + fs.readSync(fd, buf, 0, end - h.off, h.off);
        }
        const at = h.off - winStart;
        const rec = parseRecordLine(buf.toString('utf8', at, Math.min(at + h.len, winEnd - winStart)));
        if (typeof rec === 'string' || rec.seq !== h.seq) throw new StaleIndexError(`seq ${h.seq}`);
        out[i] = { seq: rec.seq, hash: rec.hash, event: JSON.parse(rec.eventJson) as AuditEvent };
      }
    } finally {
      for (const fd of fds.values()) fs.closeSync(fd);
    }
    return out;
  }
}

/** See openFile: the memory map a search reads the index through, and the page cache beside it (KiB, negative). */
const MMAP_BYTES = 2 ** 31;
/** readHits: records at most READ_GAP bytes apart share one read of at most READ_WINDOW bytes. */
const READ_GAP = 4096;
const READ_WINDOW = 256 * 1024;
const SEARCH_CACHE_KIB = -65536;

class StaleIndexError extends Error {}

function sizeOf(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return -1;
  }
}
class UnusableIndexError extends Error {}

/** An index file that is damaged or from another version: safe to delete (it is rebuilt from the chain). */
export function isUnusable(e: unknown): boolean {
  if (e instanceof UnusableIndexError) return true;
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB');
}

/**
 * Segments whose indexed seq range lacks rows. A segment holds contiguous seqs (the writer numbers each
 * record one past the last, into the current segment; `vigil audit verify` checks the chain for it), so a
 * complete index has exactly last_seq - first_seq + 1 rows in each segment's indexed range. First one
 * check of the whole table — count(*) (SQLite counts the entries of its smallest index: milliseconds at
 * 10^7 rows), min(seq) and max(seq) (one B-tree descent each) against the ranges' sizes and ends — and
 * only when that disagrees a count per segment (a primary-key range: ~60 ns a row) to name the segments.
 * One read transaction: a follower committing meanwhile cannot make a range look short.
 */
export function findIndexGaps(db: Database.Database): IndexGap[] {
  return db.transaction((): IndexGap[] => {
    const ranges = db.prepare('SELECT name, first_seq, last_seq FROM segments WHERE last_seq >= first_seq ORDER BY first_seq').all() as { name: string; first_seq: number; last_seq: number }[];
    const expected = ranges.reduce((n, r) => n + r.last_seq - r.first_seq + 1, 0);
    const rows = db.prepare('SELECT count(*) FROM events').pluck().get() as number;
    const minSeq = db.prepare('SELECT min(seq) FROM events').pluck().get() as number | null;
    const maxSeq = db.prepare('SELECT max(seq) FROM events').pluck().get() as number | null;
    const lastIndexed = ranges.reduce((m, r) => Math.max(m, r.last_seq), 0);
    const inRanges = minSeq === null || (ranges.length > 0 && minSeq >= ranges[0].first_seq && maxSeq! <= lastIndexed);
    if (rows === expected && inRanges) return [];
    const count = db.prepare('SELECT count(*) FROM events WHERE seq BETWEEN ? AND ?').pluck();
    const gaps: IndexGap[] = [];
    for (const r of ranges) {
      const n = count.get(r.first_seq, r.last_seq) as number;
      const want = r.last_seq - r.first_seq + 1;
      if (n !== want) gaps.push({ segment: r.name, firstSeq: r.first_seq, lastSeq: r.last_seq, rows: n, expected: want });
    }
    return gaps;
  })();
}

function describeGaps(gaps: IndexGap[]): string {
  const named = gaps.slice(0, 3).map((g) => `${g.segment} (seq ${g.firstSeq}..${g.lastSeq}: ${g.rows} of ${g.expected} rows)`).join(', ');
  return `segment${gaps.length === 1 ? '' : 's'} ${named}${gaps.length > 3 ? ` and ${gaps.length - 3} more` : ''}`;
}

/** What `vigil audit verify` says of the search index (index.sqlite) beside the log. */
export interface SearchIndexCheck {
  /** False when the index could not be read (nothing is said about it then). */
  checked: boolean;
  ok: boolean;
  gaps: IndexGap[];
  problem?: string;
}

/**
 * Whether the search index beside a log lacks rows in what it has indexed (read-only: the index is not
 * created, caught up or repaired here). Undefined when there is no index. An index behind the log is not
 * incomplete: searches catch it up.
 */
export function checkSearchIndex(auditDir: string): SearchIndexCheck | undefined {
  const file = path.join(auditDir, INDEX_FILE);
  if (!fs.existsSync(file)) return undefined;
  let db: Database.Database | undefined;
  let gaps: IndexGap[];
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 10000');
    gaps = findIndexGaps(db);
  } catch (e) {
    return { checked: false, ok: false, gaps: [], problem: `${INDEX_FILE} could not be read (${(e as Error).message})` };
  } finally {
    db?.close();
  }
  if (gaps.length === 0) return { checked: true, ok: true, gaps };
  const missing = gaps.reduce((n, g) => n + g.expected - g.rows, 0);
  return {
    checked: true, ok: false, gaps,
    problem: `${INDEX_FILE} lacks ${missing} record(s) of ${describeGaps(gaps)}: rows were deleted from it (searches index those segments again when they find this); run \`vigil audit index rebuild\``,
  };
}

/** Seq of the last complete record of the newest segment that has one (0 when the log is empty). */
export function chainHeadSeq(auditDir: string): number {
  const segs = listSegments(auditDir);
  for (let i = segs.length - 1; i >= 0; i--) {
    const file = path.join(auditDir, segs[i]);
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch {
      continue;
    }
    try {
      const size = fs.fstatSync(fd).size;
      for (let span = 64 * 1024; ; span *= 4) {
        const start = Math.max(0, size - span);
        const buf = Buffer.alloc(size - start);
        fs.readSync(fd, buf, 0, buf.length, start);
        const end = buf.lastIndexOf(0x0a);
        if (end < 0) {
          if (start === 0) break;
          continue;
        }
        const from = buf.lastIndexOf(0x0a, end - 1);
        if (from < 0 && start > 0) continue;
        const rec = parseRecordLine(buf.toString('utf8', from + 1, end));
        if (typeof rec !== 'string') return rec.seq;
        break;
      }
    } finally {
      fs.closeSync(fd);
    }
  }
  return 0;
}

/**
 * Search through the index (`vigil audit search`): open it (created when missing), catch up, answer.
 * An index found damaged on the way is deleted and rebuilt from the chain, once.
 */
export function searchIndexed(auditDir: string, q: TextQuery, opts: AuditIndexOptions = {}): AuditRecord[] {
  for (let attempt = 0; ; attempt++) {
    const index = AuditIndex.open(auditDir, opts);
    try {
      return index.search(q);
    } catch (e) {
      if (attempt > 0 || !isUnusable(e)) throw e;
    } finally {
      index.close();
    }
    AuditIndex.remove(auditDir);
  }
}

/**
 * searchIndexed, streamed (`vigil audit search` without --limit): records as they are read. The index is
 * opened, caught up and (when unusable) rebuilt before the first record; it is closed when the caller
 * stops iterating.
 */
export function* searchIndexedStream(auditDir: string, q: TextQuery, opts: AuditIndexOptions = {}): Generator<AuditRecord> {
  for (let attempt = 0; ; attempt++) {
    const index = AuditIndex.open(auditDir, opts);
    let started = false;
    try {
      for (const r of index.searchStream(q)) {
        started = true;
        yield r;
      }
      return;
    } catch (e) {
      if (started || attempt > 0 || !isUnusable(e)) throw e;
    } finally {
      index.close();
    }
    AuditIndex.remove(auditDir);
  }
}

/**
 * After a retention purge: take the purged segments out of an existing index at once (rather than at
 * the next search) and merge the full-text index, so purged text does not linger in index.sqlite.
 */
export function forgetPurged(auditDir: string): number {
  if (!fs.existsSync(path.join(auditDir, INDEX_FILE))) return 0;
  const index = AuditIndex.open(auditDir);
  try {
    const removed = index.forgetMissing();
    if (removed > 0) index.compactText();
    return removed;
  } finally {
    index.close();
  }
}
