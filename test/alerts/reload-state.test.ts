import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { httpReceiver } from '../support/http-receiver.ts';

/**
 * A config reload replaces the alert service (src/gateway/reload.ts: the new one takes the event stream
 * over from the old one, then stops it). Rules that did not change keep their state: a counting window
 * goes on, a fired group still resolves (real reload of the config file, real state.db outbox, real
 * receiver).
 */

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Reload the gateway's config file with only the notifiers changed: the alert service is replaced, the rules are not. */
async function reloadAlerts(tg: TestGateway, configFile: string): Promise<void> {
  const doc = JSON.parse(fs.readFileSync(configFile, 'utf8'));
  doc.notifiers = doc.notifiers.map((n: { max_attempts?: number }) => ({ ...n, max_attempts: (n.max_attempts ?? 10) + 1 }));
  fs.writeFileSync(configFile, JSON.stringify(doc));
  const report = await tg.gw.reload({ via: 'test' });
  expect(report).toMatchObject({ ok: true, applied: ['notifiers'] });
}

describe('alert rule state across a reload', () => {
  it('a window keeps counting and a fired group resolves after the service is replaced', async () => {
    const rx = await httpReceiver();
    cleanups.push(rx.close);
    const base = tempDir('vigil-alert-reload-');
    const configFile = path.join(base, 'vigil.yaml');
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
      base,
      { configFile },
    );
    cleanups.push(() => tg.stop());
    const fail = (target: string) =>
      tg.gw.services.events.emit({ type: 'auth.failure', outcome: 'failure', actor: { user: 'mallory', roles: [] }, source: { ip: '192.0.2.9', port: 1 }, target: { name: target, protocol: 'postgres' } });

    await fail('db'); // one of two
    await fail('quick-db'); // fires now, resolves once quiet for 500 ms
    await tg.gw.services.alerts!.engine.idle();
    expect(tg.events.filter((e) => e.type === 'alert.fired').map((e) => e.details.rule)).toEqual(['quick']);
    await reloadAlerts(tg, configFile);

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
