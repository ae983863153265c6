import crypto from 'node:crypto';
import * as oidc from 'openid-client';
import { createRemoteJWKSet, decodeJwt } from 'jose';
import type { VigilConfig, TargetConfig } from '../../config/schema.ts';
import { readSecret } from '../../config/types.ts';
import { VigilError } from '../../errors.ts';
import type { RoleConfig } from '../../authz/config.ts';
import { roleReachesTarget } from '../../authz/index.ts';
import type { EventBus } from '../../events/bus.ts';
import { refusalBudgetFor, type RefusalBudget } from '../../sessions/refusal-budget.ts';
import type { IdentityService, IssuedCredentials } from '../types.ts';
import type { OidcConfig } from './config.ts';
import { OidcLoginError, classifyTokenError, mapIdentity, verifyIdToken, type VerifiedIdentity } from './id-token.ts';

/**
 * Sign-in with the company's OpenID Provider, on the gateway's side. The CLI starts a login with the
 * public keys it generated (the private keys never leave the user's machine); the gateway runs the
 * authorization-code flow with PKCE (redirect to the CLI's loopback listener) or the device flow against
 * the IdP as its OIDC client, verifies the ID token, maps groups to roles and certifies the CLI's keys.
 * PKCE verifier, nonce and state stay on the gateway: a finished callback is useless without them.
 */

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
/**
 * Started logins kept at once (each costs a little memory, and anyone may start one). Full, a new start is
 * refused rather than dropping someone else's: a start must never cancel another person's sign-in.
 */
export const MAX_PENDING = 1000;
/** Started logins one source address keeps at once; beyond it its own oldest is dropped (never another source's). */
export const MAX_PENDING_PER_SOURCE = 20;
/** Nonces of finished logins remembered to name replays (a token's own expiry bounds how long that matters). */
const MAX_USED_NONCES = 10_000;
const CLOCK_TOLERANCE_SEC = 60;
/**
 * How long one call to the IdP may take. A finish makes two in a row (token endpoint, then JWKS), and
 * both together must stay under `vigil`'s own request timeout (15 s): a hung IdP is then reported to the
 * user as unreachable, instead of the gateway seeming to hang (openid-client's default is 30 s).
 */
const IDP_TIMEOUT_SEC = 6;
const LOOPBACKS = new Set(['127.0.0.1', 'localhost', '[::1]']);

export interface LoginKeys {
  /** OpenSSH public key line (the CLI's Ed25519 key). */
  sshPublicKey: string;
  /** SPKI PEM of the CLI's P-256 key, certified for TLS (databases, API). */
  x509PublicKey: string;
}

export interface LoginSource {
  ip: string;
  port?: number;
}

interface Pending {
  /** `console`: the web console's sign-in (code flow to its own https callback; no keys, no certificate). */
  flow: 'code' | 'device' | 'console';
  keys?: LoginKeys;
  expiresAt: number;
  source: LoginSource;
  code?: { verifier: string; nonce: string; state: string; redirectUri: string };
  device?: { response: oidc.DeviceAuthorizationResponse; nextPollAt: number; intervalMs: number };
}

export interface LoginResult {
  identity: VerifiedIdentity;
  credentials: IssuedCredentials;
}

/** What a finished sign-in yields: the identity, and for the CLI the certificate of its keys. */
type Outcome = { identity: VerifiedIdentity; credentials?: IssuedCredentials };

export interface OidcLoginDeps {
  config: VigilConfig;
  identity: IdentityService;
  events: EventBus;
  /** role_map as configured now (a config reload may change it); absent: the one given at construction. */
  roleMap?: () => Record<string, string[]>;
  /**
   * The gateway's per-source budget for unauthenticated refusals; absent: one of this sign-in's own, from
   * `config.budgets`. Anyone can send a refused sign-in for free: beyond the budget they are summarised.
   */
  refusals?: RefusalBudget;
}

/** The refusal budget's protocol for sign-ins (its auth.failure.summary names it as target protocol). */
export const OIDC_REFUSAL_PROTOCOL = 'oidc';
/** The same budget's protocol for starts, kept apart so a flood of starts leaves refusals recorded one by one. */
export const OIDC_START_PROTOCOL = 'oidc-start';

/** A start refused before anything was begun: 429 (its source is over budget) or 503 (the gateway is full). */
export class OidcStartRefused extends OidcLoginError {
  constructor(
    reason: 'too_many_starts' | 'busy',
    message: string,
    readonly status: 429 | 503,
    /** Seconds to wait before starting again (Retry-After). */
    readonly retryAfterSec: number,
  ) {
    super(reason, message);
  }
}

