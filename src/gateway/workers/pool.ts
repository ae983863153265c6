import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { AppendReceipt, AuditSink } from '../../../recorder/types.ts';
import type { AuditEvent } from '../../events/envelope.ts';
import type { EventBus } from '../../events/bus.ts';
import type { SessionRegistry } from '../../sessions/registry.ts';
import { isVigilMessage, sessionFromWire, type EventItem, type PrimaryMessage, type WorkerMessage } from './messages.ts';

const STRICT = { strict: true } as const;
/** How often the primary tells workers whether the log is writable (they refuse new sessions while not). */
const HEALTH_INTERVAL_MS = 250;
/** Past the drain window, how long workers get to write their last records before they are killed. */
const DRAIN_GRACE_MS = 15_000;
/** A worker that dies this soon after it started is restarted after a growing pause (no fork loop). */
const EARLY_DEATH_MS = 10_000;
const MAX_RESTART_PAUSE_MS = 30_000;

/**
 * The primary's side of its workers (gateway.workers > 1): forks them, appends their events to the one
 * audit chain and acknowledges durability, mirrors their live sessions into the primary's registry (so the
 * API lists and kills them), restarts a worker that dies and drains them at shutdown.
 */
export interface WorkerPool {
  /** Resolves with the protocol ports once every worker listens; rejects if one fails to start. */
  started(): Promise<Record<string, number>>;
  /** Ask every worker to drain (close listeners, let sessions finish, end the rest) and wait for exits. */
  drain(drainMs: number): Promise<void>;
  /** Tell every worker to re-read the config file (after the primary applied it). */
  reload(): void;
  /** Workers now running: cluster id and pid. */
  workers(): { id: number; pid: number }[];
}

interface OpenSession {
  actor: AuditEvent['actor'];
  source: AuditEvent['source'];
  target: AuditEvent['target'];
  session_id: string;
}

interface WorkerState {
  worker: Worker;
  pid: number;
  startedAt: number;
  ok: (number | string)[];
  failed: [number, string, string][];
  flushScheduled: boolean;
  /** Sessions started (session.start appended) and not yet ended, from this worker's own events. */
  open: Map<string, OpenSession>;
  /** Session ids mirrored into the primary's registry. */
  live: Set<string>;
}

export interface WorkerPoolOptions {
  count: number;
  audit: AuditSink;
  /** Publish a worker's event to the primary's observers once durable (alerts, metrics, live streams). */
  publish: (e: AuditEvent) => void;
  events: EventBus;
  sessions: SessionRegistry;
  log: Logger;
}

