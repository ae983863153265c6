import crypto, { type KeyObject } from 'node:crypto';
import type { Principal, SshAuthAttempt, VerifyFailureReason, VerifyResult } from './types.ts';
import { isCertificateAlgo, keyTypeOfCertAlgo, optionValue, parseCertificate, SSH_CERT_USER, VALID_FOREVER, type SshCertificate } from './openssh-cert.ts';
import { fingerprint, parseSignatureBlob, toKeyObject, verifySshSignature, type SshPublicKey } from './ssh-keys.ts';
import { ipInBlocks, parseCidrList } from './cidr.ts';
import { GRANT_URI_PREFIX, RESTRICTED_URI, SOURCE_URI_PREFIX, OID_CLIENT_AUTH, OID_CN, OID_OU, normalizeSerial } from './x509.ts';
import { readSubject } from './der.ts';
import { checkTokenSignature } from './token.ts';
import { quote, sshString } from './ssh-wire.ts';

/**
 * The one place credentials are verified, for every protocol. Each function returns an accept/reject
 * decision; any input it does not understand is a rejection. Failure reasons go verbatim into
 * `auth.failure` events; `message` is what the client may see (it names the problem, never internals);
 * `detail` is the longer explanation for the audit event.
 */

/** Extensions vigil writes into SSH certificates to carry what X.509 carries in the subject. */
export const EXT_ROLES = 'roles@vigil';
export const EXT_GRANT = 'grant@vigil';
/** Critical options vigil understands; any other one means "this certificate demands something we cannot honour". */
export const KNOWN_CRITICAL_OPTIONS = new Set(['force-command', 'source-address']);

export interface VerifierKeys {
  /** Public key blob of the SSH user CA. */
  userCaBlob: Buffer;
  userCaPublic: KeyObject;
  x509Ca: crypto.X509Certificate;
  tokenPublicKey: KeyObject;
  /**
   * CAs rotated out by `vigil ca rotate` whose certificates are still trusted until `until` (epoch ms):
   * certificates they signed before the rotation keep working until the last of them expires.
   */
  previous?: { userCaBlob: Buffer; userCaPublic: KeyObject; x509Ca: crypto.X509Certificate; until: number }[];
}

export interface VerifyContext {
  keys: VerifierKeys;
  /** Allowed clock disagreement (ms) at both ends of a validity window. */
  clockSkewMs: number;
  isRevoked(serial: string): boolean;
  now?: () => number;
}

const MESSAGES: Record<VerifyFailureReason, string> = {
  malformed: 'certificate could not be read',
  wrong_ca: 'certificate not signed by this gateway',
  expired: '%s expired',
  not_yet_valid: '%s not yet valid',
  principal_mismatch: 'certificate does not name a valid user',
  revoked: '%s revoked',
  unknown_critical_option: 'certificate carries an unsupported critical option',
  source_address: '%s not valid from this address',
  bad_signature: 'signature check failed',
  not_client_cert: 'not a user (client) certificate',
  no_certificate: 'a vigil client certificate is required',
  plain_key: 'a vigil certificate is required; plain keys are not accepted',
  token_invalid: 'invalid token',
};

type Who = { user?: string; certSerial?: string; credential?: 'certificate' | 'token' };

export function failure(reason: VerifyFailureReason, detail?: string, who?: Who): VerifyResult {
  const message = MESSAGES[reason].replace('%s', who?.credential ?? 'certificate');
  return { ok: false, reason, message, detail, ...(who?.user ? { user: who.user } : {}), ...(who?.certSerial ? { certSerial: who.certSerial } : {}) };
}

/**
 * Checks [notBefore, notAfter) against now. The skew allowance applies to notBefore only: a certificate
 * issued a moment ago by a CA whose clock runs ahead must work, but one past its expiry must be refused at
 * authentication (accepting it would open a session only to cut it at once on expiry).
 */