function loopbackRedirect(uri: string): URL {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new OidcLoginError('malformed', 'redirect_uri is not a URL.');
  }
  // RFC 8252 §7.3: a native app receives the code on a loopback address over http; nothing else is accepted,
  // so a login cannot be started that hands the code to a third party.
  if (u.protocol !== 'http:' || !LOOPBACKS.has(u.hostname) || u.search || u.hash) throw new OidcLoginError('malformed', 'redirect_uri must be http://127.0.0.1:PORT/PATH (a loopback listener).');
  return u;
}

function isLoopbackIssuer(issuer: string): boolean {
  const u = new URL(issuer);
  return u.protocol === 'http:' && LOOPBACKS.has(u.hostname);
}

/** SSH and database targets a set of roles reaches (the connect-time rule), for the CLI to configure clients. */
export function reachableTargets(config: VigilConfig, roles: string[]): TargetConfig[] {
  const mine = (config.roles as RoleConfig[]).filter((r) => roles.includes(r.name));
  return (config.targets as TargetConfig[]).filter((t) => mine.some((r) => roleReachesTarget(r, t)));
}

export class OidcLogin {
  private discovered?: Promise<oidc.Configuration>;
  private jwks?: ReturnType<typeof createRemoteJWKSet>;
  private readonly pending = new Map<string, Pending>();
  private readonly usedNonces = new Map<string, number>();
  /** ID tokens as the token endpoint sent them, by authorization code: to tell a replay from a stray token. */
  private readonly rawTokens = new Map<string, string>();
  private ownRefusals?: RefusalBudget;

  constructor(
    private readonly cfg: OidcConfig,
    private readonly deps: OidcLoginDeps,
    private readonly now: () => number = Date.now,
  ) {}

  /** Discovery once (retried on the next login if it failed: the IdP may have been down). */
  private client(): Promise<oidc.Configuration> {
    this.discovered ??= (async () => {
      const auth = this.cfg.client_secret ? oidc.ClientSecretBasic(readSecret(this.cfg.client_secret)) : oidc.None();
      const insecure = isLoopbackIssuer(this.cfg.issuer);
      const c = await oidc.discovery(new URL(this.cfg.issuer), this.cfg.client_id, undefined, auth, { timeout: IDP_TIMEOUT_SEC, ...(insecure ? { execute: [oidc.allowInsecureRequests] } : {}) });
      const jwksUri = c.serverMetadata().jwks_uri;
      if (!jwksUri) throw new Error('the identity provider publishes no jwks_uri');
      this.jwks = createRemoteJWKSet(new URL(jwksUri), { timeoutDuration: IDP_TIMEOUT_SEC * 1000 });
      c[oidc.customFetch] = async (url, options) => {
        const res = await fetch(url, options as RequestInit);
        const body = options.body;
        if (body instanceof URLSearchParams && body.get('grant_type') === 'authorization_code' && res.ok) {
          const tok = (await res.clone().json().catch(() => ({}))) as { id_token?: unknown };
          const code = body.get('code');
          if (code && typeof tok.id_token === 'string') this.rawTokens.set(code, tok.id_token);
        }
        return res;
      };
      return c;
    })().catch((e) => {
      this.discovered = undefined;
      throw new OidcLoginError('idp_unreachable', 'The identity provider cannot be reached.', `discovery of ${this.cfg.issuer} failed: ${(e as Error).message}`);
    });
    return this.discovered;
  }

  /**
   * Every start takes one from its source's budget (the gateway's per-source refusal budget, protocol
   * `oidc-start`), before any work or call to the IdP: a start is free for the caller and, unlimited, would
   * let one address fill the table of sign-ins in progress. Beyond it the start is refused with 429 and
   * counted into the source's auth.failure.summary. Allow-listed sources (budgets.allow) are never limited.
   */
  private admitStart(source: LoginSource): void {
    const budget = this.refusals();
    if (budget.take(OIDC_START_PROTOCOL, source.ip, 'too_many_starts')) return;
    const wait = budget.retryAfter(OIDC_START_PROTOCOL, source.ip);
    throw new OidcStartRefused('too_many_starts', `Too many sign-ins started from your address; try again in ${wait} seconds.`, 429, wait);
  }

