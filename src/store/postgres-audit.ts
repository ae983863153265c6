import type pg from 'pg';
import type { AppendRowsOptions, AuditChainInfo, AuditChainStore, IndexedAuditRow, SharedAuditQuery } from './types.ts';
import { searchableDetailsText } from '../../recorder/audit/searchable.ts';

/**
 * The shared audit index on PostgreSQL (tables of migration 2): each replica's chain and keys, and every
 * signed record of every chain. Written only by each replica's follower (and `vigil audit reindex`),
 * never on the append path; read by search, export, reports and verify on any replica.
 */
export class PgAuditChains implements AuditChainStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly s: string,
    /** The store's error mapping: unavailability as StoreUnavailableError, the URL scrubbed. */
    private readonly fail: (e: unknown) => Error,
  ) {}

  private async q<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(sql, params);
    } catch (e) {
      throw this.fail(e);
    }
  }

  /**
   * A pooled client for one transaction. While checked out the pool does not listen for its errors: a
   * connection dropped between two statements (the database going away) would be an unhandled 'error'
   * event, so one is listened for here; the statement in flight fails anyway and the client is discarded.
   */
  private async checkout(): Promise<{ client: pg.PoolClient; done: (broken: boolean) => void }> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (e) {
      throw this.fail(e);
    }
    let lost = false;
    const onError = () => (lost = true);
    client.on('error', onError);
    return {
      client,
      done: (broken) => {
        client.off('error', onError);
        client.release(broken || lost);
      },
    };
  }

  async registerChain(c: { replica: string; keyId: string; publicKey: string; host: string }): Promise<AuditChainInfo> {
    const key = [{ key_id: c.keyId, public_key: c.publicKey }];
    // A new key (rotation) is added to the list: records signed by the older one must still check.
    await this.q(
      `INSERT INTO ${this.s}.audit_chains (replica, keys, host) VALUES ($1, $2::jsonb, $3)
       ON CONFLICT (replica) DO UPDATE SET host = $3,
         keys = CASE WHEN ${this.s}.audit_chains.keys @> $2::jsonb THEN ${this.s}.audit_chains.keys ELSE ${this.s}.audit_chains.keys || $2::jsonb END`,
      [c.replica, JSON.stringify(key), c.host],
    );
    return (await this.chain(c.replica))!;
  }

  async chains(): Promise<AuditChainInfo[]> {
    return (await this.q<ChainRow>(`SELECT * FROM ${this.s}.audit_chains ORDER BY replica COLLATE "C"`)).rows.map(chainFromRow);
  }

  async chain(replica: string): Promise<AuditChainInfo | undefined> {
    const r = (await this.q<ChainRow>(`SELECT * FROM ${this.s}.audit_chains WHERE replica = $1`, [replica])).rows[0];
    return r && chainFromRow(r);
  }

  async appendRows(replica: string, expected: { seq: number; hash: string }, rows: IndexedAuditRow[], chainSeq: number, opts: AppendRowsOptions = {}): Promise<{ ok: boolean; seq: number; hash: string }> {
    const { client, done } = await this.checkout();
    let broken = false;
    try {
      await client.query('BEGIN');
      // No need to wait for this commit's WAL flush: the rows are a copy of the chain, and a commit lost in a
      // database crash loses its head update with it, so the follower simply copies those records again.
      await client.query('SET LOCAL synchronous_commit = off');
      const head = (await client.query<{ indexed_seq: string; indexed_hash: string; diverged: unknown }>(
        `SELECT indexed_seq, indexed_hash, diverged FROM ${this.s}.audit_chains WHERE replica = $1 FOR UPDATE`, [replica],
      )).rows[0];
      const cur = head ? { seq: Number(head.indexed_seq), hash: head.indexed_hash } : { seq: 0, hash: '' };
      if (!head || head.diverged || cur.seq !== expected.seq || cur.hash !== expected.hash) {
        await client.query('ROLLBACK');
        return { ok: false, ...cur };
      }
      if (rows.length > 0) {
        const col = <K extends keyof RowColumns>(k: K) => rows.map((r) => columnsOf(r)[k]);
        await client.query(
          `INSERT INTO ${this.s}.audit_events (replica, seq, prev, hash, "time", type, "user", target, session, outcome, event, body)
           SELECT $1, u.seq, u.prev, u.hash, u.time, u.type, u.usr, u.target, u.session, u.outcome, u.event,
                  CASE WHEN u.body IS NULL THEN NULL ELSE to_tsvector('simple', u.body) END
           FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])
             AS u(seq, prev, hash, time, type, usr, target, session, outcome, event, body)`,
          [replica, col('seq'), col('prev'), col('hash'), col('time'), col('type'), col('user'), col('target'), col('session'), col('outcome'), col('event'), col('body')],
        );
      }
      if (opts.pruneThrough !== undefined) {
        await client.query(`DELETE FROM ${this.s}.audit_events WHERE replica = $1 AND seq <= $2`, [replica, opts.pruneThrough]);
      }
      const last = rows.at(-1);
      const next = last ? { seq: last.seq, hash: last.hash } : cur;
      await client.query(`UPDATE ${this.s}.audit_chains SET indexed_seq = $2, indexed_hash = $3, indexed_at = now(), chain_seq = $4 WHERE replica = $1`, [replica, next.seq, next.hash, chainSeq]);
      await client.query('COMMIT');
      return { ok: true, ...next };
    } catch (e) {
      await client.query('ROLLBACK').catch(() => (broken = true));
      throw this.fail(e);
    } finally {
      done(broken);
    }
  }

  async markDiverged(replica: string, seq: number, problem: string): Promise<void> {
    await this.q(`UPDATE ${this.s}.audit_chains SET diverged = $2::jsonb WHERE replica = $1 AND diverged IS NULL`, [replica, JSON.stringify({ seq, at: new Date().toISOString(), problem })]);
  }

  async resetChain(replica: string): Promise<void> {
    await this.inChainTransaction(replica, async () => {});
  }

  async archiveChain(replica: string, archiveAs: string): Promise<number> {
    return this.inChainTransaction(replica, async (client) => {
      // The archive's head is its last row and nothing of it is left to copy (chain_seq = indexed_seq): it
      // verifies from its own rows and the keys that signed them, and never shows as lagging.
      await client.query(
        `INSERT INTO ${this.s}.audit_chains (replica, keys, host, indexed_seq, indexed_hash, indexed_at, chain_seq)
         SELECT $2, keys, host, indexed_seq, indexed_hash, indexed_at, indexed_seq FROM ${this.s}.audit_chains WHERE replica = $1`,
        [replica, archiveAs],
      );
      return (await client.query(`UPDATE ${this.s}.audit_events SET replica = $2 WHERE replica = $1`, [replica, archiveAs])).rowCount ?? 0;
    });
  }

  /** Under the replica's head lock: `work`, then the replica's rows dropped and its head and mark reset. */
  private async inChainTransaction<T>(replica: string, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const { client, done } = await this.checkout();
    let broken = false;
    try {
      await client.query('BEGIN');
      await client.query(`SELECT 1 FROM ${this.s}.audit_chains WHERE replica = $1 FOR UPDATE`, [replica]);
      const out = await work(client);
      await client.query(`DELETE FROM ${this.s}.audit_events WHERE replica = $1`, [replica]);
      await client.query(`UPDATE ${this.s}.audit_chains SET indexed_seq = 0, indexed_hash = '', indexed_at = NULL, diverged = NULL WHERE replica = $1`, [replica]);
      await client.query('COMMIT');
      return out;
    } catch (e) {
      await client.query('ROLLBACK').catch(() => (broken = true));
      throw this.fail(e);
    } finally {
      done(broken);
    }
  }

  async rows(replica: string, afterSeq: number, limit: number): Promise<IndexedAuditRow[]> {
    const r = await this.q<EventRow>(`SELECT replica, seq, prev, hash, event FROM ${this.s}.audit_events WHERE replica = $1 AND seq > $2 ORDER BY seq LIMIT $3`, [replica, afterSeq, limit]);
    return r.rows.map(rowFromDb);
  }

  async search(q: SharedAuditQuery): Promise<IndexedAuditRow[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const p = (v: unknown) => (params.push(v), `$${params.length}`);
    if (q.replica !== undefined) where.push(`replica = ${p(q.replica)}`);
    // Columns hold at most FILTER_CHARS of a value: a longer one is matched by its cut here, then exactly below.
    if (q.user !== undefined) where.push(`"user" = ${p(filterColumn(q.user))}`);
    if (q.target !== undefined) where.push(`target = ${p(filterColumn(q.target))}`);
    if (q.session !== undefined) where.push(`session = ${p(filterColumn(q.session))}`);
    if (q.type !== undefined) {
      const prefix = filterColumn(q.type);
      // A cut prefix is the whole (cut) column of every type it begins: `>=` alone, refined below.
      where.push(q.type.length > FILTER_CHARS ? `type = ${p(prefix)}` : `type COLLATE "C" >= ${p(prefix)} AND type COLLATE "C" < ${p(prefix + '\u{10FFFF}')}`);
    }
    else if (q.hideCheckpoints) where.push(`type IS DISTINCT FROM 'audit.checkpoint'`);
    if (q.since !== undefined) where.push(`"time" COLLATE "C" >= ${p(q.since)}`);
    if (q.until !== undefined) where.push(`"time" COLLATE "C" <= ${p(q.until)}`);
    if (q.text !== undefined) {
      const tsq = textQuery(q.text);
      where.push(tsq === undefined ? 'false' : `body @@ to_tsquery('simple', ${p(tsq)})`);
    }
    if (q.after) {
      const [t, r, n] = [p(q.after.time), p(q.after.replica), p(q.after.seq)];
      where.push(`("time" COLLATE "C" > ${t} OR ("time" = ${t} AND (replica COLLATE "C" > ${r} OR (replica = ${r} AND seq > ${n}))))`);
    }
    const cond = where.length ? where.join(' AND ') : 'true';
    const order = `"time" COLLATE "C", replica COLLATE "C", seq`;
    const sql = q.limit
      ? `SELECT * FROM (SELECT replica, seq, prev, hash, event, "time" FROM ${this.s}.audit_events WHERE ${cond}
           ORDER BY "time" COLLATE "C" DESC, replica COLLATE "C" DESC, seq DESC LIMIT ${p(q.limit)}) x ORDER BY ${order}`
      : `SELECT replica, seq, prev, hash, event, "time" FROM ${this.s}.audit_events WHERE ${cond} ORDER BY ${order}${q.page ? ` LIMIT ${p(q.page)}` : ''}`;
    const rows = (await this.q<EventRow>(sql, params)).rows.map(rowFromDb);
    return [q.user, q.target, q.session, q.type].some((v) => v !== undefined && v.length > FILTER_CHARS) ? rows.filter((r) => matchesExactly(r, q)) : rows;
  }
}

