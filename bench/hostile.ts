/**
 * Added latency for an engineer while slow hostile clients hold the gateway's listeners (issue #16 item 4).
 *
 * One in-process gateway in front of a real PostgreSQL, MariaDB and sshd (test/support/hostile.ts). Three
 * real clients keep one session each: node-postgres and mysql2 running `SELECT 1`, and the stock OpenSSH
 * client running `cat` on the target (one line out, the same line back). Each round measures N round trips
 * of each client (interleaved) quiet, then again while a separate process (test/support/hostile-load.ts) keeps
 * --hostile slowloris connections open across the Postgres, MySQL and SSH listeners (one byte per second,
 * every phase, each one replaced as soon as a deadline cuts it). Prints p50/p99 per client and phase per
 * round, the medians over rounds, the added p99 (target < 50 ms), the load average, then a one-shot
 * 1,000-per-protocol run with gateway RSS growth and audit bytes.
 *
 *   npx tsx bench/hostile.ts [--rounds 5] [--samples 200] [--hostile 500] [--open-rate 100] [--scale 1000] [--phases LISTENER/PHASE,...]
 *
 * The deadlines are the shipped defaults; the unauthenticated caps are raised so the hostile connections are
 * really held. The attacker runs on the same machine (its TLS and SSH key exchanges compete for the CPU).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { startAllWorld, auditBytes, hostileLoad, type AllWorld, type LoadResult } from '../test/support/hostile.ts';
import { median } from './stats.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    samples: { type: 'string', default: '200' },
    hostile: { type: 'string', default: '500' },
    scale: { type: 'string', default: '1000' },
    /** New hostile connections per second: 100 spreads the 500 over the 5 s handshake deadline (no synchronised waves). */
    'open-rate': { type: 'string', default: '100' },
    phases: { type: 'string', default: 'postgres/startup,postgres/tls_handshake,postgres/password,mysql/ssl_request,mysql/tls_handshake,mysql/handshake_response,ssh/ident,ssh/kex,ssh/auth' },
  },
});
const ROUNDS = Number(values.rounds);
const SAMPLES = Number(values.samples);
const HOSTILE = Number(values.hostile);
const SCALE = Number(values.scale);
const PHASES = values.phases!;

type Trip = () => Promise<void>;

function pct(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** N round trips of each client, interleaved (one of each in turn) so that all see the same moments of the attack. */
async function measure(trips: Record<string, Trip>, n: number): Promise<Record<string, { p50: number; p99: number }>> {
  const ms: Record<string, number[]> = Object.fromEntries(Object.keys(trips).map((k) => [k, []]));
  for (let i = 0; i < n; i++) {
    for (const [name, trip] of Object.entries(trips)) {
      const t = performance.now();
      await trip();
      ms[name]!.push(performance.now() - t);
    }
  }
  const out: Record<string, { p50: number; p99: number }> = {};
  for (const [name, xs] of Object.entries(ms)) {
    xs.sort((a, b) => a - b);
    out[name] = { p50: pct(xs, 0.5), p99: pct(xs, 0.99) };
  }
  return out;
}

async function clients(w: AllWorld): Promise<{ trips: Record<string, Trip>; close(): Promise<void> }> {
  const ssl = { ca: fs.readFileSync(w.alice.ca), cert: fs.readFileSync(w.alice.crt), key: fs.readFileSync(w.alice.key), servername: 'localhost' };
  const p = new pg.Client({ host: '127.0.0.1', port: w.ports.postgres, user: 'alice', database: 'pg', ssl });
  await p.connect();
  const m = await mysql.createConnection({ host: '127.0.0.1', port: w.ports.mysql, user: 'db', ssl });
  const [cmd, args] = w.sshArgv('cat');
  const ssh = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'ignore'] });
  let buf = '';
  let waiting: (() => void) | undefined;
  ssh.stdout.on('data', (d) => {
    buf += d;
    if (buf.endsWith('\n') && waiting) {
      buf = '';
      const w2 = waiting;
      waiting = undefined;
      w2();
    }
  });
  const sshTrip: Trip = () =>
    new Promise<void>((resolve) => {
      waiting = resolve;
      ssh.stdin.write('ping\n');
    });
  await sshTrip();
  return {
    trips: {
      'postgres (node-postgres SELECT 1)': async () => void (await p.query('SELECT 1')),
      'mysql (mysql2 SELECT 1)': async () => void (await m.query('SELECT 1')),
      'ssh (OpenSSH, line echoed by cat)': sshTrip,
    },
    async close() {
      await p.end();
      await m.end();
      ssh.stdin.end();
      ssh.kill();
    },
  };
}

