import type { Logger } from 'pino';
import type { LoadedConfig } from '../../config/load.ts';
import type { VigilConfig } from '../../config/schema.ts';
import { createLogger } from '../../log.ts';
import type { ProxyModule } from '../proxy.ts';
import type { GatewayServices } from '../services.ts';
import { createReloader, type Reloader } from '../reload.ts';
import { EventBus } from '../../events/bus.ts';
import { SessionRegistry } from '../../sessions/registry.ts';
import { openIdentity } from '../../identity/index.ts';
import { openStateStore, type StateStore } from '../../store/index.ts';
import { startAccessEnforcement } from '../../access/enforcement.ts';
import { backendAccounts, settleBackendAccounts, type ElsewhereLeases, type LeaseAnnouncement, type LeaseRequest } from '../../accounts/manager.ts';
import { refusalBudgetFor } from '../../sessions/refusal-budget.ts';
import { coreServices } from '../core-services.ts';
import { openProtocolListeners, type ProtocolListeners } from '../listeners.ts';
import { IpcAuditSink } from './ipc-sink.ts';
import { AuditUnavailableError } from '../../errors.ts';
import { CastRelay } from './cast-relay.ts';
import { isVigilMessage, sessionToWire, type PrimaryMessage, type WorkerMessage } from './messages.ts';
import { END_SESSIONS_MS, recordingsCloseMs, recordingsStepMs, settleAccountsMs, SINK_CLOSE_MS } from './shutdown.ts';

/** How long a worker waits for the primary to say whether another worker uses an account it would lock. */
const LEASE_QUERY_MS = 5_000;
/**
 * A worker that failed (to start, or while it served) exits this long after: time to report it and print
 * the error. It must not linger: its IPC channel would keep it alive, answering the primary's pings without
 * listeners, and the primary replaces a worker only when it exits (pool.ts onExit).
 */
const FAILED_EXIT_MS = 1_000;
/**
 * The primary pings every worker once a second (pool.ts PING_INTERVAL_MS), drain included. A worker that
 * has heard nothing from it for this many of its own seconds in a row takes the audit log as unavailable
 * (statements refused, those already held for their record in strict mode too; sessions ended, as with a
 * local writer that cannot write): a primary that is stopped or stuck, not gone, writes nothing, and
 * statements forwarded meanwhile (batched mode) might never be recorded. Counted in ticks, not by the clock: a worker that was itself stalled counts the stall once.
 */
const PRIMARY_SILENT_TICKS = 10;
const PRIMARY_CHECK_MS = 1_000;

/** True in a process the gateway primary forked to run protocol listeners (gateway.workers > 1). */
export function isGatewayWorker(): boolean {
  return process.env.VIGIL_GATEWAY_WORKER === '1' && typeof process.send === 'function';
}

function send(m: WorkerMessage): void {
  process.send!(m);
}

/**
 * The configuration this worker runs: the primary's, asked for once the modules are loaded. Never the
 * config file: it may have been edited since the primary read it (without a reload, or with sections a
 * reload keeps until restart, or invalid), and a worker that read it would run what the primary does not
 * (another durability, roles no config.reloaded recorded) or fail to start, again and again.
 */
export function configFromPrimary(): Promise<LoadedConfig> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: unknown) => {
      if (!isVigilMessage(m) || m.vigil !== 'config') return;
      const msg = m as Extract<PrimaryMessage, { vigil: 'config' }>;
      stop();
      resolve({ config: msg.config, file: msg.file, dataDir: msg.data_dir });
    };
    const onGone = () => {
      stop();
      reject(new Error('the gateway primary went away before it sent the configuration'));
    };
    const stop = () => {
      process.off('message', onMessage);
      process.off('disconnect', onGone);
    };
    process.on('message', onMessage);
    process.on('disconnect', onGone);
    send({ vigil: 'config_wanted' });
  });
}

/** `p`, or after `ms` go on without it (logged): one step of the shutdown the primary waits for (./shutdown.ts). */
async function within(ms: number, p: Promise<unknown>, what: string, log: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), ms)));
  const r = await Promise.race([p.then(() => undefined), late]).finally(() => clearTimeout(timer));
  if (r === 'late') log.warn({ ms }, `gateway worker shutdown: ${what} did not finish in time; going on without it`);
}

/** Like send, with `done` once the message is written to the channel (the relay bounds what waits for it). */
function sendThen(m: WorkerMessage, done?: () => void): void {
  if (!process.connected) return done?.();
  try {
    process.send!(m, undefined, undefined, () => done?.());
  } catch {
    done?.();
  }
}

/** [id, bytesFromClient, bytesToClient, statements] of each live session, flattened: one small message. */
function countsOf(sessions: SessionRegistry): (string | number)[] {
  const c: (string | number)[] = [];
  for (const s of sessions.list()) c.push(s.id, s.stats?.bytesFromClient ?? 0, s.stats?.bytesToClient ?? 0, s.stats?.statements ?? 0);
  return c;
}