/**
 * The most of a user, target, session or type a filter column holds (UTF-16 units, so at most 1.5 KiB): each
 * has a B-tree index, whose rows PostgreSQL caps at 2704 bytes, and these values come from clients (the name
 * an unauthenticated login gave). Indexing the whole value failed the batch, on every retry, for ever.
 */
const FILTER_CHARS = 512;
const filterColumn = (v: string): string => (v.length > FILTER_CHARS ? v.slice(0, FILTER_CHARS) : v);

/** Rows found by a cut filter value, kept when the event has the whole value (rare: a value over FILTER_CHARS). */
function matchesExactly(r: IndexedAuditRow, q: SharedAuditQuery): boolean {
  let e: { type?: unknown; actor?: { user?: unknown }; target?: { name?: unknown }; session_id?: unknown };
  try {
    e = JSON.parse(r.eventJson) as typeof e;
  } catch {
    return true; // the caller's hash check leaves it out and says so
  }
  return (
    (q.user === undefined || e.actor?.user === q.user) &&
    (q.target === undefined || e.target?.name === q.target) &&
    (q.session === undefined || e.session_id === q.session) &&
    (q.type === undefined || (typeof e.type === 'string' && e.type.startsWith(q.type)))
  );
}

interface ChainRow {
  replica: string;
  keys: { key_id: string; public_key: string }[];
  host: string;
  registered_at: Date;
  indexed_seq: string;
  indexed_hash: string;
  indexed_at: Date | null;
  chain_seq: string;
  diverged: { seq: number; at: string; problem: string } | null;
}

