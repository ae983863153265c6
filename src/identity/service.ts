import crypto from 'node:crypto';
import tls from 'node:tls';
import type { VigilConfig } from '../config/schema.ts';
import { VigilError } from '../errors.ts';
import type { IdentityBinding, StateStore } from '../store/types.ts';
import type { GatewayTlsMaterial, IdentityService, IssueRequest, IssuedCredentials, SshAuthAttempt, VerifyResult } from './types.ts';
import { loadCaKeys, loadPreviousCas, randomSerial, signHostCertificate, type CaKeys, type PreviousCa } from './ca.ts';
import { SSH_CERT_USER, certAlgoFor, encodeCertificate, formatCertificateLine, option } from './openssh-cert.ts';
import { formatPublicKeyLine, fromKeyObject, parsePublicKeyLine, publicKeyBlob, signEd25519, type SshPublicKey } from './ssh-keys.ts';
import { encodeOpenSshPrivateKey } from './openssh-privkey.ts';
import { parseCidrList } from './cidr.ts';
import { createClientCertificate } from './x509.ts';
import { isUserName, spellingConflict, USER_NAME_RULE } from './user-name.ts';
import { signToken } from './token.ts';
import { toKeyObject } from './ssh-keys.ts';
import { EXT_GRANT, EXT_ROLES, verifierKeys, verifyClientCertificate, verifySshAuth, verifyToken, type VerifyContext } from './verify.ts';

/** Extensions OpenSSH defines; anything else in a request is a typo or an attempt to smuggle one in. */
export const OPENSSH_EXTENSIONS = new Set(['no-touch-required', 'permit-X11-forwarding', 'permit-agent-forwarding', 'permit-port-forwarding', 'permit-pty', 'permit-user-rc']);
const ROLE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
/** Certificates start a minute in the past so a client whose clock lags slightly can use them at once. */
const BACKDATE_MS = 60_000;
/** Host certificates for jump-host targets: re-signed when less than a day of their week remains. */
const TARGET_CERT_LIFETIME_MS = 7 * 86_400_000;
const TARGET_CERT_RENEW_MS = 86_400_000;
const MAX_TARGET_CERTS = 4096;

/** PKCS#8 DER header of an Ed25519 private key; the 32-byte seed follows. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/**
 * The host key vigil presents when it answers as jump-host target `name`: its own per target (so strict
 * known_hosts works per host and two targets never share a key), derived from the gateway's host key so it
 * is stable across restarts without another key file to keep.
 */
