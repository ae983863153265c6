import { z } from 'zod';
import type { AccessState } from '../store/types.ts';
import { StoreUnavailableError } from '../errors.ts';
import { killSession, sessionView } from '../sessions/control.ts';
import { credentialsView } from '../access/credentials.ts';
import { parseDuration } from '../config/units.ts';
import { ApiError, parseBody, readJson } from './http.ts';
import type { Route } from './route.ts';
import { linkRoute } from './link-routes.ts';
import { SELF_ROUTES } from '../identity/oidc/routes.ts';

/** `"30m"` or a number of seconds (like config durations) → ms. */
const ttl = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined || ms <= 0) {
    ctx.addIssue({ code: 'custom', message: 'expected a duration like "30m" or "1h"' });
    return z.NEVER;
  }
  return ms;
});

export const RequestBody = z.strictObject({
  user: z.string().min(1).optional(),
  role: z.string().min(1),
  targets: z.array(z.string().min(1)).optional(),
  reason: z.string().default(''),
  ttl: ttl.optional(),
  break_glass: z.boolean().optional(),
});
export const ApproveBody = z.strictObject({ comment: z.string().optional() });
export const ReasonBody = z.strictObject({ reason: z.string().default('') });
export const CertificateBody = z.strictObject({ ssh_public_key: z.string().min(1).optional(), ttl: ttl.optional() });
export const KillBody = z.strictObject({ reason: z.string().trim().min(1, 'a reason is required to kill a session') });
export const LockBody = z.strictObject({ user: z.string().min(1), reason: z.string().default(''), ttl: ttl.optional() });
const STATES: AccessState[] = ['pending', 'active', 'denied', 'expired', 'revoked'];

