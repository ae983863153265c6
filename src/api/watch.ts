import type http from 'node:http';
import type { WebSocket } from 'ws';
import type { Logger } from 'pino';
import type { Actor } from '../access/service.ts';
import type { AuditEvent } from '../events/envelope.ts';
import type { EventBus } from '../events/bus.ts';
import type { LiveCast, RecordingStore } from '../../recorder/types.ts';
import { controlEvent, refuseUnlessPrivileged, SessionNotFoundError, sessionView, type SessionControlDeps } from '../sessions/control.ts';
import type { LiveSession, SessionRegistry } from '../sessions/registry.ts';

/**
 * Live watch of one session, read-only: over a WebSocket (GET /v1/sessions/:id/watch, `vigil watch`) or as
 * newline-delimited JSON on a chunked HTTP response (the web console, which signs in with a cookie, not a
 * client certificate the upgrade could check). Nothing the watcher sends is read, let alone passed on.
 * Terminal sessions are streamed from their recordings as the recording writer lands them (src:
 * recorder/recordings LiveCast), database sessions as their statements are recorded (the event bus): the
 * watcher sees what the audit trail holds, through no other path. A session held by a cluster worker
 * (gateway.workers > 1) has its recordings written there: the worker relays their lines over IPC for as
 * long as the watch lasts (src/gateway/workers/cast-relay.ts), and its statements arrive as events.
 *
 * Messages (JSON text frames, or lines, server to watcher):
 * - `{type:"session", session, mode:"terminal"|"statements", from:"start"|"now"}` first;
 * - `{type:"cast", channel, header?, events:[[t, code, data], …]}` asciicast v2 lines of a channel's recording;
 * - `{type:"cast_end", channel}` when a channel's recording is complete;
 * - `{type:"statement", event}` a `db.query.start` / `db.query` audit event of the session;
 * - `{type:"end", reason}` the session ended; the socket is then closed (1000).
 */

const WATCH_PATH = /^\/v1\/sessions\/([^/]+)\/watch$/;
/** A watcher this far behind is cut off (1013) rather than buffered without bound. */
const MAX_BUFFERED = 4 * 1024 * 1024;
/**
 * A recording followed from the start is sent in chunks (recorder CATCH_UP_CHUNK), the next only once the
 * watcher's connection holds less than this: well under MAX_BUFFERED, so a watcher reading the past at its
 * own pace (several channels at once included) is never taken for one that stopped reading.
 */
const CATCH_UP_BUFFERED = 1024 * 1024;
/** How often a paced catch-up looks whether the watcher's connection has taken what it was given. */
const CATCH_UP_POLL_MS = 10;
/** After session.end, how long the last recording writes may take to reach the watcher. */
const END_GRACE_MS = 3000;
const TERMINAL_PROTOCOLS = new Set(['ssh']);
const STATEMENT_TYPES = new Set(['db.query.start', 'db.query']);

/** The session id of a watch URL path, or undefined when `path` is not one. */
export function watchSessionId(path: string): string | undefined {
  const m = WATCH_PATH.exec(path);
  if (!m) return undefined;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return undefined;
  }
}

export interface WatchDeps {
  events: EventBus;
  sessions: SessionRegistry;
  recordings: RecordingStore;
  log: Logger;
}

/** Where a watch is streamed: both transports look alike to streamSession. */
export interface WatchSink {
  open(): boolean;
  /** Bytes written but not yet taken by the watcher's connection (backpressure). */
  buffered(): number;
  send(text: string): void;
  close(code: number, reason: string): void;
  onClose(fn: () => void): void;
}

export function webSocketSink(ws: WebSocket): WatchSink {
  // Nothing from the watcher is used; a watcher that talks is simply not listened to.
  ws.on('message', () => {});
  ws.on('error', () => ws.terminate());
  return {
    open: () => ws.readyState === ws.OPEN,
    buffered: () => ws.bufferedAmount,
    send: (text) => ws.send(text),
    close: (code, reason) => ws.close(code, reason),
    onClose: (fn) => ws.on('close', fn),
  };
}

