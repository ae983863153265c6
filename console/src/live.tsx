import { useEffect, useRef, useState } from 'preact/hooks';
import * as AsciinemaPlayer from 'asciinema-player';
import { ApiFailure, call, stream, type AuditEvent, type Me } from './api.ts';
import { ErrorLine, Field, when } from './ui.tsx';

/**
 * The live view of a running session (GET /console/api/sessions/ID/live, the messages of `vigil watch`:
 * see src/api/watch.ts) and, for administrators, the terminate action. SSH sessions are shown on the
 * vendored asciinema-player fed by a driver of our own; database sessions as their statements.
 */

type CastEvent = [number, string, string];
type LiveMessage =
  | { type: 'session'; session: { id: string; user: string; protocol: string; target: { name: string } }; mode: 'terminal' | 'statements' }
  | { type: 'cast'; channel: number; header?: { width?: number; height?: number }; events: CastEvent[] }
  | { type: 'cast_end'; channel: number }
  | { type: 'statement'; event: AuditEvent }
  | { type: 'end'; reason: unknown }
  | { type: 'closed'; code: number; reason: string };

/** One channel's terminal output as it arrives; the player's driver replays what came before it started. */
class CastFeed {
  readonly events: CastEvent[] = [];
  private readonly listeners = new Set<(e: CastEvent) => void>();
  constructor(
    readonly cols: number,
    readonly rows: number,
  ) {}
  push(events: CastEvent[]): void {
    for (const e of events) {
      this.events.push(e);
      for (const l of this.listeners) l(e);
    }
  }
  listen(fn: (e: CastEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}

/**
 * A finished statement (db.query) takes the row of its start (db.query.start, written only for statements
 * that run long or under strict recording), so each statement is one row, "running" until it is done.
 */
function withStatement(rows: AuditEvent[], e: AuditEvent): AuditEvent[] {
  const i = e.type === 'db.query' ? rows.findLastIndex((r) => r.type === 'db.query.start' && r.details.sql === e.details.sql) : -1;
  return i < 0 ? [...rows, e] : rows.map((r, j) => (j === i ? e : r));
}

type Dispatch = (event: string, data?: unknown) => void;

/** An asciinema-player driver that plays a CastFeed as it grows (no seeking: it is live). */
function liveDriver(feed: CastFeed) {
  return ({ dispatch }: { dispatch: Dispatch }) => {
    const started = performance.now();
    let stop: (() => void) | undefined;
    const apply = ([, code, data]: CastEvent) => {
      if (code === 'o') dispatch('output', data);
      else if (code === 'r') {
        const [cols, rows] = data.split('x').map(Number);
        if (cols && rows) dispatch('resize', { cols, rows });
      }
    };
    return {
      init: () => dispatch('reset', { size: { cols: feed.cols, rows: feed.rows } }),
      play: () => {
        if (stop) return true;
        dispatch('play');
        dispatch('playing');
        for (const e of feed.events) apply(e);
        stop = feed.listen(apply);
        return true;
      },
      stop: () => stop?.(),
      getTiming: () => ({ time: (performance.now() - started) / 1000, rate: 1, sampledAt: performance.timeOrigin + performance.now() }),
    };
  };
}

function LiveTerminal({ feed, label }: { feed: CastFeed; label: string }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!box.current) return;
    // The player's typings name only URL and data sources; a driver function is what it runs for them.
    const src = liveDriver(feed) as unknown as AsciinemaPlayer.Source;
    const player = AsciinemaPlayer.create(src, box.current, { autoPlay: true, controls: false, fit: 'width', cols: feed.cols, rows: feed.rows });
    return () => player.dispose();
  }, [feed]);
  return (
    <figure class="replay">
      <figcaption>{label}</figcaption>
      <div ref={box} class="player" />
    </figure>
  );
}

/** Stays mounted after the session ends, so the outcome of a terminate stays on the page. */
function Terminate({ id, ended }: { id: string; ended: boolean }) {
  const [status, setStatus] = useState<string>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const reason = String(new FormData(e.currentTarget as HTMLFormElement).get('reason') ?? '').trim();
    setBusy(true);
    setError(undefined);
    try {
      const r = await call<{ ended: boolean }>('POST', `/sessions/${encodeURIComponent(id)}/kill`, { reason });
      setStatus(r.ended ? 'Session terminated.' : 'Terminate sent; the session has not closed yet.');
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="decide" aria-label="Terminate session" onSubmit={submit}>
      <Field label="Reason">
        <input name="reason" required autocomplete="off" />
      </Field>
      <button type="submit" class="danger" disabled={busy || !!status || ended}>
        Terminate session
      </button>
      {status ? <p role="status">{status}</p> : null}
      <ErrorLine error={error} />
    </form>
  );
}

export function LivePage({ id, me }: { id: string; me: Me }) {
  const [head, setHead] = useState<Extract<LiveMessage, { type: 'session' }>>();
  const [feeds, setFeeds] = useState<Map<number, CastFeed>>(new Map());
  const [statements, setStatements] = useState<AuditEvent[]>([]);
  const [ended, setEnded] = useState<string>();
  const [error, setError] = useState<string>();

  useEffect(() => {
    const abort = new AbortController();
    const channels = new Map<number, CastFeed>();
    const on = (m: LiveMessage) => {
      if (m.type === 'session') setHead(m);
      else if (m.type === 'cast') {
        let feed = channels.get(m.channel);
        if (!feed) {
          feed = new CastFeed(m.header?.width ?? 80, m.header?.height ?? 24);
          channels.set(m.channel, feed);
          setFeeds(new Map(channels));
        }
        feed.push(m.events);
      } else if (m.type === 'statement') setStatements((old) => withStatement(old, m.event));
      else if (m.type === 'end') setEnded(`Session ended (${String(m.reason ?? 'ended')}).`);
      else if (m.type === 'closed' && m.code !== 1000) setEnded(`Live view closed: ${m.reason}`);
    };
    stream<LiveMessage>(`/sessions/${encodeURIComponent(id)}/live`, on, abort.signal).catch((e) => {
      if (!abort.signal.aborted) setError(e instanceof ApiFailure ? e.message : `Live view interrupted: ${(e as Error).message}`);
    });
    return () => abort.abort();
  }, [id]);

  return (
    <section aria-labelledby="live-h">
      <p>
        <a href={`#/sessions/${encodeURIComponent(id)}`}>← Session {id}</a>
      </p>
      <h1 id="live-h">Live: session {id}</h1>
      <ErrorLine error={error} />
      {head ? (
        <p>
          {head.session.user} on {head.session.target.name} ({head.session.protocol}) {ended ? null : <span class="badge live">live</span>}
        </p>
      ) : error ? null : (
        <p aria-busy="true">Connecting…</p>
      )}
      {ended ? <p role="status">{ended}</p> : null}
      {me.can.admin && head ? <Terminate id={id} ended={!!ended} /> : null}
      {[...feeds].map(([ch, feed]) => (
        <LiveTerminal key={ch} feed={feed} label={`Terminal (channel ${ch})`} />
      ))}
      {head?.mode === 'statements' ? (
        <div class="scroll">
          <table class="statements live">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">SQL</th>
                <th scope="col">State</th>
              </tr>
            </thead>
            <tbody>
              {statements.map((e) => (
                <tr key={e.id}>
                  <td>{when(e.time)}</td>
                  <td>
                    <code>{String(e.details.sql ?? e.details.command ?? '')}</code>
                  </td>
                  <td>{e.type === 'db.query.start' ? 'running' : e.outcome}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}
