import type { AuditEvent } from '../../src/events/envelope.ts';
import { fieldGetter, fieldText } from './fields.ts';

/**
 * "Your own format": a line with `${field}` placeholders, one line per event. A field is a name from the
 * template's own `fields` map, an alias (user, source, resource, …) or a dotted path into the event
 * (`details.sql`). A filter after `|` says how the value is written:
 *   (none) text; line breaks, tabs and backslashes escaped as \n \r \t \\ so one event stays one line
 *   json   a JSON value (strings quoted and escaped, missing fields null) — for JSON lines (Elastic)
 *   quote  a double-quoted string, `"` and `\` escaped — for key="value" formats (Splunk)
 * `$${` writes a literal `${`.
 */
export interface TemplateConfig {
  fields?: Record<string, string>;
  line: string;
}

export type TemplateFilter = 'text' | 'json' | 'quote';
const FILTERS = new Set<TemplateFilter>(['text', 'json', 'quote']);

type Part = string | { get: (e: AuditEvent) => unknown; filter: TemplateFilter };

export class TemplateError extends Error {}

function escapeLine(s: string): string {
  return s.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'));
}

function render(v: unknown, filter: TemplateFilter): string {
  switch (filter) {
    case 'json':
      return v === undefined ? 'null' : JSON.stringify(v);
    case 'quote':
      return `"${escapeLine(fieldText(v)).replaceAll('"', '\\"')}"`;
    default:
      return escapeLine(fieldText(v));
  }
}

/** Parses and checks a template (unknown fields and filters are errors at config load, not at export). */
export function compileTemplate(t: TemplateConfig): (e: AuditEvent) => string {
  const named = t.fields ?? {};
  const parts: Part[] = [];
  const re = /\$\$\{|\$\{([^}|]*)(?:\|([^}]*))?\}/g;
  let last = 0;
  let placeholders = 0;
  for (let m = re.exec(t.line); m; m = re.exec(t.line)) {
    parts.push(t.line.slice(last, m.index));
    last = re.lastIndex;
    if (m[0] === '$${') {
      parts.push('${');
      continue;
    }
    const name = m[1].trim();
    const filter = (m[2]?.trim() || 'text') as TemplateFilter;
    if (!FILTERS.has(filter)) throw new TemplateError(`unknown filter |${filter} in \${${m[1]}|${m[2]}} (use json, quote, or none)`);
    try {
      parts.push({ get: fieldGetter(named[name] ?? name), filter });
    } catch (e) {
      throw new TemplateError((e as Error).message);
    }
    placeholders++;
  }
  parts.push(t.line.slice(last));
  if (placeholders === 0) throw new TemplateError('the line has no ${field} placeholder');
  if (/[\r\n]/.test(t.line)) throw new TemplateError('the line must be one line (each event is written as one line)');
  for (const [alias, p] of Object.entries(named)) {
    try {
      fieldGetter(p);
    } catch (e) {
      throw new TemplateError(`fields.${alias}: ${(e as Error).message}`);
    }
  }
  const compact = parts.filter((p) => p !== '');
  return (e) => {
    let out = '';
    for (const p of compact) out += typeof p === 'string' ? p : render(p.get(e), p.filter);
    return out + '\n';
  };
}
