import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { startTestGateway } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { silentLogger } from '../../src/log.ts';
import { AlertEngine, type Firing } from '../../src/alerts/engine.ts';
import { parseConfig } from '../../app/config.ts';

/**
 * A config reload hands the event stream from the old alert service to the new one without a gap: events
 * recorded while the old one still waits for a notifier that does not answer are counted, each once.
 */

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * A real HTTP receiver whose first request never gets an answer (a hung Slack or webhook: the sender
 * gives up at its timeout); every later request is accepted. Records, for each accepted request, whether
 * the hung one was still open when it came in.
 */
async function hangingFirstReceiver() {
  const accepted: { rule: string; whileHungOpen: boolean }[] = [];
  let requests = 0;
  let hungOpen = false;
  const hung: http.ServerResponse[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (requests++ === 0) {
        hungOpen = true;
        res.on('close', () => (hungOpen = false));
        return void hung.push(res);
      }
      accepted.push({ rule: JSON.parse(Buffer.concat(chunks).toString()).rule, whileHungOpen: hungOpen });
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    accepted,
    requests: () => requests,
    close: () => new Promise<void>((r) => { for (const h of hung) h.destroy(); server.closeAllConnections(); server.close(() => r()); }),
  };
}

describe('alerts across a config reload', () => {
  it('a real reload while a delivery hangs: events during it are counted, the rule fires once, nothing is sent twice at once', async () => {
    const rx = await hangingFirstReceiver();
    cleanups.push(rx.close);
    const base = tempDir('vigil-alert-gap-');
    const configFile = path.join(base, 'vigil.yaml');
    const hook = { name: 'hook', kind: 'webhook', url: rx.url, timeout: '3s', backoff_initial: '50ms', backoff_max: '100ms' };
    const tg = await startTestGateway(
      {
        ssh: { enabled: false },
        mysql: { enabled: false },
        postgres: { enabled: false },
        notifiers: [hook],
        alerts: [
          { name: 'any', match: { type: 'auth.failure', target: 'other' }, notify: ['hook'] },
          { name: 'two-failures', match: { type: 'auth.failure', target: 'db' }, group_by: ['actor.user'], threshold: 2, window: '1m', notify: ['hook'] },
        ],
      },
      base,
      { configFile },
    );
    cleanups.push(() => tg.stop());
    const fail = (target: string) =>
      tg.gw.services.events.emit({ type: 'auth.failure', outcome: 'failure', actor: { user: 'mallory', roles: [] }, source: { ip: '192.0.2.9', port: 1 }, target: { name: target, protocol: 'postgres' } });

    await fail('other');
    await waitFor(() => rx.requests() === 1, 5000, 'the delivery that hangs');

    // Only a notifier changes: the rules stay as they were, so their state must go on.
    const doc = JSON.parse(fs.readFileSync(configFile, 'utf8'));
    doc.notifiers = [{ ...hook, max_attempts: 9 }];
    fs.writeFileSync(configFile, JSON.stringify(doc));
    const reloading = tg.gw.reload({ via: 'test' });
    await new Promise((r) => setTimeout(r, 500));
    await fail('db');
    await fail('db');
    const report = await reloading;
    expect(report).toMatchObject({ ok: true, applied: ['notifiers'] });

    const fired = await waitFor(() => tg.events.find((e) => e.type === 'alert.fired' && e.details.rule === 'two-failures'), 8000, 'the firing of the unchanged rule');
    expect(fired.details).toMatchObject({ group: { 'actor.user': 'mallory' }, count: 2, threshold: 2 });
    await tg.gw.services.alerts!.engine.idle();
    expect(tg.events.filter((e) => e.type === 'alert.fired' && e.details.rule === 'two-failures')).toHaveLength(1);

    // The hung delivery times out and is retried; the new dispatcher waited for the old one's attempt.
    await waitFor(() => rx.accepted.length === 2, 10_000, 'both notifications delivered');
    expect(rx.accepted.map((a) => a.rule).sort()).toEqual(['any', 'two-failures']);
    expect(rx.accepted.filter((a) => a.whileHungOpen)).toEqual([]);
  }, 30_000);

  it('events arriving while the old engine still evaluates its queue are held, then counted once after the hand-over', async () => {
    const base = tempDir('vigil-alert-handover-');
    const tg = await startTestGateway({ ssh: { enabled: false }, mysql: { enabled: false }, postgres: { enabled: false } }, base);
    cleanups.push(() => tg.stop());
    const bus = tg.gw.services.events;
    const fail = (target: string) => bus.emit({ type: 'auth.failure', outcome: 'failure', actor: { user: 'mallory', roles: [] }, source: { ip: '192.0.2.9', port: 1 }, target: { name: target, protocol: 'postgres' } });
    const { alerts } = parseConfig(
      {
        data_dir: path.join(base, 'data'),
        alerts: [
          { name: 'gate', match: { type: 'auth.failure', target: 'gate' } },
          { name: 'four-failures', match: { type: 'auth.failure', target: 'db' }, threshold: 4, window: '1m' },
        ],
      },
      base,
    );

    const firings: { by: string; f: Firing }[] = [];
    // The old engine's first firing takes until the gate opens: the events behind it stay in its queue.
    let openGate!: () => void;
    const gate = new Promise<void>((r) => (openGate = r));
    const engine = (by: string) =>
      new AlertEngine(alerts, {
        labelsOf: () => undefined,
        log: silentLogger(),
        onFire: async (f) => {
          firings.push({ by, f });
          if (f.rule === 'gate') await gate;
        },
      });
    const old = engine('old');
    await old.start(bus);
    await fail('gate');
    await waitFor(() => firings.length === 1, 5000, 'the gate firing');
    const before = [await fail('db'), await fail('db')];
    expect(old.pending).toBe(2);

    const replacement = engine('new');
    const handedOver = replacement.start(bus, old);
    await new Promise((r) => setImmediate(r));
    const after = [await fail('db'), await fail('db')];
    // Held: the old engine has not evaluated its queue yet, so the new one has not adopted its windows.
    expect(replacement.pending).toBe(2);
    expect(firings.filter((x) => x.f.rule === 'four-failures')).toEqual([]);

    openGate();
    await handedOver;
    await replacement.idle();
    const counted = firings.filter((x) => x.f.rule === 'four-failures');
    expect(counted).toHaveLength(1);
    expect(counted[0]!.by).toBe('new');
    expect(counted[0]!.f).toMatchObject({ count: 4, event_ids: [...before, ...after].map((e) => e.id) });
    await old.stop();
    await replacement.stop();
  });
});
