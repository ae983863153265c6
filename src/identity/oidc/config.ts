import { z } from 'zod';
import { duration, secretRef, type SchemaContext, type SecretRef } from '../../config/types.ts';

/**
 * `identity.oidc`: sign-in with the company's OpenID Provider (`vigil login`). The IdP proves who the
 * engineer is and which groups they are in; `role_map` alone turns groups into vigil roles (a group that
 * is not listed grants nothing, and a login that maps to no role is refused).
 */
export function oidcSchema(sc: SchemaContext) {
  return z.strictObject({
    /** Issuer URL exactly as the IdP's discovery document names it. HTTPS, or http only on a loopback address (development). */
    issuer: z.string().url(),
    client_id: z.string().min(1),
    /** Confidential client: `{ file }` or `{ env }`. Absent: a public client (PKCE alone protects the code). */
    client_secret: secretRef(sc).optional(),
    scopes: z.array(z.string().min(1)).default(['openid', 'profile', 'email', 'groups']),
    /** ID token claim listing the user's groups (a list of strings, or one string). */
    roles_claim: z.string().min(1).default('groups'),
    /**
     * ID token claim that becomes the vigil user name. A token without it is refused (never `sub` instead);
     * `email` also needs `email_verified: true`. The first IdP account (issuer, sub) to sign in as a name
     * keeps it: another account whose claim gives the same name is refused (`user_taken`), and so is the
     * account under a second name (`subject_renamed`). See README "Single sign-on" to hand a name over.
     */
    user_claim: z.string().min(1).default('preferred_username'),
    /** IdP group → vigil roles. Default deny: groups not listed here give nothing. */
    role_map: z.record(z.string(), z.array(z.string().min(1))).default({}),
    /** Longest certificate a login yields (also capped by certs.max_ttl). */
    max_cert_ttl: duration().default(8 * 3_600_000 as never),
    /** How long a started login (browser or device code) may take to finish. */
    login_timeout: duration().default(10 * 60_000 as never),
  });
}

export interface OidcConfig {
  issuer: string;
  client_id: string;
  client_secret?: SecretRef;
  scopes: string[];
  roles_claim: string;
  user_claim: string;
  role_map: Record<string, string[]>;
  max_cert_ttl: number;
  login_timeout: number;
}

/** The `identity` section: how people prove who they are besides certificates issued by an admin. */
export function identitySchema(sc: SchemaContext) {
  return z.strictObject({ oidc: oidcSchema(sc).optional() }).prefault({});
}
