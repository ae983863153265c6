import type { SessionRegistry } from './sessions/registry.ts';
import type { EventBus } from './events/bus.ts';

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
  ) {
    this.unsubscribe = events.subscribe((e) => {
      let counts = this.eventCounts.get(e.type);
      if (counts === undefined) this.eventCounts.set(e.type, (counts = { success: 0, failure: 0, unknown: 0 }));
      if (e.outcome === 'success') counts.success++;
      else if (e.outcome === 'failure') counts.failure++;
      else counts.unknown++;
    });
    this.events = events;
  }

  private readonly events: EventBus;

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
    lines.push('# HELP vigil_audit_healthy 1 while the audit log can be written; 0 means new sessions are refused.');
    lines.push('# TYPE vigil_audit_healthy gauge');
    lines.push(`vigil_audit_healthy ${this.events.healthy ? 1 : 0}`);
    lines.push('# HELP vigil_uptime_seconds Seconds since the gateway started.');
    lines.push('# TYPE vigil_uptime_seconds gauge');
    lines.push(`vigil_uptime_seconds ${Math.floor((Date.now() - this.started) / 1000)}`);
    return lines.join('\n') + '\n';
  }

  close(): void {
    this.unsubscribe();
  }
}
