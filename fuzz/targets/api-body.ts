import { Readable } from 'node:stream';
import type http from 'node:http';
import { ApiError, parseBody, readJson } from '../../src/api/http.ts';
import { ApproveBody, CertificateBody, LockBody, ReasonBody, RequestBody, matchRoute } from '../../src/api/routes.ts';
import { check, expectErrorsAsync, type FuzzTarget } from '../engine/target.ts';

const SCHEMAS = [RequestBody, ApproveBody, ReasonBody, CertificateBody, LockBody];
const METHODS = ['GET', 'POST', 'DELETE', 'PUT'];

/**
 * An API request: method and path through the router, the body through the JSON reader (as a real
 * stream, cut in chunks) and every route's body schema. Failures are ApiErrors with a 4xx status.
 */
export const target: FuzzTarget = {
  name: 'api-body',
  covers: ['src/api/'],
  maxLen: 4096,
  dictionary: ['{"user":"alice","role":"dba","targets":["db"],"reason":"x","ttl":"1h"}', '"ttl":', '"break_glass":true', '"ssh_public_key":"ssh-ed25519 AAAA"', '/v1/access/requests', '/v1/sessions/', '/approve', '%2F', '%00', '..', '"__proto__":', '"constructor":', '1e999', '-0', '\\ud800'],
  async run(data) {
    const nl = data.indexOf(0x0a);
    const head = (nl < 0 ? Buffer.alloc(0) : data.subarray(0, nl)).toString('utf8');
    const body = nl < 0 ? data : data.subarray(nl + 1);
    const m = matchRoute(METHODS[(data[0] ?? 0) % METHODS.length], head.slice(1) || '/');
    check(m === 'not_found' || m === 'bad_method' || typeof m.route.handle === 'function', 'route without handler');
    const pieces = [body.subarray(0, body.length >> 1), body.subarray(body.length >> 1)].filter((b) => b.length > 0);
    const req = Readable.from(pieces, { objectMode: false }) as unknown as http.IncomingMessage;
    // Bodies are read only as JSON: mostly declared so, sometimes not (refused 415).
    req.headers = { 'content-type': (data[1] ?? 0) % 8 === 0 ? 'text/plain' : 'application/json; charset=utf-8' };
    const parsed = await expectErrorsAsync(() => readJson(req), ApiError);
    if (parsed === undefined) return;
    for (const schema of SCHEMAS) {
      try {
        parseBody(schema as never, parsed);
      } catch (err) {
        if (!(err instanceof ApiError) || err.status >= 500) throw err;
      }
    }
  },
};
