import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { startTestGateway, type TestGateway, type IssuedFiles } from '../support/gateway.ts';
import { startPostgres, PASSWORDS, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, secretsDir } from '../support/tmp.ts';
import { pkcs8Der } from '../../src/identity/pkcs12.ts';
import { runPeers, formatTable, type Side, type PeerRow } from './drivers/peers.ts';

/**
 * Driver transparency (issue 17): psycopg 3, pgjdbc, node-postgres and pg_dump/pg_restore run the same
 * workload direct and through vigil and must print the same results. The side-by-side table is
 * bench/peers/postgres.ts; this is the CI subset (each driver once, one round).
 */
let pgs: PostgresHandle;
let tg: TestGateway;
let alice: IssuedFiles;
let base: string;
let direct: Side;
let vigil: Side;

beforeAll(async () => {
  pgs = await startPostgres();
  base = tempDir('vigil-peers-');
  const secret = secretsDir(base)('scram', PASSWORDS.scram_user);
  tg = await startTestGateway(
    {
      targets: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pgs.port, database: 'app', user: 'scram_user', password: { file: secret } }],
      certs: { clock_skew: 0 },
      roles: [{ name: 'dba', targets: ['pg'], databases: ['app', 'restored'] }],
    },
    base,
  );
  alice = await tg.issue({ user: 'alice', roles: ['dba'] });
  // pgjdbc reads its client key as DER PKCS#8 (what `vigil cert issue --format pkcs8` writes).
  const pk8 = path.join(alice.dir, 'alice.pk8');
  fs.writeFileSync(pk8, pkcs8Der(fs.readFileSync(alice.key, 'utf8')), { mode: 0o600 });
  pgs.psql(
    "CREATE TABLE peers (id int PRIMARY KEY, name text, data bytea, doc jsonb, at timestamptz DEFAULT '2026-01-01'); ALTER TABLE peers OWNER TO scram_user; " +
      "INSERT INTO peers SELECT g, 'row ' || g, sha256(g::text::bytea), jsonb_build_object('g', g) FROM generate_series(1, 300) g; " +
      'CREATE INDEX peers_name ON peers (name); CREATE VIEW peers_view AS SELECT id, name FROM peers; ALTER VIEW peers_view OWNER TO scram_user',
  );
  const pw = PASSWORDS.scram_user;
  direct = {
    libpq: (db = 'app') => `host=127.0.0.1 port=${pgs.port} dbname=${db} user=scram_user password=${pw} sslmode=disable`,
    jdbcUrl: `jdbc:postgresql://127.0.0.1:${pgs.port}/app?user=scram_user&password=${pw}&sslmode=disable`,
    node: { host: '127.0.0.1', port: pgs.port, database: 'app', user: 'scram_user', password: pw },
  };
  const gw = tg.ports.postgres;
  vigil = {
    libpq: (db = 'app') =>
      `host=127.0.0.1 port=${gw} dbname=pg/${db} user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}`,
    jdbcUrl: `jdbc:postgresql://127.0.0.1:${gw}/pg?user=alice&sslmode=verify-full&sslrootcert=${alice.ca}&sslcert=${alice.crt}&sslkey=${pk8}`,
    node: {
      host: '127.0.0.1', port: gw, database: 'pg', user: 'alice',
      ssl: { ca: fs.readFileSync(alice.ca), cert: fs.readFileSync(alice.crt), key: fs.readFileSync(alice.key), servername: 'localhost' },
    },
  };
});
afterAll(async () => {
  await tg?.stop();
  await pgs?.stop();
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

const values = (rows: PeerRow[]) => Object.fromEntries(rows.map((r) => [r.check, r.vigil]));
function expectSame(rows: PeerRow[]) {
  const diff = rows.filter((r) => !r.same);
  expect(diff, `\n${formatTable(rows)}`).toEqual([]);
  expect(rows.find((r) => r.check === 'run'), `\n${formatTable(rows)}`).toBeUndefined();
  expect(rows.length).toBeGreaterThan(0);
}

describe('postgres drivers: same results direct and through vigil', () => {
  it('psycopg 3: pipeline mode, binary COPY, named cursors, prepared binary statements', async () => {
    const rows = await runPeers({ direct, vigil, work: base, drivers: ['psycopg'] });
    expectSame(rows);
    expect(values(rows)).toMatchObject({ backend_pid_is_real: 'true', pipeline: '[20,210]', pipeline_error: '"23505"', copy_in_rows: '500', named_cursor: expect.stringMatching(/^\[5,495,/) });
    // The pipelined INSERTs were each recorded.
    expect(tg.events.filter((e) => e.type === 'db.query' && String(e.details.sql).startsWith('INSERT INTO items VALUES ($1, $2, $3)')).length).toBeGreaterThanOrEqual(20);
  });

  it('pgjdbc (key as DER PKCS#8): server-prepared statements, batches, fetch size, CopyManager, cancel', async () => {
    const rows = await runPeers({ direct, vigil, work: base, drivers: ['pgjdbc'] });
    expectSame(rows);
    expect(values(rows)).toMatchObject({
      backend_pid_is_real: 'true', server_prepared_used: 'true', batch_updates: '250', batch_error: '23505', fetch_size_rows: '250/31375', copy_in: '300', cancel: '57014', after_cancel: '550',
    });
    await tg.waitForEvent((e) => e.type === 'db.cancel' && e.outcome === 'success');
    await tg.waitForEvent((e) => e.type === 'db.query' && e.details.suspended === true);
  });

  it('node-postgres: real pid (NOTIFY from self), named statements, binary results', async () => {
    const rows = await runPeers({ direct, vigil, work: base, drivers: ['node-postgres'] });
    expectSame(rows);
    expect(values(rows)).toMatchObject({ backend_pid_is_real: 'true', notify_from_self: 'true', error: '22012' });
  });

  it('pg_dump -Fc / pg_restore round trip: the restored database dumps the same as the original', async () => {
    const reset = () => {
      pgs.psql('DROP DATABASE IF EXISTS restored', 'postgres');
      pgs.psql('CREATE DATABASE restored OWNER scram_user', 'postgres');
    };
    const rows = await runPeers({ direct, vigil, work: base, drivers: ['pg_dump'], dump: { direct: ['app', 'restored'], vigil: ['app', 'restored'], reset } });
    expectSame(rows);
    expect(values(rows).restored_dumps_the_same).toBe('true');
  });
});
