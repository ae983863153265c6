/**
 * Driver transparency for MySQL/MariaDB, side by side: the mariadb CLI, mariadb-dump (dump, restore, dump
 * again), sysbench, mysql2, PyMySQL, mysqlclient and MariaDB Connector/J run the same workload direct to
 * MariaDB 10.11 and through vigil (test/mysql/drivers/); then MariaDB's own test suite
 * (`mariadb-test-run --extern`, bench/peers/mtr.ts) on a set of main-suite tests in normal, --ps-protocol and
 * --cursor-protocol modes, compared test by test. Exit status 1 if anything differs.
 *
 *   npx tsx bench/peers/mysql.ts [--markdown] [--skip-drivers] [--skip-mtr] [--mtr-tests=a,b,c]
 *
 * The fast CI subset is test/mysql/drivers.test.ts. Needs python3-pymysql, python3-mysqldb, libmariadb-java,
 * a JDK and mariadb-test (test/setup/install-deps.sh).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runPeers, startPeerWorld } from '../../test/mysql/drivers/peers.ts';
import { report } from './compare.ts';
import { compareMtr, formatMtr, DEFAULT_MTR_TESTS } from './mtr.ts';

const { values } = parseArgs({ options: { markdown: { type: 'boolean', default: false }, 'skip-drivers': { type: 'boolean', default: false }, 'skip-mtr': { type: 'boolean', default: false }, 'mtr-tests': { type: 'string' } } });

const w = await startPeerWorld();
try {
  const started = new Date();
  const load = os.loadavg()[0];
  if (!values['skip-drivers']) report('mysql driver peers', await runPeers(w), { markdown: values.markdown!, started, load });
  if (!values['skip-mtr']) {
    const tests = values['mtr-tests']?.split(',') ?? DEFAULT_MTR_TESTS;
    // Tests that fail midway leave the globals they set (max_allowed_packet=1024, ...): each run starts from these.
    const globals = async () => new Map((await w.db.query('SHOW GLOBAL VARIABLES')).map((r) => [r[0], r[1] ?? '']));
    const initial = await globals();
    const mtr = await compareMtr({ port: w.direct.port, user: 'root' }, { port: w.vigil.port, user: 'root', tls: w.vigil.tls }, tests, w.work, async () => {
      for (const [name, value] of await globals()) {
        const was = initial.get(name);
        if (was === undefined || was === value) continue;
        const literal = /^-?\d+(\.\d+)?$/.test(was) ? was : `'${was.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
        await w.db.query(`SET GLOBAL ${name} = ${literal}`).catch(() => {});
      }
      const leftovers = (await w.db.query("SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys', 'peers', 'restored')")).map((r) => r[0]);
      for (const d of leftovers) {
        // A test may leave files (SELECT ... INTO OUTFILE) the server will not remove: after the tables went, those.
        await w.db.query(`DROP DATABASE \`${d}\``).catch(async () => {
          fs.rmSync(path.join(w.db.dir, 'data', d), { recursive: true, force: true });
          await w.db.query(`DROP DATABASE IF EXISTS \`${d}\``);
        });
      }
      await w.db.query([
        'CREATE DATABASE test;',
        // What mariadb-test-run's own server config sets and the main suite's results assume.
        "SET GLOBAL default_storage_engine = MyISAM, character_set_server = latin1, collation_server = latin1_swedish_ci, log_bin_trust_function_creators = 1;",
      ].join(' '));
    });
    console.log(`\n# mariadb-test-run --extern, main suite, direct vs through vigil, ${new Date().toISOString().slice(0, 10)}`);
    console.log(formatMtr(mtr, values.markdown!));
    if (mtr.some((r) => Object.keys(r.differs).length)) process.exitCode = 1;
  }
} finally {
  await w.stop();
}