function checkWindow(ctx: VerifyContext, notBeforeMs: number, notAfterMs: number, who: Who): VerifyResult | undefined {
  const now = (ctx.now ?? Date.now)();
  if (now + ctx.clockSkewMs < notBeforeMs) return failure('not_yet_valid', `valid from ${new Date(notBeforeMs).toISOString()}, now ${new Date(now).toISOString()}`, who);
  if (now >= notAfterMs) return failure('expired', `expired at ${new Date(notAfterMs).toISOString()}, now ${new Date(now).toISOString()}`, who);
  return undefined;
}

const MAX_DATE_MS = 8.64e15;
function secondsToMs(s: bigint): number {
  return s === VALID_FOREVER ? MAX_DATE_MS : Math.min(Number(s) * 1000, MAX_DATE_MS);
}

/** The key type a certificate of request algorithm `algo` must contain (`rsa-sha2-512-cert…` → ssh-rsa). */
function certKeyTypeForRequest(algo: string): string | undefined {
  const t = keyTypeOfCertAlgo(algo);
  return t === 'rsa-sha2-256' || t === 'rsa-sha2-512' ? 'ssh-rsa' : t;
}

function sshSerial(cert: SshCertificate): string {
  return cert.serial.toString(16).padStart(16, '0');
}

/** Verifies the CA signature on an already parsed certificate. */
function signedByUserCa(ctx: VerifyContext, cert: SshCertificate): { ok: true } | { ok: false; reason: VerifyFailureReason; detail: string } {
  const now = (ctx.now ?? Date.now)();
  const trusted = [{ userCaBlob: ctx.keys.userCaBlob, userCaPublic: ctx.keys.userCaPublic }, ...(ctx.keys.previous ?? []).filter((p) => p.until > now)];
  const ca = trusted.find((c) => cert.signatureKey.equals(c.userCaBlob));
  if (!ca) return { ok: false, reason: 'wrong_ca', detail: `signed by CA ${fingerprint(cert.signatureKey)}, expected ${fingerprint(ctx.keys.userCaBlob)}` };
  const sig = parseSignatureBlob(cert.signature);
  let valid = false;
  try {
    valid = sig?.algo === 'ssh-ed25519' && crypto.verify(null, cert.signedBytes, ca.userCaPublic, sig.sig);
  } catch {
    valid = false;
  }
  return valid ? { ok: true } : { ok: false, reason: 'wrong_ca', detail: 'CA signature on the certificate does not verify (forged or altered certificate)' };
}

