import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { httpReceiver } from '../support/http-receiver.ts';

/**
 * A trigger opens a PagerDuty incident; its resolve closes it once the group was quiet for a window. A
 * gateway restart in between (an upgrade, a crash) must not leave the incident open for ever: the groups
 * that fired are remembered in state.db and resolved by the next run.
 */

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const gatewayBase = { ssh: { enabled: false }, mysql: { enabled: false }, postgres: { enabled: false } };

describe('alert resolution across a gateway restart', () => {
  it('a group that fired before the restart is resolved after it, once, with the trigger\'s dedup key', async () => {
    const pd = await httpReceiver();
    cleanups.push(pd.close);
    const base = tempDir('vigil-review2-restart-');
    const keyFile = path.join(base, 'pd-key');
    fs.writeFileSync(keyFile, 'RK', { mode: 0o600 });
    const config = {
      ...gatewayBase,
      notifiers: [{ name: 'pd', kind: 'pagerduty', url: pd.url('/pd'), routing_key: { file: keyFile }, backoff_initial: '50ms', timeout: '5s' }],
      // A window long enough that the first gateway is stopped before it could resolve the group itself.
      alerts: [{ name: 'burst', match: { type: 'auth.failure' }, group_by: ['actor.user'], window: '8s', notify: ['pd'] }],
    };
    const first: TestGateway = await startTestGateway(config, base);
    await first.gw.services.events.emit({ type: 'auth.failure', outcome: 'failure', actor: { user: 'quinn', roles: [] }, source: { ip: '192.0.2.9', port: 1 }, target: { name: 'db', protocol: 'postgres' } });
    await waitFor(() => pd.accepted.length === 1, 10_000, 'the trigger');
    await waitFor(async () => Object.keys(await first.gw.services.alerts!.outbox.depth()).length === 0, 5000, 'the trigger removed from the outbox');
    await first.stop();
    // Precondition: the first run did not resolve it itself.
    expect(first.events.filter((e) => e.type === 'alert.resolved')).toEqual([]);

    const second: TestGateway = await startTestGateway(config, base);
    cleanups.push(() => second.stop());
    await waitFor(() => pd.accepted.length === 2, 30_000, 'the resolve from the gateway started again');
    const [trigger, resolve] = pd.accepted.map((r) => JSON.parse(r.body));
    expect(trigger).toMatchObject({ event_action: 'trigger', dedup_key: 'vigil/burst/actor.user=quinn' });
    expect(resolve).toEqual({ routing_key: 'RK', event_action: 'resolve', dedup_key: trigger.dedup_key });
    const resolved = second.events.filter((e) => e.type === 'alert.resolved');
    expect(resolved.map((e) => e.details)).toMatchObject([{ rule: 'burst', group: { 'actor.user': 'quinn' }, window_ms: 8000 }]);

    // Resolved once: nothing is left for a further run to resolve again.
    await waitFor(async () => Object.keys(await second.gw.services.alerts!.outbox.depth()).length === 0, 5000, 'the resolve removed from the outbox');
    await second.stop();
    cleanups.pop();
    const db = new Database(path.join(second.dataDir, 'state.db'), { readonly: true });
    try {
      expect(db.prepare('SELECT rule, key FROM alert_fired_groups').all()).toEqual([]);
    } finally {
      db.close();
    }
  }, 90_000);
});
