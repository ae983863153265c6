import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Named fields of an event for CSV columns and export templates. A name is either one of these aliases or
 * a dotted path into the event as stored (`details.sql`, `target.database`, `actor.roles`).
 */
export const FIELD_ALIASES: Record<string, string> = {
  user: 'actor.user',
  roles: 'actor.roles',
  cert_serial: 'actor.cert_serial',
  source: 'source.ip',
  source_port: 'source.port',
  source_via: 'source.via',
  resource: 'target.name',
  protocol: 'target.protocol',
  target_host: 'target.host',
  target_login: 'target.login',
  target_database: 'target.database',
  session: 'session_id',
};

const TOP_LEVEL = new Set(['id', 'time', 'type', 'outcome', 'actor', 'source', 'target', 'session_id', 'details']);

/** The path a field name stands for. Own keys only: `constructor` or `__proto__` is no alias. */
function fieldPath(name: string): string {
  return Object.hasOwn(FIELD_ALIASES, name) ? FIELD_ALIASES[name]! : name;
}

/** Throws for a name that can never resolve (typos caught before anything is exported). */
export function checkFieldName(name: string): void {
  const p = fieldPath(name);
  if (!TOP_LEVEL.has(p.split('.')[0]) || p.split('.').some((s) => s === '')) {
    throw new Error(`unknown field ${JSON.stringify(name)}: use ${Object.keys(FIELD_ALIASES).join(', ')}, id, time, type, outcome, session_id, details, or a dotted path such as details.sql`);
  }
}

/** A getter for one field; undefined when the event does not have it. */
export function fieldGetter(name: string): (e: AuditEvent) => unknown {
  checkFieldName(name);
  const parts = fieldPath(name).split('.');
  return (e) => {
    let v: unknown = e;
    for (const p of parts) {
      // An event's own keys only: `details.constructor` is not a field of any event.
      if (v === null || typeof v !== 'object' || !Object.hasOwn(v, p)) return undefined;
      v = (v as Record<string, unknown>)[p];
    }
    return v;
  };
}

/** A field's value as text: strings as they are, arrays of strings joined by commas, other values as JSON. */
export function fieldText(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.join(',');
  return JSON.stringify(v);
}
