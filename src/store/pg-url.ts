import { ConfigError } from '../errors.ts';

/**
 * The store URL carries the database password. Everything said about the store (logs, errors, doctor)
 * names it by `describeUrl` and passes through `scrub`, so the password cannot leak by accident, even
 * from a driver message that quotes the connection string.
 */
export function describeUrl(url: string): string {
  const u = parseUrl(url);
  return `postgres://${u.hostname}${u.port ? ':' + u.port : ''}${u.pathname}`;
}

export function scrubber(url: string): (e: unknown) => string {
  const u = parseUrl(url);
  const secrets = [url, u.password, safeDecode(u.password)].filter((x) => x.length > 0);
  return (e) => {
    let msg = e instanceof Error ? e.message : String(e);
    for (const s of secrets) msg = msg.split(s).join('***');
    return msg;
  };
}

/** Node's URL error carries the input (password and all) in `.input`: replace it with one that does not. */
function parseUrl(url: string): URL {
  try {
    const u = new URL(url);
    if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new Error();
    return u;
  } catch {
    throw new ConfigError('store.url', 'not a PostgreSQL URL (expected postgres://USER:PASSWORD@HOST:PORT/DATABASE)');
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
