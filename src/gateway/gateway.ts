import fs from 'node:fs';
import { settleBackendAccounts } from '../accounts/manager.ts';
import net from 'node:net';
import { newId } from '../ids.ts';
import type { Logger } from 'pino';
import type { LoadedConfig } from '../config/load.ts';
import type { TargetConfig } from '../config/schema.ts';
import { createLogger } from '../log.ts';
import type { ProxyInstance, ListenerSection, ProxyModule } from './proxy.ts';
import type { GatewayServices, TargetDirectory } from './services.ts';
import { createReloader, targetDirectory, type ReloadReport, type ReloadTrigger } from './reload.ts';
import { auditOptions, dataPaths } from '../data-dir.ts';
import { EventBus } from '../events/bus.ts';
import { LOCAL_SOURCE, SYSTEM_ACTOR } from '../events/envelope.ts';
import { SessionRegistry } from '../sessions/registry.ts';
import { initIdentity, openIdentity } from '../identity/index.ts';
import { openStateStore } from '../store/index.ts';
import { createAuthorizer } from '../authz/index.ts';
import { startAccessEnforcement } from '../access/enforcement.ts';
import { startDailyPurge } from '../../recorder/retention/daily.ts';
import { startReportSchedules } from '../../recorder/reports/schedule.ts';
import { roleTargetsOf } from '../../recorder/reports/source.ts';
import { startApi } from '../api/server.ts';
import { openAuditLog, witnessPublisher, startIndexFollower } from '../../recorder/audit/index.ts';
import { replicaIdOf, startSharedIndexFollower } from '../../recorder/audit/shared-index.ts';
import { openConfiguredRecordings } from '../../recorder/recordings/storage.ts';
import type { UploadReport } from '../../recorder/recordings/s3.ts';
import { startTelemetry } from '../telemetry.ts';
import { refusalBudgetFor } from '../sessions/refusal-budget.ts';
import { applyKeepAlive } from './slow-clients.ts';
import { balancerCheck, readProxyHeader, recordProxyHeaderRefusal } from './proxy-protocol.ts';
import { startAlerts } from '../alerts/index.ts';
import { startApprovals } from '../access/start-approvals.ts';
import { Guardrails } from '../guardrails/index.ts';

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
}

/** Upload outcomes as audit events (recording.stored / recording.upload_failed), attached to the session. */
function recordingUploadEvents(events: EventBus, log: Logger) {
  const emit = (type: 'recording.stored' | 'recording.upload_failed', r: UploadReport) => {
    const details: Record<string, unknown> = { recording: r.id, channel: r.channel, bucket: r.bucket, key: r.key, bytes: r.bytes, failures: r.failures };
    if (r.sha256) details.sha256 = r.sha256;
    if (r.parts !== undefined) details.parts = r.parts;
    if (r.localRemoved !== undefined) details.local_removed = r.localRemoved;
    if (r.phase) details.phase = r.phase;
    if (r.error) details.error = r.error;
    if (r.localPath) details.local_path = r.localPath;
    events
      .emit({ type, outcome: type === 'recording.stored' ? 'success' : 'failure', actor: SYSTEM_ACTOR as never, source: LOCAL_SOURCE, target: { name: r.bucket, protocol: 's3' }, session_id: r.sessionId, details })
      .catch((e) => log.error({ err: (e as Error).message, recording: r.id }, `${type} event could not be written`));
  };
  return {
    stored: (r: UploadReport) => emit('recording.stored', r),
    failed: (r: UploadReport) => {
      log.error({ recording: r.id, bucket: r.bucket, key: r.key, code: r.error?.code, error: r.error?.message, local_path: r.localPath }, 'recording upload keeps failing; the local copy is kept and uploading goes on');
      emit('recording.upload_failed', r);
    },
    warn: (msg: string, details: Record<string, unknown>) => log.warn(details, msg),
  };
}

