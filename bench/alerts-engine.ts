/** Alert engine CPU per db.query event with 0 vs 50 rules (the engine alone, no proxy): npx tsx bench/alerts-engine.ts */
import { AlertEngine } from '../src/alerts/engine.ts';
import { alertRulesSchema } from '../src/alerts/config.ts';
import { createEvent } from '../src/events/envelope.ts';
const rules: Record<string, unknown>[] = [];
for (let i = 0; i < 10; i++) rules.push({ name: `ddl-${i}`, match: { type: 'db.query', statement_class: ['ddl', 'privilege', 'config'], target_labels: { env: `prod${i}` } } });
for (let i = 0; i < 10; i++) rules.push({ name: `cmd-${i}`, match: { type: ['db.query', 'ssh.exec', 'ssh.command'], command: `\\b(drop|truncate|shutdown)\\s+table_${i}\\b` }, group_by: ['actor.user'], threshold: 3, window: '5m' });
for (let i = 0; i < 30; i++) rules.push({ name: `auth-${i}`, match: { type: 'auth.failure', user: `user${i}` }, group_by: ['source.ip'], threshold: 5, window: '1m' });
const parsed = alertRulesSchema().parse(rules);
const target = { name: 'pg', protocol: 'postgres', host: 'h', database: 'app' };
const labels = { env: 'bench' };
for (const n of [0, 50]) {
  const engine = new AlertEngine(n ? parsed : [], { labelsOf: () => labels, onFire: async () => {} });
  let fn: (e: any) => void = () => {};
  await engine.start({ subscribe(f: any) { fn = f; return () => {}; } } as any);
  const actor = { user: 'alice', roles: ['dba'] }, source = { ip: '127.0.0.1', port: 1 };
  const evs = Array.from({ length: 200_000 }, (_, i) => createEvent({ type: 'db.query', outcome: 'success', actor, source, target, details: { sql: `SELECT abalance FROM pgbench_accounts WHERE aid = ${i};`, rows_returned: 1 } }));
  const t0 = process.cpuUsage();
  for (let k = 0; k < evs.length; k += 1000) { for (let j = k; j < k + 1000; j++) fn(evs[j]); await engine.idle(); }
  const u = process.cpuUsage(t0);
  console.log(`${n} rules: ${((u.user + u.system) / evs.length).toFixed(3)} µs CPU per db.query event`);
}
