import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { clientEnv, startPostgres, PASSWORDS, type PostgresHandle } from '../../support/postgres.ts';
import { startTestGateway, type TestGateway } from '../../support/gateway.ts';
import { tempDir, secretsDir } from '../../support/tmp.ts';
import { buildPkcs12, pkcs8Der } from '../../../src/identity/pkcs12.ts';
import { exec as run, compare, keyValueLines, type Results, type ExecResult, type PeerRow } from '../../../bench/peers/compare.ts';

export { formatTable, type PeerRow } from '../../../bench/peers/compare.ts';

/**
 * The driver transparency comparison (issue 17): each stock driver runs the same workload direct to
 * PostgreSQL and through vigil; every result it prints must be the same. Used by
 * test/postgres/drivers.test.ts (assertions) and bench/peers/postgres.ts (side-by-side table).
 */
const here = path.dirname(fileURLToPath(import.meta.url));
export const PGJDBC_JAR = '/usr/share/java/postgresql.jar';
/** Debian's python3 (python3-psycopg), not whatever python3 is first on PATH. */
export const PYTHON = '/usr/bin/python3';

/** How to reach one side (direct or vigil) with each kind of client. */
export interface Side {
  /** libpq connection string (psql, pg_dump, psycopg) for database `db` (a vigil target name or a database). */
  libpq(db?: string): string;
  jdbcUrl: string;
  node: pg.ClientConfig;
}

const exec = (cmd: string, args: string[]): Promise<ExecResult> => run(cmd, args, { env: clientEnv() });

async function psycopg(side: Side): Promise<Results> {
  const r = await exec(PYTHON, [path.join(here, 'psycopg_workload.py'), side.libpq()]);
  if (r.code !== 0) return { run: `failed: ${r.stderr.trim().split('\n').pop()}` };
  const parsed = JSON.parse(r.stdout) as Record<string, unknown>;
  return Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, JSON.stringify(v)]));
}

let javaClasses: string | undefined;
/** Compile JdbcWorkload.java once per process (javac, against Debian's pgjdbc). */
export async function compileJava(dir: string): Promise<string> {
  if (javaClasses) return javaClasses;
  const r = await exec('javac', ['-cp', PGJDBC_JAR, '-d', dir, path.join(here, 'JdbcWorkload.java')]);
  if (r.code !== 0) throw new Error(`javac failed: ${r.stderr}`);
  javaClasses = dir;
  return dir;
}

async function pgjdbc(side: Side, classes: string): Promise<Results> {
  const r = await exec('java', ['-cp', `${PGJDBC_JAR}:${classes}`, 'JdbcWorkload', side.jdbcUrl]);
  if (r.code !== 0) return { run: `failed: ${(r.stderr || r.stdout).trim().split('\n').slice(0, 3).join(' | ')}` };
  return keyValueLines(r.stdout);
}

async function nodePostgres(side: Side): Promise<Results> {
  const c = new pg.Client(side.node);
  const out: Results = {};
  try {
    await c.connect();
    const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    out.backend_pid_is_real = String(pid === (c as unknown as { processID: number }).processID);
    await c.query('LISTEN peers');
    const note = new Promise<pg.Notification>((resolve) => c.once('notification', resolve));
    await c.query("NOTIFY peers, 'from self'");
    const n = await note;
    out.notify_from_self = String(n.processId === pid);
    const named = [];
    for (let i = 0; i < 3; i++) named.push((await c.query({ name: 'double', text: 'SELECT $1::int * 2 AS v', values: [i] })).rows[0].v);
    out.named_statement = named.join(',');
    const bin = await c.query({ text: "SELECT 42::int8 AS a, '\\xdeadbeef'::bytea AS b, now() IS NOT NULL AS c", values: [], binary: true } as pg.QueryConfig);
    out.binary_results = JSON.stringify(bin.rows.map((r) => [String(r.a), Buffer.isBuffer(r.b) ? r.b.toString('hex') : r.b, r.c]));
    try {
      await c.query('SELECT 1/0');
    } catch (e) {
      out.error = (e as { code?: string }).code ?? 'none';
    }
  } catch (e) {
    out.run = `failed: ${(e as Error).message}`;
  } finally {
    await c.end().catch(() => {});
  }
  return out;
}

/**
 * pg_dump (custom format) and pg_restore through the side, into `restoreDb` (emptied first by the caller),
 * then a plain-text pg_dump of both databases: the restored copy must dump the same as the original.
 */