export function startWorkerPool(opts: WorkerPoolOptions): WorkerPool {
  const { audit, publish, events, sessions, log } = opts;
  const states = new Map<number, WorkerState>();
  let draining = false;
  let ready = 0;
  let ports: Record<string, number> = {};
  let startedResolve!: (p: Record<string, number>) => void;
  let startedReject!: (e: Error) => void;
  let startedSettled = false;
  const startedP = new Promise<Record<string, number>>((res, rej) => {
    startedResolve = res;
    startedReject = rej;
  });
  startedP.catch(() => {});

  const health = (): { healthy: boolean; failure?: string } => (audit.healthy ? { healthy: true } : { healthy: false, failure: audit.failure?.message });
  const sendTo = (st: WorkerState, m: PrimaryMessage) => {
    if (st.worker.isConnected()) st.worker.send(m);
  };

  const flushAcks = (st: WorkerState) => {
    st.flushScheduled = false;
    if (st.ok.length === 0 && st.failed.length === 0) return;
    const m: PrimaryMessage = { vigil: 'acks', ok: st.ok, failed: st.failed, ...health() };
    st.ok = [];
    st.failed = [];
    sendTo(st, m);
  };
  const scheduleAcks = (st: WorkerState) => {
    if (st.flushScheduled) return;
    st.flushScheduled = true;
    setImmediate(() => flushAcks(st));
  };

  const track = (st: WorkerState, e: AuditEvent) => {
    if (!e.session_id) return;
    if (e.type === 'session.start') st.open.set(e.session_id, { actor: e.actor, source: e.source, target: e.target, session_id: e.session_id });
    else if (e.type === 'session.end') st.open.delete(e.session_id);
  };

  const done = (st: WorkerState, item: EventItem, err: Error | undefined, receipt?: AppendReceipt) => {
    if (err) {
      st.failed.push([item.n, (err as { code?: string }).code ?? 'VIGIL_AUDIT_UNAVAILABLE', err.message]);
    } else {
      st.ok.push(item.n, receipt?.seq ?? 0, receipt?.hash ?? '');
      track(st, item.e);
      publish(item.e);
    }
    scheduleAcks(st);
  };
  // One shared callback for fire-and-forget appends: no closure per event.
  const laterDone = (err: Error | undefined, _e: AuditEvent, ctx: { st: WorkerState; item: EventItem }) => done(ctx.st, ctx.item, err);

  const appendAll = (st: WorkerState, items: EventItem[]) => {
    // In arrival order: the chain keeps each worker's order of events.
    for (const item of items) {
      if (item.l && audit.appendLater) {
        audit.appendLater(item.e, laterDone, { st, item });
      } else {
        audit.append(item.e, item.s ? STRICT : undefined).then(
          (r) => done(st, item, undefined, r),
          (e: Error) => done(st, item, e),
        );
      }
    }
  };

  const onMessage = (st: WorkerState, m: unknown) => {
    if (!isVigilMessage(m)) return;
    const msg = m as WorkerMessage;
    switch (msg.vigil) {
      case 'events':
        return appendAll(st, msg.items);
      case 'session_opened': {
        const s = sessionFromWire(msg.session, { id: st.worker.id, pid: st.pid });
        st.live.add(s.id);
        sessions.adopt(s, (reason, message) => sendTo(st, { vigil: 'terminate', id: s.id, reason, message }));
        return;
      }
      case 'session_closed':
        st.live.delete(msg.id);
        return void sessions.get(msg.id)?.close(msg.reason);
      case 'refused_session':
        return events.noteRefusedSession();
      case 'ready':
        ports = { ...ports, ...msg.ports };
        if (++ready === opts.count && !startedSettled) {
          startedSettled = true;
          startedResolve(ports);
        }
        return;
      case 'failed':
        if (!startedSettled) {
          startedSettled = true;
          startedReject(new Error(`gateway worker ${st.pid} failed to start: ${msg.error}`));
        }
        return;
      case 'drained':
        return;
    }
  };

  /** A worker died: its sessions are gone (their clients saw the connection drop); the log says so. */
  const onExit = (st: WorkerState, code: number | null, signal: string | null) => {
    states.delete(st.worker.id);
    for (const id of st.live) sessions.get(id)?.close('gateway_crash');
    st.live.clear();
    const crashed = !draining || (code !== 0 && code !== null) || signal !== null;
    for (const s of st.open.values()) {
      void events
        .emit({ type: 'session.end', outcome: 'failure', actor: s.actor, source: s.source, target: s.target, session_id: s.session_id, details: { reason: 'gateway_crash', worker_pid: st.pid, worker_exit: signal ?? code } })
        .catch((e) => log.error({ err: (e as Error).message, session: s.session_id }, 'session.end of a dead worker could not be written'));
    }
    if (!startedSettled) {
      startedSettled = true;
      startedReject(new Error(`gateway worker ${st.pid} exited (${signal ?? code}) before it was ready`));
      return;
    }
    if (draining) return;
    if (crashed) log.error({ worker: st.pid, code, signal, sessions_ended: st.open.size }, 'gateway worker died; its sessions ended; starting a new one');
    restartPause = Date.now() - st.startedAt < EARLY_DEATH_MS ? Math.min(Math.max(restartPause * 2, 500), MAX_RESTART_PAUSE_MS) : 0;
    if (restartPause === 0) return fork();
    log.warn({ pause_ms: restartPause }, 'gateway workers keep dying soon after they start; waiting before the next');
    setTimeout(() => draining || fork(), restartPause).unref();
  };
  let restartPause = 0;

  const fork = () => {
    const worker = cluster.fork({ VIGIL_GATEWAY_WORKER: '1' });
    const st: WorkerState = { worker, pid: worker.process.pid ?? 0, startedAt: Date.now(), ok: [], failed: [], flushScheduled: false, open: new Map(), live: new Set() };
    states.set(worker.id, st);
    worker.on('message', (m) => onMessage(st, m));
    worker.on('exit', (code, signal) => onExit(st, code, signal));
    worker.on('error', (e) => log.warn({ worker: st.pid, err: e.message }, 'gateway worker channel error'));
  };

  for (let i = 0; i < opts.count; i++) fork();

  let lastHealthy = audit.healthy;
  const healthTimer = setInterval(() => {
    if (audit.healthy === lastHealthy) return;
    lastHealthy = audit.healthy;
    for (const st of states.values()) sendTo(st, { vigil: 'health', ...health() });
  }, HEALTH_INTERVAL_MS);
  healthTimer.unref();

  return {
    started: () => startedP,
    reload: () => {
      for (const st of states.values()) sendTo(st, { vigil: 'reload' });
    },
    workers: () => [...states.values()].map((s) => ({ id: s.worker.id, pid: s.pid })),
    async drain(drainMs: number) {
      draining = true;
      clearInterval(healthTimer);
      const exits = [...states.values()].map(
        (st) =>
          new Promise<void>((resolve) => {
            if (st.worker.isDead()) return resolve();
            const kill = setTimeout(() => {
              log.warn({ worker: st.pid }, 'gateway worker did not finish draining in time; killed');
              st.worker.process.kill('SIGKILL');
            }, drainMs + DRAIN_GRACE_MS);
            st.worker.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            sendTo(st, { vigil: 'drain' });
          }),
      );
      await Promise.all(exits);
    },
  };
}
