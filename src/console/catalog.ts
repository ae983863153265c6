import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { AuditIndex } from '../../recorder/audit/search-index.ts';
import type { AuditEvent } from '../events/envelope.ts';
import { VigilError } from '../errors.ts';
import type { SessionRow } from './session-row.ts';

/**
 * The console's list of sessions: one row per session (start, end, who, where, counts), kept in
 * `<data>/console/sessions.sqlite` and derived only from the audit log, through its search index. The
 * log stays the record: the catalog can be deleted at any time and is rebuilt from it. Rows are found
 * by keyset pagination on (started_at, id) with an index per filter, so the first page of 10^5 sessions
 * costs one index walk, never a sort of them all.
 */
export type { SessionRow };

export interface SessionFilter {
  user?: string;
  target?: string;
  protocol?: string;
  /** Started at or after / at or before (RFC 3339). */
  since?: string;
  until?: string;
  /** live: no session.end recorded yet; past: ended. */
  state?: 'live' | 'past';
}

export interface SessionPage {
  sessions: SessionRow[];
  /** Opaque cursor for the next (older) page; absent on the last page. */
  next?: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY, user TEXT NOT NULL, roles TEXT NOT NULL, target TEXT NOT NULL, protocol TEXT NOT NULL,
  host TEXT, login TEXT, database TEXT, source_ip TEXT, started_at TEXT NOT NULL, ended_at TEXT,
  end_reason TEXT, duration_ms REAL, statements INTEGER NOT NULL DEFAULT 0, commands INTEGER NOT NULL DEFAULT 0,
  file_ops INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions(started_at, id);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user, started_at, id);