function chainFromRow(r: ChainRow): AuditChainInfo {
  return {
    replica: r.replica, keys: r.keys, host: r.host, registeredAt: r.registered_at.toISOString(),
    indexedSeq: Number(r.indexed_seq), indexedHash: r.indexed_hash, indexedAt: r.indexed_at?.toISOString(),
    chainSeq: Number(r.chain_seq), ...(r.diverged ? { diverged: r.diverged } : {}),
  };
}

interface EventRow {
  replica: string;
  seq: string;
  prev: string;
  hash: string;
  event: string;
  time?: string | null;
}

const rowFromDb = (r: EventRow): IndexedAuditRow => ({ replica: r.replica, seq: Number(r.seq), prev: r.prev, hash: r.hash, eventJson: r.event, ...(r.time !== undefined ? { time: r.time } : {}) });

interface RowColumns {
  seq: number;
  prev: string;
  hash: string;
  time: string | null;
  type: string | null;
  user: string | null;
  target: string | null;
  session: string | null;
  outcome: string | null;
  event: string;
  body: string | null;
}

/** PostgreSQL text cannot hold NUL: filter columns lose it (the event text keeps it, JSON-escaped). */
const text = (v: unknown): string | null => (typeof v === 'string' ? v.replaceAll('\0', '') : v === undefined || v === null ? null : JSON.stringify(v).replaceAll('\0', ''));