  private put(p: Pending): string {
    this.sweep();
    const mine: string[] = [];
    for (const [id, q] of this.pending) if (q.source.ip === p.source.ip) mine.push(id);
    // Insertion order is start order: a source at its cap makes room by dropping its own oldest.
    while (mine.length >= MAX_PENDING_PER_SOURCE) this.pending.delete(mine.shift()!);
    if (this.pending.size >= MAX_PENDING) {
      // Room comes back when the first sign-in in progress finishes or expires.
      let firstEnd = Infinity;
      for (const q of this.pending.values()) firstEnd = Math.min(firstEnd, q.expiresAt);
      const wait = Math.max(1, Math.ceil((firstEnd - this.now()) / 1000));
      throw new OidcStartRefused('busy', `Too many sign-ins are in progress on this gateway; try again in ${wait} seconds.`, 503, wait);
    }
    const id = crypto.randomBytes(24).toString('base64url');
    this.pending.set(id, p);
    return id;
  }

  private sweep(): void {
    const now = this.now();
    for (const [id, p] of this.pending) if (p.expiresAt <= now) this.pending.delete(id);
  }

  private take(loginId: string, flow: Pending['flow'], remove: boolean): Pending {
    const p = this.pending.get(loginId);
    const again = flow === 'console' ? 'sign in to the console again' : 'run vigil login again';
    if (!p || p.flow !== flow) throw new OidcLoginError('login_unknown', `No such sign-in in progress (finished, replayed or never started); ${again}.`);
    if (p.expiresAt <= this.now()) {
      this.pending.delete(loginId);
      throw new OidcLoginError('login_expired', `The sign-in took too long; ${again}.`);
    }
    if (remove) this.pending.delete(loginId);
    return p;
  }