const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

async function main(): Promise<void> {
  // The shipped deadlines (pre_auth.handshake_timeout 5s, gateway.auth_timeout 15s); the caps are raised so
  // that the hostile connections are really held (the deadlines, not the caps, end them).
  const w = await startAllWorld({
    gateway: { max_unauthenticated: 2048 },
    pre_auth: { max_per_source: 2048 },
    budgets: { refusals_per_window: 20, window: '1h' },
  });
  const ports = { postgres: w.ports.postgres!, mysql: w.ports.mysql!, ssh: w.ports.ssh! };
  const c = await clients(w);
  console.log(`hostile bench: ${ROUNDS} rounds x ${SAMPLES} round trips per client; ${HOSTILE} hostile slowloris connections (${PHASES}); cores ${os.cpus().length}`);
  const results: Record<string, { quiet: { p50: number; p99: number }[]; hostile: { p50: number; p99: number }[] }> = {};
  for (const name of Object.keys(c.trips)) results[name] = { quiet: [], hostile: [] };
  for (let r = 1; r <= ROUNDS; r++) {
    for (const [name, q] of Object.entries(await measure(c.trips, SAMPLES))) {
      results[name]!.quiet.push(q);
      console.log(`round ${r} quiet   ${name}: p50 ${q.p50.toFixed(2)} ms p99 ${q.p99.toFixed(2)} ms (load ${load()})`);
    }
    // Sustained hostile load for as long as the measurement takes: each listener keeps HOSTILE/3 open.
    const attack = hostileLoad(ports, ['--per-listener', String(Math.ceil(HOSTILE / 3)), '--phases', PHASES, '--addresses', '20', '--from', `127.0.${20 + r}`, '--sustain', '30', '--open-rate', values['open-rate']!]);
    // Measure once the hostile connections are all open (and being replaced as the deadlines cut them).
    await new Promise((res) => setTimeout(res, Math.ceil((HOSTILE / Number(values['open-rate'])) * 1000) + 1000));
    for (const [name, h] of Object.entries(await measure(c.trips, SAMPLES))) {
      results[name]!.hostile.push(h);
      console.log(`round ${r} hostile ${name}: p50 ${h.p50.toFixed(2)} ms p99 ${h.p99.toFixed(2)} ms (load ${load()})`);
    }
    const a: LoadResult = await attack;
    console.log(`round ${r} attack: ${a.started} slow connections, ${a.cut} cut by the gateway, ${a.completed} not cut, ${a.failed} failed to connect; cut after p50 ${a.cutAfterMs.p50} ms p99 ${a.cutAfterMs.p99} ms`);
  }
  console.log('\nmedians over rounds (ms):');
  for (const [name, r] of Object.entries(results)) {
    const q50 = median(r.quiet.map((x) => x.p50));
    const q99 = median(r.quiet.map((x) => x.p99));
    const h50 = median(r.hostile.map((x) => x.p50));
    const h99 = median(r.hostile.map((x) => x.p99));
    console.log(`  ${name}: quiet p50 ${q50.toFixed(2)} p99 ${q99.toFixed(2)} | hostile p50 ${h50.toFixed(2)} p99 ${h99.toFixed(2)} | added p50 ${(h50 - q50).toFixed(2)} p99 ${(h99 - q99).toFixed(2)} (target p99 < 50) | ratio p99 ${(h99 / q99).toFixed(2)}x`);
  }
  console.log(`load average at the end: ${load()}`);
  await c.close();

  if (SCALE > 0) {
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    const bytes0 = auditBytes(w.tg);
    let peak = rss0;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 100);
    const r = await hostileLoad(ports, ['--per-listener', String(SCALE), '--addresses', '10', '--from', '127.0.9', '--open-rate', '1500']);
    clearInterval(sampler);
    w.tg.gw.services.refusals!.sweep(true);
    await new Promise((res) => setTimeout(res, 1000));
    console.log(
      `\n${SCALE} slowloris per protocol (postgres, mysql, ssh; 10 source addresses): ${r.cut}/${r.started} cut, cut after p50 ${r.cutAfterMs.p50} ms p99 ${r.cutAfterMs.p99} ms; ` +
        `gateway rss ${rss0} -> peak ${peak} (growth ${((peak - rss0) / 1048576).toFixed(1)} MiB); audit bytes written ${auditBytes(w.tg) - bytes0}; load ${load()}`,
    );
  }
  await w.stop();
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
