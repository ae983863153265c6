import { z } from 'zod';
import type { Actor } from '../access/service.ts';
import { AccessRefusedError } from '../access/errors.ts';
import { LinkError, linkErrors, linkId, tokenHash, type LinkRow, type LinkStore } from '../access/links.ts';
import type { AccessRecord } from '../store/types.ts';
import { ApiError, parseBody, readJson } from './http.ts';
import type { RouteContext } from './routes.ts';

/**
 * `GET /v1/access/links/:token` shows what the link would decide; `POST` decides. The token alone is not
 * enough: the caller is the identity of the client certificate the API authenticated, and it must be
 * allowed to decide the request (an approver of its role, neither its requester nor its beneficiary).
 * Identity is checked before the link is claimed, so a wrong person opening it does not burn it for the
 * real approver. Every refusal is recorded as `access.link_refused` (the token itself is never recorded).
 */

export const LinkBody = z.strictObject({ comment: z.string().optional(), reason: z.string().optional() });

/** Already recorded as access.link_refused: the API does not record it again as api.request. */
export class RecordedApiError extends ApiError {
  readonly recorded = true;
}

export const LINK_PATH_PREFIX = '/v1/access/links/';

/** The path with the token cut out, for anything that records or logs it. */
export function redactLinkPath(p: string): string {
  return p.startsWith(LINK_PATH_PREFIX) ? `${LINK_PATH_PREFIX}(token)` : p;
}

/** The non-secret id of the link a raw token would be (for refusals of tokens that do not resolve). */
export const linkIdOfToken = (token: string) => linkId(tokenHash(token));

function view(r: AccessRecord) {
  return {
    id: r.id,
    state: r.state,
    requester: r.requester ?? r.user,
    beneficiary: r.beneficiary ?? r.user,
    role: r.role,
    targets: r.targets,
    reason: r.reason,
    ttl_ms: r.ttlMs,
    request_expires_at: r.requestExpiresAt,
    approvals: r.approvals.map((a) => a.by),
  };
}

export async function linkRoute(ctx: RouteContext, method: 'GET' | 'POST'): Promise<[number, unknown]> {
  const { actor, params, access, services } = ctx;
  const links = ctx.links();
  const token = params.token;
  const refuse = async (e: LinkError | AccessRefusedError, row?: LinkRow, status = e instanceof LinkError ? e.status : 409): Promise<never> => {
    await services.events.emit({
      type: 'access.link_refused',
      outcome: 'failure',
      actor: { user: actor.user, roles: actor.roles, ...(actor.certSerial ? { cert_serial: actor.certSerial } : {}) },
      source: actor.source,
      target: { name: row ? `grant/${row.request_id}` : 'access/links', protocol: 'vigil' },
      details: { link_id: row ? linkId(row.hash) : linkIdOfToken(token), ...(row ? { request_id: row.request_id, decision: row.decision } : {}), method, code: e.code, reason: e.message },
    });
    throw new RecordedApiError(status, e.code, e.message);
  };

  let row: LinkRow;
  try {
    row = links.resolve(token);
  } catch (e) {
    if (e instanceof LinkError) return refuse(e);
    throw e;
  }
  const rec = await services.store.getAccess(row.request_id);
  if (!rec) return refuse(linkErrors.invalid(), row);
  const may = access.mayDecide(actor, rec);
  if (!may.ok) {
    const code = may.error.code;
    if (code === 'VIGIL_SELF_APPROVAL' || code === 'VIGIL_NOT_APPROVER') {
      const why = code === 'VIGIL_SELF_APPROVAL' ? 'You filed this request or it grants you access: someone else must decide it.' : `Your client certificate does not hold a role that may approve requests for "${rec.role}".`;
      return refuse(linkErrors.notApprover(why), row);
    }
    return refuse(may.error, row); // already decided, or past its decision window
  }
  if (method === 'GET') {
    return [200, { link: { decision: row.decision, expires_at: new Date(row.expires_at).toISOString(), link_id: linkId(row.hash) }, request: view(rec) }];
  }

  const body = parseBody(LinkBody, await readJson(ctx.req));
  if (!links.claim(row.hash, actor.user)) return refuse(linkErrors.used(), row);
  let decided: AccessRecord;
  try {
    decided =
      row.decision === 'approve'
        ? await access.approve(actor, rec.id, { comment: body.comment ?? 'approved through a one-time link' })
        : await access.deny(actor, rec.id, { reason: body.reason ?? body.comment ?? 'denied through a one-time link' });
  } catch (e) {
    // The decision did not happen: the link stays usable (the access service recorded why it refused).
    links.release(row.hash, actor.user);
    throw e;
  }
  await services.events.emit({
    type: 'access.link_used',
    outcome: 'success',
    actor: { user: actor.user, roles: actor.roles, ...(actor.certSerial ? { cert_serial: actor.certSerial } : {}) },
    source: actor.source,
    target: { name: `grant/${rec.id}`, protocol: 'vigil' },
    details: { request_id: rec.id, link_id: linkId(row.hash), decision: row.decision, state: decided.state, role: rec.role, user: rec.user, requester: rec.requester ?? rec.user },
  });
  return [200, { decision: row.decision, request: decided }];
}

/** Record a link use refused before any identity was established (no or bad client certificate). */
export function unauthenticatedLinkRefusal(actor: Pick<Actor, 'source'> & { user?: string; certSerial?: string }, token: string, code: string, message: string) {
  return {
    type: 'access.link_refused' as const,
    outcome: 'failure' as const,
    actor: { user: actor.user ?? 'unknown', roles: [], ...(actor.certSerial ? { cert_serial: actor.certSerial } : {}) },
    source: actor.source,
    target: { name: 'access/links', protocol: 'vigil' },
    details: { link_id: linkIdOfToken(token), code, reason: message },
  };
}

export { ApiError };
