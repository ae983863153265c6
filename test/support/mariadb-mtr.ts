import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * MariaDB configured as `mariadb-test-run` configures the server it starts itself, for running its main
 * suite with `--extern` (bench/peers/mtr.ts): the data directory bootstrapped from the same SQL scripts
 * (system tables, the test time zones, help tables, sys schema, a latin1 `test` database, root without a
 * password on every local host, no anonymous users, the `mtr` database whose `mtr.add_suppression()` many
 * tests call), and the server options of mysql-test/include/default_mysqld.cnf plus the per-server ones
 * mtr's ConfigFactory adds. Not taken: mtr disables optional plugins (InnoDB, partition, sequence, ...) and
 * enables them per test (have_innodb.inc); an extern server cannot be restarted per test, so they stay on,
 * and a test that needs one simply finds it.
 */
export const MTR_DIR = '/usr/share/mysql/mysql-test';
const SHARE = '/usr/share/mysql';

/** The bootstrap SQL, in the order mariadb-test-run's mysql_install_db() concatenates it. */
export function mtrBootstrapSql(): string {
  const f = (name: string) => fs.readFileSync(path.join(SHARE, name), 'utf8');
  return [
    'use mysql;',
    f('mysql_system_tables.sql'),
    f('maria_add_gis_sp_bootstrap.sql'),
    f('mysql_performance_tables.sql'),
    f('mysql_system_tables_data.sql'),
    f('mysql_test_data_timezone.sql'),
    f('fill_help_tables.sql'),
    f('mysql_sys_schema.sql'),
    'CREATE DATABASE IF NOT EXISTS test CHARACTER SET latin1 COLLATE latin1_swedish_ci;',
    'ALTER TABLE gtid_slave_pos ENGINE=Aria transactional=0;',
    "DELETE FROM mysql.global_priv where user= '';",
    'CREATE DATABASE mtr CHARSET=latin1;',
    mysqltestToBootstrap(fs.readFileSync(path.join(MTR_DIR, 'include/mtr_warnings.sql'), 'utf8')),
    mysqltestToBootstrap(fs.readFileSync(path.join(MTR_DIR, 'include/mtr_check.sql'), 'utf8')),
  ].join('\n');
}

/**
 * A mysqltest script with `delimiter` changes as statements `--bootstrap` reads (one per line ending in `;`):
 * what mtr's sql_to_bootstrap() does with mtr_warnings.sql and mtr_check.sql.
 */
export function mysqltestToBootstrap(sql: string): string {
  let delimiter = ';';
  let out = '\n';
  for (const line of sql.split(/\r?\n/)) {
    const d = /^delimiter (.*)/.exec(line);
    if (d) {
      delimiter = d[1].endsWith(delimiter) ? d[1].slice(0, -delimiter.length) : d[1];
      continue;
    }
    if (line.endsWith(delimiter)) {
      out += `${line.slice(0, -delimiter.length)};\n`;
      continue;
    }
    if (/^\s*--/.test(line)) continue;
    out += `${line.replace("'@HOSTNAME@'", 'localhost')} `;
  }
  return out;
}

/**
 * Where the data directory goes: `<home>/mysqld.1/data` as in an mtr vardir, with a copy of std_data in
 * `<home>/std_data` (mtr copies it into its vardir) and a `<home>/tmp`, so that the tests'
 * `LOAD DATA INFILE '../../std_data/x'` and `INTO OUTFILE '../../tmp/x'`, relative to the data directory,
 * find their place inside secure-file-priv (`home`).
 */
export function mtrDatadir(home: string): string {
  fs.cpSync(path.join(MTR_DIR, 'std_data'), path.join(home, 'std_data'), { recursive: true });
  fs.mkdirSync(path.join(home, 'tmp'), { recursive: true });
  return path.join(home, 'mysqld.1', 'data');
}

