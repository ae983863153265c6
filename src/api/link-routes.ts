import { z } from 'zod';
import { formatDuration, type Actor } from '../access/service.ts';
import { AccessRefusedError } from '../access/errors.ts';
import { LinkError, linkErrors, linkId, tokenHash, type LinkRow, type LinkStore } from '../access/links.ts';
import type { AccessRecord } from '../store/types.ts';
import { ApiError, HtmlBody, errorResponse, parseBody, readBody, readJson } from './http.ts';
import type { RouteContext } from './route.ts';

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

/**
 * A browser opening the link (Accept: text/html) gets a page: what will be decided and a button that
 * POSTs the same URL (a deny page asks for a reason), then the outcome. Other clients get JSON.
 */
export async function linkRoute(ctx: RouteContext, method: 'GET' | 'POST'): Promise<[number, unknown]> {
  const html = /\btext\/html\b/.test(String(ctx.req.headers.accept ?? ''));
  if (!html) return linkJson(ctx, method);
  try {
    const [status, body] = await linkJson(ctx, method);
    return [status, new HtmlBody(method === 'GET' ? confirmPage(body as LinkView) : donePage(body as { decision: string; request: AccessRecord }))];
  } catch (e) {
    // Refusals were recorded (link_refused, or access.refused by the access service); show them as a page.
    if (!(e instanceof RecordedApiError) && !(e instanceof AccessRefusedError)) throw e;
    const r = errorResponse(e);
    return [r.status, new HtmlBody(page('Not possible', `<p>${esc(r.message)}</p><p><code>${esc(r.code)}</code></p>`))];
  }
}

interface LinkView {
  link: { decision: string; expires_at: string; link_id: string };
  request: ReturnType<typeof view>;
}

const esc = (s: unknown) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title: string, body: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>vigil: ${esc(title)}</title>` +
    `<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em}th{text-align:left;padding-right:1em;vertical-align:top}button{font-size:1.1em;padding:.4em 1.2em}</style></head>` +
    `<body><h1>${esc(title)}</h1>${body}</body></html>`;
}

function confirmPage(v: LinkView): string {
  const r = v.request;
  const rows: [string, unknown][] = [
    ['Request', r.id],
    ['Requested by', r.requester],
    ['For', r.beneficiary],
    ['Role', r.role],
    ['Targets', r.targets.length ? r.targets.join(', ') : 'everything the role reaches'],
    ['Duration', formatDuration(r.ttl_ms)],
    ['Reason', r.reason],
    ['Approvals so far', r.approvals.length ? r.approvals.join(', ') : 'none'],
    ['Link valid until', v.link.expires_at],
  ];
  const table = `<table>${rows.map(([k, x]) => `<tr><th>${esc(k)}</th><td>${esc(x)}</td></tr>`).join('')}</table>`;
  const approve = v.link.decision === 'approve';
  const form = approve
    ? `<form method="post"><button type="submit">Approve</button></form>`
    : `<form method="post"><p><label>Reason <input name="reason" required size="40"></label></p><button type="submit">Deny</button></form>`;
  return page(approve ? 'Approve this access request?' : 'Deny this access request?', `${table}${form}<p>This link works once, with your vigil client certificate.</p>`);
}

function donePage(b: { decision: string; request: AccessRecord }): string {
  const r = b.request;
  const what = r.state === 'active' ? `approved: ${r.user} holds role ${r.role} until ${r.expiresAt}` : r.state === 'denied' ? 'denied' : `recorded your approval (${r.approvals.length} so far; more are needed)`;
  return page(`Request ${r.id}`, `<p>${esc(what)}.</p>`);
}

/**
 * JSON, or an HTML form's fields (the page's own form), bounded like every API body. The server admits a
 * form post here only when the browser shows it came from this gateway's own page (src/api/cross-site.ts:
 * the page's no-referrer policy makes its post say `Origin: null`, with `Sec-Fetch-Site: same-origin`).
 */
async function readLinkBody(req: RouteContext['req']): Promise<unknown> {
  if (!/^application\/x-www-form-urlencoded\b/.test(String(req.headers['content-type'] ?? ''))) return readJson(req);
  return Object.fromEntries(new URLSearchParams((await readBody(req)).toString('utf8')));
}

async function linkJson(ctx: RouteContext, method: 'GET' | 'POST'): Promise<[number, unknown]> {
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
    row = await links.resolve(token);
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

  const body = parseBody(LinkBody, await readLinkBody(ctx.req));
  if (!(await links.claim(row.hash, actor.user))) return refuse(linkErrors.used(), row);
  let decided: AccessRecord;
  try {
    decided =
      row.decision === 'approve'
        ? await access.approve(actor, rec.id, { comment: body.comment ?? 'approved through a one-time link' })
        : await access.deny(actor, rec.id, { reason: body.reason ?? body.comment ?? 'denied through a one-time link' });
  } catch (e) {
    // The decision did not happen: the link stays usable (the access service recorded why it refused).
    await links.release(row.hash, actor.user).catch(() => {});
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

/**
 * Record a link use refused before any identity was established (no or bad client certificate), naming
 * the request when the token is a live link of ours (so auditors see which request someone tried).
 */
export async function unauthenticatedLinkRefusal(links: LinkStore, actor: Pick<Actor, 'source'> & { user?: string; certSerial?: string }, token: string, code: string, message: string) {
  let row: LinkRow | undefined;
  try {
    row = await links.resolve(token);
  } catch {
    row = undefined; // unknown, forged, used or expired: recorded without a request
  }
  return {
    type: 'access.link_refused' as const,
    outcome: 'failure' as const,
    actor: { user: actor.user ?? 'unknown', roles: [], ...(actor.certSerial ? { cert_serial: actor.certSerial } : {}) },
    source: actor.source,
    target: { name: row ? `grant/${row.request_id}` : 'access/links', protocol: 'vigil' },
    details: { link_id: linkIdOfToken(token), ...(row ? { request_id: row.request_id, decision: row.decision } : {}), code, reason: message },
  };
}
