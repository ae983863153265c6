import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tempDir, freePort, waitFor } from './tmp.ts';
import { mtrBootstrap, mtrDatadir, mtrServerArgs } from './mariadb-mtr.ts';

/**
 * A real MariaDB server for tests and benches: a fresh data dir from `mariadb-install-db` in a temp dir,
 * `mariadbd` on a random loopback port with its own socket. Root logs in with an empty password over the
 * socket (`query()` uses the stock `mariadb` client there), so nothing of the machine's /etc/mysql is used.
 */
export interface MariadbHandle {
  host: '127.0.0.1';
  port: number;
  socket: string;
  dir: string;
  datadir: string;
  /** With `tls: true`: a directory with `cacert.pem`, `client-cert.pem`, `client-key.pem` (sysbench's names). */
  tlsDir?: string;
  /** Run SQL as root over the socket with the stock client; returns tab-separated output rows. */
  query(sql: string): Promise<string[][]>;
  stop(): Promise<void>;
}

const INSTALL_DB = '/usr/bin/mariadb-install-db';
const MARIADBD = '/usr/sbin/mariadbd';

/** A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, as sysbench expects them. */
function makeTls(dir: string): { tlsDir: string; args: string[] } {
  const tlsDir = path.join(dir, 'tls');
  fs.mkdirSync(tlsDir, { mode: 0o700 });
  const f = (n: string) => path.join(tlsDir, n);
  const ssl = (...a: string[]) => execFileSync('openssl', a, { stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('cacert.pem'), '-days', '2', '-subj', '/CN=vigil-test-mariadb-ca');
  fs.writeFileSync(f('san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  for (const [name, cn] of [['server', '127.0.0.1'], ['client', 'sbtest']] as const) {
    ssl('req', ...ec, '-keyout', f(`${name}-key.pem`), '-out', f(`${name}.csr`), '-subj', `/CN=${cn}`);
    ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('cacert.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${name}-cert.pem`), '-days', '2', '-extfile', f('san.ext'));
  }
  return { tlsDir, args: [`--ssl-ca=${f('cacert.pem')}`, `--ssl-cert=${f('server-cert.pem')}`, `--ssl-key=${f('server-key.pem')}`] };
}

/**
 * `mtr`: bootstrapped and configured as mariadb-test-run configures its own server (test/support/mariadb-mtr.ts),
 * for its suite run with `--extern`; `secureFilePriv` is where the tests may read and write files.
 */
export async function startMariadb(opts: { echoLog?: boolean; tls?: boolean; mtr?: { secureFilePriv: string } } = {}): Promise<MariadbHandle> {
  const dir = tempDir('vigil-mariadb-');
  const datadir = opts.mtr ? mtrDatadir(opts.mtr.secureFilePriv) : path.join(dir, 'data');
  const socket = path.join(dir, 'mariadb.sock');
  const isRoot = process.getuid?.() === 0;
  const user = isRoot ? 'root' : os.userInfo().username;
  // Bootstrapping a data directory occasionally fails on a heavily loaded machine (its bootstrap server
  // gives up); once more from scratch, then fail with what it said.
  for (let attempt = 1; ; attempt++) {
    try {
      if (opts.mtr) {
        fs.mkdirSync(path.join(dir, 'tmp'), { recursive: true });
        mtrBootstrap(datadir, path.join(dir, 'tmp'), user);
        break;
      }
      execFileSync(INSTALL_DB, ['--no-defaults', `--datadir=${datadir}`, `--user=${user}`, '--auth-root-authentication-method=normal', '--skip-test-db'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      break;
    } catch (e) {
      fs.rmSync(datadir, { recursive: true, force: true });
      const said = `${(e as { stdout?: Buffer }).stdout ?? ''}${(e as { stderr?: Buffer }).stderr ?? ''}`.slice(-2000);
      if (attempt >= 2) throw new Error(`${INSTALL_DB} failed twice: ${said}`);
    }
  }
  const port = await freePort();
  const tls = opts.tls ? makeTls(dir) : undefined;
  const log: string[] = [];
  const child: ChildProcess = spawn(
    MARIADBD,
    [
      '--no-defaults',
      `--datadir=${datadir}`,
      `--socket=${socket}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      `--user=${user}`,
      `--pid-file=${path.join(dir, 'mariadbd.pid')}`,
      ...(opts.mtr
        ? mtrServerArgs({ secureFilePriv: opts.mtr.secureFilePriv, tmpdir: path.join(dir, 'tmp'), logDir: dir })
        : [
            '--skip-name-resolve',
            '--innodb-buffer-pool-size=64M',
            '--innodb-log-file-size=32M',
            '--innodb-flush-log-at-trx-commit=2',
            '--max-connections=500',
            '--max-prepared-stmt-count=100000',
            '--local-infile=1',
            '--max-allowed-packet=64M',
            ...(tls?.args ?? []),
          ]),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const onData = (d: Buffer) => {
    log.push(d.toString());
    if (opts.echoLog || process.env.VIGIL_TEST_MARIADB_LOG) process.stderr.write(d);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  let exited = false;
  const exitPromise = new Promise<void>((r) => child.once('exit', () => { exited = true; r(); }));

  const query = (sql: string): Promise<string[][]> =>
    new Promise((resolve, reject) => {
      const c = spawn('mariadb', ['--no-defaults', `--socket=${socket}`, '-uroot', '--batch', '--skip-column-names', '-e', sql]);
      let out = '';
      let err = '';
      c.stdout.on('data', (d) => (out += d));
      c.stderr.on('data', (d) => (err += d));
      c.on('error', reject);
      // 'close', not 'exit': the last rows may still be unread when the client exits.
      c.on('close', (code) => {
        if (code === 0) resolve(out.split('\n').filter((l) => l.length > 0).map((l) => l.split('\t')));
        else reject(new Error(`mariadb exited ${code}: ${err.trim()}`));
      });
    });

  try {
    await waitFor(async () => {
      if (exited) throw new Error(`mariadbd exited: ${log.join('').slice(-2000)}`);
      return fs.existsSync(socket) && (await query('SELECT 1')).length === 1;
    }, 30_000, 'mariadbd to accept connections');
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }

  let stopping: Promise<void> | undefined;
  return {
    host: '127.0.0.1',
    port,
    socket,
    dir,
    datadir,
    tlsDir: tls?.tlsDir,
    query,
    stop: () =>
      (stopping ??= (async () => {
        if (!exited) {
          child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
          await exitPromise;
          clearTimeout(t);
        }
        fs.rmSync(dir, { recursive: true, force: true });
        fs.rmSync(datadir, { recursive: true, force: true });
      })()),
  };
}
