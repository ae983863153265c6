import { SshReader, SshWireError, quote, sshString, u32, u64 } from './ssh-wire.ts';
import { encodePublicKeyFields, readPublicKeyFields, type SshPublicKey } from './ssh-keys.ts';

/**
 * OpenSSH certificates (PROTOCOL.certkeys): a pure codec. `parseCertificate` turns a blob into fields
 * plus the exact bytes the CA signed; `encodeCertificate` builds one and has a signer callback sign it.
 * Signature checks live in verify.ts; nothing here trusts anything.
 */
export const SSH_CERT_USER = 1;
export const SSH_CERT_HOST = 2;

/** uint64 "valid before" meaning forever. */
export const VALID_FOREVER = 0xffff_ffff_ffff_ffffn;

const CERT_SUFFIX = '-cert-v01@openssh.com';

/** One critical option or extension: name and its raw data (a nested `string` when it carries a value). */
export interface CertOption {
  name: string;
  data: Buffer;
}

export interface SshCertificateFields {
  nonce: Buffer;
  key: SshPublicKey;
  serial: bigint;
  certType: typeof SSH_CERT_USER | typeof SSH_CERT_HOST;
  keyId: string;
  principals: string[];
  /** Seconds since the epoch. */
  validAfter: bigint;
  validBefore: bigint;
  criticalOptions: CertOption[];
  extensions: CertOption[];
  /** Public key blob of the CA. */
  signatureKey: Buffer;
}

export interface SshCertificate extends SshCertificateFields {
  /** Certificate algorithm name, e.g. `ssh-ed25519-cert-v01@openssh.com`. */
  algo: string;
  /** Full SSH signature blob by the CA. */
  signature: Buffer;
  /** The bytes the CA signature covers (everything before the signature field). */
  signedBytes: Buffer;
}

export function certAlgoFor(keyType: string): string {
  return keyType + CERT_SUFFIX;
}

/** `ssh-ed25519-cert-v01@openssh.com` → `ssh-ed25519`; undefined when `algo` is not a certificate algorithm. */
export function keyTypeOfCertAlgo(algo: string): string | undefined {
  return algo.endsWith(CERT_SUFFIX) ? algo.slice(0, -CERT_SUFFIX.length) : undefined;
}

export function isCertificateAlgo(algo: string): boolean {
  return algo.endsWith(CERT_SUFFIX);
}

/** Option value for options that carry one string (`force-command`, `source-address`, vigil's own). */
export function optionValue(o: CertOption): string {
  if (o.data.length === 0) return '';
  const r = new SshReader(o.data);
  const v = r.text(`value of ${o.name}`);
  r.end(`value of ${o.name}`);
  return v;
}

export function option(name: string, value?: string): CertOption {
  return { name, data: value === undefined ? Buffer.alloc(0) : sshString(value) };
}

function readOptions(buf: Buffer, what: string): CertOption[] {
  const r = new SshReader(buf);
  const out: CertOption[] = [];
  while (r.remaining > 0) {
    const name = r.text(`${what} name`);
    const data = r.string(`${what} data`);
    // Duplicates would make "which one applies" ambiguous between implementations.
    if (out.some((o) => o.name === name)) throw new SshWireError(`duplicate ${what} ${quote(name)}`);
    out.push({ name, data });
  }
  return out;
}

function encodeOptions(opts: CertOption[]): Buffer {
  // PROTOCOL.certkeys: options and extensions are sorted lexically by name, each at most once.
  const sorted = [...opts].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  for (let i = 1; i < sorted.length; i++) if (sorted[i].name === sorted[i - 1].name) throw new SshWireError(`duplicate option ${sorted[i].name}`);
  return Buffer.concat(sorted.flatMap((o) => [sshString(o.name), sshString(o.data)]));
}

function readPrincipals(buf: Buffer): string[] {
  const r = new SshReader(buf);
  const out: string[] = [];
  while (r.remaining > 0) out.push(r.text('principal'));
  return out;
}

export function parseCertificate(blob: Buffer): SshCertificate {
  const r = new SshReader(blob);
  const algo = r.text('certificate type');
  const keyType = keyTypeOfCertAlgo(algo);
  if (!keyType) throw new SshWireError(`${quote(algo)} is not a certificate type`);
  const nonce = r.string('nonce');
  const key = readPublicKeyFields(r, keyType);
  const serial = r.uint64('serial');
  const certType = r.uint32('cert type');
  if (certType !== SSH_CERT_USER && certType !== SSH_CERT_HOST) throw new SshWireError(`unknown certificate type ${certType}`);
  const keyId = r.text('key id');
  const principals = readPrincipals(r.string('principals'));
  const validAfter = r.uint64('valid after');
  const validBefore = r.uint64('valid before');
  const criticalOptions = readOptions(r.string('critical options'), 'critical option');
  const extensions = readOptions(r.string('extensions'), 'extension');
  r.string('reserved');
  const signatureKey = r.string('signature key');
  const signedBytes = blob.subarray(0, r.offset);
  const signature = r.string('signature');
  r.end('certificate');
  return { algo, nonce, key, serial, certType, keyId, principals, validAfter, validBefore, criticalOptions, extensions, signatureKey, signature, signedBytes };
}

/** Builds the certificate blob; `sign` returns the full SSH signature blob over the bytes it is given. */
export function encodeCertificate(f: SshCertificateFields, sign: (data: Buffer) => Buffer): Buffer {
  if (f.nonce.length < 16) throw new SshWireError('certificate nonce must be at least 16 bytes');
  const body = Buffer.concat([
    sshString(certAlgoFor(f.key.type)),
    sshString(f.nonce),
    encodePublicKeyFields(f.key),
    u64(f.serial),
    u32(f.certType),
    sshString(f.keyId),
    sshString(Buffer.concat(f.principals.map((p) => sshString(p)))),
    u64(f.validAfter),
    u64(f.validBefore),
    sshString(encodeOptions(f.criticalOptions)),
    sshString(encodeOptions(f.extensions)),
    sshString(Buffer.alloc(0)),
    sshString(f.signatureKey),
  ]);
  return Buffer.concat([body, sshString(sign(body))]);
}

/** `algo base64 comment` line, as in `alice-cert.pub`. */
export function formatCertificateLine(blob: Buffer, algo: string, comment = ''): string {
  return `${algo} ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`;
}

export function parseCertificateLine(line: string): SshCertificate {
  const parts = line.trim().split(/\s+/);
  if (parts.length < 2) throw new SshWireError('expected "<type> <base64> [comment]"');
  const cert = parseCertificate(Buffer.from(parts[1], 'base64'));
  if (cert.algo !== parts[0]) throw new SshWireError('certificate line type does not match the certificate');
  return cert;
}