/** NDJSON on a chunked response: one message a line; the close code goes in a last `closed` line. */
export function ndjsonSink(res: http.ServerResponse, headers: Record<string, string>): WatchSink {
  res.writeHead(200, { ...headers, 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
  // The headers leave now, so the watcher knows at once that the watch was accepted.
  res.flushHeaders();
  const open = () => !res.writableEnded && !res.destroyed;
  return {
    open,
    buffered: () => res.writableLength,
    send: (text) => void res.write(text + '\n'),
    close: (code, reason) => {
      if (open()) res.end(JSON.stringify({ type: 'closed', code, reason }) + '\n');
    },
    onClose: (fn) => res.on('close', fn),
  };
}

/**
 * The checks before a watch, shared by the API and the console: admins and auditors only (a refusal is
 * recorded), a live session, and session.watch_started written durably before the first byte.
 */
export async function beginWatch(deps: SessionControlDeps, actor: Actor, id: string, fromStart: boolean): Promise<LiveSession> {
  await refuseUnlessPrivileged(deps, actor, 'session.watch_started', id, 'watch sessions');
  const handle = deps.sessions.get(id);
  if (!handle || handle.endReason) throw new SessionNotFoundError(id);
  await deps.events.emit(controlEvent('session.watch_started', actor, id, handle.session, 'success', { from: fromStart ? 'start' : 'now' }));
  return handle.session;
}

/** Why a watch ended, as session.watch_ended records it. */
type WatchEnd = 'session_ended' | 'watcher_closed' | 'too_slow' | 'access_ended' | 'failed';

/** A running watch, for whoever checks that the watcher may still watch. */
export interface WatchHandle {
  /** The watcher's access ended (`reason`: revoked, expired, locked, …): close with `code`/`text`, recorded as access_ended. */
  end(code: number, text: string, reason: string): void;
}

/**
 * Stream `session` to `out` until the session ends or the watcher leaves, then write session.watch_ended.
 * session.watch_started is written (durably) by the caller before the upgrade.
 */
export function streamSession(out: WatchSink, deps: WatchDeps, actor: Actor, session: LiveSession, fromStart: boolean): WatchHandle {
  const id = session.id;
  const started = Date.now();
  const terminal = TERMINAL_PROTOCOLS.has(session.protocol);
  const cleanups: (() => void)[] = [];
  let bytes = 0;
  let ending: WatchEnd | undefined;
  const following = new Set<number>();
  let sessionEnd: { reason: unknown } | undefined;

  /** Resolves once the watcher's connection is below CATCH_UP_BUFFERED (or the watch is over). */
  const watcherCaughtUp = (): Promise<void> | undefined => {
    if (ending || !out.open() || out.buffered() <= CATCH_UP_BUFFERED) return undefined;
    return new Promise<void>((resolve) => {
      const look = () => (ending || !out.open() || out.buffered() <= CATCH_UP_BUFFERED ? resolve() : setTimeout(look, CATCH_UP_POLL_MS).unref());
      look();
    });
  };

  const send = (msg: unknown): void => {
    if (!out.open() || ending) return;
    if (out.buffered() > MAX_BUFFERED) return finish('too_slow', 1013, 'watcher too slow; reconnect with from=now');
    const text = JSON.stringify(msg);
    bytes += text.length;
    out.send(text);
  };

  function finish(why: WatchEnd, code: number, text: string, extra: Record<string, unknown> = {}): void {
    if (ending) return;
    ending = why;
    for (const c of cleanups.splice(0)) c();
    if (out.open()) out.close(code, text);
    deps.events
      .emit(controlEvent('session.watch_ended', actor, id, session, 'success', { why, ...extra, duration_ms: Date.now() - started, bytes }))
      .catch((e) => deps.log.error({ err: (e as Error).message, session: id }, 'watch: could not record session.watch_ended'));
  }

  /** The session is over: once its recordings have landed (or after a grace period), say so and close. */
  const endWhenSettled = (): void => {
    if (!sessionEnd || ending) return;
    if (following.size === 0) {
      send({ type: 'end', reason: sessionEnd.reason });
      finish('session_ended', 1000, 'session ended');
    }
  };

  send({ type: 'session', session: sessionView(session), mode: terminal ? 'terminal' : 'statements', from: fromStart ? 'start' : 'now' });

  cleanups.push(
    deps.events.subscribe((e: AuditEvent) => {
      if (e.session_id !== id) return;
      if (!terminal && STATEMENT_TYPES.has(e.type)) send({ type: 'statement', event: e });
      else if (e.type === 'session.end') {
        sessionEnd = { reason: e.details.reason };
        endWhenSettled();
        const t = setTimeout(() => {
          following.clear();
          endWhenSettled();
        }, END_GRACE_MS);
        t.unref();
        cleanups.push(() => clearTimeout(t));
      }
    }),
  );

  // A session held by a cluster worker: its recordings are written there, and relayed only while watched.
  const remote = deps.sessions.get(id)?.remote;
  const watchCasts: ((onCast: (cast: LiveCast) => void) => () => void) | undefined = remote
    ? (onCast) => remote.watchCasts(onCast, () => finish('too_slow', 1013, 'the live view fell behind the session; reconnect with from=now'))
    : deps.recordings.watch && ((onCast) => deps.recordings.watch!(id, onCast));
  if (terminal && watchCasts) {
    const onCast = (cast: LiveCast): void => {
      if (ending) return;
      following.add(cast.channel);
      const stop = cast.follow(
        fromStart,
        (lines) => {
          // A message that cannot be built or sent ends this watch, recorded as failed; the gateway and the
          // session go on.
          try {
            send(castMessage(cast.channel, lines));
          } catch (e) {
            deps.log.error({ err: (e as Error).message, session: id, channel: cast.channel }, 'watch: could not send the recording');
            finish('failed', 1011, 'the live view failed; reconnect', { error: (e as Error).message });
            return;
          }
          return watcherCaughtUp();
        },
        () => {
          following.delete(cast.channel);
          send({ type: 'cast_end', channel: cast.channel });
          endWhenSettled();
        },
      );
      cleanups.push(stop);
    };
    cleanups.push(watchCasts(onCast));
  }

  out.onClose(() => finish('watcher_closed', 1000, ''));
  // The session may have ended between the caller's check and the subscriptions above.
  if (!deps.sessions.get(id)) {
    sessionEnd ??= { reason: deps.sessions.get(id)?.endReason ?? 'ended' };
    const t = setTimeout(() => {
      following.clear();
      endWhenSettled();
    }, END_GRACE_MS);
    t.unref();
    cleanups.push(() => clearTimeout(t));
    endWhenSettled();
  }
  return { end: (code, text, reason) => finish('access_ended', code, text, { reason }) };
}

/** One write of a recording as a message: its header line (first write) and events, parsed. */
function castMessage(channel: number, lines: Buffer): { type: 'cast'; channel: number; header?: unknown; events: unknown[] } {
  const msg: { type: 'cast'; channel: number; header?: unknown; events: unknown[] } = { type: 'cast', channel, events: [] };
  for (const line of lines.toString('utf8').split('\n')) {
    if (!line) continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      continue; // the writer writes whole lines; nothing else can be in the file
    }
    if (Array.isArray(v)) msg.events.push(v);
    else msg.header = v;
  }
  return msg;
}
