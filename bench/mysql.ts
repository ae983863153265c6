/**
 * sysbench oltp_point_select and oltp_read_only against the same real MariaDB 10.11, alternating direct
 * and through vigil in one run so machine noise hits both alike:
 *
 *   direct  sysbench → MariaDB over TLS (sysbench --mysql-ssl=on; each direct run prints the TLS handshakes
 *           MariaDB accepted during it, as proof)
 *   vigil   sysbench → vigil gateway in-process (TLS + vigil client certificate, every statement and its
 *           parameters recorded as a db.query audit event in the hash-chained log) → MariaDB
 *   relay   sysbench → the cheapest possible Node TCP relay in this process (no parsing, no recording,
 *           TLS passed through end to end, so no cryptography in Node) → MariaDB: what one extra Node hop
 *           costs on this machine
 *   tlsrelay sysbench → a relay that, like vigil, terminates the client's TLS in Node (the gateway's own TLS
 *           context, client certificate requested, sysbench presenting the vigil certificate) and talks
 *           plaintext to MariaDB, otherwise a byte pipe → MariaDB: the ceiling for any proxy that must see
 *           the traffic (vigil has to decrypt it to record it)
 *
 * Prints TPS and latency per route and round, the gateway process's CPU per transaction for the routes it
 * serves (for vigil including indexing what the run recorded, and the part spent off the main thread:
 * the search-index follower, the libuv pool, GC helpers), medians and the vigil/direct ratio. Target:
 * >= 0.80x direct. VIGIL_BENCH_NO_INDEX=1: the gateway without its local search index.
 *
 *   npm run bench:mysql [-- --seconds 10 --rounds 3 --threads 4 --tests oltp_point_select,oltp_read_only --routes direct,vigil,relay,tlsrelay --warmup 2]
 *   (--warmup: seconds of unmeasured sysbench load per test on each route this process serves before round 1,
 *   so round 1 does not measure V8 compiling the gateway's hot paths; 0 to skip)
 */
import { parseArgs } from 'node:util';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import { startMariadb } from '../test/support/mariadb.ts';
import { startTestGateway } from '../test/support/gateway.ts';
import { tempDir } from '../test/support/tmp.ts';
import { sysbench, sysbenchCertDir, type SysbenchRun } from '../test/mysql/sysbench.ts';
import { PacketFramer, encodePacket } from '../proxies/mysql/framing.ts';
import { CLIENT } from '../proxies/mysql/wire.ts';
import { median } from './stats.ts';
import { threadSplit } from './proc-cpu.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '4' },
    'table-size': { type: 'string', default: '10000' },
    tests: { type: 'string', default: 'oltp_point_select,oltp_read_only' },
    routes: { type: 'string', default: 'direct,vigil,relay,tlsrelay' },
    warmup: { type: 'string', default: '2' },
  },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const THREADS = Number(values.threads);
const TABLE_SIZE = Number(values['table-size']);
const TESTS = values.tests!.split(',');
const WARMUP = Number(values.warmup);
const ALL_ROUTES = ['direct', 'vigil', 'relay', 'tlsrelay'] as const;
type Route = (typeof ALL_ROUTES)[number];
const ROUTES = values.routes!.split(',') as Route[];
if (!ROUTES.includes('direct') || ROUTES.some((r) => !ALL_ROUTES.includes(r))) throw new Error('--routes: direct plus any of vigil, relay, tlsrelay');

/** A bare byte pipe: one write per read each way, nothing else. TLS passes through it end to end (the
 *  client's TLS session is with MariaDB), so it pays no cryptography at all. */
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

/**
 * The cheapest relay shaped like vigil: it terminates the client's TLS itself with the same TLS options
 * as vigil (the gateway's cached SecureContext, a client certificate requested) and talks plaintext to
 * MariaDB, as vigil does with a `tls: false` target. During login it only rewrites what terminating TLS
 * requires (the client's CLIENT_SSL bit and the sequence ids shifted by the SSLRequest the server never
 * sees) and what keeps the protocol the one vigil speaks: MariaDB's extended capabilities are cleared
 * from the greeting and the reply (vigil offers only extended type info, which adds a field to column
 * definitions and changes nothing else; not metadata caching, so through vigil MariaDB sends column
 * definitions with every result set rather than letting the client cache them). After the server's OK
 * it is a byte pipe: no parsing, no recording. This is the ceiling for vigil on this machine; the bare
 * relay above leaves out the TLS work vigil cannot avoid.
 */
