/** Calls to the console's JSON endpoints: same origin, cookie session, CSRF token on every change. */
import type { SessionRow as CatalogRow } from '../../src/console/session-row.ts';

export interface Me {
  user: string;
  roles: string[];
  method: 'cert' | 'oidc';
  csrf: string;
  expires_at: string;
  can: { read: boolean; decide_for: string[]; admin: boolean };
}

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let csrf = '';
export function setCsrf(token: string): void {
  csrf = token;
}

export async function call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json', 'x-requested-with': 'vigil-console' };
  if (method !== 'GET') headers['x-vigil-csrf'] = csrf;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`/console/api${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  const data = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
  if (!res.ok) throw new ApiFailure(res.status, data.error?.code ?? 'VIGIL_HTTP', data.error?.message ?? `HTTP ${res.status}`);
  return data as T;
}

export function query(params: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** A catalog row (shared with the server), and whether the session is still running. */
export interface SessionRow extends CatalogRow {
  live: boolean;
}

export interface AuditEvent {
  seq: number;
  id: string;
  time: string;
  type: string;
  outcome: string;
  actor: { user: string; roles: string[] };
  source: { ip: string; port?: number; via?: string };
  target: { name: string; protocol: string; host?: string; login?: string; database?: string };
  session_id?: string;
  details: Record<string, unknown>;
}

export interface Statement {
  seq: number;
  time: string;
  outcome: string;
  sql?: string;
  params?: unknown[];
  command?: string;
  rows_returned?: number;
  rows_affected?: number;
  duration_ms?: number;
  error?: unknown;
}

export interface SessionDetail {
  session: SessionRow | null;
  live: boolean;
  events: AuditEvent[];
  statements: Statement[];
  commands: { seq: number; time: string; outcome: string; type: string; command?: string; exit_status?: number }[];
  files: ({ seq: number; time: string; outcome: string; type: string } & Record<string, unknown>)[];
  recordings: { id: string; bytes: number; url: string }[];
  links: { rel: string; href: string; method: 'GET' | 'POST'; label: string }[];
  truncated: boolean;
}

export interface AccessRequest {
  id: string;
  user: string;
  role: string;
  targets: string[];
  reason: string;
  ttlMs: number;
  state: string;
  createdAt: string;
  requestExpiresAt: string;
  approvals: { by: string; time: string; comment?: string }[];
  decidedBy?: string;
  decisionReason?: string;
  grantedAt?: string;
  expiresAt?: string;
}

/**
 * Read a newline-delimited JSON stream (the live view), calling `onMessage` per line until the server
 * ends it or `signal` aborts. Rejects with ApiFailure when the server refuses before streaming.
 */
export async function stream<T>(path: string, onMessage: (m: T) => void, signal: AbortSignal): Promise<void> {
  const res = await fetch(`/console/api${path}`, { headers: { accept: 'application/x-ndjson', 'x-requested-with': 'vigil-console' }, credentials: 'same-origin', signal });
  if (!res.ok || !res.body) {
    const data = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
    throw new ApiFailure(res.status, data.error?.code ?? 'VIGIL_HTTP', data.error?.message ?? `HTTP ${res.status}`);
  }
  const reader = res.body.getReader();
  const text = new TextDecoder();
  let pending = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    pending += text.decode(value, { stream: true });
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line) onMessage(JSON.parse(line) as T);
    }
  }
}
