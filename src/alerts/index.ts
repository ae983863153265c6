import type { Logger } from 'pino';
import type { EventBus } from '../events/bus.ts';
import type { StateStore } from '../store/types.ts';
import { LOCAL_SOURCE, SYSTEM_ACTOR } from '../events/envelope.ts';
import type { TargetDirectory } from '../config/target-directory.ts';
import type { AlertRuleConfig, NotifierConfig } from './config.ts';
import { AlertEngine, type Firing, type Resolution } from './engine.ts';
import { formatTime } from '../events/envelope.ts';
import { openOutbox, type OutboxStore } from '../notifiers/outbox.ts';
import { Dispatcher } from '../notifiers/dispatcher.ts';
import { SeenStore } from './seen.ts';
import { FiredGroupStore } from './fired-groups.ts';
import { OutboxRetry } from './outbox-retry.ts';
import { MARK_EVERY_MS, OutboxMark, notificationOf, reconcileOutbox } from './reconcile.ts';
import { dataPaths } from '../data-dir.ts';

/**
 * TEST ONLY: VIGIL_TEST_CRASH_AFTER_AUDIT=alert.fired (or alert.resolved) kills the process (SIGKILL)
 * right after that event is in the audit log and before its notifications are in the outbox, so a test
 * can show that the next start queues them (test/alerts/alerts-review4-crash-reconcile.test.ts).
 */
function crashForTest(type: string): void {
  if (process.env.VIGIL_TEST_CRASH_AFTER_AUDIT === type) process.kill(process.pid, 'SIGKILL');
}

/** Whether the outbox mark may move forward: false once a notification could be missing from the outbox. */
interface MarkHealth {
  ok: boolean;
}

export interface AlertService {
  engine: AlertEngine;
  dispatcher: Dispatcher;
  outbox: OutboxStore;
  /** Shared with the service a reload starts: a notification this one lost keeps the mark where it is. */
  markHealth: MarkHealth;
  /** Prometheus lines: firings per rule, outbox depth, deliveries and failures per notifier. */
  renderMetrics(lines: string[]): void;
  stop(): Promise<void>;
}

export interface AlertDeps {
  alerts: AlertRuleConfig[];
  notifiers: NotifierConfig[];
  dataDir: string;
  /** The state store: with PostgreSQL the outbox and firings live there, shared by the replicas. */
  store?: StateStore;
  events: EventBus;
  targets: TargetDirectory;
  log: Logger;
  /**
   * The service a config reload replaces, still running: this one takes the event stream over from it
   * without a gap (rules whose definition did not change keep their state: windows, fired groups
   * awaiting resolution, see AlertEngine.start), then stops it. Its dispatcher finishes the delivery it
   * has under way before this one starts, so nothing is sent twice; meanwhile firings wait in the outbox.
   */
  previous?: AlertService;
}

/**
 * Rules, outbox and notifiers of a gateway. A firing is recorded as `alert.fired` (durable) and then put in
 * the outbox for each of its notifiers in one transaction (state.db, or the shared PostgreSQL store) with its
 * id in the ledger of alert ids (resolutions likewise); the dispatcher delivers from there. A process killed
 * between the two writes is caught up at the next start (reconcile.ts), exactly once per alert id.
 */