async function startTlsTerminatingRelay(port: number, context: tls.SecureContext): Promise<{ port: number; close: () => void }> {
  const server = net.createServer((raw) => {
    raw.setNoDelay(true);
    const backend = net.connect({ host: '127.0.0.1', port, noDelay: true });
    let client: net.Socket = raw;
    const fail = () => {
      raw.destroy();
      backend.destroy();
    };
    raw.on('error', fail);
    backend.on('error', fail);
    const fromServer = new PacketFramer(1 << 24);
    const fromClient = new PacketFramer(1 << 24);
    let tlsUp = false;
    const onServer = (chunk: Buffer) =>
      fromServer.push(chunk, (p) => {
        if (!tlsUp) p.payload.fill(0, mariadbCapsOffset(p.payload), mariadbCapsOffset(p.payload) + 4);
        // Login replies one sequence id later (the client counted its SSLRequest).
        client.write(encodePacket(tlsUp ? p.seq + 1 : p.seq, p.payload));
        if (tlsUp && (p.payload[0] === 0x00 || p.payload[0] === 0xff)) {
          backend.off('data', onServer);
          client.off('data', onClient);
          client.pipe(backend).pipe(client);
        }
      });
    const onClient = (chunk: Buffer) =>
      fromClient.push(chunk, (p) => {
        if (!tlsUp) {
          // SSLRequest: not forwarded; TLS with the client starts here.
          tlsUp = true;
          raw.off('data', onClient);
          raw.pause();
          const rest = fromClient.takeRemainder();
          if (rest.length > 0) raw.unshift(rest);
          const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context, requestCert: true, rejectUnauthorized: false });
          secure.on('error', fail);
          secure.on('data', onClient);
          client = secure;
          return;
        }
        const payload = Buffer.from(p.payload);
        if (p.seq === 2) {
          // HandshakeResponse: no TLS to the server, no MariaDB extended capabilities (bytes 28..31).
          payload[1] = payload[1]! & ~(CLIENT.SSL >> 8);
          payload.fill(0, 28, 32);
        }
        backend.write(encodePacket(p.seq - 1, payload));
      });
    backend.on('data', onServer);
    raw.on('data', onClient);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

/** Where a MariaDB greeting keeps its extended capabilities: the last 4 of the 10 reserved bytes. */
function mariadbCapsOffset(greeting: Buffer): number {
  // protocol, version\0, connection id 4, scramble 8, filler 1, caps 2, charset 1, status 2, caps 2, auth length 1, reserved 6
  return greeting.indexOf(0, 1) + 1 + 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 6;
}

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
      ...(process.env.VIGIL_BENCH_NO_INDEX === '1' ? { audit: { index: { enabled: false } } } : {}),
    },
    base,
  );
  let recorded = 0;
  tg.gw.services.events.subscribe((e) => {
    if (e.type === 'db.query') recorded++;
    // The test gateway keeps every event in memory for its tests; a gateway does not. Over a bench run
    // that would be hundreds of thousands of objects for the garbage collector to trace.
    if (tg.events.length >= 10_000) tg.events.length = 0;
  });
  const creds = await tg.issue({ user: 'bench', roles: ['bench'], ttlMs: 6 * 3_600_000 });
  const vigilCerts = sysbenchCertDir(creds, base);
  const relay = await startBareRelay(db.port);
  const tlsRelay = await startTlsTerminatingRelay(db.port, tg.gw.services.identity.tlsContext());
  const routes = {
    direct: { port: db.port, user: 'sb', password: 'bench-pw', certDir: db.tlsDir! },
    vigil: { port: tg.ports.mysql!, user: 'sb', certDir: vigilCerts },
    relay: { port: relay.port, user: 'sb', password: 'bench-pw', certDir: db.tlsDir! },
    tlsrelay: { port: tlsRelay.port, user: 'sb', password: 'bench-pw', certDir: vigilCerts },
  };
  // Root's queries go over the Unix socket without TLS, so only sysbench's connections count here.
  const tlsAccepts = async () => Number((await db.query("SHOW GLOBAL STATUS LIKE 'Ssl_finished_accepts'"))[0]![1]);
  console.log(`MariaDB ${(await db.query('SELECT VERSION()'))[0]![0]}, sysbench threads=${THREADS}, ${SECONDS}s x ${ROUNDS} rounds, table-size=${TABLE_SIZE}`);
  await sysbench({ test: 'oltp_read_only', command: 'prepare', db: 'sbtest', tableSize: TABLE_SIZE, ...routes.direct });

  const summary: string[] = [];
  try {
    for (const test of TESTS) {
      const res: Record<Route, SysbenchRun[]> = { direct: [], vigil: [], relay: [], tlsrelay: [] };
      const cpuPerTx: Record<Route, number[]> = { direct: [], vigil: [], relay: [], tlsrelay: [] };
      if (WARMUP > 0) {
        for (const route of ROUTES) {
          if (route !== 'direct') await sysbench({ test, command: 'run', db: 'sbtest', threads: THREADS, time: WARMUP, tableSize: TABLE_SIZE, ...routes[route] });
        }
      }
      for (let r = 0; r < ROUNDS; r++) {
        for (const route of r % 2 === 0 ? ROUTES : [...ROUTES].reverse()) {
          const before = recorded;
          const tls0 = route === 'direct' ? await tlsAccepts() : 0;
          const cpu0 = process.cpuUsage();
          const threads0 = threadSplit();
          const loop = monitorEventLoopDelay({ resolution: 5 });
          loop.enable();
          const t0 = performance.now();
          const run = await sysbench({ test, command: 'run', db: 'sbtest', threads: THREADS, time: SECONDS, tableSize: TABLE_SIZE, ...routes[route] });
          res[route].push(run);
          loop.disable();
          let lag = '';
          if (route === 'vigil' && tg.gw.services.auditIndex) {
            // What the run left to do is part of its cost: the last group commit and indexing its records.
            await new Promise((resolve) => setTimeout(resolve, 100));
            lag = `  index lag ${tg.gw.services.auditIndex.lag().lag}`;
            await tg.gw.services.auditIndex.catchUpNow();
            await tg.gw.services.auditIndex.catchUpNow();
          }
          const cpu = process.cpuUsage(cpu0);
          const offThread = (threadSplit().other - threads0.other) / (run.tps * SECONDS);
          const cpuMs = (cpu.user + cpu.system) / 1000;
          const cpuPct = (cpuMs / (performance.now() - t0)) * 100;
          // CPU per transaction survives machine contention better than TPS does.
          const perTx = (cpuMs * 1000) / (run.tps * SECONDS);
          cpuPerTx[route].push(perTx);
          // Event-loop delay for every route this process serves: on a busy 2-core machine part of it is the
          // process waiting for a core, which the relays show too.
          const usage = `cpu ${cpuPct.toFixed(0)}% (${perTx.toFixed(0)} µs/tx, ${offThread.toFixed(0)} off the main thread${lag})  event-loop delay p99 ${(loop.percentile(99) / 1e6).toFixed(1)} ms`;
          const direct = route === 'direct' ? `  TLS handshakes at MariaDB: ${(await tlsAccepts()) - tls0}` : '';
          const rec = route === 'vigil' ? `  db.query events: ${recorded - before}  gateway ${usage}` : route === 'direct' ? direct : `  ${route} ${usage}`;
          console.log(`${test.padEnd(18)} round ${r + 1} ${route.padEnd(8)} tps ${run.tps.toFixed(1).padStart(9)}  qps ${run.qps.toFixed(0).padStart(7)}  avg ${run.latencyAvgMs.toFixed(2)} ms  p95 ${run.latencyP95Ms.toFixed(2)} ms${rec}`);
        }
      }
      const d = median(res.direct.map((x) => x.tps));
      const dl = median(res.direct.map((x) => x.latencyAvgMs));
      if (res.vigil.length > 0) {
        const v = median(res.vigil.map((x) => x.tps));
        const vl = median(res.vigil.map((x) => x.latencyAvgMs));
        summary.push(`${test.padEnd(18)} median tps direct ${d.toFixed(1)}  vigil ${v.toFixed(1)}  ratio ${(v / d).toFixed(2)}x (target >= 0.80x)  avg latency ${dl.toFixed(2)} → ${vl.toFixed(2)} ms`);
      }
      const ceilings: [Route, string][] = [
        ['relay', 'bare Node relay (TLS passed through, no crypto in Node)'],
        ['tlsrelay', 'TLS-terminating Node relay (TLS ends in Node as with vigil)'],
      ];
      for (const [route, label] of ceilings) {
        if (res[route].length === 0) continue;
        const b = median(res[route].map((x) => x.tps));
        const vs = res.vigil.length > 0 ? `  vigil/${route} ${(median(res.vigil.map((x) => x.tps)) / b).toFixed(2)}x` : '';
        summary.push(`${test.padEnd(18)} median tps ${label} ${b.toFixed(1)}  ratio ${(b / d).toFixed(2)}x of direct${vs}  cpu ${median(cpuPerTx[route]).toFixed(0)} µs/tx`);
      }
      if (res.vigil.length > 0) summary.push(`${test.padEnd(18)} vigil gateway cpu ${median(cpuPerTx.vigil).toFixed(0)} µs/tx (median)`);
    }
  } finally {
    console.log('\n' + summary.join('\n'));
    relay.close();
    tlsRelay.close();
    await tg.stop();
    await db.stop();
    fs.rmSync(base, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
