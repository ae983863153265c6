import type { Command } from '../command.ts';
import { loadFromArgs, requireExistingDataDir } from '../context.ts';
import { openOutbox } from '../../notifiers/outbox.ts';
import { openStateStore } from '../../store/index.ts';

/**
 * `vigil alerts list`: the rules in the config, recent firings, outbox depth and dead letters, read from
 * wherever the state store is (state.db, or the PostgreSQL store every replica shares).
 */
export const alertsListCommand: Command = {
  name: 'alerts list',
  summary: 'Alert rules, recent firings, notifications waiting in the outbox and dead letters.',
  usage: '[--json] [--limit N]',
  options: { json: { type: 'boolean' }, limit: { type: 'string', arg: 'N', help: 'show at most N recent firings and dead letters (default 20)' } },
  examples: ['alerts list', 'alerts list --limit 50 --json'],
  async run(args) {
    const { config, dataDir } = loadFromArgs(args);
    requireExistingDataDir(dataDir);
    const limit = Number(args.values.limit ?? 20) || 20;
    const store = await openStateStore(dataDir, config.store);
    const outbox = openOutbox(dataDir, store);
    try {
      const rules = config.alerts.map((r) => ({ name: r.name, match: r.match, group_by: r.group_by, threshold: r.threshold, window_ms: r.window, notify: r.notify }));
      const firings = (await outbox.recentFirings(limit)).map((f) => ({ id: f.id, rule: f.rule, time: f.time, ...(f.data as Record<string, unknown>) }));
      const depth = await outbox.depth();
      const notifiers = config.notifiers.map((n) => ({ name: n.name, kind: n.kind, pending: depth[n.name] ?? 0 }));
      const dead = (await outbox.deadLetters()).map((d) => ({ id: d.id, notifier: d.notifier, created_at: d.created_at, attempts: d.attempts, last_error: d.last_error, payload: d.payload }));
      if (args.values.json) {
        args.out.write(JSON.stringify({ rules, firings, notifiers, dead_letters: dead }) + '\n');
        return 0;
      }
      const w = (s: string) => args.out.write(s + '\n');
      w(`Rules (${rules.length}):`);
      for (const r of rules) w(`  ${r.name}  type=${r.match.type.join(',')}  threshold=${r.threshold}/${r.window_ms / 1000}s${r.group_by.length ? `  by ${r.group_by.join(',')}` : ''}  notify=${r.notify.join(',') || '-'}`);
      w(`Recent firings (${firings.length}):`);
      for (const f of firings) w(`  ${f.time}  ${f.rule}  ${f.id}`);
      w('Outbox:');
      for (const n of notifiers) w(`  ${n.name} (${n.kind}): ${n.pending} pending`);
      w(`Dead letters (${dead.length}):`);
      for (const d of dead) w(`  #${d.id}  ${d.notifier}  ${d.created_at}  ${d.attempts} attempts  ${d.last_error ?? ''}`);
      return 0;
    } finally {
      await outbox.close();
      await store.close();
    }
  },
};

export const ALERT_COMMANDS: Command[] = [alertsListCommand];
