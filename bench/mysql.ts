/**
 * sysbench oltp_point_select and oltp_read_only against the same real MariaDB 10.11, alternating direct
 * and through vigil in one run so machine noise hits both alike:
 *
 *   direct  sysbench → MariaDB (TLS)
 *   vigil   sysbench → vigil gateway in-process (TLS + vigil client certificate, every statement and its
 *           parameters recorded as a db.query audit event in the hash-chained log) → MariaDB
 *   relay   sysbench → the cheapest possible Node TCP relay in this process (no parsing, no recording,
 *           TLS passed through end to end) → MariaDB: what one extra Node hop costs on this machine, the
 *           ceiling for any proxy written this way
 *
 * Prints TPS and latency per route and round, medians and the vigil/direct ratio. Target: >= 0.80x direct.
 *
 *   npm run bench:mysql [-- --seconds 10 --rounds 3 --threads 4 --tests oltp_point_select,oltp_read_only --routes direct,vigil,relay]
 */
import { parseArgs } from 'node:util';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { startMariadb } from '../test/support/mariadb.ts';
import { startTestGateway } from '../test/support/gateway.ts';
import { tempDir } from '../test/support/tmp.ts';
import { sysbench, sysbenchCertDir, type SysbenchRun } from '../test/mysql/sysbench.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '4' },
    'table-size': { type: 'string', default: '10000' },
    tests: { type: 'string', default: 'oltp_point_select,oltp_read_only' },
    routes: { type: 'string', default: 'direct,vigil,relay' },
  },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const THREADS = Number(values.threads);
const TABLE_SIZE = Number(values['table-size']);
const TESTS = values.tests!.split(',');
type Route = 'direct' | 'vigil' | 'relay';
const ROUTES = values.routes!.split(',') as Route[];
if (!ROUTES.includes('direct') || ROUTES.some((r) => !['direct', 'vigil', 'relay'].includes(r))) throw new Error('--routes: direct plus any of vigil, relay');

/** A bare byte pipe: one write per read each way, nothing else. */
async function startBareRelay(port: number): Promise<{ port: number; close: () => void }> {
  const server = net.createServer((client) => {
    const backend = net.connect({ host: '127.0.0.1', port, noDelay: true });
    client.setNoDelay(true);
    client.pipe(backend).pipe(client);
    client.on('error', () => backend.destroy());
    backend.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const db = await startMariadb({ tls: true });
  const base = tempDir('vigil-bench-mysql-');
  const pwFile = path.join(base, 'pw');
  fs.writeFileSync(pwFile, 'bench-pw', { mode: 0o600 });
  await db.query(`CREATE DATABASE sbtest; CREATE USER sb@'%' IDENTIFIED BY 'bench-pw'; GRANT ALL ON sbtest.* TO sb@'%';`);
  const tg = await startTestGateway(
    {
      targets: [{ name: 'sb', protocol: 'mysql', host: '127.0.0.1', port: db.port, user: 'sb', password: { file: pwFile }, database: 'sbtest' }],
      roles: [{ name: 'bench', targets: ['sb'], databases: ['sbtest'] }],
    },
    base,
  );
  let recorded = 0;
  tg.gw.services.events.subscribe((e) => {
    if (e.type === 'db.query') recorded++;
  });
  const creds = await tg.issue({ user: 'bench', roles: ['bench'], ttlMs: 6 * 3_600_000 });
  const vigilCerts = sysbenchCertDir(creds, base);
  const relay = await startBareRelay(db.port);
  const routes = {
    direct: { port: db.port, user: 'sb', password: 'bench-pw', certDir: db.tlsDir! },
    vigil: { port: tg.ports.mysql!, user: 'sb', certDir: vigilCerts },
    relay: { port: relay.port, user: 'sb', password: 'bench-pw', certDir: db.tlsDir! },
  };
  console.log(`MariaDB ${(await db.query('SELECT VERSION()'))[0]![0]}, sysbench threads=${THREADS}, ${SECONDS}s x ${ROUNDS} rounds, table-size=${TABLE_SIZE}`);
  await sysbench({ test: 'oltp_read_only', command: 'prepare', db: 'sbtest', tableSize: TABLE_SIZE, ...routes.direct });

  const summary: string[] = [];
  try {
    for (const test of TESTS) {
      const res: Record<Route, SysbenchRun[]> = { direct: [], vigil: [], relay: [] };
      for (let r = 0; r < ROUNDS; r++) {
        for (const route of r % 2 === 0 ? ROUTES : [...ROUTES].reverse()) {
          const before = recorded;
          const cpu0 = process.cpuUsage();
          const loop = monitorEventLoopDelay({ resolution: 5 });
          loop.enable();
          const t0 = performance.now();
          const run = await sysbench({ test, command: 'run', db: 'sbtest', threads: THREADS, time: SECONDS, tableSize: TABLE_SIZE, ...routes[route] });
          res[route].push(run);
          loop.disable();
          const cpu = process.cpuUsage(cpu0);
          const cpuPct = ((cpu.user + cpu.system) / 1000 / (performance.now() - t0)) * 100;
          const rec = route === 'vigil' ? `  db.query events: ${recorded - before}  gateway cpu ${cpuPct.toFixed(0)}%  event-loop delay p99 ${(loop.percentile(99) / 1e6).toFixed(1)} ms` : route === 'relay' ? `  relay cpu ${cpuPct.toFixed(0)}%` : '';
          console.log(`${test.padEnd(18)} round ${r + 1} ${route.padEnd(6)} tps ${run.tps.toFixed(1).padStart(9)}  qps ${run.qps.toFixed(0).padStart(7)}  avg ${run.latencyAvgMs.toFixed(2)} ms  p95 ${run.latencyP95Ms.toFixed(2)} ms${rec}`);
        }
      }
      const d = median(res.direct.map((x) => x.tps));
      const dl = median(res.direct.map((x) => x.latencyAvgMs));
      if (res.vigil.length > 0) {
        const v = median(res.vigil.map((x) => x.tps));
        const vl = median(res.vigil.map((x) => x.latencyAvgMs));
        summary.push(`${test.padEnd(18)} median tps direct ${d.toFixed(1)}  vigil ${v.toFixed(1)}  ratio ${(v / d).toFixed(2)}x (target >= 0.80x)  avg latency ${dl.toFixed(2)} → ${vl.toFixed(2)} ms`);
      }
      if (res.relay.length > 0) {
        const b = median(res.relay.map((x) => x.tps));
        const vigilVsRelay = res.vigil.length > 0 ? `  vigil/relay ${(median(res.vigil.map((x) => x.tps)) / b).toFixed(2)}x` : '';
        summary.push(`${test.padEnd(18)} median tps bare Node relay ${b.toFixed(1)}  ratio ${(b / d).toFixed(2)}x of direct (ceiling of one extra Node hop)${vigilVsRelay}`);
      }
    }
  } finally {
    console.log('\n' + summary.join('\n'));
    relay.close();
    await tg.stop();
    await db.stop();
    fs.rmSync(base, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