/**
 * One cluster worker of `vigil serve` (gateway.workers > 1): the protocol proxies, their listeners (shared
 * with the other workers through the primary) and the sessions they hold. Events go to the primary, which
 * writes the one chain; sessions are reported to it (API list and kill); access changes are enforced here
 * from the shared store. Runs until the primary says drain or goes away.
 */
export async function runGatewayWorker(loaded: LoadedConfig, opts: { proxies: readonly ProxyModule<any>[]; log?: Logger }): Promise<void> {
  const { config, dataDir } = loaded;
  const log = (opts.log ?? createLogger(config.log.level)).child({ worker: process.pid });
  const sink = new IpcAuditSink(send);
  const events = new EventBus(sink, config.audit.durability);
  let drain: ((ms?: number) => void) | undefined;
  let drainAsked = false;
  // The primary's drain window: its deadline for this worker is counted from it (./shutdown.ts).
  let drainMs = config.gateway.shutdown_drain;
  const drainRequested = new Promise<void>((r) => (drain = (ms) => ((drainAsked = true), (drainMs = ms ?? drainMs), r())));
  // The one worker of this gateway start that locks the backend accounts an earlier run left open lists
  // them at once; every other worker listens only when the primary says that sweep is over.
  const sweeper = process.env.VIGIL_GATEWAY_SWEEPER === '1';
  let mayListen: (() => void) | undefined;
  const listenAllowed = sweeper ? Promise.resolve() : new Promise<void>((r) => (mayListen = r));
  let primaryGone = false;
  const relay = new CastRelay(() => services?.recordings, sendThen, log);
  let unheardTicks = 0;
  process.on('message', (m) => {
    if (unheardTicks >= PRIMARY_SILENT_TICKS) {
      sink.primaryHeard();
      log.warn('the gateway primary answers again; statements are forwarded again');
    }
    unheardTicks = 0;
    if (!isVigilMessage(m)) return;
    const msg = m as PrimaryMessage;
    if (msg.vigil === 'ping') return void (process.connected && send({ vigil: 'pong' }));
    if (msg.vigil === 'terminate') return void services?.sessions.get(msg.id)?.terminate(msg.reason, msg.message);
    if (msg.vigil === 'watch' || msg.vigil === 'follow' || msg.vigil === 'unfollow' || msg.vigil === 'unwatch' || msg.vigil === 'cast_credit') return relay.receive(msg);
    if (msg.vigil === 'counts') return send({ vigil: 'counts', r: msg.r, c: services ? countsOf(services.sessions) : [] });
    if (msg.vigil === 'drain') return drain?.(msg.ms);
    if (msg.vigil === 'listen') return mayListen?.();
    if (msg.vigil === 'reload') return followReload(msg.config);
    if (msg.vigil === 'leased_elsewhere') return leaseAnswers.get(msg.q)?.({ held: msg.held, roles: msg.roles ?? [] });
    if (msg.vigil === 'lock_orphaned') return void lockOrphaned(msg);
    sink.receive(msg);
  });
  // Answers of the primary to "does another worker's session use this account?" (see leasedElsewhere).
  const leaseAnswers = new Map<number, (a: ElsewhereLeases) => void>();
  let leaseQueries = 0;
  const NONE: ElsewhereLeases = { held: false, roles: [] };
  const leasedElsewhere = (base: LeaseRequest['eventBase'], lease?: LeaseAnnouncement): Promise<ElsewhereLeases> =>
    new Promise((resolve) => {
      // No answer (the primary is gone or stuck): only this process's sessions count, as in a single process.
      if (primaryGone) return resolve(NONE);
      const q = ++leaseQueries;
      const timer = setTimeout(() => answer(NONE), LEASE_QUERY_MS);
      const answer = (a: ElsewhereLeases) => {
        clearTimeout(timer);
        leaseAnswers.delete(q);
        resolve(a);
      };
      leaseAnswers.set(q, answer);
      const told = lease && base.session_id ? { session: base.session_id, account: lease.account, roles: lease.roles, base } : undefined;
      sendThen({ vigil: 'leased_elsewhere', q, user: base.actor.user, target: base.target!.name, protocol: base.target!.protocol, lease: told }, () => process.connected || answer(NONE));
    });
  // The account drivers are known once the listeners are made (each hands its target's driver to the
  // accounts): a lock of what a dead worker left waits for them (or for a drain that skips them).
  let listenersMade!: () => void;
  const driversKnown = new Promise<void>((r) => (listenersMade = r));
  const lockOrphaned = async (m: Extract<PrimaryMessage, { vigil: 'lock_orphaned' }>) => {
    await Promise.race([driversKnown, drainRequested]);
    if (!services) return log.error({ account: m.account, target: m.target }, 'could not lock a backend account a dead gateway worker left open: this worker did not start');
    await backendAccounts(services).lockOrphaned({ name: m.target, protocol: m.protocol }, m.account, 'worker_died', m.base, { worker_pid: m.worker_pid });
  };
  // The primary held back what it had for this worker until now (drain, reload, the audit log's health).
  send({ vigil: 'hello' });
  // From now on the primary pings this worker (it does once it hears hello).
  const silenceTimer = setInterval(() => {
    if (primaryGone || ++unheardTicks !== PRIMARY_SILENT_TICKS) return;
    sink.primarySilent(new AuditUnavailableError('the gateway primary stopped answering; nothing can be recorded'));
    log.error({ silent_s: PRIMARY_SILENT_TICKS }, 'the gateway primary stopped answering; refusing statements until it answers again');
  }, PRIMARY_CHECK_MS);
  silenceTimer.unref();
  // The primary is gone (killed): nothing can be recorded, so nothing may go on. End the sessions and exit.
  process.on('disconnect', () => {
    primaryGone = true;
    for (const answer of [...leaseAnswers.values()]) answer(NONE);
    relay.stopAll();
    sink.disconnected();
    services?.sessions.terminateWhere(() => true, 'audit_unavailable', 'The vigil gateway stopped; the session is closed.');
    setTimeout(() => process.exit(1), 500).unref();
    drain?.();
  });
  // Signals to the whole process group (Ctrl-C) are the primary's to act on: it drains the workers.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => {});

  let services: GatewayServices | undefined;
  let follower: Reloader | undefined;
  // A reload that arrives while the services are still being built is applied once they are.
  let reloadedMeanwhile: VigilConfig | undefined;
  const followReload = (next: VigilConfig) => {
    if (!follower) return void (reloadedMeanwhile = next);
    void follower.reload({ via: 'signal' }, next).catch((e) => log.error({ err: e }, 'config reload failed in a worker'));
  };
  const listeners: ProtocolListeners = { servers: [], proxies: [], ports: {} };
  let store: StateStore | undefined;
  try {
    store = await openStateStore(dataDir, config.store, { log });
    const identity = await openIdentity(dataDir, config, store);
    const refusals = refusalBudgetFor(config.budgets, events, log);
    const sessions = new SessionRegistry();
    sessions.observe({
      opened: (s) => send({ vigil: 'session_opened', session: sessionToWire(s) }),
      closed: (id, reason) => {
        if (!primaryGone) send({ vigil: 'session_closed', id, reason });
      },
    });
    services = await coreServices({ config, dataDir, log, events, identity, store, sessions, refusals: refusals.budget });
    follower = createReloader(services, loaded.file, opts.proxies, { follower: true });
    if (reloadedMeanwhile) followReload(reloadedMeanwhile);
    const enforcement = startAccessEnforcement(services, { expire: false });
    const accounts = backendAccounts(services);
    accounts.leasedElsewhere = leasedElsewhere;
    if (!sweeper) accounts.skipStartSweeps();
    await Promise.race([listenAllowed, drainRequested]);
    // Asked to drain while starting (the gateway stops): it never takes a connection.
    if (!drainAsked) {
      await openProtocolListeners(services, opts.proxies, log, listeners);
      listenersMade();
      send({ vigil: 'ready', ports: listeners.ports });
      log.info({ ports: listeners.ports }, `gateway worker ready (pid ${process.pid})`);
    }
    if (sweeper) {
      // The listeners' sweeps began as they were created; this worker's own leases wait for them in order.
      await accounts.sweepsDone();
      if (!primaryGone) send({ vigil: 'swept' });
    }

    await drainRequested;
    for (const s of listeners.servers) s.close();
    for (const p of listeners.proxies) await p.close().catch((e) => log.warn({ err: e }, 'proxy close failed'));
    // Each step is bounded and the primary waits for the sum (./shutdown.ts): it kills no worker whose
    // steps keep to their bounds.
    if (!primaryGone) await sessions.drain(drainMs);
    sessions.terminateWhere(() => true, 'shutdown', 'The vigil gateway is shutting down.');
    await sessions.drain(END_SESSIONS_MS);
    await within(settleAccountsMs(services.config), settleBackendAccounts(services), 'locking backend accounts', log);
    const uploads = services.recordings.close?.(recordingsCloseMs(drainMs)).catch((e) => log.warn({ err: e }, 'recording uploads stop failed'));
    await within(recordingsStepMs(drainMs), uploads ?? Promise.resolve(), 'recording uploads', log);
    await enforcement.stop();
    await refusals.close();
    // Every record sent is acknowledged before the worker goes: the primary closes the chain after.
    await sink.close(SINK_CLOSE_MS);
  } catch (e) {
    if (!primaryGone) send({ vigil: 'failed', error: (e as Error).message });
    setTimeout(() => process.exit(1), FAILED_EXIT_MS).unref();
    for (const s of listeners.servers) s.close();
    for (const p of listeners.proxies) await p.close().catch(() => {});
    throw e;
  } finally {
    await store?.close().catch(() => {});
  }
  if (!primaryGone) send({ vigil: 'drained' });
  process.disconnect?.();
}