function listenOn(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
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
  const events = new EventBus(audit, config.audit.durability);
  telemetry.traceEvents(events);
  const refusals = refusalBudgetFor(config.budgets, events, log);
  const services: GatewayServices = {
    config,
    dataDir,
    log,
    events,
    identity,
    store,
    authz: createAuthorizer(config, store),
    sessions: new SessionRegistry(),
    recordings: await openConfiguredRecordings(dataPaths(dataDir).recordings, config.recording.storage, recordingUploadEvents(events, log)),
    targets: targetDirectory(config.targets as TargetConfig[]),
    refusals: refusals.budget,
    auditIndex: config.audit.index.enabled
      ? startIndexFollower({ auditDir: dataPaths(dataDir).audit, intervalMs: config.audit.index.interval, batch: config.audit.index.batch, log, paused: () => !events.healthy })
      : undefined,
  };
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
  const reloader = createReloader(services, loaded.file, opts.proxies ?? []);
  services.reloadConfig = (t) => reloader.reload(t);
  if (created) {
    await events.emit({ type: 'ca.created', outcome: 'success', actor: SYSTEM_ACTOR as never, source: LOCAL_SOURCE, target: { name: 'ca', protocol: 'vigil' }, details: { data_dir: dataDir } });
  }

  // Rules listen before any listener opens: nothing a session does escapes them.
  if (config.alerts.length || config.notifiers.length) {
    services.alerts = await startAlerts({ alerts: config.alerts, notifiers: config.notifiers, dataDir, store: services.store, events, targets: services.targets, log });
  }
  if (config.guardrails.length) {
    await Guardrails.ready();
    services.guardrails = new Guardrails(config.guardrails);
  }
  const enforcement = startAccessEnforcement(services);
  const purgeJob = config.retention.auto_purge ? startDailyPurge({ config, store, events, log, paths: dataPaths(dataDir), remote: services.recordings.remote }) : undefined;
  const reportJobs = config.reports.schedules.length ? startReportSchedules({ schedules: config.reports.schedules, dataDir, roleTargets: roleTargetsOf(config), store: config.store, events, log, paths: dataPaths(dataDir) }) : undefined;
  const servers: net.Server[] = [];
  const proxies: ProxyInstance[] = [];
  const ports: Record<string, number> = {};
  let approvals: Awaited<ReturnType<typeof startApprovals>>;
  try {
    for (const mod of opts.proxies ?? []) {
      const section = (config as Record<string, unknown>)[mod.name] as ListenerSection;
      if (!section?.enabled) continue;
      const proxy = await mod.create(services, section as never);
      proxies.push(proxy);
      const plog = log.child({ proxy: mod.name });
      const fromBalancer = balancerCheck(section);
      const hand = (socket: net.Socket, remote: { ip: string; port: number }) => {
        const id = newId();
        try {
          proxy.handleConnection(socket, { id, remote, log: plog.child({ conn: id }) });
        } catch (e) {
          plog.error({ err: e }, 'proxy failed to take a connection');
          socket.destroy();
        }
      };
      const server = net.createServer({ noDelay: true }, (socket) => {
        // One bad connection must never take the process down: errors are handled per socket.
        socket.on('error', (e) => plog.debug({ err: e.message }, 'socket error'));
        // A client that vanished without a FIN (half-open) is found by keepalive probes, not left forever.
        applyKeepAlive(socket, config.slow_clients.keepalive);
        const peer = { ip: socket.remoteAddress ?? 'unknown', port: socket.remotePort ?? 0 };
        if (!fromBalancer(peer.ip)) return hand(socket, peer);
        void readProxyHeader(socket, section.proxy_protocol!.header_timeout).then((h) => {
          if (socket.destroyed) return;
          if (!h.ok) {
            recordProxyHeaderRefusal(services, mod.name, peer, h.reason);
            plog.info({ balancer: peer.ip, reason: h.reason }, 'PROXY protocol header refused; connection closed');
            return void socket.destroy();
          }
          hand(socket, h.source ?? peer);
        });
      });
      server.on('error', (e) => plog.error({ err: e }, 'listener error'));
      ports[mod.name] = await listenOn(server, section.listen.host, section.listen.port);
      servers.push(server);
      plog.info({ listen: `${section.listen.host}:${ports[mod.name]}` }, `${mod.name} listener ready`);
    }
    if (config.api.enabled) {
      const api = await startApi(services, config.api.listen, ports);
      ports.api = api.port;
      servers.push(api.server);
    }
    approvals = startApprovals(services, ports.api);
  } catch (e) {
    await approvals?.stop().catch(() => {});
    for (const s of servers) s.close();
    for (const p of proxies) await p.close().catch(() => {});
    await enforcement.stop();
    await refusals.close();
    await purgeJob?.stop();
    await reportJobs?.stop();
    await services.auditIndex?.stop();
    await services.sharedAuditIndex?.stop();
    await services.alerts?.stop().catch(() => {});
    await audit.close().catch(() => {});
    await store.close().catch(() => {});
    throw e;
  }
  await events.emit({ type: 'gateway.started', outcome: 'success', actor: SYSTEM_ACTOR as never, source: LOCAL_SOURCE, target: { name: 'gateway', protocol: 'vigil' }, details: { ports } });

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      // Balancers learn first (readiness fails) while the listeners still accept; then they close.
      services.draining = true;
      if (config.gateway.drain_notice > 0) {
        log.info({ ms: config.gateway.drain_notice }, 'draining: /readyz answers 503 before the listeners close');
        await new Promise((r) => setTimeout(r, config.gateway.drain_notice));
      }
      for (const s of servers) s.close();
      for (const p of proxies) await p.close().catch((e) => log.warn({ err: e }, 'proxy close failed'));
      await services.sessions.drain(config.gateway.shutdown_drain);
      services.sessions.terminateWhere(() => true, 'shutdown', 'The vigil gateway is shutting down.');
      await services.sessions.drain(2000);
      // Backend accounts of the sessions just ended are being locked: let that finish while the log is open.
      await settleBackendAccounts(services);
      // Recordings of the sessions just ended are being uploaded (recording.storage s3): their outcome is
      // recorded while the log is open; what does not finish in time stays in the local copy.
      await services.recordings.close?.(Math.max(config.gateway.shutdown_drain, 2000)).catch((e) => log.warn({ err: e }, 'recording uploads stop failed'));
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
  return { services, ports, close, reload: (t = { via: 'signal' }) => reloader.reload(t) };
}
