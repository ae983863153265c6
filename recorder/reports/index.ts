/** Access-review reports: one model (model.ts), three renderers, inputs from the audit log and store. */
import type { ReportModel } from './model.ts';
import { renderHtml } from './render-html.ts';
import { renderMarkdown } from './render-md.ts';

export type ReportFormat = 'html' | 'md' | 'json';
export const REPORT_FORMATS: readonly ReportFormat[] = ['html', 'md', 'json'];

export function renderReport(m: ReportModel, format: ReportFormat): string {
  switch (format) {
    case 'html':
      return renderHtml(m);
    case 'md':
      return renderMarkdown(m);
    case 'json':
      return JSON.stringify(m, null, 2) + '\n';
  }
}

export { collectReport, verificationSummary, roleTargetsOf, type ReportSources } from './source.ts';
export { buildReportModel, REPORT_KIND, type ReportModel, type ReportPeriod } from './model.ts';
export { loadSqlParsers, classifySql, classifyPostgres, classifyMysql, type SqlClass } from './classify-sql.ts';
export { classifyShellCommand } from './classify-ssh.ts';
