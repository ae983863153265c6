/**
 * Driver transparency for MySQL/MariaDB, side by side: the mariadb CLI, mariadb-dump (dump, restore, dump
 * again), sysbench, mysql2, PyMySQL, mysqlclient and MariaDB Connector/J run the same workload direct to
 * MariaDB 10.11 and through vigil (test/mysql/drivers/); then MariaDB's own test suite
 * (`mariadb-test-run --extern`, bench/peers/mtr.ts) on a set of main-suite tests in normal, --ps-protocol and
 * --cursor-protocol modes, compared test by test. Exit status 1 if anything differs.
 *
 *   npx tsx bench/peers/mysql.ts [--markdown] [--skip-drivers] [--skip-mtr] [--mtr-tests=a,b,c] [--mtr-direct-only=normal]
 *
 * The fast CI subset is test/mysql/drivers.test.ts. Needs python3-pymysql, python3-mysqldb, libmariadb-java,
 * a JDK and mariadb-test (test/setup/install-deps.sh).
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { runPeers, startPeerWorld } from '../../test/mysql/drivers/peers.ts';
import { report } from './compare.ts';
import { compareMtr, formatMtr, mtrReset, runMtr, DEFAULT_MTR_TESTS, type MtrMode } from './mtr.ts';

const { values } = parseArgs({ options: { markdown: { type: 'boolean', default: false }, 'skip-drivers': { type: 'boolean', default: false }, 'skip-mtr': { type: 'boolean', default: false }, 'mtr-tests': { type: 'string' }, 'mtr-direct-only': { type: 'string' } } });

const w = await startPeerWorld({ mtr: !values['skip-mtr'] });
try {
  const started = new Date();
  const load = os.loadavg()[0];
  if (!values['skip-drivers']) report('mysql driver peers', await runPeers(w), { markdown: values.markdown!, started, load });
  if (!values['skip-mtr']) {
    const db = w.mtrDb!;
    const tests = values['mtr-tests']?.split(',') ?? DEFAULT_MTR_TESTS;
    if (values['mtr-direct-only']) {
      // Choosing tests: one mode, direct only, each test's outcome and time (or why it skipped or failed).
      await (await mtrReset(db))();
      const out = await runMtr({ port: db.port, user: 'root' }, tests, values['mtr-direct-only'] as MtrMode, w.mtrVardir);
      for (const [t, o] of out) console.log(`${t}\t${o.status}\t${o.note}\t${o.stopped ?? ''}`);
    } else {
    const mtr = await compareMtr({ port: db.port, user: 'root' }, { port: w.vigil.port, user: 'root', tls: w.vigil.tls }, tests, w.mtrVardir, await mtrReset(db));
    console.log(`\n# mariadb-test-run --extern, main suite, direct vs through vigil, ${new Date().toISOString().slice(0, 10)} (load ${load.toFixed(2)} -> ${os.loadavg()[0].toFixed(2)})`);
    console.log(formatMtr(mtr, values.markdown!));
    if (mtr.some((r) => Object.keys(r.differs).length)) process.exitCode = 1;
    }
  }
} finally {
  await w.stop();
}
