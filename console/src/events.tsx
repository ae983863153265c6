import { useState } from 'preact/hooks';
import { call, query, type AuditEvent } from './api.ts';
import { EventTable } from './sessions.tsx';
import { ErrorLine, Field, formValues } from './ui.tsx';

/** Event search with the filters of `vigil audit search`, and the matching export downloads. */
export function EventsPage() {
  const [events, setEvents] = useState<AuditEvent[]>();
  const [exports, setExports] = useState<Record<string, string>>();
  const [error, setError] = useState<string>();
  const search = async (f: Record<string, string>) => {
    setError(undefined);
    try {
      const r = await call<{ events: AuditEvent[]; exports: Record<string, string> }>('GET', `/events${query(f)}`);
      setEvents(r.events);
      setExports(r.exports);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <section aria-labelledby="events-h">
      <h1 id="events-h">Events</h1>
      <form
        class="filters"
        aria-label="Search events"
        onSubmit={(e) => {
          e.preventDefault();
          void search(formValues(e.currentTarget));
        }}
      >
        <Field label="User">
          <input name="user" autocomplete="off" />
        </Field>
        <Field label="Target">
          <input name="target" autocomplete="off" />
        </Field>
        <Field label="Type prefix">
          <input name="type" placeholder="db.query" autocomplete="off" />
        </Field>
        <Field label="Session">
          <input name="session" autocomplete="off" />
        </Field>
        <Field label="Since (2h or ISO)">
          <input name="since" autocomplete="off" />
        </Field>
        <Field label="Until">
          <input name="until" autocomplete="off" />
        </Field>
        <Field label="Text (statements, commands, paths)">
          <input name="text" autocomplete="off" />
        </Field>
        <Field label="Limit">
          <input name="limit" type="number" min="1" max="1000" value="200" />
        </Field>
        <button type="submit">Search</button>
      </form>
      <ErrorLine error={error} />
      {exports ? (
        <p class="exports">
          Export these filters (text search not included):{' '}
          <a href={exports.jsonl} download>
            JSONL
          </a>{' '}
          <a href={exports.csv} download>
            CSV
          </a>{' '}
          <a href={exports.ocsf} download>
            OCSF
          </a>
        </p>
      ) : null}
      {events ? (events.length ? <EventTable events={events} /> : <p>No events match.</p>) : null}
    </section>
  );
}
