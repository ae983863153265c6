/**
 * pgbench -S (select-only) through three routes to the same real PostgreSQL 15, alternating in one run
 * so machine noise hits all alike:
 *
 *   direct     pgbench → PostgreSQL (TLS)
 *   pgbouncer  pgbench → pgbouncer, session pooling → PostgreSQL; client TLS as for vigil: pgbench checks
 *              the server certificate (sslmode=verify-full, the gateway's own certificate) and presents
 *              alice's client certificate, pgbouncer verifies it (client_tls_sslmode = verify-full),
 *              maps its CN to the user (auth_type = cert) and injects the backend credential
 *   vigil      pgbench → vigil gateway in-process (TLS + client certificate, every statement recorded as
 *              a db.query audit event) → PostgreSQL
 *
 * For each protocol mode (-M simple, extended, prepared) and client count (-c 16, -c 1) it prints TPS,
 * latency and CPU µs per transaction per route, medians over rounds and the ratios. CPU: the routes
 * served by this process (tlsrelay, vigil) from process.cpuUsage, pgbouncer from /proc/<pid>/stat;
 * CPU per transaction stays meaningful on a loaded machine where TPS does not. Targets (issue 22,
 * one worker): vigil CPU/tx <= 1.15x tlsrelay's and <= 2.0x pgbouncer's; TPS >= 0.95x tlsrelay's and
 * >= 0.75x pgbouncer's; added p50 latency at 1 client <= 0.05 ms (p50 from pgbench's per-transaction log).
 *
 *   tlsrelay   pgbench → the cheapest relay shaped like vigil, in this process: it answers SSLRequest,
 *              terminates the client's TLS with the gateway's own SecureContext and options (client
 *              certificate requested and required), then pipes plaintext to PostgreSQL — no parsing, no
 *              login of its own (pgbench authenticates to PostgreSQL through it), no recording. What any
 *              Node gateway that must see the traffic costs on this machine: the ceiling for vigil.
 *   vigil-plain (optional, --routes) the same without client TLS (development target, token as password)
 *
 *   npm run bench:postgres [-- --seconds 5 --rounds 2 --scale 5 --modes simple,extended,prepared --clients 16,1 --warmup 2]
 *   (--rate TPS: pgbench -R, every route at the same offered rate — a route that runs slower leaves the
 *   client and the server idle between transactions and pays more per transaction in wake-ups, so CPU per
 *   transaction is only comparable at equal rates; --warmup: seconds of unmeasured load per mode on each route this process serves before round 1, so
 *   that the first round does not measure JIT compilation and first logins)
 *   VIGIL_BENCH_PROFILE=1 … writes a CPU profile of this process for every vigil and tlsrelay run, as
 *   <dir>/<route>-<mode>-c<clients>-r<round>.cpuprofile (dir: VIGIL_BENCH_PROFILE_DIR, default cwd); open
 *   in Chrome DevTools or summarize self time per function with bench/cpuprofile-summary.ts. Profiling
 *   slows the gateway: read the attribution from such runs, the ratios from runs without it.
 *   Each vigil run's CPU includes indexing what it recorded (the search-index thread catches up before
 *   CPU is read) and is split into the main thread and the other threads (the index follower, the libuv
 *   pool writing the log, GC helpers). VIGIL_BENCH_NO_INDEX=1 runs the gateway without the local search
 *   index (audit.index.enabled: false), to see its share. VIGIL_BENCH_THREADS=1 prints each in-process
 *   run's CPU per transaction thread by thread (user+sys; the index follower is the worker thread with
 *   the most). VIGIL_BENCH_KEEP_AUDIT=DIR copies the gateway's audit log there at the end, for
 *   bench/index-cost.ts (the search index's CPU per record on real pgbench records).
 *   CPU profiles sample by wall time: a socket write that wakes pgbench or PostgreSQL on the same core is
 *   charged for the switch. For CPU by function, use `perf record` on the process (NODE_OPTIONS=--perf-basic-prof).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Session } from 'node:inspector/promises';
import net from 'node:net';
import tls from 'node:tls';
import { startPostgres, PASSWORDS, type PostgresHandle } from '../test/support/postgres.ts';
import { startTestGateway, type TestGateway } from '../test/support/gateway.ts';
import { tempDir } from '../test/support/tmp.ts';
import { median } from './stats.ts';
import { pgbench, startPgbouncer, type PgbouncerHandle } from './pg-routes.ts';
import { cpuOf, threadSplit, threadTimes } from './proc-cpu.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '2' },
    scale: { type: 'string', default: '5' },
    modes: { type: 'string', default: 'simple,extended,prepared' },
    clients: { type: 'string', default: '16,1' },
    routes: { type: 'string', default: 'direct,pgbouncer,tlsrelay,vigil' },
    warmup: { type: 'string', default: '2' },
    rate: { type: 'string' },
  },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const MODES = values.modes!.split(',');
const CLIENTS = values.clients!.split(',').map(Number);
const ROUTES = values.routes!.split(',') as RouteName[];
/** pgbench -R: the same offered load on every route (CPU per transaction compared at equal rates). */
const RATE = values.rate;
/** VIGIL_BENCH_THREADS=1: after each in-process run, its CPU per transaction thread by thread (user/sys). */
const THREADS = process.env.VIGIL_BENCH_THREADS === '1';
function printThreads(route: string, before: Map<string, { user: number; sys: number }>, txs: number): void {
  const rows: string[] = [];
  for (const [k, t] of threadTimes()) {
    const b = before.get(k) ?? { user: 0, sys: 0 };
    const user = (t.user - b.user) / txs;
    const sys = (t.sys - b.sys) / txs;
    if (user + sys >= 0.5) rows.push(`${k} ${user.toFixed(1)}+${sys.toFixed(1)}`);
  }
  console.log(`  ${route} µs/tx by thread (user+sys): ${rows.join(', ')}`);
}
const PROFILE_DIR = process.env.VIGIL_BENCH_PROFILE === '1' ? path.resolve(process.env.VIGIL_BENCH_PROFILE_DIR ?? '.') : undefined;