async function dumpRestore(side: Side, work: string, sourceDb: string, restoreDb: string): Promise<Results> {
  const file = path.join(work, `dump-${Math.random().toString(36).slice(2)}.dump`);
  const d = await exec('pg_dump', ['-Fc', '-f', file, '-d', side.libpq(sourceDb)]);
  if (d.code !== 0) return { run: `pg_dump failed: ${d.stderr.trim()}` };
  const r = await exec('pg_restore', ['--no-owner', '-d', side.libpq(restoreDb), file]);
  if (r.code !== 0) return { run: `pg_restore failed: ${r.stderr.trim()}` };
  const plain = async (db: string) => {
    const p = await exec('pg_dump', ['--no-owner', '-d', side.libpq(db)]);
    // \restrict / \unrestrict carry a random key per dump (pg_dump 15.14+): not content.
    return p.code === 0 ? p.stdout.replace(/^\\(un)?restrict .*$/gm, '') : `failed: ${p.stderr}`;
  };
  const [a, b] = await Promise.all([plain(sourceDb), plain(restoreDb)]);
  fs.rmSync(file, { force: true });
  return { plain_dump_bytes: String(a.length), restored_dumps_the_same: String(a === b) };
}

/** psql meta-commands (catalog queries of libpq's own) and pgbench in each query mode. */
async function libpqTools(side: Side): Promise<Results> {
  const out: Results = {};
  const d = await exec('psql', ['-X', '-d', side.libpq(), '-c', '\\d peers', '-c', '\\dv', '-c', 'SELECT count(*), sum(id) FROM peers']);
  out.psql_describe = d.code === 0 ? crypto.createHash('sha256').update(d.stdout).digest('hex').slice(0, 16) : `failed: ${d.stderr.trim()}`;
  const init = await exec('pgbench', ['-i', '-s', '1', '-q', side.libpq()]);
  out.pgbench_init = init.code === 0 ? 'ok' : `failed: ${init.stderr.trim().split('\n').pop()}`;
  for (const mode of ['simple', 'extended', 'prepared']) {
    const r = await exec('pgbench', ['-n', '-M', mode, '-c', '2', '-t', '100', side.libpq()]);
    out[`pgbench_${mode}`] = r.code === 0 ? (/number of transactions actually processed: (\S+)/.exec(r.stdout)?.[1] ?? r.stdout) : `failed: ${r.stderr.trim().split('\n').pop()}`;
  }
  await exec('psql', ['-X', '-d', side.libpq(), '-c', 'DROP TABLE pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers']);
  return out;
}

export interface PeerOptions {
  direct: Side;
  vigil: Side;
  work: string;
  /** For pg_dump/pg_restore: [source db, restore db] on each side, restore dbs emptied by `reset`. */
  dump?: { direct: [string, string]; vigil: [string, string]; reset(): void };
  drivers?: Array<'psycopg' | 'pgjdbc' | 'node-postgres' | 'pg_dump' | 'psql/pgbench'>;
}

/** Run each driver's workload on both sides, one after the other (no concurrent load on the backend). */
export async function runPeers(o: PeerOptions): Promise<PeerRow[]> {
  const want = new Set(o.drivers ?? ['psql/pgbench', 'psycopg', 'pgjdbc', 'node-postgres', 'pg_dump']);
  const rows: PeerRow[] = [];
  if (want.has('psql/pgbench')) rows.push(...compare('psql/pgbench', await libpqTools(o.direct), await libpqTools(o.vigil)));
  if (want.has('psycopg')) rows.push(...compare('psycopg 3', await psycopg(o.direct), await psycopg(o.vigil)));
  if (want.has('pgjdbc')) {
    const classes = await compileJava(o.work);
    rows.push(...compare('pgjdbc', await pgjdbc(o.direct, classes), await pgjdbc(o.vigil, classes)));
  }
  if (want.has('node-postgres')) rows.push(...compare('node-postgres', await nodePostgres(o.direct), await nodePostgres(o.vigil)));
  if (want.has('pg_dump') && o.dump) {
    o.dump.reset();
    const direct = await dumpRestore(o.direct, o.work, ...o.dump.direct);
    o.dump.reset();
    const vigil = await dumpRestore(o.vigil, o.work, ...o.dump.vigil);
    rows.push(...compare('pg_dump/pg_restore', direct, vigil));
  }
  return rows;
}

