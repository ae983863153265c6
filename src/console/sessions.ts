import crypto from 'node:crypto';
import type http from 'node:http';

/**
 * Server-side console sessions. The browser holds only a random id in an HttpOnly, Secure,
 * SameSite=Strict cookie; who it speaks for (user, roles, certificate serial) stays here. Each session
 * has its own CSRF token, which every state-changing request must repeat in a header: a cross-site form
 * or fetch cannot read it, so it cannot forge the header even if the cookie were sent.
 */
export const COOKIE = '__Host-vigil_console';
export const CSRF_HEADER = 'x-vigil-csrf';

/** A verified identity, however it was proven (client certificate now, OIDC by another module). */
export interface ConsoleIdentity {
  user: string;
  roles: string[];
  method: 'cert' | 'oidc';
  /** Client certificate sign-ins: the serial, re-checked for revocation on every request. */
  certSerial?: string;
  /** OIDC sign-ins: the IdP's subject and the groups, mapped to `roles` again on every request (role_map may change). */
  oidc?: { subject: string; groups: string[] };
  /**
   * Epoch ms after which the session must not last, whatever the console's TTL: the IdP's policy, or the
   * client certificate's notAfter (a session is never worth more than what proved it).
   */
  notAfter?: number;
  /** Client certificate sign-ins with a grant certificate: the grant, re-checked on every request. */
  grantId?: string;
}

export interface ConsoleSession extends ConsoleIdentity {
  id: string;
  csrf: string;
  createdAt: number;
  expiresAt: number;
}

export class ConsoleSessions {
  private readonly byId = new Map<string, ConsoleSession>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The seam every sign-in method goes through: turn a verified identity into a console session. The
   * caller must have verified `who` (certificate chain and revocation, or an OIDC ID token).
   */
  create(who: ConsoleIdentity): ConsoleSession {
    this.sweep();
    const t = this.now();
    const s: ConsoleSession = { ...who, roles: [...who.roles], id: token(), csrf: token(), createdAt: t, expiresAt: Math.min(t + this.ttlMs, who.notAfter ?? Infinity) };
    this.byId.set(s.id, s);
    return s;
  }

  /** The live session named by the request's cookie, if any. */
  fromRequest(req: http.IncomingMessage): ConsoleSession | undefined {
    const id = readCookie(req.headers.cookie, COOKIE);
    if (!id) return undefined;
    const s = this.byId.get(id);
    if (!s) return undefined;
    if (s.expiresAt <= this.now()) {
      this.byId.delete(id);
      return undefined;
    }
    return s;
  }

  end(id: string): boolean {
    return this.byId.delete(id);
  }

  /** Sessions of a user (locks and revocations end them). */
  endUser(user: string): number {
    let n = 0;
    for (const [id, s] of this.byId) if (s.user === user && this.byId.delete(id)) n++;
    return n;
  }

  private sweep(): void {
    const t = this.now();
    for (const [id, s] of this.byId) if (s.expiresAt <= t) this.byId.delete(id);
  }
}

/** Same-length, constant-time comparison of the CSRF header with the session's token. */
export function csrfMatches(s: ConsoleSession, req: http.IncomingMessage): boolean {
  const h = req.headers[CSRF_HEADER];
  if (typeof h !== 'string') return false;
  const a = Buffer.from(h);
  const b = Buffer.from(s.csrf);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

export function sessionCookie(s: ConsoleSession): string {
  return `${COOKIE}=${s.id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=${Math.max(1, Math.floor((s.expiresAt - s.createdAt) / 1000))}`;
}

/**
 * The OIDC sign-in in progress: names the started login so that only the browser that started it can
 * finish it. SameSite=Lax, not Strict: it must come back with the IdP's top-level redirect to the callback.
 */
export const OIDC_COOKIE = '__Host-vigil_console_oidc';
export function oidcCookie(loginId: string, maxAgeMs: number): string {
  return `${OIDC_COOKIE}=${loginId}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=${Math.max(1, Math.floor(maxAgeMs / 1000))}`;
}
export const CLEARED_OIDC_COOKIE = `${OIDC_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0`;
export function oidcLoginId(req: http.IncomingMessage): string | undefined {
  return readCookie(req.headers.cookie, OIDC_COOKIE);
}

export const CLEARED_COOKIE = `${COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0`;

function token(): string {
  return crypto.randomBytes(32).toString('base64url');
}

function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}
