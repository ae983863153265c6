/**
 * Driver transparency, side by side: psycopg 3, pgjdbc, node-postgres and pg_dump/pg_restore run the same
 * workload direct to PostgreSQL 15 and through vigil (test/postgres/drivers/); every check's result is
 * printed for both, with `NO` where they differ. Exit status 1 if any differ.
 *
 *   npx tsx bench/peers/postgres.ts [--markdown]
 *
 * The fast CI subset is test/postgres/drivers.test.ts. Needs python3-psycopg, libpostgresql-jdbc-java and a
 * JDK (test/setup/install-deps.sh).
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { runPeers, startPeerWorld } from '../../test/postgres/drivers/peers.ts';
import { report } from './compare.ts';

const { values } = parseArgs({ options: { markdown: { type: 'boolean', default: false } } });

const w = await startPeerWorld();
try {
  const started = new Date();
  const load = os.loadavg()[0];
  const rows = await runPeers({ direct: w.direct, vigil: w.vigil, work: w.work, dump: w.dump });
  report('postgres driver peers', rows, { markdown: values.markdown!, started, load });
} finally {
  await w.stop();
}
