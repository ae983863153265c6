import fs from 'node:fs';
import path from 'node:path';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startMariadb, type MariadbHandle } from '../support/mariadb.ts';
import { mysqltestToBootstrap } from '../support/mariadb-mtr.ts';
import { tempDir } from '../support/tmp.ts';
import { exec } from '../../bench/peers/compare.ts';

/**
 * The MariaDB that bench/peers/mysql.ts runs mariadb-test-run --extern against must be set up as mtr sets up
 * the server it starts itself, or the suite fails direct and the comparison with vigil says little: what the
 * main suite's results assume of it, checked here over TCP as mysqltest connects.
 */
let db: MariadbHandle;
let vardir: string;
beforeAll(async () => {
  vardir = tempDir('vigil-mtr-var-');
  db = await startMariadb({ mtr: { secureFilePriv: vardir } });
}, 180_000);
afterAll(async () => {
  await db?.stop();
  fs.rmSync(vardir, { recursive: true, force: true });
});

const tcp = async (sql: string) => {
  const r = await exec('mariadb', ['--no-defaults', '-h127.0.0.1', `-P${db.port}`, '-uroot', '--batch', '--skip-column-names', '-e', sql]);
  expect(r.stderr).toBe('');
  return r.stdout.trim().split('\n').map((l) => l.split('\t'));
};

describe('MariaDB set up as mariadb-test-run sets up its own', () => {
  it('root from 127.0.0.1 without a password is root@localhost; a latin1 test database; MyISAM', async () => {
    expect(await tcp("SELECT CURRENT_USER(), @@character_set_server, @@default_storage_engine, @@log_bin_trust_function_creators, DEFAULT_CHARACTER_SET_NAME FROM information_schema.schemata WHERE schema_name = 'test'"))
      .toEqual([['root@localhost', 'latin1', 'MyISAM', '1', 'latin1']]);
  });

  it("mtr's own database: mtr.add_suppression(), which many tests call", async () => {
    await tcp("CALL mtr.add_suppression('vigil test')");
    expect(await tcp('SELECT pattern FROM mtr.test_suppressions')).toEqual([['vigil test']]);
  });

  it('the test time zones (mysql_test_data_timezone.sql), no anonymous accounts, secure-file-priv is the vardir', async () => {
    expect(await tcp("SELECT CONVERT_TZ('2026-01-01 12:00:00', 'UTC', 'Europe/Moscow'), (SELECT COUNT(*) FROM mysql.global_priv WHERE user = ''), @@secure_file_priv"))
      .toEqual([['2026-01-01 15:00:00', '0', `${vardir}/`]]);
  });

  it("LOAD DATA '../../std_data/…' relative to the data directory finds mtr's std_data, as in an mtr vardir", async () => {
    expect(fs.existsSync(path.join(vardir, 'std_data', 'words.dat'))).toBe(true);
    expect(await tcp("CREATE TABLE test.w (w VARCHAR(64)); LOAD DATA INFILE '../../std_data/words.dat' INTO TABLE test.w; SELECT COUNT(*) > 0 FROM test.w; DROP TABLE test.w")).toEqual([['1']]);
  });

  it('mtr_warnings.sql and mtr_check.sql: mysqltest delimiters become one statement a line', () => {
    const sql = ['delimiter ||;', 'CREATE PROCEDURE p()', 'BEGIN', '  -- a comment', '  SELECT 1;', "  SELECT '@HOSTNAME@';", 'END||', 'delimiter ;||', 'SELECT 2;'].join('\n');
    expect(mysqltestToBootstrap(sql)).toBe("\nCREATE PROCEDURE p() BEGIN   SELECT 1;   SELECT localhost; END;\nSELECT 2;\n");
  });
});
