import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Make any text safe for one line of a terminal: C0 controls (incl. CR, LF, TAB), DEL, C1 controls, ESC,
 * Unicode line/paragraph separators and bidi overrides become visible escapes, and backslash is doubled
 * so an escape in the output can never be confused with one in the input. Nothing printed can start a
 * new line, move the cursor or change colours.
 */
export function escapeTerminal(text: string): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    let rep: string | undefined;
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) rep = `\\x${c.toString(16).padStart(2, '0')}`;
    else if (c === 0x5c) rep = '\\\\';
    else if (c === 0x2028 || c === 0x2029 || (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069) || c === 0x200e || c === 0x200f || c === 0x061c) {
      rep = `\\u${c.toString(16).padStart(4, '0')}`;
    }
    if (rep !== undefined) {
      out += text.slice(from, i) + rep;
      from = i + 1;
    }
  }
  return from === 0 ? text : out + text.slice(from);
}

function summarizeDetails(details: Record<string, unknown> | undefined): string {
  if (!details) return '';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(details)) {
    if (v === undefined) continue;
    const s = typeof v === 'string' ? v : JSON.stringify(v);
    parts.push(`${k}=${s}`);
  }
  return parts.join(' ');
}

function targetText(t: AuditEvent['target'] | undefined): string {
  if (!t) return '-';
  const who = t.login ?? t.database;
  return `${who ? `${who}@` : ''}${t.name}/${t.protocol}`;
}

// Minimum column widths, so rows line up even when streamed one at a time (audit tail -f).
const WIDTHS = [27, 16, 7, 12, 16, 20, 26, 0];

function row(fields: string[]): string {
  return fields.map((f, i) => f.padEnd(WIDTHS[i])).join('  ').trimEnd();
}

/** Column headings matching formatEventRow. */
export const EVENT_ROW_HEADER = row(['TIME', 'TYPE', 'OUTCOME', 'USER', 'SOURCE', 'TARGET', 'SESSION', 'DETAILS']);

/**
 * One event as one line of text (no trailing newline). Every field is escaped, so hostile user names,
 * SQL text or commands can never forge another row or recolour the terminal.
 */
export function formatEventRow(e: AuditEvent, maxDetails = 200): string {
  const src = e.source ? `${e.source.ip}${e.source.port ? `:${e.source.port}` : ''}${e.source.via ? ` (${e.source.via})` : ''}` : '-';
  let details = summarizeDetails(e.details);
  if (details.length > maxDetails) details = details.slice(0, maxDetails) + '…';
  const fields = [e.time, e.type, e.outcome, e.actor?.user ?? '-', src, targetText(e.target), e.session_id ?? '-', details];
  return row(fields.map((f) => escapeTerminal(String(f))));
}