export async function startAlerts(d: AlertDeps): Promise<AlertService> {
  const outbox = openOutbox(d.dataDir, d.store);
  const dispatcher = new Dispatcher(d.notifiers, outbox, d.log.child({ component: 'notifiers' }));
  const log = d.log.child({ component: 'alerts' });
  // A store that is away or busy delays a notification, never loses it without a trace.
  const retry = new OutboxRetry(log, () => dispatcher.kick());
  const mark = new OutboxMark(d.dataDir);
  const markHealth: MarkHealth = d.previous?.markHealth ?? { ok: true };
  if (!d.previous) {
    // A new process (a reload's previous service is still writing, and already did this).
    await reconcileOutbox({ auditDir: dataPaths(d.dataDir).audit, outbox, mark, log }).catch((e: Error) => {
      markHealth.ok = false;
      log.error({ err: e.message }, 'alerts: could not compare the audit log with the outbox; alerts recorded before a crash may not be notified (checked again at the next start)');
    });
  }
  // Moved only while nothing waits to be written and nothing was given up: the next start re-checks from it.
  const moveMark = (): void => {
    if (retry.dropped) markHealth.ok = false;
    if (!markHealth.ok || retry.depth) return;
    try {
      mark.set(Date.now());
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'alerts: could not save the outbox mark');
    }
  };
  moveMark();
  const marker = setInterval(moveMark, MARK_EVERY_MS);
  marker.unref();
  const onFire = async (f: Firing): Promise<void> => {
    const event = await d.events.emit({
      type: 'alert.fired',
      outcome: 'success',
      actor: SYSTEM_ACTOR as never,
      source: LOCAL_SOURCE,
      target: { name: `alert/${f.rule}`, protocol: 'vigil' },
      // `time` (of the event that completed the threshold) lets a restart rebuild the notification exactly.
      details: { rule: f.rule, group: f.group, count: f.count, threshold: f.threshold, window_ms: f.window_ms, event_ids: f.event_ids, notify: f.notify, time: f.time },
    });
    crashForTest(event.type);
    await retry.submit({ what: { alert_id: event.id, rule: f.rule, notify: f.notify }, write: () => outbox.enqueueFiring(event.id, f.rule, event.time, notificationOf(event), f.notify) });
  };
  const onResolve = async (r: Resolution): Promise<void> => {
    const last = formatTime(new Date(Math.floor(r.last_event_time_us / 1000)), r.last_event_time_us % 1000);
    const event = await d.events.emit({
      type: 'alert.resolved',
      outcome: 'success',
      actor: SYSTEM_ACTOR as never,
      source: LOCAL_SOURCE,
      target: { name: `alert/${r.rule}`, protocol: 'vigil' },
      details: { rule: r.rule, group: r.group, window_ms: r.window_ms, last_event_time: last, notify: r.notify },
    });
    crashForTest(event.type);
    // Like a firing, one transaction for every notifier with the alert id in the ledger: a retry, or the
    // reconciliation at the next start, never queues it twice.
    await retry.submit({ what: { alert_id: event.id, rule: r.rule, notify: r.notify }, write: () => outbox.enqueueFiring(event.id, r.rule, event.time, notificationOf(event), r.notify) });
  };
  const byKey = new Map(d.targets.all().map((t) => [`${t.protocol}/${t.name}`, t.labels]));
  // A session passes the same target object with each of its events: look its labels up once.
  const seen = new WeakMap<object, Record<string, string> | undefined>();
  const labelsOf = (t: { name: string; protocol: string }) => {
    if (seen.has(t)) return seen.get(t);
    const l = byKey.get(`${t.protocol}/${t.name}`);
    seen.set(t, l);
    return l;
  };
  let seenStore: SeenStore | undefined;
  let firedStore: FiredGroupStore | undefined;
  let engine: AlertEngine;
  try {
    seenStore = d.alerts.some((r) => r.first_in !== undefined) ? new SeenStore(d.dataDir) : undefined;
    // Opened always (not only with threshold rules): it also forgets the fired groups of removed rules.
    firedStore = new FiredGroupStore(d.dataDir);
    engine = new AlertEngine(d.alerts, { onFire, onResolve, labelsOf, seen: seenStore, fired: firedStore, log });
    await engine.start(d.events, d.previous?.engine);
  } catch (e) {
    // Nothing started (a reload keeps the running service): give back what was opened for it.
    seenStore?.close();
    firedStore?.close();
    clearInterval(marker);
    mark.close();
    await retry.close();
    await outbox.close();
    throw e;
  }
  // Off the event path: the previous service's engine no longer listens; its outbox writes and the
  // delivery it has in flight (up to a notifier's timeout) end before this dispatcher looks at the outbox.
  const previousStopped = (d.previous?.stop() ?? Promise.resolve())
    .catch((e: Error) => log.warn({ err: e.message }, 'alerts: the replaced alert service did not stop cleanly'))
    .then(() => dispatcher.start());

  const renderMetrics = (lines: string[]): void => {
    lines.push('# HELP vigil_alerts_fired_total Alert firings since start, by rule.');
    lines.push('# TYPE vigil_alerts_fired_total counter');
    for (const [rule, n] of [...engine.fired].sort()) lines.push(`vigil_alerts_fired_total{rule="${rule}"} ${n}`);
    lines.push('# HELP vigil_alerts_evaluation_queue Events waiting for alert evaluation.');
    lines.push('# TYPE vigil_alerts_evaluation_queue gauge');
    lines.push(`vigil_alerts_evaluation_queue ${engine.pending}`);
    const depth = dispatcher.depth;
    const stats = [...dispatcher.stats].sort(([a], [b]) => (a < b ? -1 : 1));
    lines.push('# HELP vigil_notifier_queue_depth Notifications waiting in the outbox, by notifier.');
    lines.push('# TYPE vigil_notifier_queue_depth gauge');
    for (const [name] of stats) lines.push(`vigil_notifier_queue_depth{notifier="${name}"} ${depth[name] ?? 0}`);
    lines.push('# HELP vigil_notifier_deliveries_total Notifications a receiver accepted, by notifier.');
    lines.push('# TYPE vigil_notifier_deliveries_total counter');
    for (const [name, s] of stats) lines.push(`vigil_notifier_deliveries_total{notifier="${name}"} ${s.delivered}`);
    lines.push('# HELP vigil_notifier_failures_total Failed delivery attempts, by notifier.');
    lines.push('# TYPE vigil_notifier_failures_total counter');
    for (const [name, s] of stats) lines.push(`vigil_notifier_failures_total{notifier="${name}"} ${s.failures}`);
    lines.push('# HELP vigil_notifier_dead_letters_total Notifications moved to the dead letters since start, by notifier.');
    lines.push('# TYPE vigil_notifier_dead_letters_total counter');
    for (const [name, s] of stats) lines.push(`vigil_notifier_dead_letters_total{notifier="${name}"} ${s.dead}`);
    lines.push('# HELP vigil_alerts_outbox_waiting Outbox writes kept in memory while the state store refuses them.');
    lines.push('# TYPE vigil_alerts_outbox_waiting gauge');
    lines.push(`vigil_alerts_outbox_waiting ${retry.depth}`);
    lines.push('# HELP vigil_alerts_outbox_dropped_total Outbox writes given up (too many waiting, or still waiting at stop).');
    lines.push('# TYPE vigil_alerts_outbox_dropped_total counter');
    lines.push(`vigil_alerts_outbox_dropped_total ${retry.dropped}`);
  };

  return {
    engine,
    dispatcher,
    outbox,
    markHealth,
    renderMetrics,
    async stop() {
      await engine.stop();
      await retry.close();
      clearInterval(marker);
      moveMark();
      mark.close();
      await previousStopped;
      await dispatcher.close();
      await outbox.close();
      seenStore?.close();
      firedStore?.close();
    },
  };
}
