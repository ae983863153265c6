/** The access-review report as Markdown (GitHub tables): the same model as the HTML and JSON. */
import type { ReportModel } from './model.ts';
import { SECTIONS, SUMMARY_FIGURES, verificationText, type Table } from './sections.ts';

/** A table cell: pipes escaped, newlines folded, Markdown emphasis characters and HTML kept literal. */
function cell(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/[\r\n]+/g, ' ').replace(/([*_`[\]<>])/g, '\\$1');
}

/** Statement and command text as a code span, so it reads exactly as run (pipes still escaped: GFM tables). */
function code(v: string): string {
  const text = v.replace(/[\r\n]+/g, ' ').replace(/\|/g, '\\|');
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((r) => r.length));
  const fence = '`'.repeat(longest + 1);
  const pad = text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${text}${pad}${fence}`;
}

const CODE_COLUMNS = new Set(['Statement or command', 'Statement']);

function table(t: Table): string {
  if (t.rows.length === 0) return `_${t.empty}_\n`;
  const lines = [`| ${t.columns.map(cell).join(' | ')} |`, `|${t.columns.map(() => ' --- ').join('|')}|`];
  for (const r of t.rows) lines.push(`| ${r.map((v, i) => (CODE_COLUMNS.has(t.columns[i]) ? code(v) : cell(v))).join(' | ')} |`);
  return lines.join('\n') + '\n';
}

export function renderMarkdown(m: ReportModel): string {
  const out: string[] = [];
  out.push(`# Access review ${m.period.since} .. ${m.period.until}\n`);
  out.push(`Generated ${m.generated_at} by vigil from the audit log and the state store.\n`);
  out.push(`**Audit chain:** ${verificationText(m.verification)}\n`);
  out.push('## Summary\n');
  out.push(table({ columns: ['Figure', 'Value'], rows: SUMMARY_FIGURES.map((f) => [f.label, String(m.summary[f.key])]), empty: '' }));
  for (const s of SECTIONS) {
    out.push(`## ${s.title}\n`);
    if (s.intro) out.push(`${s.intro}\n`);
    out.push(table(s.table(m)));
  }
  return out.join('\n');
}
