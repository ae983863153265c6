import { afterAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { httpReceiver } from '../support/http-receiver.ts';
import { silentLogger } from '../../src/log.ts';
import { startAlerts } from '../../src/alerts/index.ts';

/**
 * A config reload replaces the alert service (src/gateway/reload.ts: stop, then startAlerts). Given the
 * stopped one as `previous`, rules that did not change keep their state: a counting window goes on, a
 * fired group still resolves (real state.db outbox, real receiver).
 */

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** What reload.ts does for a change to `alerts` or `notifiers`, handing the old service over. */
async function reloadAlerts(tg: TestGateway): Promise<void> {
  const s = tg.gw.services;
  const previous = s.alerts!;
  await previous.stop();
  s.alerts = await startAlerts({ alerts: s.config.alerts, notifiers: s.config.notifiers, dataDir: s.dataDir, store: s.store, events: s.events, targets: s.targets, log: silentLogger(), previous });
}

describe('alert rule state across a reload', () => {
  it('a window keeps counting and a fired group resolves after the service is replaced', async () => {
    const rx = await httpReceiver();
    cleanups.push(rx.close);
    const tg = await startTestGateway(
      {
        ssh: { enabled: false },
        mysql: { enabled: false },
        postgres: { enabled: false },
        notifiers: [{ name: 'hook', kind: 'webhook', url: rx.url('/hook'), backoff_initial: '50ms', backoff_max: '100ms', timeout: '1s' }],
        alerts: [
          { name: 'two-failures', match: { type: 'auth.failure', target: 'db' }, group_by: ['actor.user'], threshold: 2, window: '1m', notify: ['hook'] },
          { name: 'quick', match: { type: 'auth.failure', target: 'quick-db' }, window: '500ms', notify: ['hook'] },
        ],
      },
      tempDir('vigil-alert-reload-'),
    );
    cleanups.push(() => tg.stop());
    const fail = (target: string) =>
      tg.gw.services.events.emit({ type: 'auth.failure', outcome: 'failure', actor: { user: 'mallory', roles: [] }, source: { ip: '192.0.2.9', port: 1 }, target: { name: target, protocol: 'postgres' } });

    await fail('db'); // one of two
    await fail('quick-db'); // fires now, resolves once quiet for 500 ms
    await tg.gw.services.alerts!.engine.idle();
    expect(tg.events.filter((e) => e.type === 'alert.fired').map((e) => e.details.rule)).toEqual(['quick']);
    await reloadAlerts(tg);

    await fail('db'); // two of two, across the reload
    await waitFor(() => tg.events.some((e) => e.type === 'alert.fired' && e.details.rule === 'two-failures'), 5000, 'the second firing');
    const resolved = await waitFor(() => tg.events.find((e) => e.type === 'alert.resolved'), 5000, 'the resolution');
    expect(resolved.details).toMatchObject({ rule: 'quick' });
    await waitFor(() => rx.accepted.length === 3, 5000, 'trigger, trigger, resolve');
    expect(rx.accepted.map((r) => JSON.parse(r.body).rule).sort()).toEqual(['quick', 'quick', 'two-failures']);
    const metrics: string[] = [];
    tg.gw.services.alerts!.renderMetrics(metrics);
    expect(metrics).toContain('vigil_alerts_fired_total{rule="quick"} 1');
  });
});
