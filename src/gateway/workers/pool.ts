import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { AppendReceipt, AuditSink } from '../../../recorder/types.ts';
import type { AuditEvent } from '../../events/envelope.ts';
import type { EventBus } from '../../events/bus.ts';
import type { RemoteSession, SessionRegistry } from '../../sessions/registry.ts';
import type { LiveCast } from '../../../recorder/types.ts';
import type { VigilConfig } from '../../config/schema.ts';
import { isVigilMessage, sessionFromWire, type EventItem, type LeaseWire, type PrimaryMessage, type WorkerMessage } from './messages.ts';
import { workerShutdownMs } from './shutdown.ts';

const STRICT = { strict: true } as const;
/** How often the primary tells workers whether the log is writable (they refuse new sessions while not). */
const HEALTH_INTERVAL_MS = 250;
/**
 * Past the longest a worker's own shutdown may take (each of its steps is bounded: ./shutdown.ts), how long
 * the primary waits before it kills the worker: exiting, closing the store, a loaded machine.
 */
const DRAIN_MARGIN_MS = 5_000;
/** A worker that dies this soon after it started is restarted after a growing pause (no fork loop). */
const EARLY_DEATH_MS = 10_000;
const MAX_RESTART_PAUSE_MS = 30_000;
/**
 * A worker is asked whether it is alive this often, and is taken as hung (killed, so that its sessions end
 * and a replacement takes connections) after this many questions in a row went unanswered. Counted in the
 * primary's own ticks, not by the clock: a primary that was itself stalled (its timer fires once after the
 * stall) never mistakes the answers still waiting in its channel for silence.
 */
const PING_INTERVAL_MS = 1000;
const MAX_UNANSWERED_PINGS = 30;
/** How long a sessions listing waits for a worker's counts; a worker that does not answer shows its last ones. */
const COUNTS_TIMEOUT_MS = 1000;

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
  /** Send every worker the configuration the primary runs now (after it applied a reload). */
  reload(): void;
  /** Workers now running: cluster id and pid. */
  workers(): { id: number; pid: number }[];
  /**
   * Workers taking connections now (listening, not draining). At 0 the primary's shared listening socket
   * is closed and clients are refused: /readyz fails so that balancers send them elsewhere.
   */
  listening(): number;
}

interface OpenSession {
  actor: AuditEvent['actor'];
  source: AuditEvent['source'];
  target: AuditEvent['target'];
  session_id: string;
  /** Its session.start is durable (until then it may still fail, and then there is nothing to end). */
  recorded: boolean;
}

interface WorkerState {
  worker: Worker;
  pid: number;
  startedAt: number;
  ok: (number | string)[];
  failed: [number, string, string][];
  flushScheduled: boolean;
  /**
   * Sessions whose session.start was handed to the log and whose session.end was not, from this worker's
   * own events. Tracked when an append is made, not when it is durable: a worker can die with either
   * append pending, and its session must then get exactly one end (onExit, settled).
   */
  open: Map<string, OpenSession>;
  /** Sessions whose own session.end is being appended: back to `open` should it fail. */
  ending: Map<string, OpenSession>;
  /** How it exited, once it did: a session.start durable after that gets its gateway_crash end then. */
  exit?: string | number | null;
  /** Session ids mirrored into the primary's registry. */
  live: Set<string>;
  /**
   * It said hello: its message handler is in place. Node drops messages that reach a process with no
   * handler, and a worker loads its modules first, so what is sent to it before waits in `held`.
   */
  greeted: boolean;
  held: PrimaryMessage[];
  /** Its listeners are open and it was not asked to drain. */
  listening: boolean;
  /** The one worker of this gateway start that sweeps backend accounts left open by an earlier run. */
  sweeper: boolean;
  /** Pings sent since the worker last said anything (see MAX_UNANSWERED_PINGS). */
  unanswered: number;
  /** Killed because it stopped answering. */
  hung?: boolean;
  /** Backend account leases of its live sessions (as it told them: leased_elsewhere), by session id. */
  leases: Map<string, LeaseWire & { user: string; targetName: string; protocol: string }>;
  /**
   * Every backend account its sessions ever leased (key protocol/target/account): should it die, these may
   * be open with nobody left to lock them.
   */
  accounts: Map<string, Extract<PrimaryMessage, { vigil: 'lock_orphaned' }>>;
}

