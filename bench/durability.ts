/**
 * What audit durability costs: pgbench (TPC-B-like, writes) against the same real PostgreSQL 15 three ways,
 * alternating in each round so machine noise hits all alike:
 *
 *   direct    pgbench → PostgreSQL (TLS)
 *   batched   pgbench → vigil (audit.durability: batched — records join the next group commit; a gateway
 *             crash can lose the last commit window)
 *   strict    pgbench → vigil (audit.durability: strict — each statement's intent record is durable
 *             before the statement is forwarded; concurrent sessions share the fsync)
 *
 * Each vigil route is its own in-process gateway with its own data dir (fsync on whatever filesystem the
 * temp dir is on). Prints TPS per round, medians over rounds, ratios to direct, and the load average
 * before and after (other work on the machine skews every figure).
 *
 *   npm run bench:durability [-- --seconds 5 --rounds 3 --clients 8 --mode simple --scale 5]
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startPostgres, clientEnv, PASSWORDS } from '../test/support/postgres.ts';
import { startTestGateway, type TestGateway } from '../test/support/gateway.ts';
import { tempDir } from '../test/support/tmp.ts';
import { median } from './stats.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    clients: { type: 'string', default: '8' },
    mode: { type: 'string', default: 'simple' },
    scale: { type: 'string', default: '5' },
  },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);

function pgbench(conn: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('pgbench', [...args, conn], { env: clientEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`pgbench ${args.join(' ')} failed: ${err.slice(-500)}`));
      resolve(Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? NaN));
    });
  });
}

const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

async function main(): Promise<void> {
  const base = tempDir('vigil-bench-durability-');
  const pg = await startPostgres({ conf: ['max_connections = 200'] });
  pg.psql('ALTER DATABASE app OWNER TO scram_user');
  const secret = path.join(base, 'scram.pass');
  fs.writeFileSync(secret, PASSWORDS.scram_user, { mode: 0o600 });
  const gateway = (durability: 'batched' | 'strict') =>
    startTestGateway(
      {
        log: { level: 'warn' },
        audit: { durability },
        targets: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'scram_user', password: { file: secret } }],
        roles: [{ name: 'dba', targets: ['pg'] }],
      },
      fs.mkdtempSync(path.join(base, `${durability}-`)),
    );
  const gateways: Record<string, TestGateway> = { batched: await gateway('batched'), strict: await gateway('strict') };
  try {
    const direct = `host=127.0.0.1 port=${pg.port} dbname=app user=scram_user password=${PASSWORDS.scram_user} sslmode=require`;
    const routes: { name: string; conn: string }[] = [{ name: 'direct', conn: direct }];
    for (const [name, tg] of Object.entries(gateways)) {
      const alice = await tg.issue({ user: 'alice', roles: ['dba'], ttlMs: 6 * 3600_000 });
      routes.push({ name, conn: `host=127.0.0.1 port=${tg.ports.postgres} dbname=pg user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}` });
    }
    console.log(`pgbench -i -s ${values.scale}; then -M ${values.mode} -c ${values.clients} -T ${SECONDS}, ${ROUNDS} rounds`);
    await pgbench(direct, ['-i', '-q', '-s', values.scale!]);
    const loadBefore = load();
    const tps: Record<string, number[]> = {};
    const args = ['-n', '-M', values.mode!, '-c', values.clients!, '-j', '2', '-T', String(SECONDS)];
    for (let round = 1; round <= ROUNDS; round++) {
      for (const r of routes) {
        const t = await pgbench(r.conn, args);
        (tps[r.name] ??= []).push(t);
        console.log(`round ${round} ${r.name.padEnd(8)} tps ${t.toFixed(0).padStart(6)}`);
      }
    }
    const loadAfter = load();
    const m = Object.fromEntries(Object.entries(tps).map(([k, v]) => [k, median(v)]));
    console.log('\nroute      median tps  vs direct');
    for (const r of routes) console.log(`${r.name.padEnd(9)} ${m[r.name].toFixed(0).padStart(11)}  ${(m[r.name] / m.direct).toFixed(2).padStart(8)}x`);
    console.log(`strict/batched ${(m.strict / m.batched).toFixed(2)}x`);
    console.log(`load average (1/5/15 min): before ${loadBefore}, after ${loadAfter}; ${os.cpus().length} cpus`);
  } finally {
    for (const tg of Object.values(gateways)) await tg.stop();
    await pg.stop();
    fs.rmSync(base, { recursive: true, force: true });
  }
}

await main();
