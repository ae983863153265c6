/**
 * gateway.workers: pgbench -S through `vigil serve` with 1 worker (one process, as before) and with N
 * cluster workers, against pgbouncer (client TLS verify-full with alice's certificate, auth_type = cert) on the same PostgreSQL 15, alternating in one run so that machine
 * noise hits all alike. Prints TPS per route (median over rounds), the ratios, and CPU per transaction
 * of each route's processes from /proc (vigil: primary + workers; pgbouncer: its one process).
 *
 *   npx tsx bench/workers.ts [-- --seconds 10 --rounds 3 --clients 16 --workers 1,2 --mode simple]
 *
 * On a machine with fewer cores than pgbench + PostgreSQL + gateway processes need, more workers mostly
 * add IPC (each event crosses to the primary's writer): read the CPU per transaction, not only TPS.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startPostgres, PASSWORDS } from '../test/support/postgres.ts';
import { startGatewayProcess, type GatewayProcess } from '../test/support/gateway-process.ts';
import { tempDir } from '../test/support/tmp.ts';
import { median } from './stats.ts';
import { pgbench, startPgbouncer, type PgbouncerHandle } from './pg-routes.ts';
import { cpuOf } from './proc-cpu.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    clients: { type: 'string', default: '16' },
    workers: { type: 'string', default: '1,2' },
    mode: { type: 'string', default: 'simple' },
    scale: { type: 'string', default: '5' },
  },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const CLIENTS = Number(values.clients);
const WORKERS = values.workers!.split(',').map(Number);
interface Route {
  name: string;
  conn: string;
  /** CPU counter of the route's processes (µs). */
  cpu(): number;
  /** Of which in the main process (vigil: the primary, with the audit writer). */
  mainCpu(): number;
}

async function main() {
  const base = tempDir('vigil-bench-workers-');
  console.log(`starting PostgreSQL 15, pgbouncer and vigil serve with workers ${WORKERS.join(', ')}…`);
  const pg = await startPostgres({ conf: ['max_connections = 200', 'shared_buffers = 256MB'] });
  pg.psql('ALTER DATABASE app OWNER TO scram_user');
  const secret = path.join(base, 'scram.pass');
  fs.writeFileSync(secret, PASSWORDS.scram_user, { mode: 0o600 });
  let bouncer: PgbouncerHandle | undefined;
  const gateways: GatewayProcess[] = [];
  try {
    const direct = `host=127.0.0.1 port=${pg.port} dbname=app user=scram_user password=${PASSWORDS.scram_user} sslmode=require`;
    await pgbench(direct, ['-i', '-q', '-s', values.scale!]);
    const routes: Route[] = [];
    for (const w of WORKERS) {
      const dir = path.join(base, `w${w}`);
      fs.mkdirSync(dir);
      const gp = await startGatewayProcess(
        {
          log: { level: 'info' },
          ssh: { enabled: false },
          mysql: { enabled: false },
          gateway: { workers: w, max_unauthenticated: 256 },
          targets: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'scram_user', password: { file: secret } }],
          roles: [{ name: 'dba', targets: ['pg'] }],
        },
        dir,
        { issue: { user: 'alice', roles: ['dba'], ttlMs: 6 * 3600_000 } },
      );
      gateways.push(gp);
      const c = gp.issued!;
      routes.push({ name: `vigil-w${w}`, conn: `host=127.0.0.1 port=${gp.ports.postgres} dbname=pg user=alice sslmode=verify-full sslrootcert=${c.ca} sslcert=${c.crt} sslkey=${c.key}`, cpu: () => cpuOf(gp.pid, true), mainCpu: () => cpuOf(gp.pid, false) });
    }
    // pgbouncer with the client TLS vigil has: the first gateway's server certificate (checked with
    // verify-full), alice's certificate from its CA presented, verified and mapped to the user (auth_type = cert).
    const ca = path.join(base, `w${WORKERS[0]}`, 'data', 'ca'); // startGatewayProcess: data_dir is <dir>/data
    const read = (f: string) => fs.readFileSync(path.join(ca, f), 'utf8');
    const b = (bouncer = await startPgbouncer(pg, path.join(base, 'pgbouncer'), { cert: read('server.crt'), key: read('server.key'), ca: read('ca.crt'), user: 'alice' }));
    const c0 = gateways[0].issued!;
    routes.unshift({ name: 'pgbouncer', conn: `host=127.0.0.1 port=${b.port} dbname=pg user=alice sslmode=verify-full sslrootcert=${c0.ca} sslcert=${c0.crt} sslkey=${c0.key}`, cpu: () => cpuOf(b.pid, false), mainCpu: () => cpuOf(b.pid, false) });
    const args = ['-n', '-S', '-M', values.mode!, '-c', String(CLIENTS), '-j', String(Math.min(CLIENTS, 4)), '-T', String(SECONDS)];
    // Warm-up: first logins and JIT on every route, unmeasured.
    for (const r of routes) await pgbench(r.conn, [...args.slice(0, -1), '2']).catch(() => {});
    const results = new Map<string, { tps: number; cpuPerTx: number; mainPerTx: number }[]>();
    for (let round = 1; round <= ROUNDS; round++) {
      for (const r of round % 2 ? routes : [...routes].reverse()) {
        const cpu0 = r.cpu();
        const main0 = r.mainCpu();
        const res = await pgbench(r.conn, args).catch((e: Error) => (console.log(`round ${round} ${r.name}: ${e.message.split('\n')[0]}`), undefined));
        if (!res) continue;
        const cpuPerTx = (r.cpu() - cpu0) / (res.tps * SECONDS);
        const mainPerTx = (r.mainCpu() - main0) / (res.tps * SECONDS);
        results.set(r.name, [...(results.get(r.name) ?? []), { tps: res.tps, cpuPerTx, mainPerTx }]);
        console.log(`round ${round} ${r.name.padEnd(10)} tps ${res.tps.toFixed(0).padStart(7)}  cpu ${cpuPerTx.toFixed(0).padStart(4)} µs/tx (main process ${mainPerTx.toFixed(0)})`);
      }
    }
    const tps = (n: string) => median((results.get(n) ?? []).map((x) => x.tps));
    const cpu = (n: string) => median((results.get(n) ?? []).map((x) => x.cpuPerTx));
    const main = (n: string) => median((results.get(n) ?? []).map((x) => x.mainPerTx));
    console.log(`\npgbench -S -M ${values.mode} -c ${CLIENTS}, ${SECONDS} s x ${ROUNDS} rounds (medians)`);
    console.log('route         tps   cpu µs/tx  (main)  vs vigil-w1  vs pgbouncer');
    for (const r of routes) {
      const w1 = tps(`vigil-w${WORKERS[0]}`);
      console.log(`${r.name.padEnd(10)} ${tps(r.name).toFixed(0).padStart(7)} ${cpu(r.name).toFixed(0).padStart(10)} ${main(r.name).toFixed(0).padStart(7)} ${(tps(r.name) / w1).toFixed(2).padStart(11)}x ${(tps(r.name) / tps('pgbouncer')).toFixed(2).padStart(11)}x`);
    }
  } finally {
    for (const g of gateways) await g.stop();
    bouncer?.stop();
    await pg.stop();
    fs.rmSync(base, { recursive: true, force: true });
  }
}

await main();