  private checkKeys(keys: LoginKeys): void {
    if (!/^ssh-ed25519 [A-Za-z0-9+/=]+( .*)?$/.test(keys.sshPublicKey.trim())) throw new OidcLoginError('bad_keys', 'ssh_public_key must be an OpenSSH ssh-ed25519 public key line.');
    try {
      const k = crypto.createPublicKey(keys.x509PublicKey);
      if (k.asymmetricKeyType !== 'ec' || k.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new Error('not P-256');
    } catch {
      throw new OidcLoginError('bad_keys', 'x509_public_key must be the PEM of an EC P-256 public key.');
    }
  }

  /** Authorization code + PKCE: returns where to send the browser. */
  async startCode(keys: LoginKeys, redirectUri: string, source: LoginSource): Promise<{ loginId: string; authorizationUrl: string; expiresAt: Date }> {
    this.admitStart(source);
    this.checkKeys(keys);
    return this.beginCode('code', keys, loopbackRedirect(redirectUri), source);
  }

  /**
   * The web console's sign-in: authorization code + PKCE with the console's own https callback (built by
   * the gateway from the request, never taken from the caller). The result is an identity, not a certificate.
   */
  async startConsole(redirectUri: string, source: LoginSource): Promise<{ loginId: string; authorizationUrl: string; expiresAt: Date }> {
    this.admitStart(source);
    const redirect = new URL(redirectUri);
    if (redirect.protocol !== 'https:' || redirect.search || redirect.hash) throw new OidcLoginError('malformed', 'The console callback must be an https URL.');
    return this.beginCode('console', undefined, redirect, source);
  }

  private async beginCode(flow: 'code' | 'console', keys: LoginKeys | undefined, redirect: URL, source: LoginSource): Promise<{ loginId: string; authorizationUrl: string; expiresAt: Date }> {
    const c = await this.client();
    const verifier = oidc.randomPKCECodeVerifier();
    const nonce = oidc.randomNonce();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(c, {
      redirect_uri: redirect.href,
      scope: this.cfg.scopes.join(' '),
      response_type: 'code',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      nonce,
      state,
    });
    const expiresAt = this.now() + this.cfg.login_timeout;
    const loginId = this.put({ flow, ...(keys ? { keys } : {}), expiresAt, source, code: { verifier, nonce, state, redirectUri: redirect.href } });
    return { loginId, authorizationUrl: url.href, expiresAt: new Date(expiresAt) };
  }

  /** The browser came back to the CLI's listener with `callbackUrl`; exchange the code and certify the keys. */
  async finishCode(loginId: string, callbackUrl: string, source: LoginSource): Promise<LoginResult> {
    return this.recorded('code', source, async () => {
      const p = this.take(loginId, 'code', true);
      return this.certify(p, await this.exchangeCode(p, callbackUrl));
    });
  }

  /** The browser came back to the console's callback: exchange the code, verify and map the identity (no certificate). */
  async finishConsole(loginId: string, callbackUrl: string, source: LoginSource): Promise<VerifiedIdentity> {
    const r = await this.recorded('console', source, async () => {
      const p = this.take(loginId, 'console', true);
      return { identity: await this.identify(await this.exchangeCode(p, callbackUrl)) };
    });
    return r.identity;
  }

  private async exchangeCode(p: Pending, callbackUrl: string): Promise<import('jose').JWTPayload> {
    const pc = p.code!;
    let cb: URL;
    try {
      cb = new URL(callbackUrl);
    } catch {
      throw new OidcLoginError('malformed', 'callback_url is not a URL.');
    }
    if (cb.origin + cb.pathname !== new URL(pc.redirectUri).origin + new URL(pc.redirectUri).pathname) throw new OidcLoginError('malformed', 'callback_url is not the redirect_uri this sign-in started with.');
    if (cb.searchParams.get('state') !== pc.state) throw new OidcLoginError('state_mismatch', 'The answer does not belong to this sign-in (state differs).');
    const c = await this.client();
    const code = cb.searchParams.get('code') ?? '';
    let idToken: string | undefined;
    try {
      const tokens = await oidc.authorizationCodeGrant(c, cb, { pkceCodeVerifier: pc.verifier, expectedNonce: pc.nonce, expectedState: pc.state, idTokenExpected: true });
      idToken = tokens.id_token;
    } catch (e) {
      const refusal = classifyTokenError(e);
      const raw = this.rawTokens.get(code);
      if (refusal.reason === 'nonce_mismatch' && raw) throw this.nonceRefusal(raw, refusal);
      throw withSubject(refusal, raw);
    } finally {
      this.rawTokens.delete(code);
    }
    if (!idToken) throw new OidcLoginError('malformed', 'The identity provider sent no ID token.');
    const payload = await verifyIdToken(idToken, this.checks(pc.nonce)).catch((e) => {
      throw withSubject(classifyTokenError(e), idToken);
    });
    this.rememberNonce(pc.nonce, payload.exp);
    return payload;
  }

  /** Device authorization: the user types (or follows) the code on any device with a browser. */
  async startDevice(keys: LoginKeys, source: LoginSource): Promise<{ loginId: string; userCode: string; verificationUri: string; verificationUriComplete?: string; intervalSec: number; expiresAt: Date }> {
    // Before the IdP is asked for a device code: each one is an outbound call made for an anonymous caller.
    this.admitStart(source);
    this.checkKeys(keys);
    const c = await this.client();
    let response: oidc.DeviceAuthorizationResponse;
    try {
      response = await oidc.initiateDeviceAuthorization(c, { scope: this.cfg.scopes.join(' ') });
    } catch (e) {
      throw classifyTokenError(e);
    }
    const intervalMs = (response.interval ?? 5) * 1000;
    const expiresAt = Math.min(this.now() + this.cfg.login_timeout, this.now() + response.expires_in * 1000);
    const loginId = this.put({ flow: 'device', keys, expiresAt, source, device: { response, nextPollAt: 0, intervalMs } });
    return {
      loginId,
      userCode: response.user_code,
      verificationUri: response.verification_uri,
      ...(response.verification_uri_complete ? { verificationUriComplete: response.verification_uri_complete } : {}),
      intervalSec: intervalMs / 1000,
      expiresAt: new Date(expiresAt),
    };
  }

  /** One poll: `pending` until the user approved at the IdP; the IdP is asked at most once per its interval. */
  async pollDevice(loginId: string, source: LoginSource): Promise<LoginResult | 'pending'> {
    let p: Pending;
    try {
      p = this.take(loginId, 'device', false);
    } catch (e) {
      // An unknown or expired login is a refused sign-in like a bad finish: on the record, within its budget.
      return this.recorded('device', source, async () => {
        throw e;
      });
    }
    const d = p.device!;
    if (this.now() < d.nextPollAt) return 'pending';
    d.nextPollAt = this.now() + d.intervalMs;
    const c = await this.client();
    let idToken: string | undefined;
    try {
      idToken = (await oidc.genericGrantRequest(c, DEVICE_GRANT, { device_code: d.response.device_code })).id_token;
    } catch (e) {
      const error = (e as { error?: string }).error;
      if (error === 'authorization_pending') return 'pending';
      if (error === 'slow_down') {
        d.intervalMs += 5000;
        return 'pending';
      }
      this.pending.delete(loginId);
      return this.recorded('device', source, async () => {
        throw classifyTokenError(e);
      });
    }
    this.pending.delete(loginId);
    return this.recorded('device', source, async () => {
      if (!idToken) throw new OidcLoginError('malformed', 'The identity provider sent no ID token.');
      const payload = await verifyIdToken(idToken, this.checks(undefined)).catch((e) => {
        throw withSubject(classifyTokenError(e), idToken);
      });
      return this.certify(p, payload);
    });
  }

  private checks(nonce: string | undefined) {
    return {
      issuer: this.cfg.issuer,
      audience: this.cfg.client_id,
      jwks: this.jwks!,
      nonce,
      usedNonce: (n: string) => this.usedNonces.has(n),
      clockToleranceSec: CLOCK_TOLERANCE_SEC,
    };
  }

  private nonceRefusal(raw: string, fallback: OidcLoginError): OidcLoginError {
    let nonce: unknown;
    let sub: unknown;
    try {
      ({ nonce, sub } = decodeJwt(raw));
    } catch {
      return fallback;
    }
    const subject = typeof sub === 'string' ? { subject: sub } : {};
    if (typeof nonce === 'string' && this.usedNonces.has(nonce)) return new OidcLoginError('nonce_replayed', fallback.message, 'ID token carries the nonce of an earlier, finished sign-in', subject);
    return new OidcLoginError(fallback.reason, fallback.message, fallback.detail, subject);
  }

  private rememberNonce(nonce: string, exp: number | undefined): void {
    const now = this.now();
    for (const [n, until] of this.usedNonces) if (until <= now) this.usedNonces.delete(n);
    if (this.usedNonces.size >= MAX_USED_NONCES) this.usedNonces.delete(this.usedNonces.keys().next().value as string);
    this.usedNonces.set(nonce, Math.max((exp ?? 0) * 1000, now) + CLOCK_TOLERANCE_SEC * 1000);
  }

  /**
   * The vigil identity of a verified ID token: its name claim, mapped roles, and the name's binding to the
   * IdP account. Bound only once the sign-in would succeed, so an account without a role squats no name.
   */
  private async identify(payload: import('jose').JWTPayload): Promise<VerifiedIdentity> {
    const id = mapIdentity(payload, { rolesClaim: this.cfg.roles_claim, userClaim: this.cfg.user_claim, roleMap: this.deps.roleMap?.() ?? this.cfg.role_map });
    const held = await this.deps.identity.bindOidcSubject(id.user, this.cfg.issuer, id.subject).catch((e) => {
      // The name is another user's in another case (`Alice` for alice): taken, like the name itself.
      if (e instanceof VigilError && e.code === 'VIGIL_USER_NAME_TAKEN') {
        throw new OidcLoginError('user_taken', `The vigil user ${id.user} differs only in case from another user; ask an administrator.`, e.message, { subject: id.subject, groups: id.groups });
      }
      throw e;
    });
    if (!held) return id;
    const detail = `user ${JSON.stringify(held.user)} is bound to subject ${JSON.stringify(held.subject)} of ${held.issuer} since ${held.boundAt}; this sign-in is subject ${JSON.stringify(id.subject)} as ${JSON.stringify(id.user)}`;
    // Another account has the name: the refusal is not attributed to the user it would have become.
    if (held.user === id.user) throw new OidcLoginError('user_taken', `The vigil user ${id.user} belongs to another account of your identity provider; ask an administrator.`, detail, { subject: id.subject, groups: id.groups });
    // This account is known under another name (renamed at the IdP): it stays that user, locks and all.
    throw new OidcLoginError('subject_renamed', `Your identity provider account is vigil user ${held.user}, not ${id.user}; ask an administrator.`, detail, { subject: id.subject, groups: id.groups, user: held.user });
  }

  private refusals(): RefusalBudget {
    // Its own budget has no logger to report a summary that could not be written; the gateway's has.
    return this.deps.refusals ?? (this.ownRefusals ??= refusalBudgetFor(this.deps.config.budgets, this.deps.events, { error: () => {} }).budget);
  }

  private async certify(p: Pending, payload: import('jose').JWTPayload): Promise<LoginResult> {
    const identity = await this.identify(payload);
    const keys = p.keys!;
    const config = this.deps.config;
    const forwarding = (config.roles as RoleConfig[]).some((r) => identity.roles.includes(r.name) && r.port_forwarding);
    let ttlMs = this.cfg.max_cert_ttl;
    // The IdP may bound the session it vouches for (`session_expires_at`, seconds): the certificate ends with it.
    const sessionEnd = typeof payload.session_expires_at === 'number' ? payload.session_expires_at * 1000 - this.now() : undefined;
    if (sessionEnd !== undefined) ttlMs = Math.min(ttlMs, sessionEnd);
    if (!(ttlMs > 0)) throw new OidcLoginError('expired', 'Your identity provider session has ended.', 'session_expires_at is in the past', { subject: identity.subject, groups: identity.groups, user: identity.user });
    const credentials = await this.deps.identity
      .issue({ user: identity.user, roles: identity.roles, ttlMs, sshPublicKey: keys.sshPublicKey, x509PublicKey: keys.x509PublicKey, extensions: forwarding ? ['permit-pty', 'permit-port-forwarding'] : ['permit-pty'] })
      .catch((e) => {
        throw new OidcLoginError('bad_keys', 'The keys sent with the sign-in cannot be certified.', (e as Error).message, { subject: identity.subject, groups: identity.groups, user: identity.user });
      });
    return { identity, credentials };
  }

  /**
   * Every finished sign-in, success or refusal, is an audit event (and the issuance a `cert.issued`);
   * refusals within their source's budget, the rest in its `auth.failure.summary`.
   */
  private async recorded<T extends Outcome>(flow: Pending['flow'], source: LoginSource, fn: () => Promise<T>): Promise<T> {
    const src = { ip: source.ip, ...(source.port ? { port: source.port } : {}), via: flow === 'console' ? 'console' : 'api' };
    const target = { name: 'oidc', protocol: 'https', host: new URL(this.cfg.issuer).host };
    let result: T;
    try {
      result = await fn();
    } catch (e) {
      const r = e instanceof OidcLoginError ? e : new OidcLoginError('idp_error', 'The sign-in failed.', (e as Error).message);
      // Within the source's refusal budget, recorded one by one; beyond it counted into its summary.
      if (!this.refusals().take(OIDC_REFUSAL_PROTOCOL, source.ip, r.reason)) {
        r.suppressed = true;
        throw r;
      }
      await this.deps.events.emit({
        type: 'auth.oidc.failure',
        outcome: 'failure',
        actor: { user: r.claims?.user ?? 'unknown', roles: [] },
        source: src,
        target,
        details: { flow, issuer: this.cfg.issuer, reason: r.reason, detail: r.detail, subject: r.claims?.subject ?? null, groups: r.claims?.groups ?? null },
      });
      throw r;
    }
    const { identity: id, credentials: c } = result;
    if (!c) {
      // The console's sign-in: the identity alone (the console records its session as console.signin).
      await this.deps.events.emit({
        type: 'auth.oidc.success',
        outcome: 'success',
        actor: { user: id.user, roles: id.roles },
        source: src,
        target,
        details: { flow, issuer: this.cfg.issuer, subject: id.subject, groups: id.groups, roles: id.roles },
      });
      return result;
    }
    const actor = { user: id.user, roles: id.roles, cert_serial: c.serial };
    await this.deps.events.emit({
      type: 'auth.oidc.success',
      outcome: 'success',
      actor,
      source: src,
      target,
      details: { flow, issuer: this.cfg.issuer, subject: id.subject, groups: id.groups, roles: id.roles, serial: c.serial, not_after: c.notAfter.toISOString() },
    });
    await this.deps.events.emit({
      type: 'cert.issued',
      outcome: 'success',
      actor,
      source: src,
      target: { name: `user/${id.user}`, protocol: 'vigil' },
      details: { serial: c.serial, user: id.user, roles: c.roles, not_before: c.notBefore.toISOString(), not_after: c.notAfter.toISOString(), grant_id: null, kind: 'cert', via: 'oidc' },
    });
    return result;
  }
}

/** Name the token's subject (and groups) on a refusal when the token can at least be read. */
function withSubject(e: OidcLoginError, raw: string | undefined): OidcLoginError {
  if (!raw || e.claims) return e;
  try {
    const p = decodeJwt(raw);
    return new OidcLoginError(e.reason, e.message, e.detail, { ...(typeof p.sub === 'string' ? { subject: p.sub } : {}) });
  } catch {
    return e;
  }
}
