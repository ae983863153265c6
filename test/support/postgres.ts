import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tempDir, freePort, waitFor } from './tmp.ts';

/**
 * A real PostgreSQL 15 for tests and benches: `initdb` in a fresh temp dir, listening on a random
 * loopback port, with TLS on (its own throwaway CA, so backend TLS verification can be tested), and one
 * role per backend login method:
 *   - `scram_user` (scram-sha-256), `md5_user` (md5), `clear_user` (password = cleartext), `trust_user` (trust).
 * All four own the database `app`; each has password `PASSWORDS[user]`.
 * initdb/postgres refuse to run as root: as root the server runs as the `postgres` OS user.
 */
export const PG_BIN = '/usr/lib/postgresql/15/bin';
export const PASSWORDS = {
  scram_user: 'scr4m-pass',
  md5_user: 'md5-pass',
  clear_user: 'clear-pass',
  trust_user: 'unused',
} as const;
export type PgUser = keyof typeof PASSWORDS;

export interface PostgresHandle {
  host: '127.0.0.1';
  port: number;
  /** Superuser role name (trust over loopback). */
  superuser: string;
  dir: string;
  /** PEM of the CA that signed the server certificate (CN/SAN 127.0.0.1 and localhost). */
  caFile: string;
  /** Run SQL as the superuser in database `db` (default `app`); returns psql's unaligned, tuples-only output. */
  psql(sql: string, db?: string): string;
  /** Server log so far. */
  logs(): string;
  stop(): Promise<void>;
}

export interface StartPostgresOptions {
  /** Extra postgresql.conf lines. */
  conf?: string[];
}

const asRoot = process.getuid?.() === 0;
const OS_USER = 'postgres';

function run(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  const full = asRoot ? ['runuser', ['-u', OS_USER, '--', cmd, ...args]] as const : [cmd, args] as const;
  return execFileSync(full[0], full[1] as string[], { encoding: 'utf8', cwd: opts.cwd ?? '/', stdio: ['ignore', 'pipe', 'pipe'] });
}

function makeCa(dir: string): { ca: string; cert: string; key: string } {
  const ossl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=pg-test-ca', '-keyout', 'ca.key', '-out', 'ca.crt']);
  ossl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr']);
  fs.writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ossl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'san.ext', '-out', 'server.crt']);
  return { ca: path.join(dir, 'ca.crt'), cert: path.join(dir, 'server.crt'), key: path.join(dir, 'server.key') };
}

export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PostgresHandle> {
  const dir = tempDir('vigil-pg-');
  const data = path.join(dir, 'data');
  const tls = makeCa(dir);
  fs.chmodSync(dir, 0o755);
  fs.chmodSync(tls.key, 0o600);
  if (asRoot) execFileSync('chown', ['-R', `${OS_USER}:`, dir]);
  const superuser = 'postgres';
  run(`${PG_BIN}/initdb`, ['-D', data, '-U', superuser, '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'], { cwd: dir });
  const port = await freePort();
  fs.appendFileSync(
    path.join(data, 'postgresql.conf'),
    [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${dir}'`,
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      'max_connections = 120',
      'ssl = on',
      `ssl_cert_file = '${tls.cert}'`,
      `ssl_key_file = '${tls.key}'`,
      `ssl_ca_file = '${tls.ca}'`,
      ...(opts.conf ?? []),
      '',
    ].join('\n'),
  );
  fs.writeFileSync(
    path.join(data, 'pg_hba.conf'),
    [
      'local all all trust',
      `host all ${superuser} 127.0.0.1/32 trust`,
      'host all trust_user 127.0.0.1/32 trust',
      'host all md5_user 127.0.0.1/32 md5',
      'host all clear_user 127.0.0.1/32 password',
      'host all all 127.0.0.1/32 scram-sha-256',
      '',
    ].join('\n'),
  );
  if (asRoot) execFileSync('chown', ['-R', `${OS_USER}:`, data]);

  let log = '';
  const args = ['-D', data];
  const child: ChildProcess = asRoot
    ? spawn('runuser', ['-u', OS_USER, '--', `${PG_BIN}/postgres`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(`${PG_BIN}/postgres`, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  let exited = false;
  child.on('exit', () => (exited = true));

  const psql = (sql: string, db = 'app') =>
    execFileSync('psql', ['-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', superuser, '-d', db, '-c', sql], {
      encoding: 'utf8',
      env: { ...process.env, PGSSLMODE: 'disable', PGPASSWORD: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();

  await waitFor(
    () => {
      if (exited) throw new Error(`postgres exited: ${log}`);
      try {
        psql('SELECT 1', 'postgres');
        return true;
      } catch {
        return false;
      }
    },
    30_000,
    'postgres to accept connections',
  );
  psql('CREATE DATABASE app', 'postgres');
  psql(`SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_user LOGIN PASSWORD '${PASSWORDS.scram_user}'`);
  psql(`SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD '${PASSWORDS.md5_user}'`);
  psql(`CREATE ROLE clear_user LOGIN PASSWORD '${PASSWORDS.clear_user}'; CREATE ROLE trust_user LOGIN`);
  psql('GRANT ALL ON DATABASE app TO scram_user, md5_user, clear_user, trust_user; GRANT ALL ON SCHEMA public TO PUBLIC');

  const handle: PostgresHandle = {
    host: '127.0.0.1',
    port,
    superuser,
    dir,
    caFile: tls.ca,
    psql,
    logs: () => log,
    async stop() {
      if (!exited) {
        // Signal the postmaster itself (runuser's child), fast shutdown.
        const pidFile = path.join(data, 'postmaster.pid');
        const pid = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]) : child.pid;
        try {
          if (pid) process.kill(pid, 'SIGINT');
        } catch {
          // already gone
        }
        await waitFor(() => exited, 20_000, 'postgres to stop').catch(() => child.kill('SIGKILL'));
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return handle;
}

/** Environment for stock clients (psql, pgbench) that must not pick up the user's ~/.pgpass or service files. */
export function clientEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PGPASSFILE: '/nonexistent/vigil-pgpass', PGSERVICEFILE: '/nonexistent/vigil-pgservice', HOME: os.tmpdir() };
  for (const k of Object.keys(env)) if (k.startsWith('PG') && !['PGPASSFILE', 'PGSERVICEFILE'].includes(k)) delete env[k];
  return { ...env, ...extra };
}
