import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import mysql from 'mysql2/promise';
import { startMariadb, type MariadbHandle } from '../../support/mariadb.ts';
import { startTestGateway, type TestGateway } from '../../support/gateway.ts';
import { tempDir, secretsDir } from '../../support/tmp.ts';
import { buildPkcs12 } from '../../../src/identity/pkcs12.ts';
import { sysbench } from '../sysbench.ts';
import { exec, compare, failed, keyValueLines, type PeerRow, type Results } from '../../../bench/peers/compare.ts';

/**
 * The MySQL/MariaDB driver comparison (issue 17): each stock client runs the same workload direct to
 * MariaDB and through vigil; every result it prints must be the same. Used by test/mysql/drivers.test.ts
 * (assertions) and bench/peers/mysql.ts (side-by-side table). Both sides use TLS with a client
 * certificate: direct the server's own test CA, through vigil alice's vigil certificate.
 */
const here = path.dirname(fileURLToPath(import.meta.url));
export const CONNECTOR_J_JAR = '/usr/share/java/mariadb-java-client.jar';
/** Debian's python3 (python3-pymysql, python3-mysqldb), not whatever python3 is first on PATH. */
export const PYTHON = '/usr/bin/python3';
const PASSWORD = 'peers-pw';

/** How to reach one side (direct or vigil). */
export interface Side {
  name: 'direct' | 'vigil';
  port: number;
  /** Login name: the backend user direct, the target name through vigil. */
  user: string;
  password?: string;
  tls: { ca: string; cert: string; key: string };
  /** PKCS#12 of the client key and certificate for Connector/J, password `PKCS12_PASSWORD`. */
  p12: string;
  /** Directory with cacert.pem, client-cert.pem, client-key.pem for sysbench. */
  sysbenchDir: string;
}
export const PKCS12_PASSWORD = 'peers-p12';

/** Options for the stock `mariadb` / `mariadb-dump` clients. */
export function cliArgs(side: Side): string[] {
  return [
    '--no-defaults', '--host=127.0.0.1', `--port=${side.port}`, `--user=${side.user}`,
    ...(side.password ? [`--password=${side.password}`] : []),
    `--ssl-ca=${side.tls.ca}`, `--ssl-cert=${side.tls.cert}`, `--ssl-key=${side.tls.key}`, '--ssl-verify-server-cert',
  ];
}

const sha = (s: string) => crypto.createHash('sha256').update(s).digest('hex').slice(0, 16);

/** The stock CLI: a script of queries of every column type, SHOW statements and an error, in batch and table output. */
async function mariadbCli(side: Side): Promise<Results> {
  const script = [
    'SELECT VERSION(), @@character_set_client, @@collation_connection;',
    'SELECT id, name, price, made, HEX(img), doc, at FROM items ORDER BY id LIMIT 20;',
    'SHOW CREATE TABLE items;',
    'SHOW CREATE VIEW items_view;',
    'SELECT * FROM items_view WHERE id < 4;',
    'CALL items_count(@n); SELECT @n;',
    "SELECT 'é☃😀', x'e9', CAST(x'e9' AS CHAR CHARACTER SET latin1);",
    'SELECT * FROM no_such_table;',
    'SELECT COUNT(*), SUM(price) FROM items;',
  ].join('\n');
  const out: Results = {};
  for (const mode of ['--batch', '--table']) {
    const r = await exec('mariadb', [...cliArgs(side), '--force', '--default-character-set=utf8mb4', mode, 'peers'], { input: script });
    out[`output${mode.replace('--', '_')}`] = `${sha(r.stdout)} (${r.stdout.length} bytes)`;
    out[`errors${mode.replace('--', '_')}`] = r.stderr.split('\n').filter((l) => l.startsWith('ERROR')).join(' | ');
    if (mode === '--batch') out.first_line = r.stdout.split('\n')[1] ?? '';
  }
  return out;
}

/**
 * mariadb-dump of `peers` (routines, triggers, events), restored with the stock CLI into `restored`, dumped
 * again: the restored copy must dump the same as the original. The dump's text (minus its completion time and
 * the database name in the header) is compared between the sides too.
 */
