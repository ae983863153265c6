import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { PASSWORDS, startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { httpReceiver } from '../support/http-receiver.ts';

/**
 * A firing whose outbox write fails while the state store refuses it (a real PostgreSQL store whose role
 * lost INSERT on the outbox) is logged, kept, and queued once the store takes writes again: the real
 * receiver gets it after the recovery.
 */

const URL_ENV = 'VIGIL_TEST_OUTBOX_RETRY_URL';
const SCHEMA = 'outboxretry';
let db: PostgresHandle;
let rx: Awaited<ReturnType<typeof httpReceiver>>;
let tg: TestGateway;
const logged: string[] = [];

beforeAll(async () => {
  [db, rx] = await Promise.all([startPostgres(), httpReceiver()]);
  process.env[URL_ENV] = `postgres://scram_user:${PASSWORDS.scram_user}@127.0.0.1:${db.port}/app?sslmode=disable`;
  const log = pino({ level: 'info' }, new Writable({ write(c, _e, cb) { logged.push(c.toString()); cb(); } }));
  tg = await startTestGateway(
    {
      ssh: { enabled: false },
      mysql: { enabled: false },
      postgres: { enabled: false },
      store: { kind: 'postgres', url: { env: URL_ENV }, schema: SCHEMA },
      notifiers: [{ name: 'hook', kind: 'webhook', url: rx.url('/hook'), backoff_initial: '50ms', backoff_max: '200ms', timeout: '2s' }],
      alerts: [{ name: 'any-failure', match: { type: 'auth.failure' }, notify: ['hook'] }],
    },
    tempDir('vigil-outbox-retry-'),
    { log },
  );
}, 120_000);

afterAll(async () => {
  await tg?.stop();
  delete process.env[URL_ENV];
  await Promise.all([db?.stop(), rx?.close()]);
});

describe('alert outbox writes while the store refuses them', () => {
  it('the failure is logged, and the notification is delivered once the store takes writes again', async () => {
    db.psql(`REVOKE INSERT ON ${SCHEMA}.notify_outbox FROM scram_user`);
    let granted = false;
    try {
      await tg.gw.services.events.emit({ type: 'auth.failure', outcome: 'failure', actor: { user: 'mallory', roles: [] }, source: { ip: '192.0.2.9', port: 1 }, target: { name: 'db', protocol: 'postgres' } });
      const fired = await waitFor(() => tg.events.find((e) => e.type === 'alert.fired'), 10_000, 'alert.fired');
      const failure = await waitFor(() => logged.find((l) => l.includes('could not queue a notification in the outbox')), 10_000, 'the failure logged');
      expect(JSON.parse(failure)).toMatchObject({ level: 50, component: 'alerts', alert_id: fired.id, rule: 'any-failure', err: expect.stringContaining('permission denied') });
      // Still refused for a while: retried, nothing reaches the receiver, nothing is lost.
      await new Promise((r) => setTimeout(r, 500));
      expect(rx.accepted).toHaveLength(0);
      expect(await tg.gw.services.alerts!.outbox.pending()).toHaveLength(0);
      const metrics: string[] = [];
      tg.gw.services.alerts!.renderMetrics(metrics);
      expect(metrics).toContain('vigil_alerts_outbox_waiting 1');

      db.psql(`GRANT INSERT ON ${SCHEMA}.notify_outbox TO scram_user`);
      granted = true;
      await waitFor(() => rx.accepted.length === 1, 15_000, 'the delivery after recovery');
      expect(JSON.parse(rx.accepted[0].body)).toMatchObject({ alert_id: fired.id, rule: 'any-failure' });
      expect(logged.some((l) => l.includes('the outbox takes writes again'))).toBe(true);
      expect((await tg.gw.services.alerts!.outbox.recentFirings()).map((f) => f.id)).toEqual([fired.id]);
      await waitFor(async () => (await tg.gw.services.alerts!.outbox.pending()).length === 0, 5000, 'an empty outbox');
    } finally {
      if (!granted) db.psql(`GRANT INSERT ON ${SCHEMA}.notify_outbox TO scram_user`);
    }
  });
});
