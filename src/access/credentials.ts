import type { IssuedCredentials } from '../identity/types.ts';

/** Issued credentials as JSON (private keys only when the gateway generated them for the caller). */
export function credentialsView(c: IssuedCredentials) {
  return {
    serial: c.serial,
    user: c.user,
    roles: c.roles,
    grant_id: c.grantId,
    not_before: c.notBefore.toISOString(),
    not_after: c.notAfter.toISOString(),
    ssh_certificate: c.sshCertificate,
    ssh_public_key: c.sshPublicKey,
    ssh_private_key: c.sshPrivateKey,
    x509_certificate: c.x509Certificate,
    x509_private_key: c.x509PrivateKey,
    ca_certificate: c.caCertificate,
  };
}

export type GrantCertificate = ReturnType<typeof credentialsView>;
