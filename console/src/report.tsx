import { useState } from 'preact/hooks';
import { query } from './api.ts';
import { Field, formValues } from './ui.tsx';

/**
 * The access-review report of `vigil report access`, for a period chosen here: the report's own HTML in
 * a sandboxed frame (it runs its charts under its own CSP), and the HTML or JSON to keep.
 */
export function ReportPage() {
  const [period, setPeriod] = useState<Record<string, string>>();
  const url = (format: string, download?: boolean) => `/console/api/reports/access${query({ ...period, format, download: download ? '1' : undefined })}`;
  return (
    <section aria-labelledby="report-h">
      <h1 id="report-h">Access review</h1>
      <form
        class="filters"
        aria-label="Report period"
        onSubmit={(e) => {
          e.preventDefault();
          setPeriod(formValues(e.currentTarget));
        }}
      >
        <Field label="Since (30d or ISO)">
          <input name="since" autocomplete="off" placeholder="30d" />
        </Field>
        <Field label="Until (empty: now)">
          <input name="until" autocomplete="off" />
        </Field>
        <button type="submit">Show report</button>
      </form>
      {period ? (
        <>
          <p class="actions">
            <a href={url('html', true)}>Download HTML</a> · <a href={url('json', true)}>Download JSON</a>
          </p>
          <iframe key={url('html')} class="report" title="Access review report" src={url('html')} sandbox="allow-scripts" />
        </>
      ) : (
        <p class="muted">Choose a period; the report verifies the audit chain, which can take a while on a long log.</p>
      )}
    </section>
  );
}
