import crypto, { type KeyObject } from 'node:crypto';
import net from 'node:net';
import * as der from './der.ts';
import { parseIpExact } from './cidr.ts';

/**
 * X.509 material, built with node:crypto and the DER encoders in der.ts: the ECDSA P-256 CA (root for
 * client certificates AND for the gateway's TLS server certificate, so `ca.crt` is the one file clients
 * need), the server certificate, and client certificates.
 *
 * Client certificate layout (documented for operators): subject `CN=<vigil user>`, then one
 * `OU=<role>` per role in role order; EKU clientAuth only; basicConstraints CA:FALSE; a certificate
 * issued under a just-in-time grant carries the grant id as SAN `URI:urn:vigil:grant:<id>`, one bound to
 * addresses one `URI:urn:vigil:source-address:<cidr>` per block, and the X.509 half of a credential issued
 * with a forced command `URI:urn:vigil:restricted`.
 * Serial = the 64-bit serial shared with the SSH certificate.
 */
export const GRANT_URI_PREFIX = 'urn:vigil:grant:';
/** One SAN URI per address block a client certificate is bound to (`vigil cert issue --source-address`). */
export const SOURCE_URI_PREFIX = 'urn:vigil:source-address:';
/**
 * Marks the client certificate issued together with an SSH certificate limited to one command
 * (`--force-command`): X.509 has no command to force, but what the holder may obtain with it (a grant
 * certificate through the API) must know the credential was limited. Older certificates lack it.
 */
export const RESTRICTED_URI = 'urn:vigil:restricted';
export const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
export const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
export const OID_CN = '2.5.4.3';
export const OID_OU = '2.5.4.11';

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  cn: OID_CN,
  o: '2.5.4.10',
  ou: OID_OU,
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
};

const CA_NAME: Array<[string, string]> = [
  [OID.cn, 'vigil CA'],
  [OID.o, 'vigil'],
];

function name(attrs: Array<[string, string]>): Buffer {
  return der.seq(...attrs.map(([o, v]) => der.set(der.seq(der.oid(o), der.utf8(v)))));
}

function extension(o: string, critical: boolean, value: Buffer): Buffer {
  return der.seq(der.oid(o), ...(critical ? [der.bool(true)] : []), der.octets(value));
}

/** Key usage bits, numbered as in RFC 5280 (digitalSignature = 0 … cRLSign = 6). */
function keyUsage(bits: number[]): Buffer {
  let v = 0;
  for (const b of bits) v |= 0x80 >> b;
  let unused = 0;
  while (unused < 7 && !(v & (1 << unused))) unused++;
  return der.bitString(Buffer.from([v]), unused);
}

/** Key identifier: SHA-1 over the subjectPublicKey bits (RFC 5280 §4.2.1.2 method 1). */
export function keyIdentifier(publicKey: KeyObject): Buffer {
  const jwk = publicKey.export({ format: 'jwk' });
  const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x ?? '', 'base64url'), Buffer.from(jwk.y ?? '', 'base64url')]);
  return crypto.createHash('sha1').update(point).digest();
}

export function generateEcKey(): { privateKey: KeyObject; publicKey: KeyObject } {
  return crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

export function privateKeyPem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }).toString();
}