/** CPU profile of this process (the in-process gateway) around one run; a no-op unless profiling. */
async function profiled<T>(file: string | undefined, run: () => Promise<T>): Promise<T> {
  if (!file) return run();
  const inspector = new Session();
  inspector.connect();
  await inspector.post('Profiler.enable');
  await inspector.post('Profiler.setSamplingInterval', { interval: 100 });
  await inspector.post('Profiler.start');
  try {
    return await run();
  } finally {
    const { profile } = await inspector.post('Profiler.stop');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(profile));
    inspector.disconnect();
  }
}

type RouteName = 'direct' | 'pgbouncer' | 'tlsrelay' | 'vigil' | 'vigil-plain';
/** Routes served by this process, whose CPU per transaction the bench measures. */
const inProcess = (r: RouteName) => r === 'tlsrelay' || r.startsWith('vigil');
interface Route {
  name: RouteName;
  conn: string;
}
interface Result {
  tps: number;
  latAvg: number;
  p50?: number;
  /** CPU µs per transaction of the route's middle process (gateway, relay, pgbouncer), and the part of it spent in the kernel (in-process routes only). */
  cpuPerTx?: number;
  sysPerTx?: number;
  /** CPU of the threads other than the main one (index follower, libuv pool, GC helpers), µs per transaction. */
  offThreadPerTx?: number;
  /** Records the search index had not caught up with when the run ended (indexed before CPU is read). */
  indexLag?: number;
}

/** SSLRequest and GSSENCRequest codes (8-byte untyped packets before the startup message). */
const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;

/**
 * The TLS-terminating relay (route tlsrelay): the work vigil cannot avoid and nothing else. Negotiates
 * like vigil (GSSENC refused with 'N', SSLRequest answered 'S', TLS with the same SecureContext, client
 * certificate requested and a connection without one closed), then one write per read each way.
 */
async function startTlsRelay(pgPort: number, context: tls.SecureContext): Promise<{ port: number; close(): void }> {
  const server = net.createServer((raw) => {
    raw.setNoDelay(true);
    raw.on('error', () => raw.destroy());
    let pending = Buffer.alloc(0);
    const onRaw = (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 8) {
        const code = pending.readUInt32BE(4);
        pending = pending.subarray(8);
        if (code === GSSENC_REQUEST) {
          raw.write('N');
          continue;
        }
        raw.off('data', onRaw);
        if (code !== SSL_REQUEST || pending.length > 0) return raw.destroy();
        raw.pause();
        raw.write('S');
        const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context, requestCert: true, rejectUnauthorized: false });
        secure.on('error', () => raw.destroy());
        secure.once('secure', () => {
          if (!secure.getPeerCertificate().raw) return secure.destroy();
          secure.setNoDelay(true);
          const backend = net.connect({ host: '127.0.0.1', port: pgPort, noDelay: true });
          backend.on('error', () => secure.destroy());
          secure.on('close', () => backend.destroy());
          backend.on('close', () => secure.destroy());
          secure.pipe(backend).pipe(secure);
        });
        raw.resume();
        return;
      }
    };
    raw.on('data', onRaw);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

