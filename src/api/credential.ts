import type { GatewayServices } from '../gateway/services.ts';
import { grantIsLive } from '../authz/index.ts';

/**
 * What a verified client certificate speaks for, kept so that whatever outlasts the request that proved
 * it (an open WebSocket stream, a console session) can ask again later whether it still does.
 */
export interface CertCredential {
  user: string;
  certSerial: string;
  /** The certificate's notAfter, epoch ms: nothing it opened may last beyond it. */
  notAfter: number;
  /** The grant it was issued for: it speaks for nobody once that grant ended. */
  grantId?: string;
}

export type CredentialEnd = 'cert_expired' | 'cert_revoked' | 'grant_ended' | 'user_locked';

export const CREDENTIAL_ENDED: Record<CredentialEnd, string> = {
  cert_expired: 'your certificate expired',
  cert_revoked: 'your certificate was revoked',
  grant_ended: 'the grant your certificate was issued for is no longer active',
  user_locked: 'your user is locked',
};

/**
 * Why `c` no longer speaks for anyone, or undefined: the checks the API makes on every request after the
 * chain (expiry, revocation, live grant, lock), against the state of now. One function, so a stream or a
 * console session cannot drift from what the next API call would decide.
 */
export async function credentialEnded(services: Pick<GatewayServices, 'store'>, c: CertCredential, now = Date.now()): Promise<CredentialEnd | undefined> {
  if (now >= c.notAfter) return 'cert_expired';
  if (services.store.isRevoked(c.certSerial)) return 'cert_revoked';
  if (c.grantId) {
    const g = await services.store.getAccess(c.grantId);
    if (!g || !grantIsLive(g, now)) return 'grant_ended';
  }
  if (services.store.isLocked('user', c.user)) return 'user_locked';
  return undefined;
}
