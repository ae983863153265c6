/**
 * The text `audit search --text` looks in, one definition for the local index (SQLite FTS5) and the shared
 * one (PostgreSQL): the SQL the database proxies record (`sql` from Postgres, `query` from MySQL),
 * `statement` and `command` (shell commands), and file paths (`path`, `*_path`).
 */
export function searchableDetailsText(details: unknown): string | undefined {
  if (!details || typeof details !== 'object') return undefined;
  const parts: string[] = [];
  for (const [k, v] of Object.entries(details)) {
    if (typeof v !== 'string') continue;
    if (k === 'sql' || k === 'query' || k === 'statement' || k === 'command' || k === 'path' || k.endsWith('_path')) parts.push(v);
  }
  return parts.length ? parts.join('\n') : undefined;
}