export const ROUTES: Route[] = [
  {
    method: 'POST',
    pattern: '/v1/access/requests',
    async handle({ actor, req, access }) {
      const b = parseBody(RequestBody, await readJson(req));
      const rec = await access.request(actor, { user: b.user, role: b.role, targets: b.targets, reason: b.reason, ttlMs: b.ttl, breakGlass: b.break_glass });
      return [201, { request: rec }];
    },
  },
  {
    method: 'GET',
    pattern: '/v1/access/requests',
    async handle({ actor, query, access }) {
      const state = query.get('state') ?? undefined;
      if (state !== undefined && !STATES.includes(state as AccessState)) {
        throw new ApiError(400, 'VIGIL_BAD_REQUEST', `state: expected one of ${STATES.join(', ')}`);
      }
      const user = query.get('user') ?? undefined;
      return [200, { requests: await access.list(actor, { state: state as AccessState | undefined, user }) }];
    },
  },
  {
    method: 'GET',
    pattern: '/v1/access/requests/:id',
    async handle({ actor, params, access }) {
      return [200, { request: await access.show(actor, params.id) }];
    },
  },
  {
    method: 'POST',
    pattern: '/v1/access/requests/:id/approve',
    async handle({ actor, params, req, access }) {
      const b = parseBody(ApproveBody, await readJson(req));
      return [200, { request: await access.approve(actor, params.id, b) }];
    },
  },
  {
    method: 'POST',
    pattern: '/v1/access/requests/:id/deny',
    async handle({ actor, params, req, access }) {
      const b = parseBody(ReasonBody, await readJson(req));
      return [200, { request: await access.deny(actor, params.id, b) }];
    },
  },
  {
    method: 'GET',
    pattern: '/v1/access/links/:token',
    handle: (ctx) => linkRoute(ctx, 'GET'),
  },
  {
    method: 'POST',
    pattern: '/v1/access/links/:token',
    forms: true,
    handle: (ctx) => linkRoute(ctx, 'POST'),
  },
  {
    method: 'POST',
    pattern: '/v1/access/grants/:id/revoke',
    async handle({ actor, params, req, access }) {
      const b = parseBody(ReasonBody, await readJson(req));
      return [200, { request: await access.revoke(actor, params.id, b) }];
    },
  },
  {
    method: 'POST',
    pattern: '/v1/access/grants/:id/certificate',
    async handle({ actor, params, req, access }) {
      const b = parseBody(CertificateBody, await readJson(req));
      const c = await access.issueGrantCertificate(actor, params.id, { sshPublicKey: b.ssh_public_key, ttlMs: b.ttl });
      return [201, { certificate: credentialsView(c) }];
    },
  },
  {
    method: 'POST',
    pattern: '/v1/locks',
    async handle({ actor, req, access }) {
      const b = parseBody(LockBody, await readJson(req));
      return [201, { lock: await access.lock(actor, { user: b.user, reason: b.reason, ttlMs: b.ttl }) }];
    },
  },
  {
    method: 'GET',
    pattern: '/v1/locks',
    async handle({ actor, access }) {
      return [200, { locks: await access.listLocks(actor) }];
    },
  },
  {
    method: 'DELETE',
    pattern: '/v1/locks/user/:name',
    async handle({ actor, params, access }) {
      await access.unlock(actor, params.name);
      return [200, { unlocked: params.name }];
    },
  },
  {
    method: 'GET',
    pattern: '/v1/sessions',
    async handle({ actor, services, access, query }) {
      // Only live sessions are held in memory; past ones are in the audit log (vigil audit search).
      const live = query.get('live');
      if (live !== null && live !== '1' && live !== 'true') {
        throw new ApiError(400, 'VIGIL_BAD_REQUEST', 'live: only live sessions are listed here (live=1); search the audit log for past ones');
      }
      const all = await services.sessions.listCounted();
      if (services.sharedSessions) {
        // Replicas on a shared store: every replica's sessions, each naming its replica (this one's alone,
        // `partial`, while the store is unavailable).
        const { sessions, partial } = await services.sharedSessions.list(all);
        const shown = access.seesEverything(actor) ? sessions : sessions.filter((s) => s.user === actor.user);
        return [200, { sessions: shown, ...(partial ? { partial: true } : {}) }];
      }
      const visible = access.seesEverything(actor) ? all : all.filter((s) => s.principal.user === actor.user);
      return [200, { sessions: visible.map(sessionView) }];
    },
  },
  {
    method: 'POST',
    pattern: '/v1/sessions/:id/kill',
    async handle({ actor, params, req, services, access }) {
      const b = parseBody(KillBody, await readJson(req));
      const deps = { sessions: services.sessions, events: services.events, seesEverything: (a: typeof actor) => access.seesEverything(a), isAdmin: (a: typeof actor) => access.isAdmin(a), elsewhere: services.sharedSessions };
      try {
        const r = await killSession(deps, actor, params.id, b.reason);
        return [200, { killed: r.session, ended: r.ended }];
      } catch (e) {
        if (!(e instanceof StoreUnavailableError)) throw e;
        throw new ApiError(503, e.code, `Session "${params.id}" is not held by this replica, and the state store, through which the other replicas are reached, is unavailable; try again shortly.`);
      }
    },
  },
  ...SELF_ROUTES,
  {
    // `vigil config reload`: admins only. An invalid file answers 422 naming the key; the old config stays.
    method: 'POST',
    pattern: '/v1/config/reload',
    async handle({ actor, services, access }) {
      if (!access.isAdmin(actor)) throw new ApiError(403, 'VIGIL_NOT_ADMIN', 'Only administrators may reload the configuration.');
      if (!services.reloadConfig) throw new ApiError(503, 'VIGIL_RELOAD_UNAVAILABLE', 'This gateway cannot reload its configuration.');
      const report = await services.reloadConfig({ via: 'api', actor: { user: actor.user, roles: actor.roles, cert_serial: actor.certSerial }, source: actor.source });
      return report.ok ? [200, { reload: report }] : [422, { error: { code: report.error!.code, message: report.error!.message, key: report.error!.key }, reload: report }];
    },
  },
];

/** Match `path` against the routes; distinguishes "no such path" (404) from "wrong method" (405). */
export function matchRoute(method: string, path: string): { route: Route; params: Record<string, string> } | 'not_found' | 'bad_method' {
  const parts = path.split('/').filter(Boolean);
  let pathMatched = false;
  for (const route of ROUTES) {
    const pat = route.pattern.split('/').filter(Boolean);
    if (pat.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < pat.length && ok; i++) {
      if (pat[i].startsWith(':')) {
        try {
          params[pat[i].slice(1)] = decodeURIComponent(parts[i]);
        } catch {
          ok = false;
        }
      } else ok = pat[i] === parts[i];
    }
    if (!ok) continue;
    pathMatched = true;
    if (route.method === method) return { route, params };
  }
  return pathMatched ? 'bad_method' : 'not_found';
}