/** A live watch in the primary of a session this worker holds: the relay's recordings as LiveCasts. */
interface RemoteWatch {
  st: WorkerState;
  onCast: (cast: LiveCast) => void;
  onLost: () => void;
  /** Recordings followed now: where their lines go. */
  follows: Map<number, { onData: (lines: Buffer) => unknown; onEnd: () => void }>;
  /** cast_data bytes the watcher took since the last cast_credit (granted back once a tick). */
  granted: number;
}

export interface WorkerPoolOptions {
  count: number;
  audit: AuditSink;
  /** Publish a worker's event to the primary's observers once durable (alerts, metrics, live streams). */
  publish: (e: AuditEvent) => void;
  events: EventBus;
  sessions: SessionRegistry;
  log: Logger;
  /**
   * The configuration the primary runs now (what it started with, or its last applied reload): each
   * worker, first or replacement, runs exactly this, never what the file says now.
   */
  running: () => { config: VigilConfig; file?: string; dataDir: string };
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
    // Health is not held: the worker gets the health of the moment when it says hello.
    if (!st.greeted) return void (m.vigil === 'health' || st.held.push(m));
    if (st.worker.isConnected()) st.worker.send(m);
  };
  /** Hello: first the health of now (a worker starts out healthy), then what waited, in order. */
  const greeted = (st: WorkerState) => {
    if (st.greeted) return;
    st.greeted = true;
    sendTo(st, { vigil: 'health', ...health() });
    const held = st.held;
    st.held = [];
    for (const m of held) sendTo(st, m);
  };
  // The start sweep of backend accounts (accounts an earlier run left open) runs in one worker; the
  // others listen only once it is over. A sweep in every worker, or in one forked to replace a dead one,
  // would lock the accounts the sessions of the other workers lease (they are not leased in its process).
  // (A sweeper that dies before 'swept' fails the gateway's start, like any worker dying before the start
  // settles: the others have not reported ready yet. Replacements after the start never sweep.)
  let swept = false;
  const letListen = (st: WorkerState) => {
    if (!st.sweeper) sendTo(st, { vigil: 'listen' });
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

  /** The end of a session its worker can no longer write: it died (or its own end failed after it did). */
  const endCrashed = (st: WorkerState, s: OpenSession) => {
    void events
      .emit({ type: 'session.end', outcome: 'failure', actor: s.actor, source: s.source, target: s.target, session_id: s.session_id, details: { reason: 'gateway_crash', worker_pid: st.pid, worker_exit: st.exit } })
      .catch((e) => log.error({ err: (e as Error).message, session: s.session_id }, 'session.end of a dead worker could not be written'));
  };

  /**
   * A worker's session.start or session.end handed to the log (before it is durable). The log appends in
   * call order, so a gateway_crash end written after this comes after the start in the chain, and an end
   * handed over here is the session's one end unless it fails (then: `settled`).
   */
  const track = (st: WorkerState, e: AuditEvent) => {
    if (!e.session_id) return;
    if (e.type === 'session.start') {
      st.open.set(e.session_id, { actor: e.actor, source: e.source, target: e.target, session_id: e.session_id, recorded: false });
    } else if (e.type === 'session.end') {
      const s = st.open.get(e.session_id);
      st.open.delete(e.session_id);
      if (s) st.ending.set(e.session_id, s);
    }
  };
  /** The outcome of an append `track` saw: every session whose start is in the log gets exactly one end. */
  const settled = (st: WorkerState, e: AuditEvent, err: Error | undefined) => {
    if (!e.session_id) return;
    if (e.type === 'session.start') {
      const s = st.open.get(e.session_id) ?? st.ending.get(e.session_id);
      if (!s) return;
      if (err) {
        // Not in the log: the session never started (the worker refused it), so no end is owed.
        st.open.delete(e.session_id);
        st.ending.delete(e.session_id);
        return;
      }
      s.recorded = true;
      // Its worker died while the start was pending (onExit left it here): its end is written now.
      if (st.exit !== undefined && st.open.delete(e.session_id)) endCrashed(st, s);
    } else if (e.type === 'session.end') {
      const s = st.ending.get(e.session_id);
      st.ending.delete(e.session_id);
      if (!s || !err || !s.recorded) return;
      // Its own end was not written: open again, so that the worker's exit ends it; after its exit, now.
      if (st.exit !== undefined) endCrashed(st, s);
      else st.open.set(e.session_id, s);
    }
  };

  const done = (st: WorkerState, item: EventItem, err: Error | undefined, receipt?: AppendReceipt) => {
    if (err) {
      st.failed.push([item.n, (err as { code?: string }).code ?? 'VIGIL_AUDIT_UNAVAILABLE', err.message]);
    } else {
      st.ok.push(item.n, receipt?.seq ?? 0, receipt?.hash ?? '');
      publish(item.e);
    }
    settled(st, item.e, err);
    scheduleAcks(st);
  };
  // One shared callback for fire-and-forget appends: no closure per event.
  const laterDone = (err: Error | undefined, _e: AuditEvent, ctx: { st: WorkerState; item: EventItem }) => done(ctx.st, ctx.item, err);

  const appendAll = (st: WorkerState, items: EventItem[]) => {
    // In arrival order: the chain keeps each worker's order of events.
    for (const item of items) {
      track(st, item.e);
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

  // ---- live watch of a worker's session (src/gateway/workers/cast-relay.ts is the worker's side) ------
  // Nothing crosses the IPC channel for a session until someone watches it; the watcher leaving (or the
  // session's recordings ending) stops the relay. Bounds: the worker stops relaying when the channel backs
  // up (MAX_RELAY_QUEUED), and streamSession cuts a watcher that does not read (MAX_BUFFERED). A from-start
  // catch-up is paced by the watcher: the worker sends it only against credit, granted back here as the
  // watcher's onData settles (its connection drained), as a local follow awaits that same promise.
  const watches = new Map<number, RemoteWatch>();
  let watchSeq = 0;
  const remoteOf = (st: WorkerState, sessionId: string): RemoteSession => ({
    watchCasts(onCast, onLost) {
      const w = ++watchSeq;
      watches.set(w, { st, onCast, onLost, follows: new Map(), granted: 0 });
      sendTo(st, { vigil: 'watch', w, id: sessionId });
      return () => {
        if (watches.delete(w)) sendTo(st, { vigil: 'unwatch', w });
      };
    },
  });
  /** The watcher took these lines: credit back to the relay, one message a tick however many arrived. */
  const grant = (w: number, rw: RemoteWatch, bytes: number) => {
    if (watches.get(w) !== rw) return;
    const first = rw.granted === 0;
    rw.granted += bytes;
    if (!first) return;
    setImmediate(() => {
      const bytes = rw.granted;
      rw.granted = 0;
      if (watches.get(w) === rw && bytes > 0) sendTo(rw.st, { vigil: 'cast_credit', w, bytes });
    });
  };
  const castData = (w: number, channel: number, lines: string) => {
    const rw = watches.get(w);
    if (!rw) return;
    const bytes = Buffer.byteLength(lines);
    const f = rw.follows.get(channel);
    // Lines for a follow that has just stopped were not taken by anyone, but they were sent against credit.
    if (!f) return grant(w, rw, bytes);
    const granted = () => grant(w, rw, bytes);
    let taken: unknown;
    try {
      taken = f.onData(Buffer.from(lines, 'utf8'));
    } catch {
      return granted();
    }
    void Promise.resolve(taken).then(granted, granted);
  };
  const remoteCast = (w: number, rw: RemoteWatch, channel: number, rid: string): LiveCast => ({
    id: rid,
    channel,
    follow(fromStart, onData, onEnd) {
      rw.follows.set(channel, { onData, onEnd });
      sendTo(rw.st, { vigil: 'follow', w, channel, from_start: fromStart });
      return () => {
        if (rw.follows.delete(channel) && watches.get(w) === rw) sendTo(rw.st, { vigil: 'unfollow', w, channel });
      };
    },
  });

  // ---- byte counts of workers' sessions, for GET /v1/sessions -----------------------------------------
  // Fetched when a listing asks rather than sent periodically: a worker's proxies count into its own
  // memory, and the counts are read only when someone lists sessions (rarely, by people), so a round trip
  // then (one small message each way per worker that holds sessions, well under a millisecond) costs far
  // less than a stream of every session's counts from every worker, all the time, for nobody; and the
  // list shows counts as of the request rather than as of the last tick. Concurrent listings share a round.
  const countRequests = new Map<number, { pending: Set<number>; done: () => void }>();
  let countsSeq = 0;
  let countsRound: Promise<void> | undefined;
  const countsDone = (r: number) => {
    const req = countRequests.get(r);
    countRequests.delete(r);
    req?.done();
  };
  const countsArrived = (st: WorkerState, r: number, c: (string | number)[]) => {
    for (let i = 0; i + 3 < c.length; i += 4) {
      const id = c[i] as string;
      if (!st.live.has(id)) continue;
      const s = sessions.get(id)?.session;
      if (s) s.stats = { bytesFromClient: c[i + 1] as number, bytesToClient: c[i + 2] as number, statements: c[i + 3] as number };
    }
    const req = countRequests.get(r);
    if (req?.pending.delete(st.worker.id) && req.pending.size === 0) countsDone(r);
  };
  const fetchCounts = (): Promise<void> => {
    if (countsRound) return countsRound;
    const asked = [...states.values()].filter((st) => st.live.size > 0 && st.worker.isConnected());
    if (asked.length === 0) return Promise.resolve();
    const r = ++countsSeq;
    const round = new Promise<void>((resolve) => {
      const timer = setTimeout(() => countsDone(r), COUNTS_TIMEOUT_MS);
      countRequests.set(r, {
        pending: new Set(asked.map((st) => st.worker.id)),
        done: () => {
          clearTimeout(timer);
          if (countsRound === round) countsRound = undefined;
          resolve();
        },
      });
    });
    countsRound = round;
    for (const st of asked) sendTo(st, { vigil: 'counts', r });
    return round;
  };
  sessions.countAdoptedWith(fetchCounts);

  /**
   * Each worker leases per-engineer backend accounts in its own process: before it changes an engineer's
   * account's roles or locks it (under the account's server-side lock), it asks whether a session of that
   * engineer on that target lives in another worker, and which database roles those sessions' leases need
   * (the account holds the union over all workers). A worker's session_closed comes before its own
   * question, so of two workers ending her last sessions at once the later one to ask always locks.
   */
  const leasedByOthers = (asking: WorkerState, q: { user: string; target: string; protocol: string }): { held: boolean; roles: string[] } => {
    let held = false;
    const roles = new Set<string>();
    for (const other of states.values()) {
      if (other === asking) continue;
      for (const id of other.live) {
        const s = sessions.get(id)?.session;
        if (s && s.principal.user === q.user && s.target.name === q.target && s.protocol === q.protocol) held = true;
      }
      // The roles of those sessions' leases: the account must keep them while it narrows to the asker's.
      for (const [id, l] of other.leases) {
        if (other.live.has(id) && l.user === q.user && l.targetName === q.target && l.protocol === q.protocol) for (const r of l.roles) roles.add(r);
      }
    }
    return { held, roles: [...roles].sort() };
  };
  /** The worker tells of a lease as it asks (under the account's lock): recorded before the answer goes out. */
  const noteLease = (st: WorkerState, q: Extract<WorkerMessage, { vigil: 'leased_elsewhere' }>) => {
    const l = q.lease;
    if (!l) return;
    if (st.live.has(l.session)) st.leases.set(l.session, { ...l, user: q.user, targetName: q.target, protocol: q.protocol });
    st.accounts.set(`${q.protocol}/${q.target}/${l.account}`, { vigil: 'lock_orphaned', account: l.account, target: q.target, protocol: q.protocol, base: l.base, worker_pid: st.pid });
  };

  /**
   * Accounts a dead worker's sessions leased: it cannot lock them (SIGKILL, killed as hung), and a
   * replacement never sweeps, so without this they could log in (with their roles) until the gateway
   * restarts. A live worker (the replacement, if none other) locks each unless a session still leases it.
   */
  const orphaned: Extract<PrimaryMessage, { vigil: 'lock_orphaned' }>[] = [];
  const dispatchOrphans = () => {
    if (orphaned.length === 0) return;
    const live = [...states.values()].filter((st) => st.exit === undefined && !st.hung);
    // One that listens already has its account drivers; a replacement gets them held until its hello.
    const to = live.find((st) => st.listening && st.worker.isConnected()) ?? live[0];
    if (!to) return;
    for (const m of orphaned.splice(0)) sendTo(to, m);
  };

  const onMessage = (st: WorkerState, m: unknown) => {
    if (!isVigilMessage(m)) return;
    const msg = m as WorkerMessage;
    st.unanswered = 0;
    switch (msg.vigil) {
      case 'pong':
        return;
      case 'config_wanted': {
        // Not held: the worker listens for this one answer before anything else. A reload held for it
        // is in this configuration already.
        const { config, file, dataDir } = opts.running();
        st.held = st.held.filter((h) => h.vigil !== 'reload');
        if (st.worker.isConnected()) st.worker.send({ vigil: 'config', config, file, data_dir: dataDir } satisfies PrimaryMessage);
        return;
      }
      case 'hello':
        return greeted(st);
      case 'events':
        return appendAll(st, msg.items);
      case 'session_opened': {
        const s = sessionFromWire(msg.session, { id: st.worker.id, pid: st.pid });
        st.live.add(s.id);
        sessions.adopt(s, (reason, message) => sendTo(st, { vigil: 'terminate', id: s.id, reason, message }), remoteOf(st, s.id));
        return;
      }
      case 'counts':
        return countsArrived(st, msg.r, msg.c);
      case 'leased_elsewhere':
        noteLease(st, msg);
        return sendTo(st, { vigil: 'leased_elsewhere', q: msg.q, ...leasedByOthers(st, msg) });
      case 'cast_open': {
        const rw = watches.get(msg.w);
        if (rw?.st === st) rw.onCast(remoteCast(msg.w, rw, msg.channel, msg.rid));
        return;
      }
      case 'cast_data':
        return castData(msg.w, msg.channel, msg.lines);
      case 'cast_end': {
        const f = watches.get(msg.w)?.follows.get(msg.channel);
        watches.get(msg.w)?.follows.delete(msg.channel);
        return f?.onEnd();
      }
      case 'watch_dropped': {
        const rw = watches.get(msg.w);
        watches.delete(msg.w);
        return rw?.onLost();
      }
      case 'session_closed':
        st.live.delete(msg.id);
        st.leases.delete(msg.id);
        return void sessions.get(msg.id)?.close(msg.reason);
      case 'refused_session':
        return events.noteRefusedSession();
      case 'swept':
        if (swept) return;
        swept = true;
        for (const other of states.values()) letListen(other);
        return;
      case 'ready':
        st.listening = !draining;
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
    // Watches of its sessions: their recordings end here (the watchers then hear the session.end below).
    for (const [w, rw] of watches) {
      if (rw.st !== st) continue;
      watches.delete(w);
      for (const f of rw.follows.values()) f.onEnd();
      rw.follows.clear();
    }
    for (const [r, req] of countRequests) if (req.pending.delete(st.worker.id) && req.pending.size === 0) countsDone(r);
    for (const id of st.live) sessions.get(id)?.close('gateway_crash');
    st.live.clear();
    st.leases.clear();
    orphaned.push(...st.accounts.values());
    st.accounts.clear();
    const crashed = !draining || (code !== 0 && code !== null) || signal !== null;
    st.exit = signal ?? code;
    const ended = st.open.size;
    // Sessions whose own end was handed to the log keep it (it is written, or `settled` writes this one).
    // Those whose start is still pending are ended when it is durable (`settled`): written now, this end
    // could come before a start that then fails.
    for (const s of st.open.values()) {
      if (!s.recorded) continue;
      st.open.delete(s.session_id);
      endCrashed(st, s);
    }
    if (!startedSettled) {
      startedSettled = true;
      startedReject(new Error(`gateway worker ${st.pid} exited (${signal ?? code}) before it was ready`));
      return;
    }
    if (draining) return dispatchOrphans();
    if (crashed) log.error({ worker: st.pid, code, signal, sessions_ended: ended, hung: st.hung }, 'gateway worker died; its sessions ended; starting a new one');
    restartPause = Date.now() - st.startedAt < EARLY_DEATH_MS ? Math.min(Math.max(restartPause * 2, 500), MAX_RESTART_PAUSE_MS) : 0;
    dispatchOrphans();
    if (restartPause === 0) return fork();
    log.warn({ pause_ms: restartPause }, 'gateway workers keep dying soon after they start; waiting before the next');
    setTimeout(() => draining || fork(), restartPause).unref();
  };
  let restartPause = 0;

  const fork = (sweeper = false) => {
    const worker = cluster.fork({ VIGIL_GATEWAY_WORKER: '1', ...(sweeper ? { VIGIL_GATEWAY_SWEEPER: '1' } : {}) });
    const st: WorkerState = {
      worker, pid: worker.process.pid ?? 0, startedAt: Date.now(), ok: [], failed: [], flushScheduled: false, open: new Map(), ending: new Map(), live: new Set(),
      greeted: false, held: [], listening: false, sweeper, unanswered: 0, leases: new Map(), accounts: new Map(),
    };
    states.set(worker.id, st);
    // Accounts of a dead worker that no live worker was there to lock (all died, a restart pause).
    dispatchOrphans();
    // A replacement (or a worker forked after the sweep) listens as soon as it is up.
    if (swept) letListen(st);
    worker.on('message', (m) => onMessage(st, m));
    worker.on('exit', (code, signal) => onExit(st, code, signal));
    worker.on('error', (e) => log.warn({ worker: st.pid, err: e.message }, 'gateway worker channel error'));
  };

  for (let i = 0; i < opts.count; i++) fork(i === 0);

  let lastHealthy = audit.healthy;
  const healthTimer = setInterval(() => {
    if (audit.healthy === lastHealthy) return;
    lastHealthy = audit.healthy;
    for (const st of states.values()) sendTo(st, { vigil: 'health', ...health() });
  }, HEALTH_INTERVAL_MS);
  healthTimer.unref();

  // A worker that stops answering (a loop that never yields, a blocking call that never returns) would keep
  // its sessions and the connection the primary handed it hanging: it is killed, and onExit ends its
  // sessions (gateway_crash) and starts a replacement. Before hello it cannot answer (still loading).
  const pingTimer = setInterval(() => {
    for (const st of states.values()) {
      if (!st.greeted || st.hung || !st.worker.isConnected()) continue;
      // While draining, each worker's deadline bounds a hung one (drain below); the pings go on, as the
      // workers take a primary that stops pinging for one that stopped (worker.ts PRIMARY_SILENT_TICKS).
      if (!draining && st.unanswered >= MAX_UNANSWERED_PINGS) {
        st.hung = true;
        log.error({ worker: st.pid, unanswered_ms: st.unanswered * PING_INTERVAL_MS }, 'gateway worker stopped answering; killing it');
        st.worker.process.kill('SIGKILL');
        continue;
      }
      st.unanswered++;
      sendTo(st, { vigil: 'ping' });
    }
  }, PING_INTERVAL_MS);
  pingTimer.unref();

  return {
    started: () => startedP,
    reload: () => {
      const { config } = opts.running();
      for (const st of states.values()) sendTo(st, { vigil: 'reload', config });
    },
    workers: () => [...states.values()].map((s) => ({ id: s.worker.id, pid: s.pid })),
    listening: () => [...states.values()].filter((s) => s.listening).length,
    async drain(drainMs: number) {
      draining = true;
      clearInterval(healthTimer);
      for (const st of states.values()) st.listening = false;
      const exits = [...states.values()].map(
        (st) =>
          new Promise<void>((resolve) => {
            if (st.worker.isDead()) return resolve();
            const kill = setTimeout(() => {
              log.warn({ worker: st.pid }, 'gateway worker did not finish draining in time; killed');
              st.worker.process.kill('SIGKILL');
            }, workerShutdownMs(drainMs, opts.running().config) + DRAIN_MARGIN_MS);
            st.worker.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            sendTo(st, { vigil: 'drain', ms: drainMs });
          }),
      );
      await Promise.all(exits);
      clearInterval(pingTimer);
    },
  };
}
