import type { SecureContext } from 'node:tls';
import type { VigilConfig } from '../config/schema.ts';
import type { IdentityBinding } from '../store/types.ts';
/**
 * The identity a verified credential proves. Every protocol turns its credential (OpenSSH user
 * certificate, X.509 client certificate, or short-lived token) into one of these through
 * `IdentityService`, so authorization and events never care which protocol it came from.
 */
export interface Principal {
  user: string;
  roles: string[];
  /** Serial of the certificate or token (hex string); the unit of revocation. */
  certSerial: string;
  credential: 'ssh-cert' | 'x509' | 'token';
  notBefore: Date;
  notAfter: Date;
  /** Grant the credential was issued for, when it was issued under a just-in-time grant. */
  grantId?: string;
  /** OpenSSH `force-command` critical option, when present. */
  forceCommand?: string;
  /**
   * Address blocks the credential is bound to (SSH `source-address`, X.509 source-address SANs, token
   * `src`), when it is. Already checked at verification; kept so what it obtains stays bound the same way.
   */
  sourceAddresses?: string[];
  /**
   * The credential was issued with a forced command: set with `forceCommand` for SSH, and for the X.509
   * half of such a credential (which has no command of its own) from its SAN marker. Certificates issued
   * before the marker existed do not say so.
   */
  commandRestricted?: boolean;
  /** Extensions granted by the certificate (OpenSSH names: permit-pty, permit-port-forwarding, …). */
  extensions: string[];
}

/** Machine-readable refusal reasons; they appear verbatim in `auth.failure` events. */
export type VerifyFailureReason =
  | 'malformed'
  | 'wrong_ca'
  | 'expired'
  | 'not_yet_valid'
  | 'principal_mismatch'
  | 'revoked'
  | 'unknown_critical_option'
  | 'source_address'
  | 'bad_signature'
  | 'not_client_cert'
  | 'no_certificate'
  | 'plain_key'
  | 'token_invalid';

export type VerifyResult =
  | { ok: true; principal: Principal }
  | { ok: false; reason: VerifyFailureReason; /** short, non-leaking text for the client */ message: string; /** longer text for the audit event */ detail?: string; user?: string; certSerial?: string };

/** Input for OpenSSH publickey authentication as ssh2's server hands it over. */
export interface SshAuthAttempt {
  /** Key algorithm named in the request, e.g. `ssh-ed25519-cert-v01@openssh.com`. */
  keyAlgo: string;
  /** Public key blob from the request: for certificate auth, the whole certificate. */
  keyBlob: Buffer;
  /** Data the client signed (session id + request), absent for the "would you accept this key" query. */
  signedData?: Buffer;
  /** The signature as sent, either a full SSH signature blob (string algo, string sig) or just the raw signature. */
  signature?: Buffer;
  /** Remote IP, for source-address. */
  sourceIp: string;
}

/** Material the gateway's listeners need. */
export interface GatewayTlsMaterial {
  /** PEM of the gateway TLS server certificate (and chain). */
  cert: string;
  /** PEM private key of the server certificate. */
  key: string;
  /** PEM of the CA that client certificates must chain to (also the root clients use for the server). */
  ca: string;
}

export interface IssueRequest {
  user: string;
  roles: string[];
  /** Requested lifetime in ms (capped by certs.max_ttl and, for a grant, by the grant's expiry). */
  ttlMs?: number;
  /** OpenSSH public key line of the user; generated (Ed25519) when absent. */
  sshPublicKey?: string;
  /** SPKI PEM of the user's P-256 key for the X.509 certificate; generated when absent. */
  x509PublicKey?: string;
  grantId?: string;
  /** Limit the credential to these source CIDRs (SSH source-address critical option, X.509 SAN, token `src`). */
  sourceAddresses?: string[];
  forceCommand?: string;
  /** OpenSSH extensions; derived from roles by the caller (permit-pty always, permit-port-forwarding by role). */
  extensions?: string[];
  /** Never valid after this: the end of the credential that asked for this one, which may not outlast it. */
  notAfterLimit?: Date;
}

export interface IssuedCredentials {
  serial: string;
  user: string;
  roles: string[];
  notBefore: Date;
  notAfter: Date;
  grantId?: string;
  /** OpenSSH certificate line (`ssh-ed25519-cert-v01@openssh.com AAAA… alice`). */
  sshCertificate: string;
  /** OpenSSH private key when it was generated (no --ssh-pubkey). */
  sshPrivateKey?: string;
  sshPublicKey: string;
  /** X.509 client certificate (PEM) and its private key (PEM, PKCS#8; empty when x509PublicKey was given). */
  x509Certificate: string;
  x509PrivateKey: string;
  /** PEM of the roots that verify the gateway (ca.crt): the current CA, then previous ones still trusted. */
  caCertificate: string;
}

export interface IdentityService {
  /** Verify an OpenSSH user certificate login; `login` is only informative (principal = vigil user). */
  verifySshAuth(attempt: SshAuthAttempt): VerifyResult;
  /** Verify the client certificate a TLS socket presented (DER from `getPeerCertificate().raw`). */
  verifyClientCertificate(der: Buffer | undefined, sourceIp: string): VerifyResult;
  /** Verify a short-lived token sent as a password. */
  verifyToken(token: string, sourceIp: string): VerifyResult;
  /** TLS server material for Postgres/MySQL/API listeners. */
  tls(): GatewayTlsMaterial;
  /** The same material as one SecureContext, built once: listeners pass it to every TLS socket (building a
   *  context parses the key and CA, a few ms — too much per connection). */
  tlsContext(): SecureContext;
  /** The SSH listener's host private key (OpenSSH PEM) — stable across restarts. */
  sshHostKey(): string;
  /**
   * Host key + certificate presented when the gateway terminates an inner SSH connection for `targetName`
   * (jump-host mode). The certificate is signed by vigil's host CA with principal = targetName.
   */
  sshTargetHostKey(targetName: string): { privateKey: string; certificate: string };
  /** OpenSSH line of the host CA public key, for `@cert-authority` known_hosts entries. */
  sshHostCaPublicKey(): string;
  /** OpenSSH line of the user CA public key, for TrustedUserCAKeys on backends if wanted. */
  sshUserCaPublicKey(): string;
  /**
   * Every trusted user CA, one OpenSSH line each (a TrustedUserCAKeys file): the current one and, after
   * `vigil ca rotate`, previous ones until their last certificate expires.
   */
  sshTrustedUserCaKeys(): string;
  /**
   * Re-read the CA material from the data dir (after `vigil ca rotate`; called by config reload). `config`:
   * the configuration the reload applied, whose `certs` limits (default_ttl, max_ttl, clock_skew) hold from now on.
   */
  refresh(config?: VigilConfig): Promise<void>;
  /**
   * Bind vigil user `user` to the OpenID Provider account (issuer, subject) signing in as it (StateStore.bindIdentity):
   * undefined when they belong together, else the binding in the way.
   */
  bindOidcSubject(user: string, issuer: string, subject: string): Promise<IdentityBinding | undefined>;
  /** Issue credentials (SSH cert + X.509 cert) and record the issuance in the store. Emits no event: callers do. */
  issue(req: IssueRequest): Promise<IssuedCredentials>;
  /** Issue a short-lived token (for tools that cannot present a client certificate); `sourceAddresses` binds it like a certificate. */
  issueToken(req: Omit<IssueRequest, 'sshPublicKey' | 'forceCommand' | 'extensions'>): Promise<{ token: string; serial: string; notBefore: Date; notAfter: Date }>;
}