function targetHostKey(gatewayHostKey: crypto.KeyObject, name: string): crypto.KeyObject {
  const der = gatewayHostKey.export({ format: 'der', type: 'pkcs8' });
  const seed = crypto.createHmac('sha256', der.subarray(der.length - 32)).update(`vigil jump-host target key\0${name}`).digest();
  return crypto.createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

function invalid(message: string): VigilError {
  return new VigilError('VIGIL_CERT_INVALID_REQUEST', message);
}

function checkSourceAddresses(sources: string[] | undefined): void {
  if (!sources) return;
  const { invalid: bad } = parseCidrList(sources.join(','));
  if (sources.length === 0 || bad.length > 0) throw invalid(`source addresses must be IP addresses or CIDR blocks without host bits, got ${JSON.stringify(bad)}`);
}

interface Window {
  serial: string;
  roles: string[];
  notBefore: Date;
  notAfter: Date;
  grantId?: string;
}

class LocalIdentity implements IdentityService {
  private ctx!: VerifyContext;
  private userCaPublic!: SshPublicKey;
  private keys!: CaKeys;
  private previous: PreviousCa[] = [];
  private readonly targetCerts = new Map<string, { privateKey: string; certificate: string; renewAt: number }>();

  constructor(
    keys: CaKeys,
    previous: PreviousCa[],
    /** Replaced by a config reload (refresh): certs.* limits apply to the next issuance and verification. */
    private config: VigilConfig,
    private readonly store: StateStore,
    private readonly dataDir: string,
  ) {
    this.use(keys, previous);
  }

  /** Switch to this CA material in one step (verification, issuance and TLS all see the same generation). */
  private use(keys: CaKeys, previous: PreviousCa[]): void {
    const userCaPublic = fromKeyObject(keys.userCa);
    const vk = verifierKeys(userCaPublic, publicKeyBlob(userCaPublic), keys.x509.certPem, keys.tokenPublicKey);
    vk.previous = previous.map((p) => {
      const key = parsePublicKeyLine(p.userCaPubLine).key;
      return { userCaBlob: publicKeyBlob(key), userCaPublic: toKeyObject(key), x509Ca: new crypto.X509Certificate(p.x509CaPem), until: p.retireAfter.getTime() };
    });
    this.keys = keys;
    this.previous = previous;
    this.userCaPublic = userCaPublic;
    this.ctx = { keys: vk, clockSkewMs: this.config.certs.clock_skew, isRevoked: (serial) => this.store.isRevoked(serial) };
    this.context = undefined;
  }

  async refresh(config?: VigilConfig): Promise<void> {
    // The configuration a reload applied (a cluster worker's is the one its primary applied): taken before
    // the CA files are read, so new limits hold even when re-reading the CA fails.
    if (config) {
      this.config = config;
      this.ctx = { ...this.ctx, clockSkewMs: config.certs.clock_skew };
    }
    this.use(await loadCaKeys(this.dataDir), loadPreviousCas(this.dataDir));
  }

  async bindOidcSubject(user: string, issuer: string, subject: string): Promise<IdentityBinding | undefined> {
    // Before binding: a second spelling of a known user must not even squat the name.
    await this.refuseSecondSpelling(user);
    return this.store.bindIdentity({ user, issuer, subject, boundAt: new Date().toISOString() });
  }

  /** ca.crt as clients get it: the current CA first, then previous ones still trusted. */
  private caBundle(): string {
    return [this.keys.x509.certPem, ...this.previous.map((p) => p.x509CaPem)].map((p) => (p.endsWith('\n') ? p : p + '\n')).join('');
  }

  verifySshAuth(attempt: SshAuthAttempt): VerifyResult {
    return verifySshAuth(this.ctx, attempt);
  }

  verifyClientCertificate(der: Buffer | undefined, sourceIp: string): VerifyResult {
    return verifyClientCertificate(this.ctx, der, sourceIp);
  }

  verifyToken(token: string, sourceIp: string): VerifyResult {
    return verifyToken(this.ctx, token, sourceIp);
  }

  tls(): GatewayTlsMaterial {
    return { cert: this.keys.serverCertPem, key: this.keys.serverKeyPem, ca: this.caBundle() };
  }

  private context?: tls.SecureContext;

  tlsContext(): tls.SecureContext {
    return (this.context ??= tls.createSecureContext(this.tls()));
  }

  sshHostKey(): string {
    return this.keys.hostKeyPem;
  }

  sshTargetHostKey(targetName: string): { privateKey: string; certificate: string } {
    if (!targetName) throw invalid('target name is empty');
    const now = Date.now();
    let entry = this.targetCerts.get(targetName);
    if (!entry || entry.renewAt <= now) {
      const key = targetHostKey(this.keys.hostKey, targetName);
      const certificate = signHostCertificate(this.keys.hostCa, key, [targetName], `vigil-target:${targetName}`, new Date(now - BACKDATE_MS), new Date(now + TARGET_CERT_LIFETIME_MS));
      entry = { privateKey: entry?.privateKey ?? encodeOpenSshPrivateKey(key, `vigil-target:${targetName}`), certificate, renewAt: now + TARGET_CERT_LIFETIME_MS - TARGET_CERT_RENEW_MS };
      // Bounded: names come from configured targets, but a cache must never grow with client input.
      if (this.targetCerts.size >= MAX_TARGET_CERTS) this.targetCerts.delete(this.targetCerts.keys().next().value as string);
      this.targetCerts.set(targetName, entry);
    }
    return { privateKey: entry.privateKey, certificate: entry.certificate };
  }

  sshHostCaPublicKey(): string {
    return formatPublicKeyLine(fromKeyObject(this.keys.hostCa), 'vigil host CA');
  }

  sshUserCaPublicKey(): string {
    return formatPublicKeyLine(this.userCaPublic, 'vigil user CA');
  }

  sshTrustedUserCaKeys(): string {
    return [this.sshUserCaPublicKey(), ...this.previous.map((p) => p.userCaPubLine)].join('\n') + '\n';
  }

  /** One person, one spelling (user-name.ts): whatever issues a credential goes through here. */
  private async refuseSecondSpelling(user: string): Promise<void> {
    const conflict = await spellingConflict(this.store, user);
    if (conflict) throw new VigilError('VIGIL_USER_NAME_TAKEN', conflict);
  }

  /** Validates the request and works out serial, roles and validity window (capped by config, grant and notAfterLimit). */
  private async window(req: Pick<IssueRequest, 'user' | 'roles' | 'ttlMs' | 'grantId' | 'notAfterLimit'>): Promise<Window> {
    if (!isUserName(req.user)) throw invalid(`user ${JSON.stringify(req.user)} must be ${USER_NAME_RULE}`);
    for (const r of req.roles) if (!ROLE_RE.test(r)) throw invalid(`role ${JSON.stringify(r)} is not a valid role name`);
    await this.refuseSecondSpelling(req.user);
    const ttl = Math.min(req.ttlMs ?? this.config.certs.default_ttl, this.config.certs.max_ttl);
    if (!(ttl > 0)) throw invalid('ttl must be positive');
    const now = Date.now();
    let notAfterMs = now + ttl;
    const roles = [...new Set(req.roles)];
    if (req.grantId !== undefined) {
      const grant = await this.store.getAccess(req.grantId);
      if (!grant) throw new VigilError('VIGIL_GRANT_NOT_FOUND', `no access grant ${req.grantId}`);
      if (grant.user !== req.user) throw new VigilError('VIGIL_GRANT_WRONG_USER', `grant ${req.grantId} belongs to ${grant.user}, not ${req.user}`);
      if (grant.state !== 'active' || !grant.expiresAt) throw new VigilError('VIGIL_GRANT_NOT_ACTIVE', `grant ${req.grantId} is ${grant.state}, not active`);
      const grantEnd = Date.parse(grant.expiresAt);
      if (grantEnd <= now) throw new VigilError('VIGIL_GRANT_NOT_ACTIVE', `grant ${req.grantId} expired at ${grant.expiresAt}`);
      // A certificate issued for a grant never outlives it, and carries the granted role.
      notAfterMs = Math.min(notAfterMs, grantEnd);
      if (!roles.includes(grant.role)) roles.push(grant.role);
    }
    if (req.notAfterLimit !== undefined) {
      notAfterMs = Math.min(notAfterMs, req.notAfterLimit.getTime());
      if (notAfterMs <= now) throw invalid(`the credential asking for this one ended at ${req.notAfterLimit.toISOString()}`);
    }
    // Whole seconds: both certificate formats have second precision, and both must say the same.
    return {
      serial: randomSerial(),
      roles,
      notBefore: new Date(Math.floor((now - BACKDATE_MS) / 1000) * 1000),
      notAfter: new Date(Math.floor(notAfterMs / 1000) * 1000),
      ...(req.grantId !== undefined ? { grantId: req.grantId } : {}),
    };
  }

  private record(user: string, w: Window, kind: 'cert' | 'token'): Promise<void> {
    return this.store.recordIssuedCert({
      serial: w.serial,
      user,
      roles: w.roles,
      notBefore: w.notBefore.toISOString(),
      notAfter: w.notAfter.toISOString(),
      ...(w.grantId ? { grantId: w.grantId } : {}),
      kind,
    });
  }

  async issue(req: IssueRequest): Promise<IssuedCredentials> {
    const extensions = req.extensions ?? ['permit-pty'];
    for (const e of extensions) if (!OPENSSH_EXTENSIONS.has(e)) throw invalid(`unknown OpenSSH extension ${JSON.stringify(e)}`);
    checkSourceAddresses(req.sourceAddresses);
    if (req.forceCommand !== undefined && (req.forceCommand === '' || req.forceCommand.includes('\0'))) throw invalid('force command must be non-empty text');

    let userKey: SshPublicKey;
    let sshPrivateKey: string | undefined;
    if (req.sshPublicKey !== undefined) {
      try {
        userKey = parsePublicKeyLine(req.sshPublicKey).key;
      } catch (e) {
        throw invalid(`SSH public key: ${(e as Error).message}`);
      }
    } else {
      const generated = crypto.generateKeyPairSync('ed25519').privateKey;
      userKey = fromKeyObject(generated);
      sshPrivateKey = encodeOpenSshPrivateKey(generated, req.user);
    }

    let x509Key: crypto.KeyObject | undefined;
    if (req.x509PublicKey !== undefined) {
      try {
        x509Key = crypto.createPublicKey(req.x509PublicKey);
      } catch (e) {
        throw invalid(`X.509 public key: ${(e as Error).message}`);
      }
      // Database clients (libpq, MariaDB) and vigil's verifier all speak P-256; anything else is refused here.
      if (x509Key.asymmetricKeyType !== 'ec' || x509Key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw invalid('X.509 public key must be an EC P-256 key');
    }

    const w = await this.window(req);
    const keyId = `vigil:${req.user}:${w.serial}`;
    const criticalOptions = [
      ...(req.forceCommand !== undefined ? [option('force-command', req.forceCommand)] : []),
      ...(req.sourceAddresses ? [option('source-address', req.sourceAddresses.join(','))] : []),
    ];
    const certExtensions = [...new Set(extensions)].map((e) => option(e));
    if (w.roles.length) certExtensions.push(option(EXT_ROLES, w.roles.join(',')));
    if (w.grantId) certExtensions.push(option(EXT_GRANT, w.grantId));
    const blob = encodeCertificate(
      {
        nonce: crypto.randomBytes(32),
        key: userKey,
        serial: BigInt('0x' + w.serial),
        certType: SSH_CERT_USER,
        keyId,
        principals: [req.user],
        validAfter: BigInt(w.notBefore.getTime() / 1000),
        validBefore: BigInt(w.notAfter.getTime() / 1000),
        criticalOptions,
        extensions: certExtensions,
        signatureKey: publicKeyBlob(this.userCaPublic),
      },
      (data) => signEd25519(this.keys.userCa, data),
    );
    const client = createClientCertificate(this.keys.x509, {
      user: req.user,
      roles: w.roles,
      serialHex: w.serial,
      notBefore: w.notBefore,
      notAfter: w.notAfter,
      grantId: w.grantId,
      sourceAddresses: req.sourceAddresses,
      commandRestricted: req.forceCommand !== undefined,
      publicKey: x509Key,
    });

    await this.record(req.user, w, 'cert');
    return {
      serial: w.serial,
      user: req.user,
      roles: w.roles,
      notBefore: w.notBefore,
      notAfter: w.notAfter,
      ...(w.grantId ? { grantId: w.grantId } : {}),
      sshCertificate: formatCertificateLine(blob, certAlgoFor(userKey.type), keyId),
      ...(sshPrivateKey ? { sshPrivateKey } : {}),
      sshPublicKey: formatPublicKeyLine(userKey, req.user),
      x509Certificate: client.certPem,
      x509PrivateKey: client.keyPem,
      caCertificate: this.caBundle(),
    };
  }

  async issueToken(req: Omit<IssueRequest, 'sshPublicKey' | 'forceCommand' | 'extensions'>): Promise<{ token: string; serial: string; notBefore: Date; notAfter: Date }> {
    checkSourceAddresses(req.sourceAddresses);
    const w = await this.window(req);
    const token = signToken(
      {
        // A bound token is version 2: a verifier that predates `src` (v 1 only) refuses it rather than
        // accepting it from anywhere.
        ...(req.sourceAddresses ? { v: 2 as const, src: req.sourceAddresses } : { v: 1 as const }),
        sub: req.user,
        roles: w.roles,
        serial: w.serial,
        nbf: w.notBefore.getTime() / 1000,
        exp: w.notAfter.getTime() / 1000,
        ...(w.grantId ? { grant: w.grantId } : {}),
      },
      this.keys.tokenKey,
    );
    await this.record(req.user, w, 'token');
    return { token, serial: w.serial, notBefore: w.notBefore, notAfter: w.notAfter };
  }
}

export async function openIdentity(dataDir: string, config: VigilConfig, store: StateStore): Promise<IdentityService> {
  return new LocalIdentity(await loadCaKeys(dataDir), loadPreviousCas(dataDir), config, store, dataDir);
}
