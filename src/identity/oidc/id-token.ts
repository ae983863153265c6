import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { VigilError } from '../../errors.ts';

/** Why a sign-in was refused; recorded verbatim in `auth.oidc.failure` events. */
export type OidcFailureReason =
  | 'wrong_audience'
  | 'wrong_issuer'
  | 'expired'
  /** Its nbf (not before) is still ahead, beyond the clock tolerance. */
  | 'not_yet_valid'
  | 'bad_signature'
  | 'nonce_mismatch'
  | 'nonce_replayed'
  | 'unmapped_group'
  | 'bad_user'
  | 'email_unverified'
  | 'user_taken'
  | 'subject_renamed'
  | 'bad_keys'
  | 'login_unknown'
  | 'login_expired'
  | 'state_mismatch'
  | 'idp_error'
  | 'idp_unreachable'
  | 'malformed'
  /** A start beyond its source's budget (counted into the `oidc-start` auth.failure.summary, not recorded alone). */
  | 'too_many_starts'
  /** A start while the gateway already holds as many sign-ins in progress as it keeps. */
  | 'busy';

/** A refused sign-in. `message` is safe for the client; `detail` goes only to the audit event. */
export class OidcLoginError extends VigilError {
  /** Set when the refusal was over its source's budget: counted into an auth.failure.summary, not recorded on its own. */
  suppressed = false;
  constructor(
    readonly reason: OidcFailureReason,
    message: string,
    readonly detail: string = message,
    readonly claims?: { subject?: string; groups?: string[]; user?: string },
  ) {
    super('VIGIL_OIDC_REFUSED', message);
  }
}

/** The parts of an ID token vigil decides on. */
export interface VerifiedIdentity {
  subject: string;
  user: string;
  groups: string[];
  roles: string[];
  claims: JWTPayload;
}

const USER_RE = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$/;

export interface IdTokenChecks {
  issuer: string;
  audience: string;
  jwks: ReturnType<typeof createRemoteJWKSet>;
  /** The nonce vigil put in the authorization request (absent for the device flow, which has none). */
  nonce?: string;
  /** Nonces of logins that already finished: a token carrying one of them is a replay. */
  usedNonce: (n: string) => boolean;
  clockToleranceSec: number;
}

/**
 * Verify an ID token independently of the client library that fetched it: signature against the IdP's
 * published keys (JWKS), issuer, audience, expiry and nonce. openid-client checks most of this too, but
 * not the signature of a token from the token endpoint; vigil issues certificates on the strength of this
 * token, so it checks everything itself.
 */
export async function verifyIdToken(idToken: string, c: IdTokenChecks): Promise<JWTPayload> {
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(idToken, c.jwks, { issuer: c.issuer, audience: c.audience, clockTolerance: c.clockToleranceSec, requiredClaims: ['sub', 'exp', 'iat'] }));
  } catch (e) {
    throw classifyTokenError(e);
  }
  const nonce = typeof payload.nonce === 'string' ? payload.nonce : undefined;
  if (c.nonce !== undefined && nonce !== c.nonce) {
    const replay = nonce !== undefined && c.usedNonce(nonce);
    throw new OidcLoginError(replay ? 'nonce_replayed' : 'nonce_mismatch', 'The identity provider\'s answer does not belong to this sign-in.', replay ? 'ID token carries the nonce of an earlier, finished sign-in' : 'ID token nonce differs from the one sent', subjectOf(payload));
  }
  return payload;
}

function subjectOf(p: JWTPayload): { subject?: string } {
  return typeof p.sub === 'string' ? { subject: p.sub } : {};
}

