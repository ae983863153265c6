import https from 'node:https';
import type { AccessRecord, AccessState, LockRecord } from '../store/types.ts';
import { VigilError } from '../errors.ts';
import type { AccessService, Actor, RequestInput } from './service.ts';
import { credentialsView, type GrantCertificate } from './credentials.ts';
// The CLI's request helper: this client exists for the CLI and must fail the same way its other clients do.
import { apiBaseUrl, DEFAULT_REQUEST_TIMEOUT_MS, gatewayRequest, readOptionFile } from '../cli/gateway-request.ts';

/**
 * What the CLI does with access: either through a running gateway's API (identity = the client
 * certificate) or on the local data directory (identity = `--by`). Both end in the same AccessService.
 */
export interface AccessClient {
  /** Who the gateway will record as acting. */
  readonly actorName: string;
  request(input: RequestInput): Promise<AccessRecord>;
  approve(id: string, opts: { comment?: string }): Promise<AccessRecord>;
  deny(id: string, opts: { reason: string }): Promise<AccessRecord>;
  revoke(id: string, opts: { reason: string }): Promise<AccessRecord>;
  list(filter: { state?: AccessState; user?: string }): Promise<AccessRecord[]>;
  show(id: string): Promise<AccessRecord>;
  lock(input: { user: string; reason: string; ttlMs?: number }): Promise<LockRecord>;
  unlock(user: string): Promise<void>;
  listLocks(): Promise<LockRecord[]>;
  /** Credentials bound to one of your active grants. */
  certificate(id: string, opts: { sshPublicKey?: string; ttlMs?: number }): Promise<GrantCertificate>;
}

/** Acting on the local data dir: `actor` is built by the CLI from --by/--by-roles. */
export function localAccessClient(access: AccessService, actor: Actor, sweep: () => Promise<unknown>): AccessClient {
  return {
    actorName: actor.user,
    request: (input) => access.request(actor, input),
    approve: (id, o) => access.approve(actor, id, o),
    deny: (id, o) => access.deny(actor, id, o),
    revoke: (id, o) => access.revoke(actor, id, o),
    // Reading locally also records expiries that happened while no gateway ran, so states are current.
    list: async (f) => {
      await sweep();
      return access.list(actor, f);
    },
    show: async (id) => {
      await sweep();
      return access.show(actor, id);
    },
    lock: (input) => access.lock(actor, input),
    unlock: (user) => access.unlock(actor, user),
    listLocks: () => access.listLocks(actor),
    certificate: async (id, o) => credentialsView(await access.issueGrantCertificate(actor, id, o)),
  };
}

export interface ApiClientOptions {
  /** Base URL, e.g. `https://gateway:8443`. */
  url: string;
  certFile: string;
  keyFile: string;
  caFile: string;
  /** How the URL was given, for error messages (default `--api`). */
  urlOption?: string;
  /** Deadline of each request (default 15 s). */
  timeoutMs?: number;
}

/** Acting through the gateway's HTTPS API with a vigil client certificate. */
export function apiAccessClient(opts: ApiClientOptions): AccessClient {
  const base = apiBaseUrl(opts.url, opts.urlOption ?? '--api');
  const tlsOpts = { cert: readOptionFile(opts.certFile, '--cert'), key: readOptionFile(opts.keyFile, '--key'), ca: readOptionFile(opts.caFile, '--ca') };
  const agent = new https.Agent({ ...tlsOpts, keepAlive: false });

  async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const { status, text } = await gatewayRequest({ base, method, path, body, agent, timeoutMs: opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS });
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new VigilError('VIGIL_API_PROTOCOL', `the API answered ${status} without JSON`);
    }
    if (status >= 400) {
      const err = (parsed as { error?: { code?: string; message?: string } }).error;
      throw new VigilError(err?.code ?? 'VIGIL_API_ERROR', err?.message ?? `HTTP ${status}`);
    }
    return parsed as T;
  }

  const id = (x: string) => encodeURIComponent(x);
  const ttl = (ms?: number) => (ms === undefined ? undefined : `${ms}ms`);
  return {
    actorName: '(client certificate)',
    request: async (i) =>
      (await call<{ request: AccessRecord }>('POST', '/v1/access/requests', { user: i.user, role: i.role, targets: i.targets, reason: i.reason, ttl: ttl(i.ttlMs), break_glass: i.breakGlass })).request,
    approve: async (x, o) => (await call<{ request: AccessRecord }>('POST', `/v1/access/requests/${id(x)}/approve`, o)).request,
    deny: async (x, o) => (await call<{ request: AccessRecord }>('POST', `/v1/access/requests/${id(x)}/deny`, o)).request,
    revoke: async (x, o) => (await call<{ request: AccessRecord }>('POST', `/v1/access/grants/${id(x)}/revoke`, o)).request,
    list: async (f) => {
      const q = new URLSearchParams();
      if (f.state) q.set('state', f.state);
      if (f.user) q.set('user', f.user);
      const qs = q.toString();
      return (await call<{ requests: AccessRecord[] }>('GET', `/v1/access/requests${qs ? `?${qs}` : ''}`)).requests;
    },
    show: async (x) => (await call<{ request: AccessRecord }>('GET', `/v1/access/requests/${id(x)}`)).request,
    lock: async (i) => (await call<{ lock: LockRecord }>('POST', '/v1/locks', { user: i.user, reason: i.reason, ttl: ttl(i.ttlMs) })).lock,
    unlock: async (user) => {
      await call('DELETE', `/v1/locks/user/${id(user)}`);
    },
    listLocks: async () => (await call<{ locks: LockRecord[] }>('GET', '/v1/locks')).locks,
    certificate: async (x, o) =>
      (await call<{ certificate: GrantCertificate }>('POST', `/v1/access/grants/${id(x)}/certificate`, { ssh_public_key: o.sshPublicKey, ttl: ttl(o.ttlMs) })).certificate,
  };
}
