import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { startTestGateway, type TestGateway, type IssuedFiles } from '../support/gateway.ts';
import { startMariadb, type MariadbHandle } from '../support/mariadb.ts';
import { tempDir, secretsDir } from '../support/tmp.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Shared setup for the MySQL proxy tests: one real MariaDB with a native-password user and an ed25519
 * user, one in-process gateway with targets for each, and helpers for the stock `mariadb` CLI and mysql2.
 */
export interface MyWorld {
  db: MariadbHandle;
  tg: TestGateway;
  port: number;
  alice: IssuedFiles;
  base: string;
  /** Run the stock `mariadb` client through the gateway with alice's certificate (unless `args` override). */
  cli(args: string[], opts?: { input?: string; creds?: IssuedFiles; tls?: boolean; timeoutMs?: number }): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** A mysql2 connection through the gateway. */
  connect(user?: string, opts?: mysql.ConnectionOptions & { creds?: IssuedFiles }): Promise<mysql.Connection>;
  queries(pred?: (e: AuditEvent) => boolean): AuditEvent[];
  stop(): Promise<void>;
}

export const PASSWORDS = { native: 'n@tive-pw', ed: 'ed25519-pw!' };

/** `extraConfig` may be a function of the started server (its port) and the world's secret-file writer. */
export async function startWorld(
  extraConfig: Record<string, unknown> | ((db: MariadbHandle, secretFile: (name: string, value: string) => string) => Record<string, unknown>) = {},
  opts: { backendTls?: boolean; log?: import('pino').Logger } = {},
): Promise<MyWorld> {
  const db = await startMariadb({ tls: opts.backendTls });
  await db.query(`
    INSTALL SONAME 'auth_ed25519';
    CREATE DATABASE shop; CREATE DATABASE other; CREATE DATABASE secret_db;
    CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(100), price DECIMAL(10,2), made DATE, img BLOB, note TEXT);
    INSERT INTO shop.items VALUES (1,'apple',1.50,'2024-01-02',NULL,NULL),(2,'pear',2.25,'2024-03-04',NULL,NULL),(3,'plum',0.75,NULL,NULL,NULL);
    CREATE TABLE other.t (x INT); INSERT INTO other.t VALUES (1),(2);
    CREATE USER native_user@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('${PASSWORDS.native}');
    CREATE USER ed_user@'%' IDENTIFIED VIA ed25519 USING PASSWORD('${PASSWORDS.ed}');
    GRANT ALL ON *.* TO native_user@'%'; GRANT ALL ON *.* TO ed_user@'%';
  `);
  const base = tempDir('vigil-myw-');
  const secretFile = secretsDir(base);
  const target = (name: string, user: string, more: Record<string, unknown> = {}) => ({ name, protocol: 'mysql', host: '127.0.0.1', port: db.port, user, ...more });
  const tg = await startTestGateway(
    {
      targets: [
        target('db', 'native_user', { password: { file: secretFile('native', PASSWORDS.native) }, logins: { ed_user: { file: secretFile('ed2', PASSWORDS.ed) } } }),
        target('db-ed', 'ed_user', { password: { file: secretFile('ed', PASSWORDS.ed) }, database: 'shop' }),
        target('db-down', 'native_user', { port: 1, password: { file: secretFile('native3', PASSWORDS.native) } }),
        target('db-limited', 'native_user', { password: { file: secretFile('native2', PASSWORDS.native) } }),
        ...(db.tlsDir ? [target('db-tls', 'ed_user', { password: { file: secretFile('ed3', PASSWORDS.ed) }, tls: true, tls_ca: path.join(db.tlsDir, 'cacert.pem') })] : []),
      ],
      certs: { clock_skew: 0 },
      roles: [
        { name: 'dba', targets: ['db', 'db-ed', 'db-down', 'db-tls'], databases: ['*'], logins: ['ed_user'] },
        { name: 'analyst', targets: ['db-limited'], databases: ['shop'] },
      ],
      ...(typeof extraConfig === 'function' ? extraConfig(db, secretFile) : extraConfig),
    },
    base,
    { log: opts.log },
  );
  const alice = await tg.issue({ user: 'alice', roles: ['dba', 'analyst'] });
  const port = tg.ports.mysql!;
  const cli: MyWorld['cli'] = (args, opts = {}) =>
    new Promise((resolve) => {
      const creds = opts.creds ?? alice;
      const tlsArgs = opts.tls === false ? ['--skip-ssl'] : [`--ssl-ca=${creds.ca}`, `--ssl-cert=${creds.crt}`, `--ssl-key=${creds.key}`];
      const c = spawn('mariadb', ['--no-defaults', '--host=127.0.0.1', `--port=${port}`, '--batch', ...tlsArgs, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      c.stdout.on('data', (d) => (stdout += d));
      c.stderr.on('data', (d) => (stderr += d));
      const t = setTimeout(() => c.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
      // 'close', not 'exit': the process can exit before its last output is read (a killed query's `1`
      // was seen missing from stdout that way).
      c.on('close', (code) => {
        clearTimeout(t);
        resolve({ code, stdout, stderr });
      });
      // A client that exits before reading all its input closes the pipe: its exit code is the result.
      c.stdin.on('error', () => {});
      c.stdin.end(opts.input ?? '');
    });
  const connect: MyWorld['connect'] = (user = 'db', opts = {}) => {
    const { creds = alice, ...rest } = opts;
    return mysql.createConnection({
      host: '127.0.0.1',
      port,
      user,
      ssl: { ca: fs.readFileSync(creds.ca), cert: fs.readFileSync(creds.crt), key: fs.readFileSync(creds.key) },
      ...rest,
    });
  };
  return {
    db,
    tg,
    port,
    alice,
    base,
    cli,
    connect,
    queries: (pred = () => true) => tg.events.filter((e) => e.type === 'db.query' && pred(e)),
    async stop() {
      await tg.stop();
      await db.stop();
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
}
