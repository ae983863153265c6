import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startTestGateway, type TestGateway, type IssuedFiles } from '../support/gateway.ts';
import { startPostgres, clientEnv, PASSWORDS, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, secretsDir } from '../support/tmp.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { F } from '../../proxies/postgres/frontend.ts';

/**
 * Shared setup for the Postgres proxy tests: one real PostgreSQL, one in-process gateway with targets
 * for each backend login method, and helpers to run stock psql/pgbench through the gateway.
 */
export interface PgWorld {
  pg: PostgresHandle;
  tg: TestGateway;
  port: number;
  alice: IssuedFiles;
  base: string;
  /** libpq connection string to the gateway for `dbname` with alice's certificate. */
  conn(dbname?: string, extra?: string): string;
  psql(args: string[], opts?: { conn?: string; input?: string; env?: Record<string, string> }): Promise<{ code: number | null; stdout: string; stderr: string }>;
  queries(pred?: (e: AuditEvent) => boolean): AuditEvent[];
  stop(): Promise<void>;
}

export async function startWorld(extraConfig: Record<string, unknown> = {}, opts: { pgConf?: string[] } = {}): Promise<PgWorld> {
  const pg = await startPostgres({ conf: opts.pgConf });
  const base = tempDir('vigil-pgw-');
  const secretFile = secretsDir(base);
  const target = (name: string, user: string, more: Record<string, unknown> = {}) => ({
    name, protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user, ...more,
  });
  const tg = await startTestGateway(
    {
      targets: [
        target('pg', 'scram_user', { password: { file: secretFile('scram', PASSWORDS.scram_user) } }),
        target('pg-md5', 'md5_user', { password: { file: secretFile('md5', PASSWORDS.md5_user) } }),
        target('pg-clear', 'clear_user', { password: { file: secretFile('clear', PASSWORDS.clear_user) }, tls: 'verify-full', tls_ca: pg.caFile }),
        target('pg-trust', 'trust_user'),
        target('pg-dev', 'trust_user', { allow_plaintext: true }),
        target('pg-down', 'trust_user', { port: 1 }),
        target('pg-secret', 'scram_user', { password: { file: secretFile('scram2', PASSWORDS.scram_user) } }),
      ],
      certs: { clock_skew: 0 },
      roles: [{ name: 'dba', targets: ['pg', 'pg-md5', 'pg-clear', 'pg-trust', 'pg-dev', 'pg-down'], databases: ['app', 'postgres'] }],
      ...extraConfig,
    },
    base,
  );
  const alice = await tg.issue({ user: 'alice', roles: ['dba'] });
  const port = tg.ports.postgres;
  const conn = (dbname = 'pg', extra = '') =>
    `host=127.0.0.1 port=${port} dbname=${dbname} user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key} ${extra}`;
  return {
    pg, tg, port, alice, base, conn,
    psql: (args, opts = {}) => run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-d', opts.conn ?? conn(), ...args], opts.input, opts.env),
    queries: (pred = () => true) => tg.events.filter((e) => e.type === 'db.query' && pred(e)),
    async stop() {
      await tg.stop();
      await pg.stop();
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
}

export function run(cmd: string, args: string[], input?: string, env: Record<string, string> = {}, timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: clientEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
    // A client that exits before reading all its input (a refused login, ON_ERROR_STOP) closes the pipe:
    // its exit code and output are the result, not the EPIPE of the write.
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}

export { execFile };

/**
 * A raw protocol client over TLS with alice's certificate: sends bytes as given and collects backend
 * messages, for tests that need exact control of the frontend stream (binary params, fuzzing).
 */
export class RawClient {
  readonly messages: { type: string; body: Buffer }[] = [];
  closed = false;
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  private constructor(readonly socket: import('node:tls').TLSSocket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 5) {
        const len = this.buf.readUInt32BE(1);
        if (this.buf.length < 1 + len) break;
        this.messages.push({ type: String.fromCharCode(this.buf[0]), body: this.buf.subarray(5, 1 + len) });
        this.buf = this.buf.subarray(1 + len);
      }
      this.wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }
  private wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  static async connect(w: PgWorld, dbname = 'pg', params: [string, string][] = []): Promise<RawClient> {
    const net = await import('node:net');
    const tls = await import('node:tls');
    const { encodeStartupMessage, encodeSslRequest } = await import('../../proxies/postgres/frontend.ts');
    const s = net.connect(w.port, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    s.write(encodeSslRequest());
    await new Promise((r) => s.once('data', r));
    const t = tls.connect({ socket: s, ca: fs.readFileSync(w.alice.ca), cert: fs.readFileSync(w.alice.crt), key: fs.readFileSync(w.alice.key), servername: 'localhost' });
    await new Promise((r, j) => t.once('secureConnect', r).once('error', j));
    const c = new RawClient(t);
    t.write(encodeStartupMessage([['user', 'alice'], ['database', dbname], ...params]));
    await c.until((m) => m.type === 'Z' || m.type === 'E');
    return c;
  }

  /** Wait until a message matching `pred` arrives after index `from` (or the connection closes). */
  async until(pred: (m: { type: string; body: Buffer }) => boolean, from = 0, ms = 10_000): Promise<{ type: string; body: Buffer } | undefined> {
    const deadline = Date.now() + ms;
    let i = from;
    for (;;) {
      for (; i < this.messages.length; i++) if (pred(this.messages[i])) return this.messages[i];
      if (this.closed) return undefined;
      if (Date.now() > deadline) throw new Error(`timed out; got ${this.messages.map((m) => m.type).join('')}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  /** Send, then wait for the next ReadyForQuery (or close). Returns the messages received meanwhile. */
  async roundTrip(bytes: Buffer): Promise<{ type: string; body: Buffer }[]> {
    const from = this.messages.length;
    this.socket.write(bytes);
    await this.until((m) => m.type === 'Z', from);
    return this.messages.slice(from);
  }

  /** Send `parts` in one write; the answers once one ReadyForQuery came for each Sync and Query among them. */
  async pipeline(parts: Buffer[]): Promise<{ type: string; body: Buffer }[]> {
    const from = this.messages.length;
    const answers = parts.filter((m) => m[0] === F.Sync || m[0] === F.Query).length;
    this.socket.write(Buffer.concat(parts));
    await this.until(() => this.messages.slice(from).filter((m) => m.type === 'Z').length >= answers, from);
    return this.messages.slice(from);
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * postgresql.conf lines that make the server the oracle: every statement it receives is logged as one
 * JSON line (`statement: …`, `execute NAME: …`, `execute fetch from …`), in `data/log/`.
 */
export const STATEMENT_LOG = ['logging_collector = on', "log_destination = 'jsonlog'", "log_directory = 'log'", 'log_file_mode = 0644', "log_statement = 'all'"];

export interface ServerLogLine {
  /** `2026-12-06 01:40:00.123 UTC` */
  timestamp: string;
  pid: number;
  message: string;
  error_severity: string;
  state_code?: string;
  statement?: string;
  user?: string;
  application_name?: string;
}

/** Lines of the server's jsonlog so far (STATEMENT_LOG). */
export function serverLog(pg: PostgresHandle): ServerLogLine[] {
  const dir = path.join(pg.dir, 'data', 'log');
  if (!fs.existsSync(dir)) return [];
  const out: ServerLogLine[] = [];
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      if (line.trim()) out.push(JSON.parse(line) as ServerLogLine);
    }
  }
  return out;
}

/**
 * Statements the server logged as received (log_statement = 'all'), for user `user`: the text of a
 * simple query (whole string, as sent) or of an executed prepared statement / portal.
 */
export interface ServerStatement {
  kind: 'simple' | 'execute';
  name?: string;
  sql: string;
  pid: number;
  /** When the server logged it (ms since the epoch). */
  at: number;
}

export function serverStatements(pg: PostgresHandle, user: string, pred: (l: ServerLogLine) => boolean = () => true): ServerStatement[] {
  const out: ServerStatement[] = [];
  for (const l of serverLog(pg)) {
    if (l.user !== user || l.error_severity !== 'LOG' || !pred(l)) continue;
    const at = Date.parse(l.timestamp.replace(' UTC', 'Z').replace(' ', 'T'));
    let m = /^statement: ([\s\S]*)$/.exec(l.message);
    if (m) {
      out.push({ kind: 'simple', sql: m[1], pid: l.pid, at });
      continue;
    }
    m = /^execute (?:fetch from )?(\S+?)(?:\/\S+)?: ([\s\S]*)$/.exec(l.message);
    if (m) out.push({ kind: 'execute', name: m[1], sql: m[2], pid: l.pid, at });
  }
  return out;
}

/** Answer messages as their types, an ErrorResponse as `E` + its SQLSTATE: `1 2 E42P05 Z`. */
export const answerCodes = (ms: { type: string; body: Buffer }[]) =>
  ms.map((m) => (m.type === 'E' ? `E${/C([0-9A-Z]{5})\0/.exec(m.body.toString('latin1'))?.[1]}` : m.type)).join(' ');

/** Every event of the session whose application_name is `app`, once it has ended. */
export async function sessionEvents(w: PgWorld, app: string): Promise<AuditEvent[]> {
  const start = await w.tg.waitForEvent((e) => e.type === 'session.start' && (e.details.params as Record<string, string>)?.application_name === app);
  await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === start.session_id);
  return w.tg.events.filter((e) => e.session_id === start.session_id);
}
