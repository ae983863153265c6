/**
 * The access-review report as one self-contained HTML file: tables rendered here (readable without
 * scripts), the model embedded as JSON, Chart.js's UMD build inlined for the two charts. A Content
 * Security Policy allows nothing but the page's own inline script and style (by hash): it makes no
 * request, so it opens the same offline, from a mail attachment or an evidence archive.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import type { ReportModel } from './model.ts';
import { SECTIONS, SUMMARY_FIGURES, verificationText, type Table } from './sections.ts';

let chartJs: string | undefined;

/** Chart.js's UMD bundle, as installed (read once). */
function chartSource(): string {
  if (chartJs === undefined) {
    // The package's exports map does not expose the UMD file: find it beside the CommonJS entry (dist/).
    const file = path.join(path.dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.js');
    chartJs = fs.readFileSync(file, 'utf8');
  }
  return chartJs;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
/** Inline script text must not close its element early. */
const scriptSafe = (s: string) => s.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--');
/** JSON inside <script type="application/json">: `<` escaped so no text can end the element. */
const jsonSafe = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
const sha256 = (s: string) => `'sha256-${crypto.createHash('sha256').update(s, 'utf8').digest('base64')}'`;

const STYLE = `
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2330;background:#fff}
h1{font-size:1.5rem;margin:0 0 .3rem}h2{font-size:1.15rem;margin:2rem 0 .5rem;border-bottom:1px solid #dde2ea;padding-bottom:.2rem}
.muted{color:#5b6475}.chain{padding:.6rem .8rem;border-radius:6px;background:#eef6ee;border:1px solid #b9d8b9}
.chain.bad{background:#fbeaea;border-color:#e0b4b4}
dl.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(11rem,1fr));gap:.6rem;margin:1rem 0}
dl.figures div{border:1px solid #dde2ea;border-radius:6px;padding:.5rem .7rem}dl.figures dt{font-size:.8rem;color:#5b6475}
dl.figures dd{margin:0;font-size:1.4rem;font-weight:600}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(22rem,1fr));gap:1.5rem}.chart{position:relative;height:260px}
table{border-collapse:collapse;width:100%;font-size:.85rem}th,td{border:1px solid #dde2ea;padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#f3f5f9}td.text{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-word}
@media print{.charts{display:block}}`;

/** Draws the charts from the embedded model; runs after Chart.js. */
const CHART_SCRIPT = `
(function () {
  var model = JSON.parse(document.getElementById('report-data').textContent);
  function bar(id, labels, values, label, color) {
    var canvas = document.getElementById(id);
    new Chart(canvas, {
      type: 'bar',
      data: { labels: labels, datasets: [{ label: label, data: values, backgroundColor: color }] },
      options: { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false } },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
    });
  }
  bar('chart-per-day', model.sessions.per_day.map(function (d) { return d.day; }), model.sessions.per_day.map(function (d) { return d.sessions; }), 'Sessions per day', '#3b6fd8');
  bar('chart-per-target', model.sessions.per_target.map(function (d) { return d.target; }), model.sessions.per_target.map(function (d) { return d.sessions; }), 'Sessions per target', '#2f9e74');
  document.documentElement.setAttribute('data-charts', 'ready');
})();`;

/** Columns whose cells are statement or command text (monospace, wrapped). */
const TEXT_COLUMNS = new Set(['Statement or command', 'Statement', 'Reason']);

function tableHtml(id: string, t: Table): string {
  if (t.rows.length === 0) return `<p class="muted" data-empty="${id}">${escapeHtml(t.empty)}</p>`;
  const head = t.columns.map((c) => `<th>${escapeHtml(c)}</th>`).join('');
  const body = t.rows
    .map((r) => `<tr>${r.map((v, i) => `<td${TEXT_COLUMNS.has(t.columns[i]) ? ' class="text"' : ''}>${escapeHtml(v)}</td>`).join('')}</tr>`)
    .join('\n');
  return `<table id="table-${id}" data-rows="${t.rows.length}"><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

export function renderHtml(m: ReportModel): string {
  const libScript = scriptSafe(chartSource());
  const chartScript = scriptSafe(CHART_SCRIPT);
  const csp = [
    "default-src 'none'",
    `script-src ${sha256(libScript)} ${sha256(chartScript)}`,
    `style-src ${sha256(STYLE)}`,
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
  const title = `Access review ${m.period.since.slice(0, 10)} .. ${m.period.until.slice(0, 10)}`;
  const figures = SUMMARY_FIGURES.map((f) => `<div><dt>${escapeHtml(f.label)}</dt><dd data-figure="${f.key}">${m.summary[f.key]}</dd></div>`).join('');
  const sections = SECTIONS.map((s) => `<section id="${s.id}"><h2>${escapeHtml(s.title)}</h2>${s.intro ? `<p class="muted">${escapeHtml(s.intro)}</p>` : ''}${tableHtml(s.id, s.table(m))}</section>`).join('\n');
  // Records left out of the figures make the chain line a warning whatever the chain's own status.
  const chainOk = (m.verification.ok || m.verification.status === 'unwitnessed' || m.verification.status === 'complete') && !m.verification.records_left_out;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${escapeHtml(csp)}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<p class="muted">Period ${escapeHtml(m.period.since)} .. ${escapeHtml(m.period.until)} (UTC). Generated ${escapeHtml(m.generated_at)} by vigil from the audit log and the state store.</p>
<p class="chain${chainOk ? '' : ' bad'}" id="verification" data-status="${escapeHtml(m.verification.status)}" data-records-left-out="${m.verification.records_left_out ?? 0}"><strong>Audit chain:</strong> ${escapeHtml(verificationText(m.verification))}</p>
<dl class="figures">${figures}</dl>
<section id="charts"><h2>Sessions</h2><div class="charts">
<div><h3>Sessions per day</h3><div class="chart"><canvas id="chart-per-day" aria-label="Sessions per day"></canvas></div></div>
<div><h3>Sessions per target</h3><div class="chart"><canvas id="chart-per-target" aria-label="Sessions per target"></canvas></div></div>
</div></section>
${sections}
<script type="application/json" id="report-data">${jsonSafe(m)}</script>
<script>${libScript}</script>
<script>${chartScript}</script>
</body>
</html>
`;
}
