import fs from 'node:fs';
import { settleBackendAccounts } from '../accounts/manager.ts';
import net from 'node:net';
import type { Logger } from 'pino';
import type { LoadedConfig } from '../config/load.ts';
import { createLogger } from '../log.ts';
import type { ProxyInstance, ProxyModule } from './proxy.ts';
import type { GatewayServices } from './services.ts';
import type { TargetDirectory } from '../config/target-directory.ts';
import { createReloader } from './reload.ts';
import type { ReloadReport, ReloadTrigger } from './reload-report.ts';
import { auditOptions, dataPaths } from '../data-dir.ts';
import { EventBus } from '../events/bus.ts';
import { LOCAL_SOURCE, SYSTEM_ACTOR } from '../events/envelope.ts';
import { SessionRegistry } from '../sessions/registry.ts';
import { initIdentity, openIdentity } from '../identity/index.ts';
import { openStateStore } from '../store/index.ts';
import { startAccessEnforcement } from '../access/enforcement.ts';
import { startDailyPurge } from './retention.ts';
import { startReportSchedules } from '../../recorder/reports/schedule.ts';
import { roleTargetsOf } from '../../recorder/reports/source.ts';
import { startApi } from '../api/server.ts';
import { openAuditLog, witnessPublisher, startIndexFollower } from '../../recorder/audit/index.ts';
import { replicaIdOf, startSharedIndexFollower } from '../../recorder/audit/shared-index.ts';
import { openProtocolListeners } from './listeners.ts';
import { startWorkerPool, type WorkerPool } from './workers/pool.ts';
import { WithWorkerEvents } from './workers/foreign.ts';
import { startTelemetry } from '../telemetry.ts';
import { refusalBudgetFor } from '../sessions/refusal-budget.ts';
import { startAlerts } from '../alerts/index.ts';
import { startApprovals, wantsApprovals } from '../access/start-approvals.ts';
import { coreServices } from './core-services.ts';
import { SharedSessions } from '../sessions/shared-registry.ts';

export interface Gateway {
  services: GatewayServices;
  /** Bound ports by listener name (`ssh`, `postgres`, `mysql`, `api`); useful when config asked for port 0. */
  ports: Record<string, number>;
  /** Graceful stop: stop accepting, drain live sessions for `gateway.shutdown_drain`, seal the log. */
  close(): Promise<void>;
  /** Re-read the config file and apply what can change live (SIGHUP, `vigil config reload`). */
  reload(trigger?: ReloadTrigger): Promise<ReloadReport>;
}

export interface StartOptions {
  log?: Logger;
  /** The protocols to serve, the same the config was parsed with (app/gateway.ts passes proxies/registry.ts). */
  proxies?: readonly ProxyModule<any>[];
  /**
   * Run the protocol listeners in this many forked processes (Node cluster; `vigil serve` passes
   * gateway.workers). Absent or 1: this process serves them itself, as in-process tests do.
   */
  workers?: number;
}

/**
 * Assemble the services bundle and open every enabled listener. Creates the CA on first start.
 * Nothing listens before the config, keys, store and audit log are all ready.
 */