export function verifySshAuth(ctx: VerifyContext, a: SshAuthAttempt): VerifyResult {
  if (!isCertificateAlgo(a.keyAlgo)) return failure('plain_key', `plain ${quote(a.keyAlgo)} key ${fingerprint(a.keyBlob)} offered`);
  let cert: SshCertificate;
  try {
    cert = parseCertificate(a.keyBlob);
  } catch (e) {
    return failure('malformed', `unreadable ${quote(a.keyAlgo)} certificate: ${(e as Error).message}`);
  }
  if (cert.key.type !== certKeyTypeForRequest(a.keyAlgo)) return failure('malformed', `request names ${quote(a.keyAlgo)} but the certificate is ${cert.algo}`);
  const claimed = cert.principals[0];
  const ca = signedByUserCa(ctx, cert);
  if (!ca.ok) return failure(ca.reason, `${ca.detail}; claimed principal ${JSON.stringify(claimed ?? '')}, key id ${JSON.stringify(cert.keyId)}`);
  const certSerial = sshSerial(cert);
  if (cert.certType !== SSH_CERT_USER) return failure('not_client_cert', 'host certificate offered for user authentication', { certSerial });
  if (cert.principals.length !== 1 || !cert.principals[0]) return failure('principal_mismatch', `certificate must name exactly one non-empty principal, has ${JSON.stringify(cert.principals)}`, { certSerial });
  const who = { user: cert.principals[0], certSerial };
  const notBefore = secondsToMs(cert.validAfter);
  const notAfter = secondsToMs(cert.validBefore);
  const window = checkWindow(ctx, notBefore, notAfter, who);
  if (window) return window;

  let forceCommand: string | undefined;
  let sourceAddresses: string[] | undefined;
  for (const o of cert.criticalOptions) {
    if (!KNOWN_CRITICAL_OPTIONS.has(o.name)) return failure('unknown_critical_option', `critical option ${quote(o.name)}`, who);
    let value: string;
    try {
      value = optionValue(o);
    } catch (e) {
      return failure('malformed', (e as Error).message, who);
    }
    if (o.name === 'force-command') {
      // Empty would read as "no forced command" further on (the SSH channel runs what the client asks):
      // a certificate that restricts the command must name one.
      if (value === '') return failure('malformed', 'force-command is empty', who);
      forceCommand = value;
    }
    else sourceAddresses = value.split(',');
  }
  if (sourceAddresses) {
    const { blocks, invalid } = parseCidrList(sourceAddresses.join(','));
    if (invalid.length > 0) return failure('source_address', `source-address has invalid entries ${JSON.stringify(invalid)}`, who);
    if (!ipInBlocks(a.sourceIp, blocks)) return failure('source_address', `connection from ${a.sourceIp} not in source-address ${sourceAddresses.join(',')}`, who);
  }
  if (ctx.isRevoked(certSerial)) return failure('revoked', `serial ${certSerial} is on the revocation list`, who);

  if (a.signedData && a.signature) {
    // RFC 4252 §7: the signed data ends with the key blob being authenticated. Anything else would be a
    // signature over some other key or certificate, whatever the proxy handed over.
    const tail = sshString(a.keyBlob);
    if (a.signedData.length < tail.length || !a.signedData.subarray(a.signedData.length - tail.length).equals(tail)) {
      return failure('bad_signature', 'signed data does not cover the presented certificate', who);
    }
    const check = verifySshSignature(cert.key, a.signedData, a.signature, a.keyAlgo);
    if (!check.ok) return failure('bad_signature', check.detail, who);
  } else if (a.signedData || a.signature) {
    return failure('bad_signature', 'signature or signed data missing', who);
  }

  let roles: string[] = [];
  let grantId: string | undefined;
  const extensions: string[] = [];
  for (const e of cert.extensions) {
    try {
      if (e.name === EXT_ROLES) roles = optionValue(e).split(',').filter(Boolean);
      else if (e.name === EXT_GRANT) grantId = optionValue(e) || undefined;
      else extensions.push(e.name);
    } catch (err) {
      return failure('malformed', (err as Error).message, who);
    }
  }
  const principal: Principal = {
    user: who.user,
    roles,
    certSerial,
    credential: 'ssh-cert',
    notBefore: new Date(notBefore),
    notAfter: new Date(notAfter),
    extensions,
    ...(grantId ? { grantId } : {}),
    ...(forceCommand !== undefined ? { forceCommand, commandRestricted: true } : {}),
    ...(sourceAddresses ? { sourceAddresses } : {}),
  };
  return { ok: true, principal };
}

