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
import { runPeers, formatTable, startPeerWorld, type PeerRow } from '../../test/postgres/drivers/peers.ts';

const { values } = parseArgs({ options: { markdown: { type: 'boolean', default: false } } });

function markdown(rows: PeerRow[]): string {
  const esc = (s: string) => (s.length > 40 ? `${s.slice(0, 37)}...` : s).replace(/\|/g, '\\|');
  return [
    '| driver | check | direct | through vigil | same |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.driver} | ${r.check} | \`${esc(r.direct)}\` | \`${esc(r.vigil)}\` | ${r.same ? 'yes' : '**no**'} |`),
  ].join('\n');
}

const w = await startPeerWorld();
try {
  const started = new Date();
  const load = os.loadavg()[0];
  const rows = await runPeers({ direct: w.direct, vigil: w.vigil, work: w.work, dump: w.dump });
  console.log(`# postgres driver peers, ${started.toISOString().slice(0, 10)} (load ${load.toFixed(2)} -> ${os.loadavg()[0].toFixed(2)})`);
  console.log(values.markdown ? markdown(rows) : formatTable(rows));
  const differ = rows.filter((r) => !r.same);
  console.log(`${rows.length} checks, ${differ.length} differ`);
  process.exitCode = differ.length ? 1 : 0;
} finally {
  await w.stop();
}
