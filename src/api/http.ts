import type http from 'node:http';
import { z } from 'zod';
import { AccessRefusedError } from '../access/errors.ts';
import { AuditUnavailableError, StoreUnavailableError, VigilError } from '../errors.ts';

/** JSON request/response plumbing for the API: one error shape `{ error: { code, message } }` everywhere. */

export const MAX_BODY_BYTES = 64 * 1024;

/** An API-level failure with an HTTP status and a stable code. */
export class ApiError extends VigilError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
  ) {
    super(code, message);
  }
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** A route result to send as an HTML page (the approval links, opened in a browser) instead of JSON. */
export class HtmlBody {
  constructor(readonly html: string) {}
}

export function sendHtml(res: http.ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'cache-control': 'no-store',
    // The page is static: no scripts, no framing (clickjacking of the approve button), no referrer leaking the token.
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
  });
  res.end(html);
}

/** VigilError codes that are the gateway's fault, never the caller's input. */
const SERVER_FAULTS = new Set(['VIGIL_INTERNAL', 'VIGIL_KEY_INVALID', 'VIGIL_CA_MISSING', 'VIGIL_CA_INCOMPLETE', 'VIGIL_CA_MISMATCH', 'VIGIL_CA_LOCKED', 'VIGIL_AUDIT_LOCKED', 'VIGIL_AUDIT_INDEX_UNREADABLE', 'VIGIL_AUDIT_CHAIN_DIVERGED']);

const REFUSAL_STATUS = { invalid: 400, forbidden: 403, conflict: 409, not_found: 404 } as const;

/** HTTP status and client-safe body for any error; unknown errors become a 500 that reveals nothing. */
export function errorResponse(e: unknown): { status: number; code: string; message: string } {
  if (e instanceof ApiError) return { status: e.status, code: e.code, message: e.message };
  if (e instanceof AccessRefusedError) return { status: REFUSAL_STATUS[e.kind], code: e.code, message: e.message };
  if (e instanceof AuditUnavailableError) return { status: 503, code: e.code, message: 'The audit log cannot be written, so changes are refused.' };
  if (e instanceof StoreUnavailableError) return { status: 503, code: e.code, message: 'The state store cannot be reached, so access changes are refused; try again shortly.' };
  // The store's own refusal names where the store is (host, database): for the gateway's log (500s are
  // logged), not for the caller, whose input was already checked before it reached the store.
  if (e instanceof VigilError && e.code === 'VIGIL_STORE_ERROR') return { status: 500, code: e.code, message: 'The state store refused the change; the gateway log has the details.' };
  // Faults of the gateway's own files (CA, link key, audit log and its index): their messages name paths
  // under the data directory, which are for the gateway's log (500s are logged), not for the caller.
  if (e instanceof VigilError && SERVER_FAULTS.has(e.code)) return { status: 500, code: e.code, message: 'The gateway could not complete this because of a fault on its side; the gateway log has the details.' };
  if (e instanceof VigilError) return { status: e.code === 'VIGIL_NOT_FOUND' ? 404 : 400, code: e.code, message: e.message };
  return { status: 500, code: 'VIGIL_INTERNAL', message: 'Internal error.' };
}

const JSON_TYPE = /^application\/json\s*(;|$)/i;

/** Whether a request declares its body as JSON (`application/json`, with or without parameters). */
export function isJsonType(req: http.IncomingMessage): boolean {
  const v = req.headers['content-type'];
  return JSON_TYPE.test(Array.isArray(v) ? v.join(', ') : (v ?? ''));
}

/** The refusal of a body that is not declared JSON. */
export function notJson(): ApiError {
  return new ApiError(415, 'VIGIL_CONTENT_TYPE', 'Request bodies must be JSON (content-type: application/json).');
}

/**
 * What is read and thrown away of a body past MAX_BODY_BYTES, so the client (still sending) gets its 413
 * instead of a reset connection; beyond it the connection is cut.
 */
const OVERSIZE_DRAIN_BYTES = 1024 * 1024;

/**
 * The raw body, bounded by MAX_BODY_BYTES. Too large a body is refused with 413, and the rest of it is
 * read and discarded (up to OVERSIZE_DRAIN_BYTES) rather than the connection destroyed at once: destroying
 * it left the answer unsent, and clients saw "socket hang up" instead of why.
 */
export function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (refused) {
        if (size > MAX_BODY_BYTES + OVERSIZE_DRAIN_BYTES) req.destroy();
        return;
      }
      if (size > MAX_BODY_BYTES) {
        refused = true;
        chunks.length = 0;
        reject(new ApiError(413, 'VIGIL_BODY_TOO_LARGE', `Request bodies are limited to ${MAX_BODY_BYTES} bytes.`));
        return;
      }
      chunks.push(c);
    });
    req.on('error', reject);
    req.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

/**
 * Read and parse a JSON body (empty body = `{}`), bounded by MAX_BODY_BYTES. A body must say it is JSON:
 * a cross-site form can post `text/plain` that happens to parse as JSON, but cannot send
 * `application/json` without a CORS preflight (src/api/cross-site.ts).
 */
export async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const text = (await readBody(req)).toString('utf8').trim();
  if (!text) return {};
  if (!isJsonType(req)) throw notJson();
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(400, 'VIGIL_BAD_JSON', 'The request body is not valid JSON.');
  }
}

/** Validate a body against a schema; the first problem names its field. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue.path.length ? issue.path.join('.') : issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : 'body';
  throw new ApiError(400, 'VIGIL_BAD_REQUEST', `${field}: ${issue.message}`);
}