export function verifyClientCertificate(ctx: VerifyContext, der: Buffer | undefined, sourceIp: string): VerifyResult {
  if (!der || der.length === 0) return failure('no_certificate', 'no client certificate presented');
  let cert: crypto.X509Certificate;
  try {
    cert = new crypto.X509Certificate(der);
  } catch (e) {
    return failure('malformed', `unreadable client certificate: ${(e as Error).message}`);
  }
  const now = (ctx.now ?? Date.now)();
  const cas = [ctx.keys.x509Ca, ...(ctx.keys.previous ?? []).filter((p) => p.until > now).map((p) => p.x509Ca)];
  const signed = cas.some((ca) => {
    try {
      return cert.checkIssued(ca) && cert.verify(ca.publicKey);
    } catch {
      return false;
    }
  });
  if (!signed) return failure('wrong_ca', `issuer ${JSON.stringify(cert.issuer.replace(/\n/g, ', '))}, subject ${JSON.stringify(cert.subject.replace(/\n/g, ', '))}, not signed by the vigil CA`);
  const certSerial = normalizeSerial(cert.serialNumber);
  if (cert.ca) return failure('not_client_cert', 'a CA certificate was presented as a client certificate', { certSerial });
  const eku = cert.keyUsage ?? [];
  if (!eku.includes(OID_CLIENT_AUTH)) return failure('not_client_cert', `certificate is not for client authentication (extended key usage ${JSON.stringify(eku)})`, { certSerial });
  let subject: Array<[string, string]>;
  try {
    subject = readSubject(cert.raw);
  } catch (e) {
    return failure('malformed', `subject unreadable: ${(e as Error).message}`, { certSerial });
  }
  const cns = subject.filter(([k]) => k === OID_CN).map(([, v]) => v);
  if (cns.length !== 1 || !cns[0]) return failure('principal_mismatch', `subject ${JSON.stringify(cert.subject)} must have exactly one non-empty CN`, { certSerial });
  const who = { user: cns[0], certSerial };
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  const window = checkWindow(ctx, notBefore, notAfter, who);
  if (window) return window;
  if (ctx.isRevoked(certSerial)) return failure('revoked', `serial ${certSerial} is on the revocation list`, who);
  const sans = (cert.subjectAltName ?? '').split(', ');
  // Bound to addresses (like an SSH certificate's source-address): the client's address must be in one.
  const sources = sans.filter((s) => s.startsWith('URI:' + SOURCE_URI_PREFIX)).map((s) => s.slice(('URI:' + SOURCE_URI_PREFIX).length));
  if (sources.length) {
    const { blocks, invalid } = parseCidrList(sources.join(','));
    if (invalid.length > 0) return failure('source_address', `source addresses have invalid entries ${JSON.stringify(invalid)}`, who);
    if (!ipInBlocks(sourceIp, blocks)) return failure('source_address', `connection from ${sourceIp} not in source addresses ${sources.join(',')}`, who);
  }
  const grantSan = sans.find((s) => s.startsWith('URI:' + GRANT_URI_PREFIX));
  const grantId = grantSan?.slice(('URI:' + GRANT_URI_PREFIX).length);
  return {
    ok: true,
    principal: {
      user: who.user,
      roles: subject.filter(([k]) => k === OID_OU).map(([, v]) => v),
      certSerial,
      credential: 'x509',
      notBefore: new Date(notBefore),
      notAfter: new Date(notAfter),
      extensions: [],
      ...(grantId ? { grantId } : {}),
      ...(sources.length ? { sourceAddresses: sources } : {}),
      ...(sans.includes('URI:' + RESTRICTED_URI) ? { commandRestricted: true } : {}),
    },
  };
}

export function verifyToken(ctx: VerifyContext, token: string, sourceIp: string): VerifyResult {
  const check = checkTokenSignature(token, ctx.keys.tokenPublicKey);
  if (!check.ok) return failure('token_invalid', check.detail);
  const p = check.payload;
  const certSerial = normalizeSerial(p.serial);
  const who: Who = { user: p.sub, certSerial, credential: 'token' };
  const window = checkWindow(ctx, p.nbf * 1000, p.exp * 1000, who);
  if (window) return window;
  if (ctx.isRevoked(certSerial)) return failure('revoked', `token serial ${certSerial} is on the revocation list`, who);
  // Bound to addresses at issuance (`vigil cert issue --token --source-address`): checked as for certificates.
  if (p.src) {
    const { blocks, invalid } = parseCidrList(p.src.join(','));
    if (invalid.length > 0) return failure('source_address', `source addresses have invalid entries ${JSON.stringify(invalid)}`, who);
    if (!ipInBlocks(sourceIp, blocks)) return failure('source_address', `connection from ${sourceIp} not in source addresses ${p.src.join(',')}`, who);
  }
  return {
    ok: true,
    principal: {
      user: p.sub,
      roles: p.roles,
      certSerial,
      credential: 'token',
      notBefore: new Date(p.nbf * 1000),
      notAfter: new Date(p.exp * 1000),
      extensions: [],
      ...(p.grant ? { grantId: p.grant } : {}),
      ...(p.src ? { sourceAddresses: p.src } : {}),
    },
  };
}

/** Keys for a verifier from the CA public material. */
export function verifierKeys(userCa: SshPublicKey, userCaBlob: Buffer, x509CaPem: string, tokenPublicKey: KeyObject): VerifierKeys {
  return { userCaBlob, userCaPublic: toKeyObject(userCa), x509Ca: new crypto.X509Certificate(x509CaPem), tokenPublicKey };
}
