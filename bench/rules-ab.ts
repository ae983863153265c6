/**
 * The A/B harness bench/alerts.ts and bench/guardrails.ts share: pgbench -S through two in-process vigil
 * gateways on the same PostgreSQL 15, alternating every round: `none` with the extra config empty, `rules`
 * with it set. Prints TPS per route, medians over rounds, this process's CPU per transaction (only one
 * gateway has traffic at a time, so that is the gateway's cost), the ratio rules/none and the load.
 *
 * Options: --seconds 5 --rounds 5 --clients 8 --mode simple --scale 5
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

export interface RulesBench {
  /** Names the temp dir. */
  name: string;
  /** The config section the rules go in (`alerts`, `guardrails`). */
  section: string;
  rules: Record<string, unknown>[];
  /** What the rules did during the run, printed after the ratio. */
  summary(ruled: TestGateway): string;
}

function pgbench(conn: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('pgbench', [...args, conn], { env: clientEnv(), stdio: ['ignore', 'pipe', 'pipe'], cwd: '/tmp' });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`pgbench failed: ${err.slice(-500)}`));
      resolve(Number(/tps = ([\d.]+)/.exec(out)?.[1]));
    });
  });
}

export async function runRulesBench(b: RulesBench): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '5' },
      rounds: { type: 'string', default: '5' },
      clients: { type: 'string', default: '8' },
      mode: { type: 'string', default: 'simple' },
      scale: { type: 'string', default: '5' },
    },
  });
  const base = tempDir(`vigil-bench-${b.name}-`);
  const pg = await startPostgres({ conf: ['max_connections = 200'] });
  pg.psql('ALTER DATABASE app OWNER TO scram_user');
  const secret = path.join(base, 'scram.pass');
  fs.writeFileSync(secret, PASSWORDS.scram_user, { mode: 0o600 });
  const gw = (rules: Record<string, unknown>[], dir: string) =>
    startTestGateway(
      {
        log: { level: 'warn' },
        ssh: { enabled: false },
        mysql: { enabled: false },
        targets: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'scram_user', password: { file: secret }, labels: { env: 'bench' } }],
        roles: [{ name: 'dba', targets: ['pg'] }],
        [b.section]: rules,
      },
      dir,
    );
  const none: TestGateway = await gw([], path.join(base, 'none'));
  const ruled: TestGateway = await gw(b.rules, path.join(base, 'rules'));
  try {
    const conn = async (tg: TestGateway) => {
      const a = await tg.issue({ user: 'alice', roles: ['dba'], ttlMs: 6 * 3600_000 });
      return `host=127.0.0.1 port=${tg.ports.postgres} dbname=pg user=alice sslmode=verify-full sslrootcert=${a.ca} sslcert=${a.crt} sslkey=${a.key}`;
    };
    const routes = [
      { name: 'none', conn: await conn(none), tps: [] as number[], cpu: [] as number[] },
      { name: 'rules', conn: await conn(ruled), tps: [] as number[], cpu: [] as number[] },
    ];
    const direct = `host=127.0.0.1 port=${pg.port} dbname=app user=scram_user password=${PASSWORDS.scram_user} sslmode=require`;
    await pgbench(direct, ['-i', '-q', '-s', values.scale!]);
    const args = ['-S', '-M', values.mode!, '-c', values.clients!, '-j', '2', '-T', values.seconds!];
    // Warm-up (JIT, parser load, first logins) on both, unmeasured.
    for (const r of routes) await pgbench(r.conn, [...args.slice(0, -1), '2']);
    const rounds = Number(values.rounds);
    for (let i = 0; i < rounds; i++) {
      // Alternate the order each round so drift hits both alike.
      for (const r of i % 2 ? [...routes].reverse() : routes) {
        const before = process.cpuUsage();
        const tps = await pgbench(r.conn, args);
        const used = process.cpuUsage(before);
        r.tps.push(tps);
        r.cpu.push((used.user + used.system) / (tps * Number(values.seconds)));
      }
    }
    const med = routes.map((r) => median(r.tps));
    console.log(`${b.section}: pgbench -S -M ${values.mode} -c ${values.clients} -T ${values.seconds}s, ${rounds} rounds, load avg ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    const cpu = routes.map((r) => median(r.cpu));
    for (const [i, r] of routes.entries()) console.log(`  ${r.name.padEnd(6)} median ${med[i].toFixed(0)} tps  (${r.tps.map((t) => t.toFixed(0)).join(', ')}); gateway CPU ${cpu[i].toFixed(1)} µs/tx (${r.cpu.map((c) => c.toFixed(1)).join(', ')})`);
    console.log(`  CPU per transaction none/rules = ${(cpu[0] / cpu[1]).toFixed(3)}  (the throughput ratio a CPU-bound gateway would see)`);
    console.log(`  ratio rules/none = ${(med[1] / med[0]).toFixed(3)}  (${b.summary(ruled)})`);
  } finally {
    await none.stop();
    await ruled.stop();
    await pg.stop();
    fs.rmSync(base, { recursive: true, force: true });
  }
}