export interface PeerWorld {
  pg: PostgresHandle;
  tg: TestGateway;
  work: string;
  direct: Side;
  vigil: Side;
  /** pgjdbc through vigil with the PKCS#12 file (`sslkey=alice.p12`, empty password) instead of PKCS#8. */
  vigilJdbcP12Url: string;
  /** pg_dump/pg_restore settings for runPeers (source `app`, restore into a fresh `restored`). */
  dump: NonNullable<PeerOptions['dump']>;
  stop(): Promise<void>;
}

/**
 * A real PostgreSQL 15 and an in-process vigil with target `pg` (database `app`, SCRAM backend login) and
 * alice's credentials, her key also as DER PKCS#8 for pgjdbc; `app` holds a table, an index and a view.
 */
export async function startPeerWorld(): Promise<PeerWorld> {
  const pgs = await startPostgres();
  const work = tempDir('vigil-peers-');
  const secret = secretsDir(work)('scram', PASSWORDS.scram_user);
  const tg = await startTestGateway(
    {
      targets: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pgs.port, database: 'app', user: 'scram_user', password: { file: secret } }],
      certs: { clock_skew: 0 },
      roles: [{ name: 'dba', targets: ['pg'], databases: ['app', 'restored'] }],
    },
    work,
  );
  const alice = await tg.issue({ user: 'alice', roles: ['dba'] });
  // pgjdbc reads its client key as DER PKCS#8 (what `vigil cert issue --format pkcs8` writes).
  const pk8 = path.join(alice.dir, 'alice.pk8');
  fs.writeFileSync(pk8, pkcs8Der(fs.readFileSync(alice.key, 'utf8')), { mode: 0o600 });
  // Or as PKCS#12 under the alias `user` (what `--format pkcs12` writes).
  const p12 = path.join(alice.dir, 'alice.p12');
  const p12Der = buildPkcs12({ certificatePem: fs.readFileSync(alice.crt, 'utf8'), privateKeyPem: fs.readFileSync(alice.key, 'utf8'), password: '', friendlyName: 'user' });
  fs.writeFileSync(p12, p12Der, { mode: 0o600 });
  pgs.psql(
    "CREATE TABLE peers (id int PRIMARY KEY, name text, data bytea, doc jsonb, at timestamptz DEFAULT '2026-01-01'); ALTER TABLE peers OWNER TO scram_user; " +
      "INSERT INTO peers SELECT g, 'row ' || g, sha256(g::text::bytea), jsonb_build_object('g', g) FROM generate_series(1, 300) g; " +
      'CREATE INDEX peers_name ON peers (name); CREATE VIEW peers_view AS SELECT id, name FROM peers; ALTER VIEW peers_view OWNER TO scram_user',
  );
  const pw = PASSWORDS.scram_user;
  const direct: Side = {
    libpq: (db = 'app') => `host=127.0.0.1 port=${pgs.port} dbname=${db} user=scram_user password=${pw} sslmode=disable`,
    jdbcUrl: `jdbc:postgresql://127.0.0.1:${pgs.port}/app?user=scram_user&password=${pw}&sslmode=disable`,
    node: { host: '127.0.0.1', port: pgs.port, database: 'app', user: 'scram_user', password: pw },
  };
  const gw = tg.ports.postgres;
  const vigil: Side = {
    libpq: (db = 'app') => `host=127.0.0.1 port=${gw} dbname=pg/${db} user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}`,
    jdbcUrl: `jdbc:postgresql://127.0.0.1:${gw}/pg?user=alice&sslmode=verify-full&sslrootcert=${alice.ca}&sslcert=${alice.crt}&sslkey=${pk8}`,
    node: {
      host: '127.0.0.1', port: gw, database: 'pg', user: 'alice',
      ssl: { ca: fs.readFileSync(alice.ca), cert: fs.readFileSync(alice.crt), key: fs.readFileSync(alice.key), servername: 'localhost' },
    },
  };
  const reset = () => {
    pgs.psql('DROP DATABASE IF EXISTS restored', 'postgres');
    pgs.psql('CREATE DATABASE restored OWNER scram_user', 'postgres');
  };
  return {
    pg: pgs, tg, work, direct, vigil,
    vigilJdbcP12Url: `jdbc:postgresql://127.0.0.1:${gw}/pg?user=alice&sslmode=verify-full&sslrootcert=${alice.ca}&sslkey=${p12}&sslpassword=`,
    dump: { direct: ['app', 'restored'], vigil: ['app', 'restored'], reset },
    async stop() {
      await tg.stop();
      await pgs.stop();
      fs.rmSync(work, { recursive: true, force: true });
    },
  };
}
