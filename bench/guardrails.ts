/**
 * What do guardrails cost the Postgres proxy? pgbench -S through two in-process vigil gateways on the
 * same PostgreSQL 15, alternating in one run: `none` without guardrails, `rules` with 50 guardrails that
 * all apply to the session (every statement is parsed by libpg_query once and matched against all 50;
 * none refuses pgbench's SELECTs). Prints TPS per route, medians over rounds, gateway CPU per transaction
 * and the ratio rules/none (reported, no target asserted).
 *
 *   npx tsx bench/guardrails.ts [-- --seconds 5 --rounds 5 --clients 8 --mode simple]
 */
import { runRulesBench } from './rules-ab.ts';

/** 50 guardrails applying to the bench session: statement kinds, protected tables, a few SSH ones. */
function fiftyGuardrails() {
  const kinds = ['drop', 'truncate', 'delete_without_where', 'update_without_where', 'alter_system', 'grant', 'copy_program'];
  const rules: Record<string, unknown>[] = [];
  for (let i = 0; i < 40; i++) {
    rules.push({ name: `sql-${i}`, targets: ['*'], roles: ['*'], sql: { block: [kinds[i % kinds.length]], require_approval: [kinds[(i + 3) % kinds.length]], block_writes_to: [`schema${i}.table${i}`, `secrets${i}`] } });
  }
  for (let i = 0; i < 10; i++) rules.push({ name: `ssh-${i}`, targets: ['*'], roles: ['*'], ssh: { block_commands: [`tool${i} --wipe *`, 'rm -rf /'] } });
  return rules;
}

runRulesBench({
  name: 'guardrails',
  section: 'guardrails',
  rules: fiftyGuardrails(),
  summary: (ruled) => {
    const lines: string[] = [];
    ruled.gw.services.guardrails!.renderMetrics(lines);
    return `decisions: ${lines.filter((l) => !l.startsWith('#')).map((l) => l.replace('vigil_guardrail_decisions_total', '')).join(', ')}`;
  },
}).catch((e) => {
  console.error(e);
  process.exit(1);
});