async function dumpRestore(side: Side, work: string, reset: () => Promise<void>): Promise<Results> {
  await reset();
  const dump = (db: string) => exec('mariadb-dump', [...cliArgs(side), '--routines', '--triggers', '--events', '--hex-blob', db]);
  // Not content: when the dump ran, and the database name in its comments.
  const normal = (s: string) => s.replace(/^-- Dump completed on .*$/m, '').replace(/^-- (Host: .*|Dumping (events|routines) for database .*)$/gm, '');
  const d = await dump('peers');
  if (d.code !== 0) return { run: failed(d, 'mariadb-dump') };
  const file = path.join(work, `dump-${side.name}.sql`);
  fs.writeFileSync(file, d.stdout);
  const r = await exec('mariadb', [...cliArgs(side), 'restored'], { input: d.stdout });
  if (r.code !== 0) return { run: failed(r, 'restore') };
  const again = await dump('restored');
  if (again.code !== 0) return { run: failed(again, 'mariadb-dump restored') };
  return {
    dump: `${sha(normal(d.stdout))} (${d.stdout.length} bytes)`,
    restored_dumps_the_same: String(normal(d.stdout) === normal(again.stdout)),
    dump_has_routines: String(/CREATE DEFINER=.* PROCEDURE `items_count`/.test(d.stdout)),
  };
}

/** sysbench oltp_read_write: a fixed number of events on one thread, so the counts are deterministic. */
async function sysbenchPeers(side: Side): Promise<Results> {
  const base = { test: 'oltp_read_write', port: side.port, user: side.user, password: side.password, db: 'peers', certDir: side.sysbenchDir, tableSize: 1000 };
  const out: Results = {};
  try {
    await sysbench({ ...base, command: 'cleanup' });
    await sysbench({ ...base, command: 'prepare' });
    out.prepare = 'ok';
    for (const ps of ['on', 'off']) {
      const r = await sysbench({ ...base, command: 'run', time: 0, extra: ['--events=100', `--db-ps-mode=${ps === 'on' ? 'auto' : 'disable'}`] });
      const count = (re: RegExp) => re.exec(r.stdout)?.[1] ?? '?';
      out[`run_ps_${ps}`] = `transactions ${count(/transactions:\s+(\d+)/)}, queries ${count(/queries:\s+(\d+)/)}, errors ${r.errors}`;
    }
    await sysbench({ ...base, command: 'cleanup' });
  } catch (e) {
    out.run = `failed: ${(e as Error).message.split('\n').slice(0, 2).join(' | ')}`;
  }
  return out;
}

/** mysql2: JSON columns and JSON parameters, prepared statements (execute), multiple statements, errors. */
async function mysql2Peers(side: Side): Promise<Results> {
  const out: Results = {};
  let c: mysql.Connection | undefined;
  try {
    c = await mysql.createConnection({
      host: '127.0.0.1', port: side.port, user: side.user, password: side.password, database: 'peers', multipleStatements: true, supportBigNumbers: true, dateStrings: true,
      ssl: { ca: fs.readFileSync(side.tls.ca), cert: fs.readFileSync(side.tls.cert), key: fs.readFileSync(side.tls.key) },
    });
    await c.query('DROP TABLE IF EXISTS m2; CREATE TABLE m2 (id INT PRIMARY KEY, doc JSON, n BIGINT, d DECIMAL(30,10), t DATETIME(3), b BLOB)');
    for (let i = 1; i <= 20; i++) await c.execute('INSERT INTO m2 VALUES (?, ?, ?, ?, ?, ?)', [i, { i, tags: ['a', 'é'] }, `${2 ** 53 + i}`, `${i}.0123456789`, '2026-01-02 03:04:05.678', Buffer.from([i, 0, 255])]);
    const [json] = await c.query('SELECT doc, JSON_TYPE(doc) AS type FROM m2 WHERE id = 3');
    out.json_column = JSON.stringify(json);
    const [param] = await c.execute("SELECT JSON_VALUE(?, '$.a') AS a, JSON_LENGTH(?) AS l", [{ a: 'x' }, [1, 2, 3]]);
    out.json_parameters = JSON.stringify(param);
    const [exec1] = await c.execute('SELECT id, n, d, t, HEX(b) AS b FROM m2 WHERE id > ? ORDER BY id LIMIT 3', [17]);
    out.prepared_select = JSON.stringify(exec1);
    const [multi] = await c.query('SELECT COUNT(*) AS n FROM m2; UPDATE m2 SET n = n + 1 WHERE id < 5; SELECT SUM(id) AS s FROM m2');
    out.multiple_statements = JSON.stringify((multi as unknown[]).map((r) => (Array.isArray(r) ? r : (r as { affectedRows: number }).affectedRows)));
    try {
      await c.execute('SELECT * FROM no_such_table WHERE id = ?', [1]);
    } catch (e) {
      out.prepared_error = `${(e as { errno?: number }).errno}/${(e as { sqlState?: string }).sqlState}`;
    }
    const [ver] = await c.query('SELECT VERSION() AS v');
    out.version = (ver as Array<{ v: string }>)[0].v;
    out.greeting_version = (c as unknown as { connection: { _handshakePacket: { serverVersion: string } } }).connection._handshakePacket.serverVersion;
    await c.query('DROP TABLE m2');
  } catch (e) {
    out.run = `failed: ${(e as Error).message}`;
  } finally {
    await c?.end().catch(() => {});
  }
  return out;
}