export async function startGateway(loaded: LoadedConfig, opts: StartOptions = {}): Promise<Gateway> {
  const { config, dataDir } = loaded;
  const log = opts.log ?? createLogger(config.log.level);
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const telemetry = await startTelemetry(log);

  const created = await initIdentity(dataDir, config);
  const store = await openStateStore(dataDir, config.store, { log });
  const identity = await openIdentity(dataDir, config, store);
  const witness = config.audit.witness && (config.audit.witness.file || config.audit.witness.url) ? witnessPublisher(config.audit.witness, log) : undefined;
  const audit = await openAuditLog(dataPaths(dataDir).audit, { ...auditOptions(dataDir, config, log), onSignedHead: witness && ((h) => witness.publish(h)) });
  const clustered = (opts.workers ?? 1) > 1;
  const sink = clustered ? new WithWorkerEvents(audit) : audit;
  const events = new EventBus(sink, config.audit.durability);
  telemetry.traceEvents(events);
  const refusals = refusalBudgetFor(config.budgets, events, log);
  const services = await coreServices({ config, dataDir, log, events, identity, store, sessions: new SessionRegistry(), refusals: refusals.budget });
  if (config.audit.index.enabled) {
    services.auditIndex = startIndexFollower({ auditDir: dataPaths(dataDir).audit, intervalMs: config.audit.index.interval, batch: config.audit.index.batch, log, paused: () => !events.healthy });
  }
  if (store.liveSessions) services.sharedSessions = await SharedSessions.start({ registry: services.sessions, store: store.liveSessions, replica: replicaIdOf(dataDir), log });
  if (store.auditChains) {
    // Replicas on one PostgreSQL store: this chain's signed records go to the shared index, off the hot path.
    services.sharedAuditIndex = startSharedIndexFollower({
      chains: store.auditChains, auditDir: dataPaths(dataDir).audit, replica: replicaIdOf(dataDir), publicKeyPem: fs.readFileSync(dataPaths(dataDir).auditPublicKey, 'utf8'),
      intervalMs: config.audit.index.interval, batch: config.audit.index.batch, log, paused: () => !events.healthy,
    });
  }
  // Before any session: recordings an earlier process could not finish uploading (crash, S3 down at stop).
  void services.recordings.resumeUploads?.().then(
    (n) => n && log.info({ recordings: n }, 'uploading recordings left on local disk by an earlier run'),
    (e) => log.warn({ err: (e as Error).message }, 'could not list recordings left on local disk'),
  );
  services.recordings.salvageLostUploads?.();
  let pool: WorkerPool | undefined;
  let approvals: Awaited<ReturnType<typeof startApprovals>>;
  // Set once the API listens (approval links point at it); until then a reload leaves approvals to start.
  let approvalsPort: { api: number | undefined } | undefined;
  const reloader = createReloader(services, loaded.file, opts.proxies ?? [], { fileDataDir: loaded.fileDataDir });
  // A reload may name approval notifiers where there were none (or none left, or remove the alert service).
  const followApprovals = async () => {
    if (!approvalsPort) return;
    if (wantsApprovals(services) && !approvals) approvals = startApprovals(services, approvalsPort.api);
    else if (!wantsApprovals(services) && approvals) {
      const stopping = approvals;
      approvals = undefined;
      await stopping.stop().catch((e) => log.warn({ err: e }, 'approvals stop failed'));
    }
  };
  let reloads: Promise<unknown> = Promise.resolve();
  // gateway.workers > 1: a reload that applied is followed by every worker (for the sessions they admit).
  const reload = (t: ReloadTrigger) => {
    const done = reloads.then(async () => {
      const report = await reloader.reload(t);
      if (report.ok) {
        pool?.reload();
        await followApprovals();
      }
      return report;
    });
    reloads = done.catch(() => {});
    return done;
  };
  services.reloadConfig = reload;
  if (created) {
    await events.emit({ type: 'ca.created', outcome: 'success', actor: SYSTEM_ACTOR as never, source: LOCAL_SOURCE, target: { name: 'ca', protocol: 'vigil' }, details: { data_dir: dataDir } });
  }

  // Rules listen before any listener opens: nothing a session does escapes them.
  if (config.alerts.length || config.notifiers.length) {
    services.alerts = await startAlerts({ alerts: config.alerts, notifiers: config.notifiers, dataDir, store: services.store, events, targets: services.targets, log });
  }
  const enforcement = startAccessEnforcement(services);
  const purgeJob = config.retention.auto_purge ? startDailyPurge({ config, store, events, log, paths: dataPaths(dataDir), remote: services.recordings.remote }) : undefined;
  const reportJobs = config.reports.schedules.length ? startReportSchedules({ schedules: config.reports.schedules, dataDir, roleTargets: () => roleTargetsOf(services.config), store: config.store, events, log, paths: dataPaths(dataDir) }) : undefined;
  pool = clustered
    ? startWorkerPool({
        count: opts.workers!, audit, publish: (sink as WithWorkerEvents).publish, events, sessions: services.sessions, log,
        // What this process runs (a reload swaps services.config), whatever the file says by now.
        running: () => ({ config: services.config, file: loaded.file, dataDir }),
      })
    : undefined;
  const servers: net.Server[] = [];
  const proxies: ProxyInstance[] = [];
  const ports: Record<string, number> = {};
  try {
    if (pool) {
      // gateway.workers > 1: the workers open the protocol listeners; the primary waits until all have.
      Object.assign(ports, await pool.started());
    } else {
      await openProtocolListeners(services, opts.proxies ?? [], log, { servers, proxies, ports });
    }
    if (config.api.enabled) {
      const api = await startApi(services, config.api.listen, ports, pool ? { listening: () => pool!.listening() > 0 } : {});
      ports.api = api.port;
      servers.push(api.server);
    }
    approvals = startApprovals(services, ports.api);
    approvalsPort = { api: ports.api };
  } catch (e) {
    await approvals?.stop().catch(() => {});
    await pool?.drain(0);
    for (const s of servers) s.close();
    for (const p of proxies) await p.close().catch(() => {});
    await enforcement.stop();
    await refusals.close();
    await purgeJob?.stop();
    await reportJobs?.stop();
    await services.auditIndex?.stop();
    await services.sharedAuditIndex?.stop();
    await services.sharedSessions?.stop();
    await services.alerts?.stop().catch(() => {});
    await audit.close().catch(() => {});
    await store.close().catch(() => {});
    throw e;
  }
  await events.emit({ type: 'gateway.started', outcome: 'success', actor: SYSTEM_ACTOR as never, source: LOCAL_SOURCE, target: { name: 'gateway', protocol: 'vigil' }, details: pool ? { ports, workers: pool.workers().map((w) => w.pid) } : { ports } });

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      // Balancers learn first (readiness fails) while the listeners still accept; then they close.
      services.draining = true;
      // The running values: a reload may have changed them since start.
      const { drain_notice: drainNotice, shutdown_drain: shutdownDrain } = services.config.gateway;
      if (drainNotice > 0) {
        log.info({ ms: drainNotice }, 'draining: /readyz answers 503 before the listeners close');
        await new Promise((r) => setTimeout(r, drainNotice));
      }
      // Workers close their listeners, drain their sessions and send their last records before they exit.
      await pool?.drain(shutdownDrain);
      for (const s of servers) s.close();
      for (const p of proxies) await p.close().catch((e) => log.warn({ err: e }, 'proxy close failed'));
      await services.sessions.drain(shutdownDrain);
      services.sessions.terminateWhere(() => true, 'shutdown', 'The vigil gateway is shutting down.');
      await services.sessions.drain(2000);
      await services.sharedSessions?.stop();
      // Backend accounts of the sessions just ended are being locked: let that finish while the log is open.
      await settleBackendAccounts(services);
      // Recordings of the sessions just ended are being uploaded (recording.storage s3): their outcome is
      // recorded while the log is open; what does not finish in time stays in the local copy.
      await services.recordings.close?.(Math.max(shutdownDrain, 2000)).catch((e) => log.warn({ err: e }, 'recording uploads stop failed'));
      await enforcement.stop();
      // Open budget windows are summarised now, before the log closes: nothing counted is lost.
      await refusals.close();
      await purgeJob?.stop();
      await reportJobs?.stop();
      await approvals?.stop().catch((e) => log.warn({ err: e }, 'approvals stop failed'));
      await services.auditIndex?.stop();
      // Evaluate what sessions recorded up to now; undelivered notifications stay in the outbox for the next start.
      await services.alerts?.stop().catch((e) => log.warn({ err: e }, 'alerts stop failed'));
      await events
        .emit({ type: 'gateway.stopped', outcome: 'success', actor: SYSTEM_ACTOR as never, source: LOCAL_SOURCE, target: { name: 'gateway', protocol: 'vigil' }, details: {} })
        .catch(() => {});
      await audit.close().catch((e) => log.error({ err: e }, 'audit log close failed'));
      // The closing checkpoint signs the last records: index them now rather than at the next start.
      await services.sharedAuditIndex?.stop({ flushWithinMs: 5000 });
      await store.close().catch(() => {});
      await telemetry.shutdown().catch(() => {});
    })());
  return { services, ports, close, reload: (t = { via: 'signal' }) => reload(t) };
}
