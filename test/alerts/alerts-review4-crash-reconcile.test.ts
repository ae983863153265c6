import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { httpReceiver } from '../support/http-receiver.ts';
import { searchAuditLog } from '../../recorder/audit/read.ts';

/**
 * `alert.fired` (or `alert.resolved`) is appended to the audit log, then its notifications are queued in
 * the outbox. A gateway killed between the two writes (VIGIL_TEST_CRASH_AFTER_AUDIT, a test-only hook that
 * SIGKILLs the process right after the audit append) must not leave the alert unannounced: the next start
 * finds it in the audit log, queues it, and the receiver gets it exactly once.
 */

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const listenersOff = { ssh: { enabled: false }, mysql: { enabled: false }, postgres: { enabled: false } };

/** Start a gateway that kills itself at `crashAfter`; resolves once it is gone (killed before or after it was ready). */
async function runUntilCrash(config: Record<string, unknown>, base: string, crashAfter: string): Promise<string> {
  process.env.VIGIL_TEST_CRASH_AFTER_AUDIT = crashAfter;
  try {
    return await startGatewayProcess(config, base).then(
      async (g) => String(await g.exited),
      (e: Error) => e.message,
    );
  } finally {
    delete process.env.VIGIL_TEST_CRASH_AFTER_AUDIT;
  }
}

function stateDb<T>(base: string, read: (db: Database.Database) => T): T {
  const db = new Database(path.join(base, 'data', 'state.db'), { readonly: true });
  try {
    return read(db);
  } finally {
    db.close();
  }
}

describe('alert notifications after a gateway killed between the audit append and the outbox write', () => {
  for (const crashAfter of ['alert.fired', 'alert.resolved'] as const) {
    it(`${crashAfter}: the next start queues its notification; the receiver gets it exactly once`, async () => {
      const hook = await httpReceiver();
      cleanups.push(hook.close);
      const base = tempDir('vigil-review4-crash-');
      const config = {
        ...listenersOff,
        notifiers: [{ name: 'hook', kind: 'webhook', url: hook.url('/hook'), backoff_initial: '50ms', timeout: '5s' }],
        // Fires at every start; a short window resolves it a second later (for the alert.resolved case).
        alerts: [{ name: 'started', match: { type: 'gateway.started' }, window: crashAfter === 'alert.resolved' ? '1s' : '1h', notify: ['hook'] }],
      };
      const ended = await runUntilCrash(config, base, crashAfter);
      expect(ended).toContain('SIGKILL');

      // Precondition: the event is in the audit log and its notification is nowhere in the outbox.
      const recorded = (await searchAuditLog(path.join(base, 'data', 'audit'), { type: crashAfter })).records.map((r) => r.event);
      expect(recorded).toHaveLength(1);
      const lost = recorded[0]!;
      const queued = stateDb(base, (db) => (db.prepare('SELECT payload FROM notify_outbox').all() as { payload: string }[]).map((r) => JSON.parse(r.payload).alert_id));
      expect(queued).not.toContain(lost.id);
      expect(hook.accepted.map((r) => JSON.parse(r.body).alert_id)).not.toContain(lost.id);

      const second: GatewayProcess = await startGatewayProcess(config, base);
      cleanups.push(() => second.stop());
      await waitFor(() => hook.accepted.some((r) => JSON.parse(r.body).alert_id === lost.id), 20_000, `the notification of ${lost.id}`);
      await second.stop();
      cleanups.pop();

      // A further start does not send it again: it is in the outbox's ledger of alert ids.
      const third: GatewayProcess = await startGatewayProcess(config, base);
      cleanups.push(() => third.stop());
      const before = hook.accepted.length;
      await waitFor(() => hook.accepted.length > before, 20_000, 'the firing of the third start');
      await third.stop();
      cleanups.pop();

      const bodies = hook.accepted.map((r) => JSON.parse(r.body));
      const forLost = bodies.filter((b) => b.alert_id === lost.id);
      expect(forLost).toHaveLength(1);
      expect(forLost[0]).toMatchObject({ source: 'vigil', action: crashAfter === 'alert.fired' ? 'trigger' : 'resolve', rule: 'started', alert_id: lost.id });
      // No notification reached the receiver twice.
      const ids = bodies.map((b) => b.alert_id);
      expect(new Set(ids).size).toBe(ids.length);
    }, 120_000);
  }
});