/**
 * The words of a text as the local index (SQLite FTS5, unicode61) sees them: runs of letters and digits,
 * everything else a separator. PostgreSQL's parser would keep `public.users` (a host) or `/etc/passwd` (a
 * path) as one token, so `users` would find a record locally and not here. Rows indexed before this
 * keep their old tokens until `vigil audit reindex` on their replica.
 */
export function textWords(text: string): string[] {
  return text.split(/[^\p{L}\p{N}\p{M}\p{Co}]+/u).filter(Boolean);
}

/**
 * A `--text` query (the FTS5 syntax the local search takes: words, "exact phrase", prefix*, AND/OR/NOT,
 * -word) as a to_tsquery expression over the same words: a word with punctuation inside is the phrase of
 * its parts, as FTS5 reads it quoted. Undefined when nothing in it is a word (matches nothing).
 */
export function textQuery(text: string): string | undefined {
  const out: string[] = [];
  let op: '&' | '|' = '&';
  let not = false;
  for (const m of text.matchAll(/(-?)"([^"]*)"?(\*?)|[^\s"]+/g)) {
    let term: string;
    let prefix: boolean;
    if (m[2] !== undefined) {
      [term, prefix, not] = [m[2], m[3] === '*', not || m[1] === '-'];
    } else {
      term = m[0];
      if (term === 'OR' || term === 'or') {
        if (out.length) op = '|';
        continue;
      }
      if (term === 'AND') continue;
      if (term === 'NOT') {
        not = true;
        continue;
      }
      if (term.startsWith('-')) [term, not] = [term.slice(1), true];
      prefix = term.endsWith('*');
    }
    const words = textWords(term);
    if (words.length === 0) continue;
    const lexemes = words.map((w, i) => `'${w}'${prefix && i === words.length - 1 ? ':*' : ''}`);
    const operand = `${not ? '!' : ''}${lexemes.length > 1 ? `(${lexemes.join(' <-> ')})` : lexemes[0]}`;
    out.push(...(out.length ? [op, operand] : [operand]));
    [op, not] = ['&', false];
  }
  return out.length ? out.join(' ') : undefined;
}

const filterText = (v: unknown): string | null => {
  const t = text(v);
  return t === null ? null : filterColumn(t);
};

/** tsvector has a size limit (1 MiB): the searchable text of one record is cut well below it. */
const MAX_BODY = 256 * 1024;

function columnsOf(r: IndexedAuditRow): RowColumns {
  const e = JSON.parse(r.eventJson) as { time?: unknown; type?: unknown; actor?: { user?: unknown }; target?: { name?: unknown }; session_id?: unknown; outcome?: unknown; details?: unknown };
  let body = searchableDetailsText(e.details) ?? null;
  if (body !== null && body.length > MAX_BODY) body = body.slice(0, MAX_BODY);
  return {
    seq: r.seq, prev: r.prev, hash: r.hash, time: text(e.time), type: filterText(e.type), user: filterText(e.actor?.user), target: filterText(e.target?.name),
    session: filterText(e.session_id), outcome: text(e.outcome), event: r.eventJson, body: body === null ? null : textWords(body).join(' '),
  };
}