/** Map errors of jose (and of openid-client, which checks the same claims) to a refusal reason. */
export function classifyTokenError(e: unknown): OidcLoginError {
  if (e instanceof OidcLoginError) return e;
  // openid-client wraps oauth4webapi's error, which carries the claim in its own cause: walk the chain.
  type Err = { code?: string; claim?: string; message?: string; error?: string; cause?: unknown };
  const chain: Err[] = [];
  for (let x: unknown = e; x && typeof x === 'object' && chain.length < 5; x = (x as Err).cause) chain.push(x as Err);
  const codes = new Set(chain.map((x) => x.code));
  const msg = chain.map((x) => x.message).filter(Boolean).join(': ') || String(e);
  const claim = chain.find((x) => typeof x.claim === 'string')?.claim ?? /"(aud|azp|iss|exp|nonce|iat|nbf)"/.exec(msg)?.[1];
  const idpError = chain.find((x) => typeof x.error === 'string')?.error;
  const refuse = (r: OidcFailureReason, m: string) => new OidcLoginError(r, m, msg);
  // No answer at all (refused, reset, unresolvable, timed out) is an outage, not a bad answer: the operator
  // looks at the IdP or the network, the user retries later.
  if (chain.some(isNetworkFailure) || codes.has('OAUTH_TIMEOUT') || codes.has('ERR_JWKS_TIMEOUT')) return refuse('idp_unreachable', 'The identity provider cannot be reached; try again later.');
  if (codes.has('ERR_JWT_EXPIRED') || claim === 'exp') return refuse('expired', 'The identity provider\'s token has expired.');
  if (claim === 'nbf') return refuse('not_yet_valid', 'The identity provider\'s token is not valid yet (check the clocks).');
  // A token signed with another algorithm than the IdP's (`none`, or HS256 keyed with its public key) is a
  // forgery attempt: named as a bad signature, not as an unusable answer.
  if (codes.has('ERR_JWS_SIGNATURE_VERIFICATION_FAILED') || codes.has('ERR_JWKS_NO_MATCHING_KEY') || codes.has('ERR_JWS_INVALID') || codes.has('ERR_JOSE_ALG_NOT_ALLOWED') || /"alg" (header parameter|identifier)/.test(msg)) return refuse('bad_signature', 'The identity provider\'s token is not validly signed.');
  // azp names the party the token was issued to when it has several audiences: another party is another client.
  if (claim === 'aud' || claim === 'azp') return refuse('wrong_audience', 'The identity provider\'s token was issued to another client.');
  if (claim === 'iss') return refuse('wrong_issuer', 'The identity provider\'s token comes from another issuer.');
  if (claim === 'nonce') return refuse('nonce_mismatch', 'The identity provider\'s answer does not belong to this sign-in.');
  if (codes.has('ERR_JWT_CLAIM_VALIDATION_FAILED') || codes.has('ERR_JWT_INVALID')) return refuse('malformed', 'The identity provider\'s token is not usable.');
  if (idpError) return refuse('idp_error', `The identity provider refused: ${idpError}.`);
  return refuse('idp_error', 'The identity provider\'s answer could not be used.');
}

const NETWORK_CODES = /^(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EPIPE|UND_ERR_)/;

/** fetch's own failure (undici's `fetch failed`, its cause a socket error), as opposed to an answer. */
function isNetworkFailure(x: { code?: string; message?: string }): boolean {
  return (x instanceof TypeError && x.message === 'fetch failed') || (typeof x.code === 'string' && NETWORK_CODES.test(x.code));
}

/** The vigil roles `groups` map to through `roleMap` (sorted, no duplicates); unknown groups give nothing. */
export function rolesOfGroups(groups: string[], roleMap: Record<string, string[]>): string[] {
  return [...new Set(groups.flatMap((g) => (Object.prototype.hasOwnProperty.call(roleMap, g) ? roleMap[g] : [])))].sort();
}

/** Groups from the roles claim (a list, or one string), mapped to roles by `roleMap`; unknown groups give nothing. */
export function mapIdentity(payload: JWTPayload, o: { rolesClaim: string; userClaim: string; roleMap: Record<string, string[]> }): VerifiedIdentity {
  const subject = String(payload.sub);
  const raw = payload[o.rolesClaim];
  const groups = Array.isArray(raw) ? raw.filter((g): g is string => typeof g === 'string') : typeof raw === 'string' ? [raw] : [];
  const nameClaim = payload[o.userClaim];
  // No fallback to `sub`: it would put IdP subjects in the same name space as user names, where a subject
  // that reads like someone's name would become that user.
  if (typeof nameClaim !== 'string' || !nameClaim) throw new OidcLoginError('bad_user', 'Your identity provider sent no user name for vigil; ask an administrator.', `ID token has no ${JSON.stringify(o.userClaim)} claim (identity.oidc.user_claim)`, { subject, groups });
  // Anyone can put any address on an IdP account; only a verified one says whose it is.
  if (o.userClaim === 'email' && payload.email_verified !== true) throw new OidcLoginError('email_unverified', 'Your e-mail address is not verified at the identity provider.', `email ${JSON.stringify(nameClaim)} is not verified (email_verified: ${JSON.stringify(payload.email_verified ?? null)})`, { subject, groups });
  const user = nameClaim;
  if (!USER_RE.test(user)) throw new OidcLoginError('bad_user', 'Your identity provider user name cannot be a vigil user name.', `user ${JSON.stringify(user)} is not a valid vigil user name`, { subject, groups });
  const roles = rolesOfGroups(groups, o.roleMap);
  if (roles.length === 0) throw new OidcLoginError('unmapped_group', 'None of your groups gives a vigil role; ask an administrator.', `groups ${JSON.stringify(groups)} map to no role`, { subject, groups, user });
  return { subject, user, groups, roles, claims: payload };
}
