import crypto, { type KeyObject } from 'node:crypto';
import { SshReader, SshWireError, quote, sshMpint, sshString } from './ssh-wire.ts';

/**
 * OpenSSH public keys (RFC 4253 §6.6, RFC 5656, RFC 8709) and signatures, converted to and from
 * node:crypto key objects. Users bring their own keys, so ed25519, ecdsa-sha2-nistp256/384/521 and rsa
 * are understood; vigil's own keys are always Ed25519.
 */
export type SshPublicKey =
  | { type: 'ssh-ed25519'; key: Buffer }
  | { type: 'ecdsa-sha2-nistp256' | 'ecdsa-sha2-nistp384' | 'ecdsa-sha2-nistp521'; curve: string; q: Buffer }
  | { type: 'ssh-rsa'; e: Buffer; n: Buffer };

export type SshKeyType = SshPublicKey['type'];

const ECDSA: Record<string, { curve: string; jwkCrv: string; hash: string; size: number }> = {
  'ecdsa-sha2-nistp256': { curve: 'nistp256', jwkCrv: 'P-256', hash: 'sha256', size: 32 },
  'ecdsa-sha2-nistp384': { curve: 'nistp384', jwkCrv: 'P-384', hash: 'sha384', size: 48 },
  'ecdsa-sha2-nistp521': { curve: 'nistp521', jwkCrv: 'P-521', hash: 'sha512', size: 66 },
};

/** Smallest RSA modulus accepted from users (bits). */
export const MIN_RSA_BITS = 2048;

export function isSshKeyType(t: string): t is SshKeyType {
  return t === 'ssh-ed25519' || t === 'ssh-rsa' || t in ECDSA;
}

/** Reads the type-specific fields of a public key (after its type string). Used by key and cert parsers. */
export function readPublicKeyFields(r: SshReader, type: string): SshPublicKey {
  if (type === 'ssh-ed25519') {
    const key = r.string('ed25519 key');
    if (key.length !== 32) throw new SshWireError('ed25519 key is not 32 bytes');
    return { type, key };
  }
  if (type === 'ssh-rsa') {
    const e = r.mpint('rsa e');
    const n = r.mpint('rsa n');
    const bits = n.length === 0 ? 0 : (n.length - 1) * 8 + (32 - Math.clz32(n[0]));
    if (bits < MIN_RSA_BITS) throw new SshWireError(`rsa key of ${bits} bits is shorter than ${MIN_RSA_BITS}`);
    if (e.length === 0) throw new SshWireError('rsa exponent is zero');
    return { type, e, n };
  }
  const ec = ECDSA[type];
  if (ec) {
    const curve = r.text('ecdsa curve');
    if (curve !== ec.curve) throw new SshWireError(`ecdsa curve ${curve} does not match ${type}`);
    const q = r.string('ecdsa point');
    if (q.length !== 1 + 2 * ec.size || q[0] !== 4) throw new SshWireError('ecdsa point is not an uncompressed point of the right size');
    return { type: type as 'ecdsa-sha2-nistp256', curve, q };
  }
  throw new SshWireError(`unsupported key type ${quote(type)}`);
}

export function encodePublicKeyFields(k: SshPublicKey): Buffer {
  switch (k.type) {
    case 'ssh-ed25519':
      return sshString(k.key);
    case 'ssh-rsa':
      return Buffer.concat([sshMpint(k.e), sshMpint(k.n)]);
    default:
      return Buffer.concat([sshString(k.curve), sshString(k.q)]);
  }
}

export function publicKeyBlob(k: SshPublicKey): Buffer {
  return Buffer.concat([sshString(k.type), encodePublicKeyFields(k)]);
}

export function parsePublicKeyBlob(blob: Buffer): SshPublicKey {
  const r = new SshReader(blob);
  const type = r.text('key type');
  const k = readPublicKeyFields(r, type);
  r.end('public key');
  return k;
}

/** Parses `type base64 [comment]` (an authorized_keys / .pub line without options). */
export function parsePublicKeyLine(line: string): { key: SshPublicKey; blob: Buffer; comment: string } {
  const parts = line.trim().split(/\s+/);
  if (parts.length < 2) throw new SshWireError('expected "<type> <base64> [comment]"');
  const [type, b64, ...rest] = parts;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new SshWireError('public key is not base64');
  const blob = Buffer.from(b64, 'base64');
  const key = parsePublicKeyBlob(blob);
  if (key.type !== type) throw new SshWireError(`key line says ${quote(type)} but the key is ${key.type}`);
  return { key, blob, comment: rest.join(' ') };
}

