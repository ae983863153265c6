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

export async function startPgbouncer(pg: PostgresHandle, dir: string): Promise<{ port: number; stop(): void }> {
  const port = await freePort();
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const tlsDir = pg.dir;
  const ini = path.join(dir, 'pgbouncer.ini');
  const users = path.join(dir, 'users.txt');
  fs.writeFileSync(users, `"bench" ""\n`);
  fs.writeFileSync(
    ini,
    [
      '[databases]',
      `pg = host=127.0.0.1 port=${pg.port} dbname=app user=scram_user password=${PASSWORDS.scram_user}`,
      '[pgbouncer]',
      `listen_addr = 127.0.0.1`,
      `listen_port = ${port}`,
      `unix_socket_dir =`,
      'auth_type = trust',
      `auth_file = ${users}`,
      'pool_mode = session',
      'max_client_conn = 200',
      'default_pool_size = 40',
      `client_tls_sslmode = require`,
      `client_tls_cert_file = ${path.join(tlsDir, 'server.crt')}`,
      `client_tls_key_file = ${path.join(tlsDir, 'server.key')}`,
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
  await waitFor(() => fs.existsSync(path.join(dir, 'pgbouncer.pid')), 10_000, 'pgbouncer to start');
  return {
    port,
    stop() {
      try {
        process.kill(Number(fs.readFileSync(path.join(dir, 'pgbouncer.pid'), 'utf8')), 'SIGINT');
      } catch {
        child.kill('SIGKILL');
      }
    },
  };
}