async function dbapi(side: Side, which: 'pymysql' | 'mysqldb'): Promise<Results> {
  const settings = { host: '127.0.0.1', port: side.port, user: side.user, password: side.password, database: 'peers', ...side.tls };
  const r = await exec(PYTHON, [path.join(here, 'dbapi_workload.py'), which, JSON.stringify(settings)]);
  if (r.code !== 0) return { run: failed(r) };
  const parsed = JSON.parse(r.stdout) as Record<string, unknown>;
  return Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, JSON.stringify(v)]));
}

let javaClasses: string | undefined;
async function compileJava(dir: string): Promise<string> {
  if (javaClasses) return javaClasses;
  const r = await exec('javac', ['-cp', CONNECTOR_J_JAR, '-d', dir, path.join(here, 'ConnectorJWorkload.java')]);
  if (r.code !== 0) throw new Error(`javac failed: ${r.stderr}`);
  return (javaClasses = dir);
}

async function connectorJ(side: Side, classes: string): Promise<Results> {
  const url =
    `jdbc:mariadb://127.0.0.1:${side.port}/peers?user=${side.user}${side.password ? `&password=${side.password}` : ''}` +
    `&useSsl=true&serverSslCert=${side.tls.ca}&keyStore=file://${side.p12}&keyStorePassword=${PKCS12_PASSWORD}&keyStoreType=PKCS12&useServerPrepStmts=true`;
  const r = await exec('java', ['-cp', `${CONNECTOR_J_JAR}:${classes}`, 'ConnectorJWorkload', url]);
  if (r.code !== 0) return { run: failed(r) };
  return keyValueLines(r.stdout);
}

export type MysqlDriver = 'mariadb' | 'mariadb-dump' | 'sysbench' | 'mysql2' | 'pymysql' | 'mysqlclient' | 'connector-j';
export const ALL_DRIVERS: MysqlDriver[] = ['mariadb', 'mariadb-dump', 'sysbench', 'mysql2', 'pymysql', 'mysqlclient', 'connector-j'];

/** Run each driver's workload on both sides, one after the other (no concurrent load on the backend). */
export async function runPeers(w: PeerWorld, drivers: MysqlDriver[] = ALL_DRIVERS): Promise<PeerRow[]> {
  const rows: PeerRow[] = [];
  const both = async (name: string, f: (s: Side) => Promise<Results>) => rows.push(...compare(name, await f(w.direct), await f(w.vigil)));
  for (const d of drivers) {
    if (d === 'mariadb') await both('mariadb CLI', mariadbCli);
    if (d === 'mariadb-dump') await both('mariadb-dump/restore', (s) => dumpRestore(s, w.work, w.resetRestored));
    if (d === 'sysbench') await both('sysbench', sysbenchPeers);
    if (d === 'mysql2') await both('mysql2', mysql2Peers);
    if (d === 'pymysql') await both('PyMySQL', (s) => dbapi(s, 'pymysql'));
    if (d === 'mysqlclient') await both('mysqlclient', (s) => dbapi(s, 'mysqldb'));
    if (d === 'connector-j') {
      const classes = await compileJava(w.work);
      await both('Connector/J', (s) => connectorJ(s, classes));
    }
  }
  return rows;
}

export interface PeerWorld {
  db: MariadbHandle;
  /** The server set up as mariadb-test-run sets up its own (`startPeerWorld({ mtr: true })`). */
  mtrDb?: MariadbHandle;
  /** mtrDb's secure-file-priv and the vardir mariadb-test-run uses with it. */
  mtrVardir: string;
  tg: TestGateway;
  work: string;
  direct: Side;
  vigil: Side;
  /** Drop and recreate the `restored` database (the dump round trip's target). */
  resetRestored(): Promise<void>;
  stop(): Promise<void>;
}

/** A directory holding the three file names sysbench's `--mysql-ssl=on` reads. */
function sysbenchDir(parent: string, tls: Side['tls']): string {
  const dir = fs.mkdtempSync(path.join(parent, 'sysbench-'));
  fs.copyFileSync(tls.ca, path.join(dir, 'cacert.pem'));
  fs.copyFileSync(tls.cert, path.join(dir, 'client-cert.pem'));
  fs.copyFileSync(tls.key, path.join(dir, 'client-key.pem'));
  return dir;
}