export function formatPublicKeyLine(k: SshPublicKey, comment = ''): string {
  return `${k.type} ${publicKeyBlob(k).toString('base64')}${comment ? ` ${comment}` : ''}`;
}

export const b64u = (b: Buffer) => b.toString('base64url');
export const unb64u = (s: string | undefined) => Buffer.from(s ?? '', 'base64url');

export function toKeyObject(k: SshPublicKey): KeyObject {
  switch (k.type) {
    case 'ssh-ed25519':
      return crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64u(k.key) }, format: 'jwk' });
    case 'ssh-rsa':
      return crypto.createPublicKey({ key: { kty: 'RSA', n: b64u(k.n), e: b64u(k.e) }, format: 'jwk' });
    default: {
      const ec = ECDSA[k.type];
      const x = k.q.subarray(1, 1 + ec.size);
      const y = k.q.subarray(1 + ec.size);
      return crypto.createPublicKey({ key: { kty: 'EC', crv: ec.jwkCrv, x: b64u(x), y: b64u(y) }, format: 'jwk' });
    }
  }
}

/** The SSH form of a node public (or private) key. */
export function fromKeyObject(key: KeyObject): SshPublicKey {
  const pub = key.type === 'private' ? crypto.createPublicKey(key) : key;
  const jwk = pub.export({ format: 'jwk' });
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return { type: 'ssh-ed25519', key: unb64u(jwk.x) };
  if (jwk.kty === 'RSA') return { type: 'ssh-rsa', e: unb64u(jwk.e), n: unb64u(jwk.n) };
  if (jwk.kty === 'EC') {
    const entry = Object.entries(ECDSA).find(([, v]) => v.jwkCrv === jwk.crv);
    if (entry) {
      const [type, ec] = entry;
      const pad = (b: Buffer) => Buffer.concat([Buffer.alloc(ec.size - b.length), b]);
      return { type: type as 'ecdsa-sha2-nistp256', curve: ec.curve, q: Buffer.concat([Buffer.from([4]), pad(unb64u(jwk.x)), pad(unb64u(jwk.y))]) };
    }
  }
  throw new SshWireError(`unsupported key (${jwk.kty} ${jwk.crv ?? ''})`);
}

/** Signature algorithms a key type may sign with, and the hash each uses. */
const SIG_ALGOS: Record<string, { keyType: SshKeyType; hash: string | null }> = {
  'ssh-ed25519': { keyType: 'ssh-ed25519', hash: null },
  'rsa-sha2-256': { keyType: 'ssh-rsa', hash: 'sha256' },
  'rsa-sha2-512': { keyType: 'ssh-rsa', hash: 'sha512' },
  'ecdsa-sha2-nistp256': { keyType: 'ecdsa-sha2-nistp256', hash: 'sha256' },
  'ecdsa-sha2-nistp384': { keyType: 'ecdsa-sha2-nistp384', hash: 'sha384' },
  'ecdsa-sha2-nistp521': { keyType: 'ecdsa-sha2-nistp521', hash: 'sha512' },
};

export interface SplitSignature {
  /** Signature algorithm (from the blob, or inferred from the key / auth algorithm when stripped). */
  algo: string;
  /** Raw signature bytes as inside the SSH signature blob. */
  sig: Buffer;
}