export function toPem(body: Buffer, label: string): string {
  return `-----BEGIN ${label}-----\n${body.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

interface CertSpec {
  serialHex: string;
  issuer: Array<[string, string]>;
  subject: Array<[string, string]>;
  notBefore: Date;
  notAfter: Date;
  publicKey: KeyObject;
  extensions: Buffer[];
  signingKey: KeyObject;
}

function buildCertificate(s: CertSpec): string {
  const sigAlg = der.seq(der.oid(OID.ecdsaWithSha256));
  const spki = s.publicKey.export({ format: 'der', type: 'spki' });
  const tbs = der.seq(
    der.explicit(0, der.smallInt(2)),
    der.uint(Buffer.from(s.serialHex, 'hex')),
    sigAlg,
    name(s.issuer),
    der.seq(der.time(s.notBefore), der.time(s.notAfter)),
    name(s.subject),
    spki,
    der.explicit(3, der.seq(...s.extensions)),
  );
  const signature = crypto.sign('sha256', tbs, s.signingKey); // ECDSA, DER-encoded (r, s)
  return toPem(der.seq(tbs, sigAlg, der.bitString(signature)), 'CERTIFICATE');
}

export interface CaMaterial {
  cert: crypto.X509Certificate;
  certPem: string;
  privateKey: KeyObject;
  /** The CA's subject, which certificates it signs name as their issuer. */
  name: Array<[string, string]>;
}

/**
 * 10-year self-signed CA. `commonName` differs per CA generation (`vigil ca rotate`), so that while an old
 * and a new CA are trusted side by side, a TLS stack choosing an issuer by name never confuses them.
 */
export function createCaCertificate(serialHex: string, now = new Date(), commonName?: string): { certPem: string; keyPem: string } {
  const { privateKey, publicKey } = generateEcKey();
  const ski = keyIdentifier(publicKey);
  const caName: Array<[string, string]> = commonName ? [[OID.cn, commonName], [OID.o, 'vigil']] : CA_NAME;
  const certPem = buildCertificate({
    serialHex,
    issuer: caName,
    subject: caName,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 10 * 365 * 86_400_000),
    publicKey,
    signingKey: privateKey,
    extensions: [
      extension(OID.basicConstraints, true, der.seq(der.bool(true), der.smallInt(0))),
      extension(OID.keyUsage, true, keyUsage([5, 6])),
      extension(OID.subjectKeyId, false, der.octets(ski)),
    ],
  });
  return { certPem, keyPem: privateKeyPem(privateKey) };
}

export function loadCa(certPem: string, keyPem: string): CaMaterial {
  const cert = new crypto.X509Certificate(certPem);
  const privateKey = crypto.createPrivateKey(keyPem);
  if (!cert.checkPrivateKey(privateKey)) throw new Error('ca.key does not belong to ca.crt');
  return { cert, certPem, privateKey, name: der.readSubject(cert.raw) };
}

function leafExtensions(ca: CaMaterial, publicKey: KeyObject, eku: string, sans: Buffer[]): Buffer[] {
  return [
    extension(OID.basicConstraints, true, der.seq()),
    extension(OID.keyUsage, true, keyUsage([0])),
    extension(OID.extKeyUsage, false, der.seq(der.oid(eku))),
    ...(sans.length ? [extension(OID.subjectAltName, false, der.seq(...sans))] : []),
    extension(OID.authorityKeyId, false, der.seq(der.implicit(0, keyIdentifier(ca.cert.publicKey)))),
    extension(OID.subjectKeyId, false, der.octets(keyIdentifier(publicKey))),
  ];
}

function sanEntry(s: string): Buffer {
  const ip = net.isIP(s) ? parseIpExact(s) : undefined;
  return ip ? der.implicit(7, ip) : der.implicit(2, Buffer.from(s, 'ascii'));
}

/** Gateway TLS server certificate for the configured SANs (DNS names or IP addresses), 2 years. */
export function createServerCertificate(ca: CaMaterial, sans: string[], serialHex: string, now = new Date()): { certPem: string; keyPem: string } {
  const { privateKey, publicKey } = generateEcKey();
  const certPem = buildCertificate({
    serialHex,
    issuer: ca.name,
    subject: [
      [OID.cn, sans[0] ?? 'vigil gateway'],
      [OID.o, 'vigil'],
    ],
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 2 * 365 * 86_400_000),
    publicKey,
    signingKey: ca.privateKey,
    extensions: leafExtensions(ca, publicKey, OID_SERVER_AUTH, sans.map(sanEntry)),
  });
  return { certPem, keyPem: privateKeyPem(privateKey) };
}

/** Comparable form of a SAN: IP addresses as hex bytes, names lowercased. */
function sanKey(s: string): string {
  const ip = net.isIP(s) ? parseIpExact(s) : undefined;
  return ip ? `ip:${ip.toString('hex')}` : `dns:${s.toLowerCase()}`;
}

/** True when the certificate's SANs are exactly `sans` (order ignored); node prints them as `DNS:x, IP Address:y`. */
export function certificateHasSans(certPem: string, sans: string[]): boolean {
  const san = new crypto.X509Certificate(certPem).subjectAltName ?? '';
  const have = san ? san.split(', ').map((e) => sanKey(e.replace(/^DNS:|^IP Address:/, ''))) : [];
  const want = sans.map(sanKey);
  return have.length === want.length && [...have].sort().join(',') === [...want].sort().join(',');
}

export interface ClientCertRequest {
  user: string;
  roles: string[];
  serialHex: string;
  notBefore: Date;
  notAfter: Date;
  grantId?: string;
  /** IP addresses or CIDR blocks the certificate may be used from (checked by the gateway at each use). */
  sourceAddresses?: string[];
  /** Issued with a forced command (the SSH half carries it): marked with SAN RESTRICTED_URI. */
  commandRestricted?: boolean;
  /** Certify this P-256 public key (the holder kept its private key); absent: a key pair is generated. */
  publicKey?: KeyObject;
}

/** `keyPem` is empty when the caller supplied the public key: the private key never passed through vigil. */
export function createClientCertificate(ca: CaMaterial, req: ClientCertRequest): { certPem: string; keyPem: string } {
  const supplied = req.publicKey;
  const { privateKey, publicKey } = supplied ? { privateKey: undefined, publicKey: supplied } : generateEcKey();
  const sans = [
    ...(req.grantId ? [der.implicit(6, Buffer.from(GRANT_URI_PREFIX + req.grantId, 'ascii'))] : []),
    ...(req.sourceAddresses ?? []).map((a) => der.implicit(6, Buffer.from(SOURCE_URI_PREFIX + a, 'ascii'))),
    ...(req.commandRestricted ? [der.implicit(6, Buffer.from(RESTRICTED_URI, 'ascii'))] : []),
  ];
  const certPem = buildCertificate({
    serialHex: req.serialHex,
    issuer: ca.name,
    subject: [[OID.cn, req.user], ...req.roles.map((r): [string, string] => [OID.ou, r])],
    notBefore: req.notBefore,
    notAfter: req.notAfter,
    publicKey,
    signingKey: ca.privateKey,
    extensions: leafExtensions(ca, publicKey, OID_CLIENT_AUTH, sans),
  });
  return { certPem, keyPem: privateKey ? privateKeyPem(privateKey) : '' };
}

/** Serials are compared as 16+ lowercase hex digits, whatever sign padding or case a parser leaves on. */
export function normalizeSerial(hex: string): string {
  return hex.replace(/[^0-9a-fA-F]/g, '').replace(/^0+/, '').toLowerCase().padStart(16, '0');
}
