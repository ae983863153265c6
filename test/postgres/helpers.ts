import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startTestGateway, type TestGateway, type IssuedFiles } from '../support/gateway.ts';
import { startPostgres, clientEnv, PASSWORDS, type PostgresHandle } from '../support/postgres.ts';
import { tempDir } from '../support/tmp.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

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

export async function startWorld(extraConfig: Record<string, unknown> = {}): Promise<PgWorld> {
  const pg = await startPostgres();
  const base = tempDir('vigil-pgw-');
  const secrets = path.join(base, 'secrets');
  fs.mkdirSync(secrets, { mode: 0o700 });
  const secretFile = (name: string, v: string) => {
    const p = path.join(secrets, name);
    fs.writeFileSync(p, v, { mode: 0o600 });
    return p;
  };
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
    child.stdin.end(input ?? '');
  });
}

export { execFile };