async function main() {
  const base = tempDir('vigil-bench-pg-');
  console.log(`starting PostgreSQL 15, pgbouncer ${ROUTES.includes('pgbouncer') ? 'yes' : 'no'} and the vigil gateway…`);
  const pg = await startPostgres({ conf: ['max_connections = 200', 'shared_buffers = 256MB'] });
  pg.psql('ALTER DATABASE app OWNER TO scram_user');
  const secret = path.join(base, 'scram.pass');
  fs.writeFileSync(secret, PASSWORDS.scram_user, { mode: 0o600 });
  const tg: TestGateway = await startTestGateway(
    {
      log: { level: 'warn' },
      gateway: { max_unauthenticated: 256 },
      // VIGIL_BENCH_NO_INDEX=1: without the local search-index follower, to see its share of the CPU.
      ...(process.env.VIGIL_BENCH_NO_INDEX === '1' ? { audit: { index: { enabled: false } } } : {}),
      targets: [
        { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'scram_user', password: { file: secret } },
        // Optional route (--routes …,vigil-plain) to separate the cost of client TLS from the rest.
        { name: 'pg-plain', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'scram_user', password: { file: secret }, allow_plaintext: true },
      ],
      roles: [{ name: 'dba', targets: ['pg', 'pg-plain'] }],
    },
    base,
  );
  const alice = await tg.issue({ user: 'alice', roles: ['dba'], ttlMs: 6 * 3600_000 });
  const gwTls = tg.gw.services.identity.tls();
  const bouncer = ROUTES.includes('pgbouncer') ? await startPgbouncer(pg, path.join(base, 'pgbouncer'), { cert: gwTls.cert, key: gwTls.key, ca: gwTls.ca, user: 'alice' }) : undefined;
  const relay = ROUTES.includes('tlsrelay') ? await startTlsRelay(pg.port, tg.gw.services.identity.tlsContext()) : undefined;
  try {
    await run(pg, tg, alice, bouncer, relay);
  } finally {
    relay?.close();
    bouncer?.stop();
    await tg.stop();
    await pg.stop();
    if (process.env.VIGIL_BENCH_KEEP_AUDIT) fs.cpSync(path.join(tg.dataDir, 'audit'), process.env.VIGIL_BENCH_KEEP_AUDIT, { recursive: true });
    fs.rmSync(base, { recursive: true, force: true });
  }
}