/** Parses a full SSH signature blob (`string algo, string sig`); undefined when `b` is not one. */
export function parseSignatureBlob(b: Buffer): SplitSignature | undefined {
  try {
    const r = new SshReader(b);
    const algo = r.text('signature algorithm');
    const sig = r.string('signature');
    r.end('signature');
    return SIG_ALGOS[algo] || algo === 'ssh-rsa' ? { algo, sig } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Which signature algorithm a stripped signature was made with, from the key and the algorithm named in
 * the auth request (`rsa-sha2-512-cert-v01@openssh.com` → rsa-sha2-512).
 */
export function inferSignatureAlgo(key: SshPublicKey, requestAlgo: string): string {
  if (key.type !== 'ssh-rsa') return key.type;
  const base = requestAlgo.replace(/-cert-v01@openssh\.com$/, '');
  return base === 'rsa-sha2-256' || base === 'rsa-sha2-512' ? base : 'ssh-rsa';
}

/** Converts an SSH ecdsa signature (`mpint r, mpint s`) to IEEE P1363 (r||s fixed width). */
function ecdsaSshToP1363(sig: Buffer, size: number): Buffer | undefined {
  try {
    const r = new SshReader(sig);
    const rr = r.mpint('ecdsa r');
    const ss = r.mpint('ecdsa s');
    r.end('ecdsa signature');
    if (rr.length > size || ss.length > size) return undefined;
    const out = Buffer.alloc(2 * size);
    rr.copy(out, size - rr.length);
    ss.copy(out, 2 * size - ss.length);
    return out;
  } catch {
    return undefined;
  }
}

export type SignatureCheck = { ok: true } | { ok: false; detail: string };

/**
 * Verifies `signature` over `data` with `key`. The signature may be a full SSH blob or stripped to the
 * raw bytes (ssh2 strips it only when the request algorithm equals the signature algorithm); an ecdsa
 * signature may then also already be DER. SHA-1 RSA (`ssh-rsa`) signatures are refused, as OpenSSH ≥ 8.8 does.
 */
export function verifySshSignature(key: SshPublicKey, data: Buffer, signature: Buffer, requestAlgo: string): SignatureCheck {
  const parsed = parseSignatureBlob(signature);
  const algo = parsed?.algo ?? inferSignatureAlgo(key, requestAlgo);
  const raw = parsed?.sig ?? signature;
  if (algo === 'ssh-rsa') return { ok: false, detail: 'SHA-1 RSA signatures (ssh-rsa) are not accepted' };
  const info = SIG_ALGOS[algo];
  if (!info || info.keyType !== key.type) return { ok: false, detail: `signature algorithm ${quote(algo)} does not fit a ${key.type} key` };
  let keyObject: KeyObject;
  try {
    keyObject = toKeyObject(key);
  } catch (e) {
    return { ok: false, detail: `unusable key: ${(e as Error).message}` };
  }
  try {
    let ok: boolean;
    if (key.type === 'ssh-ed25519') ok = crypto.verify(null, data, keyObject, raw);
    else if (key.type === 'ssh-rsa') ok = crypto.verify(info.hash, data, { key: keyObject, padding: crypto.constants.RSA_PKCS1_PADDING }, raw);
    else {
      const p1363 = ecdsaSshToP1363(raw, ECDSA[key.type].size);
      ok = p1363
        ? crypto.verify(info.hash, data, { key: keyObject, dsaEncoding: 'ieee-p1363' }, p1363)
        : raw[0] === 0x30 && crypto.verify(info.hash, data, { key: keyObject, dsaEncoding: 'der' }, raw);
    }
    return ok ? { ok: true } : { ok: false, detail: `${algo} signature does not verify with the certificate's key` };
  } catch (e) {
    return { ok: false, detail: `signature could not be checked: ${(e as Error).message}` };
  }
}

/** Signs `data` with an Ed25519 private key, returning a full SSH signature blob. */
export function signEd25519(privateKey: KeyObject, data: Buffer): Buffer {
  return Buffer.concat([sshString('ssh-ed25519'), sshString(crypto.sign(null, data, privateKey))]);
}

/** Signs `data` like an SSH client would with any supported private key (used by tests and clients). */
export function signSsh(privateKey: KeyObject, data: Buffer, algo?: string): Buffer {
  const pub = fromKeyObject(privateKey);
  if (pub.type === 'ssh-ed25519') return signEd25519(privateKey, data);
  if (pub.type === 'ssh-rsa') {
    const a = algo ?? 'rsa-sha2-512';
    const sig = crypto.sign(SIG_ALGOS[a].hash, data, { key: privateKey, padding: crypto.constants.RSA_PKCS1_PADDING });
    return Buffer.concat([sshString(a), sshString(sig)]);
  }
  const ec = ECDSA[pub.type];
  const p = crypto.sign(ec.hash, data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
  const inner = Buffer.concat([sshMpint(p.subarray(0, ec.size)), sshMpint(p.subarray(ec.size))]);
  return Buffer.concat([sshString(pub.type), sshString(inner)]);
}

/** OpenSSH-style fingerprint (`SHA256:…`, base64 without padding) of a public key blob. */
export function fingerprint(blob: Buffer): string {
  return 'SHA256:' + crypto.createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}
