import type { AuditEvent } from '../../src/events/envelope.ts';
import { fieldGetter, fieldText } from './fields.ts';

/**
 * PCI DSS 10.2.2 asks each audit record for: user identification, type of event, date and time, success or
 * failure indication, origination of the event, and identity or name of affected data, component or
 * resource. Those come first, in that spirit; then what tells events apart and where they belong.
 */
export const PCI_COLUMNS = ['time', 'user', 'type', 'outcome', 'source', 'resource'] as const;
export const DEFAULT_CSV_COLUMNS = [
  ...PCI_COLUMNS, 'id', 'session_id', 'roles', 'source_port', 'source_via', 'protocol', 'target_host', 'target_login', 'target_database', 'details',
];

/**
 * A cell a spreadsheet would read as a formula (or as a command, in older DDE-era tools) is escaped with a
 * leading apostrophe, which spreadsheets show as text and strip: `=cmd|' /c calc'!A1`, `+1+1`, `-2+3`,
 * `@SUM(…)`, and the tab and CR that some tools skip before evaluating.
 */
const FORMULA_START = /^[=+\-@\t\r]/;

export function csvCell(text: string): string {
  const safe = FORMULA_START.test(text) ? `'${text}` : text;
  // RFC 4180: a field with a comma, a double quote or a line break is quoted, its quotes doubled.
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

/** RFC 4180 lines (CRLF), one per event, after a header line naming the columns. */
export class CsvWriter {
  private readonly getters: ((e: AuditEvent) => unknown)[];
  constructor(readonly columns: readonly string[] = DEFAULT_CSV_COLUMNS) {
    if (columns.length === 0) throw new Error('at least one column');
    this.getters = columns.map(fieldGetter);
  }

  header(): string {
    return this.columns.map(csvCell).join(',') + '\r\n';
  }

  row(e: AuditEvent): string {
    let line = '';
    for (let i = 0; i < this.getters.length; i++) line += (i ? ',' : '') + csvCell(fieldText(this.getters[i](e)));
    return line + '\r\n';
  }
}
