import crypto, { type KeyObject } from 'node:crypto';

/**
 * Short-lived tokens for tools that cannot present a client certificate (sent as a password over TLS).
 * Format: `vigil.<base64url JSON payload>.<base64url Ed25519 signature>`; the signature covers the ASCII
 * text `vigil.<payload>`, so it can never be mistaken for a signature over anything else vigil signs.
 * Signed with a dedicated key (ca/token_signing.key), revocable by serial like certificates.
 */
export const TOKEN_PREFIX = 'vigil';

export interface TokenPayload {
  /** 1: usable from anywhere; 2: bound to `src` (a verifier that knows only 1 refuses it). */
  v: 1 | 2;
  /** vigil user */
  sub: string;
  roles: string[];
  serial: string;
  /** seconds since the epoch */
  nbf: number;
  exp: number;
  grant?: string;
  /** Source addresses (IPs or CIDR blocks) the token may be used from, like a certificate's source-address; v 2 only. */
  src?: string[];
}

export function signToken(payload: TokenPayload, key: KeyObject): string {
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
  const signed = `${TOKEN_PREFIX}.${body}`;
  return `${signed}.${crypto.sign(null, Buffer.from(signed), key).toString('base64url')}`;
}

export type TokenCheck = { ok: true; payload: TokenPayload } | { ok: false; detail: string };

const B64URL = /^[A-Za-z0-9_-]+$/;
/** Longest token accepted before any parsing (a token is ~250 bytes; roles add a little). */
export const MAX_TOKEN_LENGTH = 4096;

/** Checks format and signature only; validity and revocation are the verifier's. */
export function checkTokenSignature(token: string, key: KeyObject): TokenCheck {
  if (token.length > MAX_TOKEN_LENGTH) return { ok: false, detail: 'token too long' };
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== TOKEN_PREFIX || !B64URL.test(parts[1]) || !B64URL.test(parts[2])) return { ok: false, detail: 'not a vigil token' };
  const sig = Buffer.from(parts[2], 'base64url');
  let valid = false;
  try {
    valid = sig.length === 64 && crypto.verify(null, Buffer.from(`${parts[0]}.${parts[1]}`), key, sig);
  } catch {
    valid = false;
  }
  if (!valid) return { ok: false, detail: 'token signature does not verify' };
  let p: unknown;
  try {
    p = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    return { ok: false, detail: 'token payload is not JSON' };
  }
  const t = p as Partial<TokenPayload>;
  const okShape =
    t !== null &&
    typeof t === 'object' &&
    // v 2 exactly when bound to addresses: a bound token never passes as an unbound one, nor the reverse.
    ((t.v === 1 && t.src === undefined) || (t.v === 2 && Array.isArray(t.src) && t.src.length > 0 && t.src.every((a) => typeof a === 'string'))) &&
    typeof t.sub === 'string' &&
    t.sub.length > 0 &&
    Array.isArray(t.roles) &&
    t.roles.every((r) => typeof r === 'string') &&
    typeof t.serial === 'string' &&
    Number.isSafeInteger(t.nbf) &&
    Number.isSafeInteger(t.exp) &&
    (t.grant === undefined || typeof t.grant === 'string');
  if (!okShape) return { ok: false, detail: 'token payload has the wrong shape' };
  return { ok: true, payload: t as TokenPayload };
}