/** Bootstrap `datadir` as mtr does (mariadbd --bootstrap with the options mtr gives it). */
export function mtrBootstrap(datadir: string, tmpdir: string, user: string): void {
  fs.mkdirSync(path.join(datadir, 'mysql'), { recursive: true });
  execFileSync('/usr/sbin/mariadbd', [
    '--no-defaults', '--disable-getopt-prefix-matching', '--bootstrap', '--basedir=/usr', `--datadir=${datadir}`,
    '--plugin-dir=/usr/lib/mysql/plugin', '--default-storage-engine=myisam', '--loose-innodb', '--loose-innodb-log-file-size=10M',
    '--disable-sync-frm', `--tmpdir=${tmpdir}`, '--console', '--character-set-server=latin1', '--loose-disable-performance-schema',
    `--lc-messages-dir=${SHARE}/`, `--character-sets-dir=${SHARE}/charsets`, `--user=${user}`,
  ], { input: mtrBootstrapSql(), stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
}

/**
 * The server options: include/default_mysqld.cnf's [mysqld] and [server] groups (secure-file-priv is the
 * directory that holds the mtr runs' vardirs, where the tests' files are), then what ConfigFactory sets for
 * mysqld.1 ([server] loose-aria is not needed: Aria is built in). No --skip-name-resolve: a TCP login from 127.0.0.1 is root@localhost, as the results expect.
 */
export function mtrServerArgs(o: { secureFilePriv: string; tmpdir: string; logDir: string }): string[] {
  const perfSchema = [
    'accounts-size=100', 'digests-size=200', 'hosts-size=100', 'users-size=100', 'max-mutex-instances=5000', 'max-rwlock-instances=5000',
    'max-cond-instances=1500', 'max-file-instances=10000', 'max-socket-instances=1000', 'max-table-instances=500', 'max-table-lock-stat=500',
    'max-index-stat=5000', 'max-table-handles=1000', 'max-prepared-statements-instances=100', 'max-program-instances=5000',
    'setup-actors-size=100', 'setup-objects-size=100', 'events-waits-history-size=10', 'events-waits-history-long-size=10000',
    'events-stages-history-size=10', 'events-stages-history-long-size=1000', 'events-statements-history-size=10',
    'events-statements-history-long-size=1000', 'events-transactions-history-size=10', 'events-transactions-history-long-size=1000',
    'max-thread-instances=400', 'session-connect-attrs-size=2048', 'max-metadata-locks=10000', "instrument=%=ON",
    ...['stages', 'statements', 'transactions', 'waits'].flatMap((e) => ['current', 'history', 'history-long'].map((h) => `consumer-events-${e}-${h}=ON`)),
    'consumer-global-instrumentation=ON', 'consumer-thread-instrumentation=ON',
  ].map((o) => `--loose-performance-schema-${o}`);
  const std = path.join(MTR_DIR, 'std_data');
  return [
    '--disable-getopt-prefix-matching', '--plugin-maturity=unknown', '--open-files-limit=1024', '--local-infile',
    '--character-set-server=latin1', '--connect-timeout=60', `--secure-file-priv=${o.secureFilePriv}`, '--log-basename=mysqld',
    '--debug-no-sync', '--log-bin-trust-function-creators=1', '--key_buffer_size=1M', '--sort_buffer_size=256K',
    '--max_heap_table_size=1M', '--loose-aria-pagecache-buffer-size=8M', '--loose-innodb_data_file_path=ibdata1:12M:autoextend',
    '--loose-innodb_buffer_pool_size=8M', '--loose-innodb_lru_scan_depth=100', '--loose-innodb_write_io_threads=2',
    '--loose-innodb_read_io_threads=2', '--loose-innodb_log_buffer_size=2M', '--loose-innodb_log_file_size=10M', '--slave-net-timeout=120',
    '--loose-enable-performance-schema', ...perfSchema, '--binlog-direct-non-transactional-updates', '--default-storage-engine=myisam',
    '--use_stat_tables=preferably', '--histogram_type=json_hb',
    `--loose-ssl-ca=${std}/cacert.pem`, `--loose-ssl-cert=${std}/server-cert.pem`, `--loose-ssl-key=${std}/server-key.pem`,
    // mysqld.1 (ConfigFactory), and --log-output=file, which mtr adds on the command line.
    '--basedir=/usr', `--tmpdir=${o.tmpdir}`, `--character-sets-dir=${SHARE}/charsets`, `--lc-messages-dir=${SHARE}/`,
    '--plugin-dir=/usr/lib/mysql/plugin', '--server-id=1', '--general-log=1', `--general-log-file=${path.join(o.logDir, 'mysqld.log')}`,
    '--slow-query-log=1', `--slow-query-log-file=${path.join(o.logDir, 'mysqld-slow.log')}`, '--log-output=file',
  ];
}
