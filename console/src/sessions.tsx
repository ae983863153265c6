import { useEffect, useRef, useState } from 'preact/hooks';
import * as AsciinemaPlayer from 'asciinema-player';
import 'asciinema-player/dist/bundle/asciinema-player.css';
import { streamingCast } from './cast-driver.ts';
import { call, query, type SessionDetail, type SessionRow } from './api.ts';
import { ErrorLine, Field, duration, formValues, when } from './ui.tsx';

const PAGE = 50;

/** Sessions, newest first, paged by the server (keyset cursor); filters as in `vigil audit search`. */
export function SessionsPage() {
  const [filter, setFilter] = useState<Record<string, string>>({});
  const [rows, setRows] = useState<SessionRow[]>([]);
  const [next, setNext] = useState<string>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const load = async (f: Record<string, string>, cursor?: string) => {
    setBusy(true);
    setError(undefined);
    try {
      const r = await call<{ sessions: SessionRow[]; next?: string }>('GET', `/sessions${query({ ...f, limit: String(PAGE), cursor })}`);
      setRows((old) => (cursor ? [...old, ...r.sessions] : r.sessions));
      setNext(r.next);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  useEffect(() => void load(filter), [filter]);

  return (
    <section aria-labelledby="sessions-h">
      <h1 id="sessions-h">Sessions</h1>
      <form
        class="filters"
        aria-label="Filter sessions"
        onSubmit={(e) => {
          e.preventDefault();
          setFilter(formValues(e.currentTarget));
        }}
      >
        <Field label="User">
          <input name="user" autocomplete="off" />
        </Field>
        <Field label="Target">
          <input name="target" autocomplete="off" />
        </Field>
        <Field label="Protocol">
          <select name="protocol">
            <option value="">any</option>
            <option value="ssh">ssh</option>
            <option value="postgres">postgres</option>
            <option value="mysql">mysql</option>
          </select>
        </Field>
        <Field label="Since (2h or ISO)">
          <input name="since" autocomplete="off" />
        </Field>
        <Field label="Until">
          <input name="until" autocomplete="off" />
        </Field>
        <Field label="State">
          <select name="state">
            <option value="">live and past</option>
            <option value="live">live</option>
            <option value="past">past</option>
          </select>
        </Field>
        <button type="submit">Filter</button>
      </form>
      <ErrorLine error={error} />
      <div class="scroll">
        <table>
          <caption class="sr-only">Sessions, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Started</th>
              <th scope="col">User</th>
              <th scope="col">Target</th>
              <th scope="col">Protocol</th>
              <th scope="col">Duration</th>
              <th scope="col">Statements</th>
              <th scope="col">Commands</th>
              <th scope="col">Files</th>
              <th scope="col">End</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((s) => (
              <tr key={s.id}>
                <td>
                  <a href={`#/sessions/${encodeURIComponent(s.id)}`} aria-label={`Session ${s.id} of ${s.user} on ${s.target}`}>
                    {when(s.started_at)}
                  </a>
                </td>
                <td>{s.user}</td>
                <td>{s.target}</td>
                <td>{s.protocol}</td>
                <td>{duration(s.duration_ms)}</td>
                <td>{s.statements}</td>
                <td>{s.commands}</td>
                <td>{s.file_ops}</td>
                <td>
                  {s.live ? (
                    <a class="badge live" href={`#/sessions/${encodeURIComponent(s.id)}/live`} aria-label={`Watch session ${s.id} live`}>
                      Live
                    </a>
                  ) : !s.ended_at ? (
                    <span class="badge live">live</span>
                  ) : (
                    s.end_reason
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {rows.length === 0 && !busy ? <p>No sessions match.</p> : null}
      {next ? (
        <button type="button" onClick={() => load(filter, next)} disabled={busy}>
          Older sessions
        </button>
      ) : null}
    </section>
  );
}

/**
 * The terminal replay: the vendored asciinema-player (seek, speed, idle skip; text is selectable to copy),
 * fed by a streaming driver so that a long recording starts playing from its first chunk.
 */
function Replay({ url, label }: { url: string; label: string }) {
  const box = useRef<HTMLDivElement>(null);
  const [speed, setSpeed] = useState(1);
  const [idle, setIdle] = useState(true);
  useEffect(() => {
    if (!box.current) return;
    // The player takes a driver factory as its source at run time; its types only list URL/data sources.
    const source = streamingCast(url, { credentials: 'same-origin' }) as unknown as AsciinemaPlayer.Source;
    const player = AsciinemaPlayer.create(source, box.current, {
      speed,
      idleTimeLimit: idle ? 2 : undefined,
      fit: 'width',
      controls: true,
      preload: true,
    });
    return () => player.dispose();
  }, [url, speed, idle]);
  return (
    <figure class="replay">
      <figcaption>{label}</figcaption>
      <div class="player-controls">
        <Field label="Speed">
          <select value={String(speed)} onChange={(e) => setSpeed(Number(e.currentTarget.value))}>
            {[0.5, 1, 2, 4, 8].map((s) => (
              <option value={String(s)}>{s}×</option>
            ))}
          </select>
        </Field>
        <label class="check">
          <input type="checkbox" checked={idle} onChange={(e) => setIdle(e.currentTarget.checked)} /> Skip idle time (over 2 s)
        </label>
        <a href={url} download>
          Download cast
        </a>
      </div>
      <div ref={box} class="player" />
    </figure>
  );
}

export function SessionPage({ id }: { id: string }) {
  const [d, setD] = useState<SessionDetail>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    call<SessionDetail>('GET', `/sessions/${encodeURIComponent(id)}`).then(setD, (e) => setError((e as Error).message));
  }, [id]);
  if (error) return <ErrorLine error={error} />;
  if (!d) return <p aria-busy="true">Loading session…</p>;
  const s = d.session;
  return (
    <section aria-labelledby="session-h">
      <p>
        <a href="#/sessions">← Sessions</a>
      </p>
      <h1 id="session-h">
        Session {id} {d.live ? <span class="badge live">live</span> : null}
      </h1>
      {s ? (
        <dl class="facts">
          <dt>User</dt>
          <dd>
            {s.user} ({s.roles.join(', ')})
          </dd>
          <dt>Target</dt>
          <dd>
            {s.target} ({s.protocol}
            {s.login ? `, login ${s.login}` : ''}
            {s.database ? `, database ${s.database}` : ''})
          </dd>
          <dt>From</dt>
          <dd>{s.source_ip}</dd>
          <dt>Started</dt>
          <dd>{when(s.started_at)}</dd>
          <dt>Ended</dt>
          <dd>{s.ended_at ? `${when(s.ended_at)} (${s.end_reason ?? ''}, ${duration(s.duration_ms)})` : 'still running'}</dd>
        </dl>
      ) : null}
      {d.links.length ? (
        <div class="actions">
          {d.links.map((l) => (
            <a class="button" href={l.href}>
              {l.label}
            </a>
          ))}
        </div>
      ) : null}
      {d.recordings.map((r, i) => (
        <Replay key={r.url} url={r.url} label={`Terminal recording ${i + 1} (${Math.ceil(r.bytes / 1024)} KiB)`} />
      ))}
      {d.statements.length ? (
        <>
          <h2>Statements</h2>
          <div class="scroll">
            <table class="statements">
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">SQL</th>
                  <th scope="col">Parameters</th>
                  <th scope="col">Outcome</th>
                  <th scope="col">Rows</th>
                  <th scope="col">Duration</th>
                </tr>
              </thead>
              <tbody>
                {d.statements.map((q) => (
                  <tr key={q.seq}>
                    <td>{when(q.time)}</td>
                    <td>
                      <code>{q.sql}</code>
                    </td>
                    <td>{q.params?.length ? <code>{JSON.stringify(q.params)}</code> : ''}</td>
                    <td>{q.outcome}{q.error ? `: ${typeof q.error === 'string' ? q.error : JSON.stringify(q.error)}` : ''}</td>
                    <td>{q.rows_returned ?? q.rows_affected ?? ''}</td>
                    <td>{duration(q.duration_ms)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      ) : null}
      {d.commands.length ? (
        <>
          <h2>Commands</h2>
          <ul class="commands">
            {d.commands.map((c) => (
              <li key={c.seq}>
                <time>{when(c.time)}</time> <code>{c.command}</code> {c.exit_status !== undefined ? `(exit ${c.exit_status})` : ''}
              </li>
            ))}
          </ul>
        </>
      ) : null}
      {d.files.length ? (
        <>
          <h2>File operations</h2>
          <div class="scroll">
            <table>
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Operation</th>
                  <th scope="col">Path</th>
                  <th scope="col">Result</th>
                </tr>
              </thead>
              <tbody>
                {d.files.map((f) => (
                  <tr key={f.seq}>
                    <td>{when(f.time)}</td>
                    <td>{f.type}</td>
                    <td>{String(f.op ?? f.direction ?? '')}</td>
                    <td>
                      <code>{String(f.path ?? f.old_path ?? '')}{f.new_path ? ` → ${String(f.new_path)}` : ''}</code>
                    </td>
                    <td>{String(f.result ?? f.outcome)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      ) : null}
      <h2>Events</h2>
      {d.truncated ? <p>Only the newest events are shown; use Events search for the rest.</p> : null}
      <EventTable events={d.events} />
    </section>
  );
}

export function EventTable({ events }: { events: SessionDetail['events'] }) {
  return (
    <div class="scroll">
      <table>
        <thead>
          <tr>
            <th scope="col">Seq</th>
            <th scope="col">Time</th>
            <th scope="col">Type</th>
            <th scope="col">User</th>
            <th scope="col">Target</th>
            <th scope="col">Outcome</th>
            <th scope="col">Details</th>
          </tr>
        </thead>
        <tbody>
          {events.map((e) => (
            <tr key={e.seq}>
              <td>{e.seq}</td>
              <td>{when(e.time)}</td>
              <td>{e.type}</td>
              <td>{e.actor.user}</td>
              <td>{e.target.name}</td>
              <td>{e.outcome}</td>
              <td>
                <code class="details">{JSON.stringify(e.details)}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