function p12File(dir: string, name: string, tls: Side['tls']): string {
  const file = path.join(dir, `${name}.p12`);
  const der = buildPkcs12({ certificatePem: fs.readFileSync(tls.cert, 'utf8'), privateKeyPem: fs.readFileSync(tls.key, 'utf8'), password: PKCS12_PASSWORD, friendlyName: 'user' });
  fs.writeFileSync(file, der, { mode: 0o600 });
  return file;
}

/**
 * A real MariaDB with TLS (its own test CA and client certificate for the direct side) and an in-process vigil
 * with target `db` (backend login `peer_user`, every database) and alice's certificate. Database `peers`
 * holds a table of every common column type, a view, a procedure and a trigger.
 * With `mtr`, a second MariaDB set up as mariadb-test-run sets up its own (`mtrDb`), for its suite with
 * `--extern`: target `root` logs in there as root, the account the tests use direct (root@localhost, no
 * password); its secure-file-priv (`mtrVardir`), which holds its data directory, is the vardir of the runs.
 */
export async function startPeerWorld(opts: { mtr?: boolean } = {}): Promise<PeerWorld> {
  const work = tempDir('vigil-mypeers-');
  const db = await startMariadb({ tls: true });
  const mtrVardir = path.join(work, 'mtr-var');
  if (opts.mtr) fs.mkdirSync(mtrVardir);
  const mtrDb = opts.mtr ? await startMariadb({ mtr: { secureFilePriv: mtrVardir } }) : undefined;
  await db.query(`
    CREATE USER peer_user@'%' IDENTIFIED BY '${PASSWORD}'; GRANT ALL ON *.* TO peer_user@'%' WITH GRANT OPTION;
    SET NAMES utf8mb4; CREATE DATABASE peers CHARACTER SET utf8mb4; CREATE DATABASE restored CHARACTER SET utf8mb4; USE peers;
    CREATE TABLE peers.items (id INT PRIMARY KEY, name VARCHAR(100), price DECIMAL(10,2), made DATE, img BLOB, doc JSON, at DATETIME(6), KEY by_name (name));
    INSERT INTO peers.items SELECT seq, CONCAT('item ', seq, ' é☃'), seq / 4, '2026-01-01' + INTERVAL seq DAY, UNHEX(SHA2(seq, 256)), JSON_OBJECT('n', seq), '2026-01-02 03:04:05.123456' FROM seq_1_to_300;
    CREATE TABLE peers.audit_trail (id INT AUTO_INCREMENT PRIMARY KEY, item INT);
    CREATE TRIGGER items_ins AFTER INSERT ON items FOR EACH ROW INSERT INTO audit_trail (item) VALUES (NEW.id);
    CREATE DEFINER=peer_user@'%' VIEW items_view AS SELECT id, name FROM items;
    CREATE DEFINER=peer_user@'%' PROCEDURE items_count(OUT n INT) SELECT COUNT(*) INTO n FROM items;
  `);
  const secret = secretsDir(work)('peer', PASSWORD);
  const tg = await startTestGateway(
    {
      targets: [
        { name: 'db', protocol: 'mysql', host: '127.0.0.1', port: db.port, user: 'peer_user', password: { file: secret } },
        // mariadb-test-run's tests connect as `root`: through vigil that names this target.
        ...(mtrDb ? [{ name: 'root', protocol: 'mysql', host: '127.0.0.1', port: mtrDb.port, user: 'root' }] : []),
      ],
      certs: { clock_skew: 0 },
      roles: [{ name: 'dba', targets: ['db', ...(mtrDb ? ['root'] : [])], databases: ['*'] }],
    },
    work,
  );
  const alice = await tg.issue({ user: 'alice', roles: ['dba'] });
  const t = db.tlsDir!;
  const directTls = { ca: path.join(t, 'cacert.pem'), cert: path.join(t, 'client-cert.pem'), key: path.join(t, 'client-key.pem') };
  const vigilTls = { ca: alice.ca, cert: alice.crt, key: alice.key };
  const direct: Side = { name: 'direct', port: db.port, user: 'peer_user', password: PASSWORD, tls: directTls, p12: p12File(work, 'direct', directTls), sysbenchDir: sysbenchDir(work, directTls) };
  const vigil: Side = { name: 'vigil', port: tg.ports.mysql!, user: 'db', tls: vigilTls, p12: p12File(work, 'vigil', vigilTls), sysbenchDir: sysbenchDir(work, vigilTls) };
  return {
    db, mtrDb, mtrVardir, tg, work, direct, vigil,
    resetRestored: async () => void (await db.query('DROP DATABASE IF EXISTS restored; CREATE DATABASE restored')),
    async stop() {
      await tg.stop();
      await db.stop();
      await mtrDb?.stop();
      fs.rmSync(work, { recursive: true, force: true });
    },
  };
}
