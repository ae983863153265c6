/**
 * Does alert evaluation slow the proxies? pgbench -S through two in-process vigil gateways on the same
 * PostgreSQL 15, alternating in one run: `none` without alert rules, `rules` with 50 rules loaded (20 on
 * db.query — statement class from the SQL parser, command regexes, target labels — and 30 on other types,
 * grouped and thresholded). Prints TPS per route, medians over rounds, the ratio rules/none (target >= 0.98)
 * and the machine's load average.
 *
 *   npx tsx bench/alerts.ts [-- --seconds 5 --rounds 5 --clients 8 --mode simple]
 */
import { runRulesBench } from './rules-ab.ts';

/** 50 rules shaped like a real deployment's; none of them fires on pgbench's SELECTs. */
function fiftyRules() {
  const rules: Record<string, unknown>[] = [];
  for (let i = 0; i < 10; i++) rules.push({ name: `ddl-${i}`, match: { type: 'db.query', statement_class: ['ddl', 'privilege', 'config'], target_labels: { env: `prod${i}` } } });
  for (let i = 0; i < 10; i++) rules.push({ name: `cmd-${i}`, match: { type: ['db.query', 'ssh.exec', 'ssh.command'], command: `\\b(drop|truncate|shutdown)\\s+table_${i}\\b` }, group_by: ['actor.user'], threshold: 3, window: '5m' });
  for (let i = 0; i < 10; i++) rules.push({ name: `auth-${i}`, match: { type: 'auth.failure', user: `user${i}` }, group_by: ['source.ip'], threshold: 5, window: '1m' });
  for (let i = 0; i < 10; i++) rules.push({ name: `access-${i}`, match: { type: ['access.approved', 'access.revoked', 'lock.created'], role: `role${i}` } });
  for (let i = 0; i < 10; i++) rules.push({ name: `sess-${i}`, match: { type: 'session.*', target: `t${i}`, outcome: 'failure' }, group_by: ['target.name'], threshold: 10, window: '10m' });
  return rules;
}

runRulesBench({
  name: 'alerts',
  section: 'alerts',
  rules: fiftyRules(),
  summary: (ruled) => `target >= 0.98; firings during the run: ${[...ruled.gw.services.alerts!.engine.fired.values()].reduce((a, b) => a + b, 0)}`,
}).catch((e) => {
  console.error(e);
  process.exit(1);
});