CREATE INDEX IF NOT EXISTS sessions_target ON sessions(target, started_at, id);
CREATE INDEX IF NOT EXISTS sessions_protocol ON sessions(protocol, started_at, id);
CREATE INDEX IF NOT EXISTS sessions_live ON sessions(started_at, id) WHERE ended_at IS NULL;
`;

const COUNTED: Record<string, 'statements' | 'commands' | 'file_ops'> = {
  'db.query': 'statements',
  'ssh.command': 'commands',
  'ssh.exec': 'commands',
  'ssh.sftp': 'file_ops',
  'ssh.scp': 'file_ops',
};

/** Records read per catch-up step: bounds memory and the time one step holds the event loop. */
const BATCH = 5000;
export const PAGE_MAX = 200;

export class SessionCatalog {
  private readonly db: Database.Database;

  private constructor(
    private readonly auditDir: string,
    file: string,
  ) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    this.db = new Database(file);
    fs.chmodSync(file, 0o600);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 5000');
    // Only a copy of the log: a crash loses at most the last step, which the next catch-up redoes.
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
  }

  static open(dataDir: string, auditDir = path.join(dataDir, 'audit')): SessionCatalog {
    return new SessionCatalog(auditDir, path.join(dataDir, 'console', 'sessions.sqlite'));
  }

  close(): void {
    this.db.close();
  }

  private get followedSeq(): number {
    const v = this.db.prepare<[], string | undefined>("SELECT value FROM meta WHERE key = 'seq'").pluck().get();
    return v === undefined ? 0 : Number(v);
  }

  /** Bring the catalog up to the log (session starts and ends, counts of statements, commands, file operations). */
  catchUp(): void {
    if (!fs.existsSync(this.auditDir)) return;
    const index = AuditIndex.open(this.auditDir);
    try {
      for (;;) {
        const after = this.followedSeq;
        const records = index.recordsAfter(after, ['session.start', 'session.end'], BATCH);
        // Counts are taken up to the newest indexed record when this batch is the last one.
        const upto = records.length === BATCH ? records[records.length - 1].seq : Math.max(index.indexedSeq(), after);
        const counts = upto > after ? index.countBySession(after, upto, Object.keys(COUNTED)) : [];
        this.apply(records.map((r) => r.event), counts, upto);
        if (records.length < BATCH) return;
      }
    } finally {
      index.close();
    }
  }

  private apply(events: AuditEvent[], counts: { session: string; type: string; n: number }[], upto: number): void {
    const start = this.db.prepare(
      `INSERT INTO sessions (id, user, roles, target, protocol, host, login, database, source_ip, started_at)
       VALUES (@id, @user, @roles, @target, @protocol, @host, @login, @database, @source_ip, @started_at)
       ON CONFLICT(id) DO UPDATE SET user = excluded.user, roles = excluded.roles, target = excluded.target, protocol = excluded.protocol, started_at = excluded.started_at`,
    );
    const end = this.db.prepare('UPDATE sessions SET ended_at = @ended_at, end_reason = @end_reason, duration_ms = @duration_ms WHERE id = @id');
    const count = Object.fromEntries(
      [...new Set(Object.values(COUNTED))].map((col) => [col, this.db.prepare(`UPDATE sessions SET ${col} = ${col} + ? WHERE id = ?`)]),
    );
    this.db.transaction(() => {
      for (const e of events) {
        if (!e.session_id) continue;
        if (e.type === 'session.start') {
          start.run({
            id: e.session_id,
            user: e.actor.user,
            roles: JSON.stringify(e.actor.roles ?? []),
            target: e.target.name,
            protocol: e.target.protocol,
            host: e.target.host ?? null,
            login: e.target.login ?? null,
            database: e.target.database ?? null,
            source_ip: e.source?.ip ?? null,
            started_at: e.time,
          });
        } else {
          const d = e.details ?? {};
          end.run({ id: e.session_id, ended_at: e.time, end_reason: typeof d.reason === 'string' ? d.reason : null, duration_ms: typeof d.duration_ms === 'number' ? d.duration_ms : null });
        }
      }
      for (const c of counts) count[COUNTED[c.type]].run(c.n, c.session);
      this.db.prepare("INSERT OR REPLACE INTO meta VALUES ('seq', ?)").run(String(upto));
    })();
  }

  /** One page, newest first; `cursor` is the `next` of the previous page. */
  list(f: SessionFilter, limit: number, cursor?: string): SessionPage {
    const where: string[] = [];
    const args: unknown[] = [];
    if (f.user) where.push('user = ?'), args.push(f.user);
    if (f.target) where.push('target = ?'), args.push(f.target);
    if (f.protocol) where.push('protocol = ?'), args.push(f.protocol);
    if (f.since) where.push('started_at >= ?'), args.push(f.since);
    if (f.until) where.push('started_at <= ?'), args.push(f.until);
    if (f.state === 'live') where.push('ended_at IS NULL');
    if (f.state === 'past') where.push('ended_at IS NOT NULL');
    const c = decodeCursor(cursor);
    if (c) where.push('(started_at < ? OR (started_at = ? AND id < ?))'), args.push(c.t, c.t, c.id);
    const n = Math.max(1, Math.min(PAGE_MAX, limit));
    const rows = this.db
      .prepare(`SELECT * FROM sessions ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY started_at DESC, id DESC LIMIT ?`)
      .all(...args, n + 1) as Record<string, unknown>[];
    const page = rows.slice(0, n).map(rowView);
    const last = page[page.length - 1];
    return { sessions: page, next: rows.length > n && last ? encodeCursor(last.started_at, last.id) : undefined };
  }

  get(id: string): SessionRow | undefined {
    const r = this.db.prepare('SELECT * FROM sessions WHERE id = ?').get(id) as Record<string, unknown> | undefined;
    return r ? rowView(r) : undefined;
  }

  /** Bulk insert for the benchmark and tests of paging: rows as if their events had been followed. */
  seed(rows: SessionRow[]): void {
    const ins = this.db.prepare(
      `INSERT OR REPLACE INTO sessions VALUES (@id, @user, @roles, @target, @protocol, @host, @login, @database, @source_ip, @started_at, @ended_at, @end_reason, @duration_ms, @statements, @commands, @file_ops)`,
    );
    this.db.transaction(() => {
      for (const r of rows) {
        ins.run({ host: null, login: null, database: null, source_ip: null, ended_at: null, end_reason: null, duration_ms: null, ...r, roles: JSON.stringify(r.roles) });
      }
    })();
  }
}

function rowView(r: Record<string, unknown>): SessionRow {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) if (v !== null) out[k] = k === 'roles' ? JSON.parse(v as string) : v;
  return out as unknown as SessionRow;
}

function encodeCursor(t: string, id: string): string {
  return Buffer.from(JSON.stringify([t, id])).toString('base64url');
}

function decodeCursor(c: string | undefined): { t: string; id: string } | undefined {
  if (!c) return undefined;
  try {
    const v = JSON.parse(Buffer.from(c, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && typeof v[0] === 'string' && typeof v[1] === 'string') return { t: v[0], id: v[1] };
  } catch {
    // not ours: refused below
  }
  throw new VigilError('VIGIL_BAD_REQUEST', 'cursor: not a cursor this endpoint returned');
}