async function run(pg: PostgresHandle, tg: TestGateway, alice: Awaited<ReturnType<TestGateway['issue']>>, bouncer: PgbouncerHandle | undefined, relay: { port: number } | undefined) {
  const base = tempDir('vigil-bench-pgrun-');

  const routes: Route[] = [];
  const direct = `host=127.0.0.1 port=${pg.port} dbname=app user=scram_user password=${PASSWORDS.scram_user} sslmode=require`;
  if (ROUTES.includes('direct')) routes.push({ name: 'direct', conn: direct });
  // The same client TLS on every route but direct (gateway certificate verified, alice's certificate
  // presented). pgbouncer logs alice in by her certificate; through the relay PostgreSQL authenticates
  // pgbench itself.
  const clientTls = `sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}`;
  if (bouncer) routes.push({ name: 'pgbouncer', conn: `host=127.0.0.1 port=${bouncer.port} dbname=pg user=alice ${clientTls}` });
  if (relay) routes.push({ name: 'tlsrelay', conn: `host=127.0.0.1 port=${relay.port} dbname=app user=scram_user password=${PASSWORDS.scram_user} ${clientTls}` });
  if (ROUTES.includes('vigil-plain')) {
    const { token } = await tg.gw.services.identity.issueToken({ user: 'alice', roles: ['dba'], ttlMs: 6 * 3600_000 });
    routes.push({ name: 'vigil-plain', conn: `host=127.0.0.1 port=${tg.ports.postgres} dbname=pg-plain user=alice sslmode=disable password=${token}` });
  }
  if (ROUTES.includes('vigil')) {
    routes.push({ name: 'vigil', conn: `host=127.0.0.1 port=${tg.ports.postgres} dbname=pg user=alice ${clientTls}` });
  }

  console.log(`pgbench -i -s ${values.scale}`);
  await pgbench(direct, ['-i', '-q', '-s', values.scale!]);
  let queries = 0;
  tg.gw.services.events.subscribe((e) => {
    if (e.type === 'db.query') queries++;
  });
  const warmup = Number(values.warmup);
  if (warmup > 0) {
    for (const mode of MODES) {
      for (const r of routes.filter((x) => inProcess(x.name) || x.name === 'pgbouncer')) {
        const clients = Math.max(...CLIENTS);
        const args = ['-S', '-n', '-M', mode, '-c', String(clients), '-j', String(Math.min(clients, 2)), '-T', String(warmup)];
        await pgbench(r.conn, args).catch((e: Error) => console.log(`warm-up ${mode} ${r.name}: ${e.message.split('\n')[0]}`));
      }
    }
    queries = 0;
  }

  const results = new Map<string, Result[]>();
  const logDir = path.join(base, 'txlog');
  fs.mkdirSync(logDir);
  for (let round = 1; round <= ROUNDS; round++) {
    for (const mode of MODES) {
      for (const clients of CLIENTS) {
        for (const r of routes) {
          const args = ['-S', '-n', '-M', mode, '-c', String(clients), '-j', String(Math.min(clients, 2)), '-T', String(SECONDS), ...(RATE ? ['-R', RATE] : [])];
          const cpu0 = process.cpuUsage();
          const threads0 = threadSplit();
          const times0 = THREADS ? threadTimes() : undefined;
          const proc0 = r.name === 'pgbouncer' && bouncer ? cpuOf(bouncer.pid) : 0;
          const profile = PROFILE_DIR && inProcess(r.name) ? path.join(PROFILE_DIR, `${r.name}-${mode}-c${clients}-r${round}.cpuprofile`) : undefined;
          const res: Result | undefined = await profiled(profile, () => pgbench(r.conn, args, clients === 1 ? logDir : undefined)).catch((e: Error) => {
            // One failed run (a loaded machine, a pgbench hiccup) leaves a gap, not a broken table.
            console.log(`round ${round} ${mode} -c ${clients} ${r.name}: ${e.message.split('\n')[0]}`);
            return undefined;
          });
          if (!res) continue;
          if (r.name.startsWith('vigil')) {
            // The work a run leaves behind is part of its cost: the last group commit, and the records the
            // search-index thread has not indexed yet (it lags by up to its interval, more under load).
            await new Promise((resolve) => setTimeout(resolve, 100));
            const index = tg.gw.services.auditIndex;
            if (index) {
              res.indexLag = index.lag().lag;
              await index.catchUpNow();
              await index.catchUpNow();
            }
          }
          if (inProcess(r.name)) {
            // The gateway (or relay) runs in this process: its CPU per transaction, independent of machine load.
            const cpu = process.cpuUsage(cpu0);
            res.cpuPerTx = (cpu.user + cpu.system) / (res.tps * SECONDS);
            res.sysPerTx = cpu.system / (res.tps * SECONDS);
            res.offThreadPerTx = (threadSplit().other - threads0.other) / (res.tps * SECONDS);
            if (times0) printThreads(r.name, times0, res.tps * SECONDS);
          } else if (r.name === 'pgbouncer' && bouncer) {
            // An external process: utime + stime from /proc (clock-tick resolution, ample over seconds).
            res.cpuPerTx = (cpuOf(bouncer.pid) - proc0) / (res.tps * SECONDS);
          }
          const key = `${mode}|${clients}|${r.name}`;
          results.set(key, [...(results.get(key) ?? []), res]);
          console.log(`round ${round} ${mode.padEnd(8)} -c ${String(clients).padStart(2)} ${r.name.padEnd(9)} tps ${res.tps.toFixed(0).padStart(7)}  lat avg ${res.latAvg.toFixed(3)} ms${res.p50 !== undefined ? `  p50 ${res.p50.toFixed(3)} ms` : ''}${res.cpuPerTx !== undefined ? `  cpu ${res.cpuPerTx.toFixed(0)} µs/tx${res.sysPerTx !== undefined ? ` (sys ${res.sysPerTx.toFixed(0)}, off the main thread ${res.offThreadPerTx!.toFixed(0)})` : ''}` : ''}${res.indexLag !== undefined ? `  index lag ${res.indexLag}` : ''}`);
        }
      }
    }
  }

  console.log('\nmedians over rounds');
  console.log('mode      clients  route        tps  lat avg      p50  vs direct  vs pgbouncer  vs tlsrelay  cpu µs/tx  added p50');
  for (const mode of MODES) {
    for (const clients of CLIENTS) {
      const get = (n: RouteName) => {
        const rs = results.get(`${mode}|${clients}|${n}`);
        return rs && { tps: median(rs.map((x) => x.tps)), lat: median(rs.map((x) => x.latAvg)), p50: rs[0].p50 === undefined ? undefined : median(rs.map((x) => x.p50!)), cpu: rs[0].cpuPerTx === undefined ? undefined : median(rs.map((x) => x.cpuPerTx!)) };
      };
      const d = get('direct');
      const b = get('pgbouncer');
      const t = get('tlsrelay');
      for (const r of routes) {
        const m = get(r.name);
        if (!m) continue;
        const vs = (x: { tps: number } | undefined) => (x ? (m.tps / x.tps).toFixed(2) + 'x' : '-');
        const added = d && m.p50 !== undefined && d.p50 !== undefined ? `${(m.p50 - d.p50).toFixed(3)} ms` : '';
        const cpu = m.cpu !== undefined ? m.cpu.toFixed(0) : '-';
        console.log(`${mode.padEnd(9)} ${String(clients).padStart(7)}  ${r.name.padEnd(9)} ${m.tps.toFixed(0).padStart(7)}  ${m.lat.toFixed(3).padStart(7)}  ${m.p50 !== undefined ? m.p50.toFixed(3).padStart(7) : '      -'}  ${vs(d).padStart(9)}  ${vs(b).padStart(12)}  ${vs(t).padStart(11)}  ${cpu.padStart(9)}  ${added}`);
      }
      const v = get('vigil');
      if (v) {
        // The issue-22 targets, vigil against the routes measured in the same run: ratio (target, mark).
        const parts: string[] = [];
        const ratio = (label: string, x: number | undefined, y: number | undefined, target: number, atMost: boolean) => {
          if (x === undefined || y === undefined) return;
          const r = x / y;
          parts.push(`${label} ${r.toFixed(2)}x (${atMost ? '<=' : '>='} ${target.toFixed(2)} ${(atMost ? r <= target : r >= target) ? 'met' : 'MISSED'})`);
        };
        ratio('cpu/tlsrelay', v.cpu, t?.cpu, 1.15, true);
        ratio('cpu/pgbouncer', v.cpu, b?.cpu, 2.0, true);
        ratio('tps/tlsrelay', v.tps, t?.tps, 0.95, false);
        ratio('tps/pgbouncer', v.tps, b?.tps, 0.75, false);
        if (clients === 1 && v.p50 !== undefined) {
          const added = (x: { p50?: number } | undefined, label: string) => (x?.p50 !== undefined ? `  added p50 vs ${label} ${(v.p50! - x.p50).toFixed(3)} ms` : '');
          const vsDirect = d?.p50 !== undefined ? v.p50 - d.p50 : undefined;
          parts.push(`${added(d, 'direct')}${vsDirect !== undefined ? ` (<= 0.050 ${vsDirect <= 0.05 ? 'met' : 'MISSED'})` : ''}${added(t, 'tlsrelay')}${added(b, 'pgbouncer')}`.trim());
        }
        console.log(`${mode.padEnd(9)} ${String(clients).padStart(7)}  vigil: ${parts.join('  ')}`);
      }
    }
  }
  console.log(`\nvigil recorded ${queries} db.query events; CPU µs/tx: tlsrelay and vigil this process (cpuUsage), pgbouncer its process (/proc)`);
  console.log('targets (one worker): vigil cpu <= 1.15x tlsrelay and <= 2.0x pgbouncer, tps >= 0.95x tlsrelay and >= 0.75x pgbouncer, added p50 at -c 1 <= 0.05 ms');
  fs.rmSync(base, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
