import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import type { AuditEvent, EventInput } from '../../src/events/envelope.ts';

/**
 * Alert rules evaluated over the gateway's real event bus (events appended to the real audit log), with
 * explicit event times to hit the window edges exactly: the count at t is of events in (t - window, t].
 */
const T = Date.parse('2026-12-06T04:00:00.000Z');
const client = { ip: '192.0.2.7', port: 40000 };
const pgTarget = (name: string) => ({ name, protocol: 'postgres', host: '127.0.0.1', database: 'app' });

let tg: TestGateway;

beforeAll(async () => {
  tg = await startTestGateway({
    ssh: { enabled: false },
    mysql: { enabled: false },
    targets: [
      { name: 'prod-pg', protocol: 'postgres', host: '127.0.0.1', port: 5432, database: 'app', user: 'app', labels: { env: 'prod' } },
      { name: 'stage-pg', protocol: 'postgres', host: '127.0.0.1', port: 5433, database: 'app', user: 'app', labels: { env: 'stage' } },
    ],
    alerts: [
      { name: 'failed-logins', match: { type: 'auth.failure' }, group_by: ['actor.user'], threshold: 3, window: '1s' },
      { name: 'prod-ddl', match: { type: 'db.query', statement_class: 'ddl', target_labels: { env: 'prod' } } },
      { name: 'oncall-rm', match: { type: ['ssh.exec', 'ssh.command'], role: 'oncall', outcome: 'success', command: '^rm\\s+-rf\\b' } },
      // Would fire on every firing if alert.fired were ever evaluated.
      { name: 'loop', match: { type: 'alert.*' } },
    ],
  });
});
afterAll(() => tg?.stop());

async function emit(type: EventInput['type'], at: number, fields: Partial<EventInput>): Promise<AuditEvent> {
  return tg.gw.services.events.emit({ type, outcome: 'failure', actor: { user: 'nobody', roles: [] }, source: client, target: pgTarget('prod-pg'), time: new Date(at), ...fields });
}

const firings = (rule: string) => tg.events.filter((e) => e.type === 'alert.fired' && e.details.rule === rule);
const settle = () => tg.gw.services.alerts!.engine.idle();

describe('alert rules', () => {
  it('threshold over a sliding window: fires at the count inside (t - window, t], not at the edge', async () => {
    const failure = (user: string, at: number) => emit('auth.failure', at, { actor: { user, roles: [] } });
    // alice: T, T+400, T+999 → all three in (T-1, T+999]: fires.
    const a = [await failure('alice', T), await failure('alice', T + 400), await failure('alice', T + 999)];
    // bob: T, T+400, T+1000 → at T+1000 the event at T is exactly one window old and out: no firing.
    await failure('bob', T);
    await failure('bob', T + 400);
    await failure('bob', T + 1000);
    // carol: only two in the window; another group's events do not add up into hers.
    await failure('carol', T);
    await failure('carol', T + 10);
    await settle();
    const f = firings('failed-logins');
    expect(f).toHaveLength(1);
    expect(f[0].details).toMatchObject({ group: { 'actor.user': 'alice' }, count: 3, threshold: 3, window_ms: 1000, event_ids: a.map((e) => e.id) });
    // bob again at T+1399: (T+399, T+1399] holds T+400, T+1000 and T+1399 → fires.
    await failure('bob', T + 1399);
    await settle();
    expect(firings('failed-logins').map((e) => e.details.group)).toEqual([{ 'actor.user': 'alice' }, { 'actor.user': 'bob' }]);
  });

  it('statement_class from the SQL parser and target labels from the config', async () => {
    const q = (target: string, sql: string) => emit('db.query', T, { outcome: 'success', actor: { user: 'dana', roles: ['dba'] }, target: pgTarget(target), details: { sql } });
    await q('prod-pg', 'SELECT 1');
    await q('stage-pg', 'DROP TABLE orders');
    await q('prod-pg', "select 'drop table orders'");
    await settle();
    expect(firings('prod-ddl')).toHaveLength(0);
    const ddl = await q('prod-pg', 'drop /* x */ table orders');
    await settle();
    expect(firings('prod-ddl').map((e) => e.details.event_ids)).toEqual([[ddl.id]]);
  });

  it('role, outcome and command text', async () => {
    const ssh = { name: 'web-1', protocol: 'ssh', host: '127.0.0.1', login: 'deploy' };
    const cmd = (roles: string[], outcome: 'success' | 'failure', command: string) => emit('ssh.exec', T, { outcome, actor: { user: 'erin', roles }, target: ssh, details: { command } });
    await cmd(['dev'], 'success', 'rm -rf /var/tmp/x');
    await cmd(['oncall'], 'failure', 'rm -rf /var/tmp/x');
    await cmd(['oncall'], 'success', 'echo rm -rf /');
    await settle();
    expect(firings('oncall-rm')).toHaveLength(0);
    const hit = await cmd(['dba', 'oncall'], 'success', 'RM -rf /srv');
    await settle();
    expect(firings('oncall-rm').map((e) => e.details.event_ids)).toEqual([[hit.id]]);
  });

  it('never evaluates its own alert.fired events', async () => {
    await settle();
    expect(tg.events.filter((e) => e.type === 'alert.fired').length).toBeGreaterThan(0);
    expect(firings('loop')).toHaveLength(0);
  });

  it('counts firings per rule in the metrics', async () => {
    const lines: string[] = [];
    tg.gw.services.alerts!.renderMetrics(lines);
    expect(lines).toContain('vigil_alerts_fired_total{rule="failed-logins"} 2');
    expect(lines).toContain('vigil_alerts_fired_total{rule="loop"} 0');
  });
});
