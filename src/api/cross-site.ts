import type http from 'node:http';
import { ApiError, isJsonType, notJson } from './http.ts';

/**
 * Cross-site requests. The API authenticates by client certificate, and a browser holding one (the README
 * tells approvers and auditors to import theirs) presents it to any page's request to the gateway, like a
 * cookie without SameSite. So the certificate alone does not show that its holder meant the call: a page
 * elsewhere could post a form that approves a request (four-eyes broken through the approver's browser),
 * or open a WebSocket and read the audit stream. Refused here:
 *
 * - a request whose `Sec-Fetch-Site` says another site (`cross-site`, `same-site`: a sibling host is not
 *   this gateway either), or whose `Origin` is not the gateway's own origin (the API's and the console's:
 *   the console is served by the same listener). `Origin: null` (sandboxed frames, and forms posted from a
 *   page with `Referrer-Policy: no-referrer` such as the approval-link page) proves nothing, so it passes
 *   only with `Sec-Fetch-Site: same-origin`, which no page can forge;
 * - a state-changing request that carries a body (or names its type) other than `application/json`: a
 *   cross-site page cannot send that type without a CORS preflight, which the API never grants; this also
 *   covers browsers too old to send `Origin` on a form post. Routes that take their own page's form (the
 *   approval links) also accept `application/x-www-form-urlencoded`, once the checks above passed.
 *
 * Clients that are not browsers (the CLI, scripts) send neither header and JSON bodies, and pass.
 */

/** The origin the browser reached this gateway at, from the Host header it sent (undefined without one). */
function ownOrigin(req: http.IncomingMessage): string | undefined {
  const host = req.headers.host;
  if (!host) return undefined;
  try {
    return new URL(`https://${host}`).origin;
  } catch {
    return undefined;
  }
}

/** Why `req` comes from another site than this gateway's, or undefined when nothing says it does. */
export function foreignSite(req: http.IncomingMessage): string | undefined {
  const site = header(req, 'sec-fetch-site');
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return `Sec-Fetch-Site: ${site}`;
  const origin = header(req, 'origin');
  if (origin === undefined) return undefined;
  if (origin === 'null') return site === 'same-origin' ? undefined : 'Origin: null';
  let normal: string | undefined;
  try {
    normal = new URL(origin).origin;
  } catch {
    normal = undefined;
  }
  const own = ownOrigin(req);
  return normal !== undefined && own !== undefined && normal === own ? undefined : `Origin: ${origin.slice(0, 200)}`;
}

const FORM_TYPE = /^application\/x-www-form-urlencoded\s*(;|$)/i;


/**
 * The refusal for a state-changing call (any method but GET and HEAD) that is cross-site or carries a body
 * a cross-site page could have sent, or undefined. `forms`: the route takes its own page's form.
 */
export function stateChangeRefusal(req: http.IncomingMessage, opts: { forms?: boolean } = {}): ApiError | undefined {
  if (req.method === 'GET' || req.method === 'HEAD') return undefined;
  const foreign = foreignSite(req);
  if (foreign) return new ApiError(403, 'VIGIL_CROSS_SITE', `Refused: the request comes from another site (${foreign}). Use the vigil CLI, the console or the link's own page.`);
  const type = header(req, 'content-type');
  const length = header(req, 'content-length');
  const hasBody = header(req, 'transfer-encoding') !== undefined || (length !== undefined && length !== '0');
  if (type === undefined && !hasBody) return undefined;
  if (isJsonType(req) || (opts.forms && FORM_TYPE.test(type ?? ''))) return undefined;
  return notJson();
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}
