import type { SessionRegistry } from './sessions/registry.ts';
import type { EventBus } from './events/bus.ts';
import type { RefusalBudget } from './sessions/refusal-budget.ts';
import type { IndexFollower } from '../recorder/audit/index-follower.ts';

/**
 * Prometheus text-format metrics, counted from the audit events the bus writes (so metrics and the
 * audit log can never disagree) plus gauges read from the session registry at scrape time.
 */
export class Metrics {
  /** Per event type, counts by outcome (no key string built per event: this runs for every query). */
  private readonly eventCounts = new Map<string, { success: number; failure: number; unknown: number }>();
  private readonly started = Date.now();
  private readonly unsubscribe: () => void;

  constructor(
    events: EventBus,
    private readonly sessions: SessionRegistry,
    private readonly refusals?: RefusalBudget,
    private readonly auditIndex?: Pick<IndexFollower, 'lag'>,
    /** Read at each scrape: a config reload replaces the alert service and the guardrails. */
    private readonly alerts?: () => { renderMetrics(lines: string[]): void } | undefined,
    private readonly guardrails?: () => { renderMetrics(lines: string[]): void } | undefined,
  ) {
    this.unsubscribe = events.subscribe((e) => {
      let counts = this.eventCounts.get(e.type);
      if (counts === undefined) this.eventCounts.set(e.type, (counts = { success: 0, failure: 0, unknown: 0 }));
      if (e.outcome === 'success') counts.success++;
      else if (e.outcome === 'failure') counts.failure++;
      else counts.unknown++;
      if (e.type.startsWith('session.') && e.outcome === 'success') this.countSessionControl(e.type);
    });
    this.events = events;
  }

  private readonly events: EventBus;
  /** Live watch and kill (src/api/watch.ts, src/sessions/control.ts), from their events. */
  private readonly control = { killed: 0, watched: 0, watchesEnded: 0 };

  private countSessionControl(type: string): void {
    if (type === 'session.kill') this.control.killed++;
    else if (type === 'session.watch_started') this.control.watched++;
    else if (type === 'session.watch_ended') this.control.watchesEnded++;
  }

  render(): string {
    const lines: string[] = [];
    lines.push('# HELP vigil_events_total Audit events written, by type and outcome.');
    lines.push('# TYPE vigil_events_total counter');
    for (const [type, counts] of [...this.eventCounts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      // Sorted by type, then outcome (failure, success, unknown); outcomes never seen are left out.
      if (counts.failure > 0) lines.push(`vigil_events_total{type="${type}",outcome="failure"} ${counts.failure}`);
      if (counts.success > 0) lines.push(`vigil_events_total{type="${type}",outcome="success"} ${counts.success}`);
      if (counts.unknown > 0) lines.push(`vigil_events_total{type="${type}",outcome="unknown"} ${counts.unknown}`);
    }
    const byProtocol = new Map<string, number>();
    for (const s of this.sessions.list()) byProtocol.set(s.protocol, (byProtocol.get(s.protocol) ?? 0) + 1);
    lines.push('# HELP vigil_sessions_active Live proxied sessions, by protocol.');
    lines.push('# TYPE vigil_sessions_active gauge');
    for (const [protocol, n] of [...byProtocol].sort()) lines.push(`vigil_sessions_active{protocol="${protocol}"} ${n}`);
    lines.push('# HELP vigil_sessions_killed_total Live sessions killed by an administrator (session.kill).');
    lines.push('# TYPE vigil_sessions_killed_total counter');
    lines.push(`vigil_sessions_killed_total ${this.control.killed}`);
    lines.push('# HELP vigil_sessions_watched_total Live watches started (session.watch_started).');
    lines.push('# TYPE vigil_sessions_watched_total counter');
    lines.push(`vigil_sessions_watched_total ${this.control.watched}`);
    lines.push('# HELP vigil_session_watchers Live watches open now.');
    lines.push('# TYPE vigil_session_watchers gauge');
    lines.push(`vigil_session_watchers ${this.control.watched - this.control.watchesEnded}`);
    if (this.refusals) this.renderRefusals(lines, this.refusals);
    this.alerts?.()?.renderMetrics(lines);
    this.guardrails?.()?.renderMetrics(lines);
    lines.push('# HELP vigil_audit_healthy 1 while the audit log can be written; 0 means new sessions are refused.');
    lines.push('# TYPE vigil_audit_healthy gauge');
    lines.push(`vigil_audit_healthy ${this.events.healthy ? 1 : 0}`);
    if (this.auditIndex) {
      const l = this.auditIndex.lag();
      lines.push('# HELP vigil_audit_index_lag_records Audit records committed to the log but not yet in the search index.');
      lines.push('# TYPE vigil_audit_index_lag_records gauge');
      lines.push(`vigil_audit_index_lag_records ${l.lag}`);
      lines.push('# HELP vigil_audit_index_seq Highest audit record seq in the search index.');
      lines.push('# TYPE vigil_audit_index_seq gauge');
      lines.push(`vigil_audit_index_seq ${l.indexedSeq}`);
    }
    lines.push('# HELP vigil_uptime_seconds Seconds since the gateway started.');
    lines.push('# TYPE vigil_uptime_seconds gauge');
    lines.push(`vigil_uptime_seconds ${Math.floor((Date.now() - this.started) / 1000)}`);
    return lines.join('\n') + '\n';
  }

  /** The unauthenticated-refusal budget: its settings, and what was written vs only counted. */
  private renderRefusals(lines: string[], budget: RefusalBudget): void {
    lines.push('# HELP vigil_refusal_budget Unauthenticated refusals recorded one by one per protocol, source and window.');
    lines.push('# TYPE vigil_refusal_budget gauge');
    lines.push(`vigil_refusal_budget ${budget.options.perWindow}`);
    lines.push('# HELP vigil_refusal_budget_window_seconds Length of a refusal budget window.');
    lines.push('# TYPE vigil_refusal_budget_window_seconds gauge');
    lines.push(`vigil_refusal_budget_window_seconds ${budget.options.windowMs / 1000}`);
    const counts = [...budget.counts()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const counter = (name: string, help: string, pick: (c: { recorded: number; suppressed: number; allowListed: number; summaries: number }) => number) => {
      lines.push(`# HELP ${name} ${help}`);
      lines.push(`# TYPE ${name} counter`);
      for (const [protocol, c] of counts) lines.push(`${name}{protocol="${protocol}"} ${pick(c)}`);
    };
    counter('vigil_refusals_recorded_total', 'Unauthenticated refusals within budget, each written as an event.', (c) => c.recorded);
    counter('vigil_refusals_over_budget_total', 'Unauthenticated refusals beyond their source budget, counted into auth.failure.summary events.', (c) => c.suppressed);
    counter('vigil_refusals_allow_listed_total', 'Unauthenticated refusals from allow-listed sources (always written).', (c) => c.allowListed);
    counter('vigil_refusal_summaries_total', 'auth.failure.summary events written.', (c) => c.summaries);
    const over = budget.overBudget();
    lines.push('# HELP vigil_refusal_sources_over_budget Sources over budget in the current window, by protocol.');
    lines.push('# TYPE vigil_refusal_sources_over_budget gauge');
    for (const [protocol, n] of [...over].sort()) lines.push(`vigil_refusal_sources_over_budget{protocol="${protocol}"} ${n}`);
  }

  close(): void {
    this.unsubscribe();
  }
}
