/** pgbench and pgbouncer, as the PostgreSQL benches (postgres.ts, workers.ts) run them. */
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { clientEnv, PASSWORDS, type PostgresHandle } from '../test/support/postgres.ts';
import { freePort, waitFor } from '../test/support/tmp.ts';

export interface PgbenchResult {
  tps: number;
  latAvg: number;
  p50?: number;
}


export function pgbench(conn: string, args: string[], logDir?: string): Promise<PgbenchResult> {
  return new Promise((resolve, reject) => {
    const full = [...args, ...(logDir ? ['-l', '--log-prefix', path.join(logDir, 'tx')] : []), conn];
    const child = spawn('pgbench', full, { env: clientEnv(), stdio: ['ignore', 'pipe', 'pipe'], cwd: logDir ?? '/tmp' });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`pgbench ${full.join(' ')} failed: ${err}`));
      const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1]);
      if (!args.includes('-i') && !Number.isFinite(tps)) return reject(new Error(`pgbench ${full.join(' ')} printed no tps: ${out.slice(-300)} ${err.slice(-300)}`));
      const latAvg = Number(/latency average = ([\d.]+) ms/.exec(out)?.[1]);
      let p50: number | undefined;
      if (logDir) {
        // Per-transaction log: "client_id transaction_no time script_no time_epoch time_us"; time in µs.
        const lat: number[] = [];
        for (const f of fs.readdirSync(logDir)) {
          for (const line of fs.readFileSync(path.join(logDir, f), 'utf8').split('\n')) {
            const parts = line.split(' ');
            if (parts.length >= 3) lat.push(Number(parts[2]));
          }
          fs.rmSync(path.join(logDir, f));
        }
        lat.sort((a, b) => a - b);
        p50 = lat[Math.floor(lat.length / 2)] / 1000;
      }
      resolve({ tps, latAvg, p50 });
    });
  });
}

/**
 * Client TLS for pgbouncer like vigil's: its server certificate and key (the client checks them with
 * sslmode=verify-full), the CA that signs client certificates, and the user whose certificate CN logs in.
 */
export interface PgbouncerClientCert {
  cert: string;
  key: string;
  ca: string;
  user: string;
}

export interface PgbouncerHandle {
  port: number;
  /** Its process (for CPU from /proc). */
  pid: number;
  stop(): void;
}

/**
 * pgbouncer in session pooling in front of `pg`, injecting the backend credential (scram_user's password).
 * With `clientCert`: client TLS required and verified (`client_tls_sslmode = verify-full`, client CA
 * given) and `auth_type = cert` — the client presents a certificate whose CN must equal the user it logs
 * in as, the vigil shape. Without: TLS from the client without a certificate and `auth_type = trust`.
 */
export async function startPgbouncer(pg: PostgresHandle, dir: string, clientCert?: PgbouncerClientCert): Promise<PgbouncerHandle> {
  const port = await freePort();
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const ini = path.join(dir, 'pgbouncer.ini');
  const users = path.join(dir, 'users.txt');
  fs.writeFileSync(users, `"${clientCert?.user ?? 'bench'}" ""\n`);
  let tlsLines: string[];
  if (clientCert) {
    const file = (name: string, pem: string) => (fs.writeFileSync(path.join(dir, name), pem, { mode: name.endsWith('.key') ? 0o600 : 0o644 }), path.join(dir, name));
    tlsLines = [
      'auth_type = cert',
      'client_tls_sslmode = verify-full',
      `client_tls_cert_file = ${file('server.crt', clientCert.cert)}`,
      `client_tls_key_file = ${file('server.key', clientCert.key)}`,
      `client_tls_ca_file = ${file('client-ca.crt', clientCert.ca)}`,
    ];
  } else {
    tlsLines = ['auth_type = trust', 'client_tls_sslmode = require', `client_tls_cert_file = ${path.join(pg.dir, 'server.crt')}`, `client_tls_key_file = ${path.join(pg.dir, 'server.key')}`];
  }
  fs.writeFileSync(
    ini,
    [
      '[databases]',
      `pg = host=127.0.0.1 port=${pg.port} dbname=app user=scram_user password=${PASSWORDS.scram_user}`,
      '[pgbouncer]',
      `listen_addr = 127.0.0.1`,
      `listen_port = ${port}`,
      `unix_socket_dir =`,
      `auth_file = ${users}`,
      ...tlsLines,
      'pool_mode = session',
      'max_client_conn = 200',
      'default_pool_size = 40',
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
      `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
      '',
    ].join('\n'),
  );
  const asRoot = process.getuid?.() === 0;
  // pgbouncer runs as the postgres OS user: it must be able to traverse to its files.
  fs.chmodSync(path.dirname(dir), 0o711);
  if (asRoot) execFileSync('chown', ['-R', 'postgres:', dir]);
  const child = asRoot
    ? spawn('runuser', ['-u', 'postgres', '--', '/usr/sbin/pgbouncer', '-q', ini], { stdio: ['ignore', 'ignore', 'inherit'] })
    : spawn('/usr/sbin/pgbouncer', ['-q', ini], { stdio: ['ignore', 'ignore', 'inherit'] });
  const pidFile = path.join(dir, 'pgbouncer.pid');
  await waitFor(() => fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim() !== '', 10_000, 'pgbouncer to start');
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  return {
    port,
    pid,
    stop() {
      try {
        process.kill(pid, 'SIGINT');
      } catch {
        child.kill('SIGKILL');
      }
    },
  };
}
