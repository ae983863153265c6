import crypto, { type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { VigilConfig } from '../config/schema.ts';
import { VigilError } from '../errors.ts';
import { formatPublicKeyLine, fromKeyObject, publicKeyBlob, signEd25519 } from './ssh-keys.ts';
import { encodeOpenSshPrivateKey, parseOpenSshPrivateKey } from './openssh-privkey.ts';
import { SSH_CERT_HOST, VALID_FOREVER, certAlgoFor, encodeCertificate, formatCertificateLine, parseCertificateLine } from './openssh-cert.ts';
import { certificateHasSans, createCaCertificate, createServerCertificate, loadCa, type CaMaterial } from './x509.ts';

/**
 * The data directory's `ca/` folder: every key vigil owns. Created once, atomically (built in a temp
 * directory, then renamed into place, so two processes racing on first start end up with one CA), and
 * brought up to date under a lock file when config changes what derived certificates must say.
 *
 *   user_ca, user_ca.pub               Ed25519 OpenSSH CA signing user certificates
 *   host_ca, host_ca.pub               Ed25519 OpenSSH CA signing host certificates
 *   ssh_host_ed25519_key{,.pub,-cert.pub}  the SSH listener's host key and its host certificate
 *   ca.key, ca.crt                     X.509 CA (ECDSA P-256): client certs and the TLS server cert
 *   server.key, server.crt             gateway TLS server certificate (SANs = gateway.tls_sans)
 *   audit_signing.key, audit_signing.pub  Ed25519 (PKCS#8 / SPKI PEM) signing audit checkpoints
 *   token_signing.key, token_signing.pub  Ed25519 (PKCS#8 / SPKI PEM) signing short-lived tokens
 */
export const CA_FILES = {
  userCa: 'user_ca',
  hostCa: 'host_ca',
  hostKey: 'ssh_host_ed25519_key',
  hostCert: 'ssh_host_ed25519_key-cert.pub',
  x509CaKey: 'ca.key',
  x509CaCert: 'ca.crt',
  serverKey: 'server.key',
  serverCert: 'server.crt',
  auditKey: 'audit_signing.key',
  auditPub: 'audit_signing.pub',
  tokenKey: 'token_signing.key',
  tokenPub: 'token_signing.pub',
} as const;

const PRIVATE_MODE = 0o600;
const PUBLIC_MODE = 0o644;
/** Renew the server certificate when less than this remains. */
const SERVER_RENEW_BEFORE_MS = 30 * 86_400_000;
const LOCK_STALE_MS = 30_000;
const LOCK_WAIT_MS = 15_000;

export function caDir(dataDir: string): string {
  return path.join(dataDir, 'ca');
}

export function randomSerial(): string {
  return crypto.randomBytes(8).toString('hex');
}

/** Writes a file atomically (temp + rename) with the given mode. */
export function writeAtomic(file: string, content: string | Buffer, mode: number): void {
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, content, { mode, flag: 'wx' });
  fs.chmodSync(tmp, mode); // umask may have removed bits of a public file; never adds to a private one
  fs.renameSync(tmp, file);
}

function newEd25519(): KeyObject {
  return crypto.generateKeyPairSync('ed25519').privateKey;
}

function writeOpenSshKey(dir: string, base: string, key: KeyObject, comment: string): void {
  writeAtomic(path.join(dir, base), encodeOpenSshPrivateKey(key, comment), PRIVATE_MODE);
  writeAtomic(path.join(dir, `${base}.pub`), formatPublicKeyLine(fromKeyObject(key), comment) + '\n', PUBLIC_MODE);
}

function writePkcs8Pair(dir: string, keyFile: string, pubFile: string): void {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  writeAtomic(path.join(dir, keyFile), privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), PRIVATE_MODE);
  writeAtomic(path.join(dir, pubFile), publicKey.export({ format: 'pem', type: 'spki' }).toString(), PUBLIC_MODE);
}

/** Host certificate for `hostKey` with the given principals, signed by the host CA. */
export function signHostCertificate(hostCa: KeyObject, hostKey: KeyObject, principals: string[], keyId: string, validAfter: Date, validBefore?: Date): string {
  const key = fromKeyObject(hostKey);
  const blob = encodeCertificate(
    {
      nonce: crypto.randomBytes(32),
      key,
      serial: BigInt('0x' + randomSerial()),
      certType: SSH_CERT_HOST,
      keyId,
      principals,
      validAfter: BigInt(Math.floor(validAfter.getTime() / 1000)),
      validBefore: validBefore ? BigInt(Math.floor(validBefore.getTime() / 1000)) : VALID_FOREVER,
      criticalOptions: [],
      extensions: [],
      signatureKey: publicKeyBlob(fromKeyObject(hostCa)),
    },
    (data) => signEd25519(hostCa, data),
  );
  return formatCertificateLine(blob, certAlgoFor(key.type), keyId);
}

function readKey(dir: string, base: string): KeyObject {
  return parseOpenSshPrivateKey(fs.readFileSync(path.join(dir, base), 'utf8')).privateKey;
}

function writeHostCert(dir: string, sans: string[]): void {
  const cert = signHostCertificate(readKey(dir, CA_FILES.hostCa), readKey(dir, CA_FILES.hostKey), sans, 'vigil-gateway', new Date(Date.now() - 60_000));
  writeAtomic(path.join(dir, CA_FILES.hostCert), cert + '\n', PUBLIC_MODE);
}

function writeServerCert(dir: string, ca: CaMaterial, sans: string[]): void {
  const { certPem, keyPem } = createServerCertificate(ca, sans, randomSerial());
  // Key first: a reader that sees the new certificate always finds its key (it checks the pair).
  writeAtomic(path.join(dir, CA_FILES.serverKey), keyPem, PRIVATE_MODE);
  writeAtomic(path.join(dir, CA_FILES.serverCert), certPem, PUBLIC_MODE);
}

function readX509Ca(dir: string): CaMaterial {
  return loadCa(fs.readFileSync(path.join(dir, CA_FILES.x509CaCert), 'utf8'), fs.readFileSync(path.join(dir, CA_FILES.x509CaKey), 'utf8'));
}

function createAll(dir: string, sans: string[]): void {
  writeOpenSshKey(dir, CA_FILES.userCa, newEd25519(), 'vigil user CA');
  writeOpenSshKey(dir, CA_FILES.hostCa, newEd25519(), 'vigil host CA');
  writeOpenSshKey(dir, CA_FILES.hostKey, newEd25519(), 'vigil gateway');
  writeHostCert(dir, sans);
  const { certPem, keyPem } = createCaCertificate(randomSerial());
  writeAtomic(path.join(dir, CA_FILES.x509CaKey), keyPem, PRIVATE_MODE);
  writeAtomic(path.join(dir, CA_FILES.x509CaCert), certPem, PUBLIC_MODE);
  writeServerCert(dir, readX509Ca(dir), sans);
  writePkcs8Pair(dir, CA_FILES.auditKey, CA_FILES.auditPub);
  writePkcs8Pair(dir, CA_FILES.tokenKey, CA_FILES.tokenPub);
}

/** What in an existing CA directory no longer matches config (or is missing but re-creatable). */
function staleParts(dir: string, sans: string[]): string[] {
  const stale: string[] = [];
  const has = (f: string) => fs.existsSync(path.join(dir, f));
  for (const f of [CA_FILES.userCa, CA_FILES.hostCa, CA_FILES.hostKey, CA_FILES.x509CaKey, CA_FILES.x509CaCert]) {
    if (!has(f)) throw new VigilError('VIGIL_CA_INCOMPLETE', `${path.join(dir, f)} is missing; restore it from backup (or move ${dir} away to create a new CA, which invalidates every issued certificate)`);
  }
  if (!has(CA_FILES.hostCert) || !sameList(parseCertificateLine(fs.readFileSync(path.join(dir, CA_FILES.hostCert), 'utf8')).principals, sans)) stale.push('host-cert');
  if (!has(CA_FILES.serverCert) || !has(CA_FILES.serverKey)) stale.push('server-cert');
  else {
    const pem = fs.readFileSync(path.join(dir, CA_FILES.serverCert), 'utf8');
    const cert = new crypto.X509Certificate(pem);
    const ca = new crypto.X509Certificate(fs.readFileSync(path.join(dir, CA_FILES.x509CaCert)));
    const renewDue = Date.parse(cert.validTo) - Date.now() < SERVER_RENEW_BEFORE_MS;
    // After `vigil ca rotate` the server certificate stays signed by the previous CA while that one is still
    // trusted: clients holding only the old ca.crt keep verifying the gateway; it moves to the new CA after.
    const trusted = [ca, ...loadPreviousCas(path.dirname(dir)).map((p) => new crypto.X509Certificate(p.x509CaPem))];
    if (renewDue || !certificateHasSans(pem, sans) || !trusted.some((c) => cert.verify(c.publicKey))) stale.push('server-cert');
  }
  if (!has(CA_FILES.auditKey)) stale.push('audit-key');
  if (!has(CA_FILES.tokenKey)) stale.push('token-key');
  return stale;
}

function derivedExists(dir: string): boolean {
  return [CA_FILES.hostCert, CA_FILES.serverCert, CA_FILES.serverKey].every((f) => fs.existsSync(path.join(dir, f)));
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function fixModes(dir: string): void {
  for (const f of [CA_FILES.userCa, CA_FILES.hostCa, CA_FILES.hostKey, CA_FILES.x509CaKey, CA_FILES.serverKey, CA_FILES.auditKey, CA_FILES.tokenKey]) {
    const p = path.join(dir, f);
    try {
      if ((fs.statSync(p).mode & 0o077) !== 0) fs.chmodSync(p, PRIVATE_MODE);
    } catch {
      // missing files are reported by staleParts
    }
  }
  if ((fs.statSync(dir).mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
}

async function withLock<T>(dir: string, fn: () => T): Promise<T> {
  const lock = path.join(dir, '.lock');
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx', mode: PRIVATE_MODE });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      try {
        if (Date.now() - fs.statSync(lock).mtimeMs > LOCK_STALE_MS) fs.rmSync(lock, { force: true });
      } catch {
        // the holder just released it
      }
      if (Date.now() > deadline) throw new VigilError('VIGIL_CA_LOCKED', `${lock} is held by another process`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

export interface InitOptions {
  /**
   * Re-issue the server and host certificates when `gateway.tls_sans` differs from what they say
   * (default true). A CLI command run with another config than the gateway's may pass false so that it
   * never rewrites what the gateway presents.
   */
  updateDerived?: boolean;
}

/**
 * Creates the CA directory on first use; afterwards only re-issues derived material whose inputs changed
 * (server certificate SANs, host certificate principals) and adds keys that a newer version introduced.
 * Returns true when it created the CA.
 */
export async function initIdentity(dataDir: string, config: VigilConfig, opts: InitOptions = {}): Promise<boolean> {
  const dir = caDir(dataDir);
  const sans = config.gateway.tls_sans;
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  let created = false;
  if (!fs.existsSync(path.join(dir, CA_FILES.userCa))) {
    const tmp = fs.mkdtempSync(path.join(dataDir, '.ca-new-'));
    try {
      createAll(tmp, sans);
      // rename() replaces a missing or empty directory atomically; when another process won the race
      // the target is not empty and we keep theirs.
      fs.renameSync(tmp, dir);
      created = true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
  fixModes(dir);
  const due = () => staleParts(dir, sans).filter((p) => opts.updateDerived !== false || (p !== 'host-cert' && p !== 'server-cert') || !derivedExists(dir));
  if (due().length > 0) {
    await withLock(dir, () => {
      for (const part of due()) {
        if (part === 'host-cert') writeHostCert(dir, sans);
        else if (part === 'server-cert') writeServerCert(dir, readX509Ca(dir), sans);
        else if (part === 'audit-key') writePkcs8Pair(dir, CA_FILES.auditKey, CA_FILES.auditPub);
        else if (part === 'token-key') writePkcs8Pair(dir, CA_FILES.tokenKey, CA_FILES.tokenPub);
      }
    });
  }
  return created;
}

/** Everything openIdentity needs, read from `ca/`. */
export interface CaKeys {
  userCa: KeyObject;
  hostCa: KeyObject;
  hostKeyPem: string;
  hostKey: KeyObject;
  hostCertLine: string;
  x509: CaMaterial;
  serverCertPem: string;
  serverKeyPem: string;
  tokenKey: KeyObject;
  tokenPublicKey: KeyObject;
}

export async function loadCaKeys(dataDir: string): Promise<CaKeys> {
  const dir = caDir(dataDir);
  const read = (f: string) => {
    try {
      return fs.readFileSync(path.join(dir, f), 'utf8');
    } catch (e) {
      throw new VigilError('VIGIL_CA_MISSING', `cannot read ${path.join(dir, f)} (run \`vigil init\`): ${(e as Error).message}`);
    }
  };
  const hostKeyPem = read(CA_FILES.hostKey);
  // `vigil ca rotate` replaces the X.509 pair key-first; a reader between the two renames retries.
  let x509: CaMaterial;
  for (let attempt = 0; ; attempt++) {
    try {
      x509 = loadCa(read(CA_FILES.x509CaCert), read(CA_FILES.x509CaKey));
      break;
    } catch (e) {
      if (attempt >= 20 || e instanceof VigilError) throw e;
      await sleep(25);
    }
  }
  // The server pair is replaced key-first; a reader between the two renames sees a mismatch: retry.
  let serverCertPem = '';
  let serverKeyPem = '';
  for (let attempt = 0; ; attempt++) {
    serverKeyPem = read(CA_FILES.serverKey);
    serverCertPem = read(CA_FILES.serverCert);
    if (new crypto.X509Certificate(serverCertPem).checkPrivateKey(crypto.createPrivateKey(serverKeyPem))) break;
    if (attempt >= 20) throw new VigilError('VIGIL_CA_MISMATCH', `${CA_FILES.serverCert} does not match ${CA_FILES.serverKey}; run \`vigil init\``);
    await sleep(25);
  }
  const tokenKey = crypto.createPrivateKey(read(CA_FILES.tokenKey));
  return {
    userCa: parseOpenSshPrivateKey(read(CA_FILES.userCa)).privateKey,
    hostCa: parseOpenSshPrivateKey(read(CA_FILES.hostCa)).privateKey,
    hostKeyPem,
    hostKey: parseOpenSshPrivateKey(hostKeyPem).privateKey,
    hostCertLine: read(CA_FILES.hostCert).trim(),
    x509,
    serverCertPem,
    serverKeyPem,
    tokenKey,
    tokenPublicKey: crypto.createPublicKey(tokenKey),
  };
}

// ---- CA rotation (`vigil ca rotate`) -----------------------------------------------------------------

/**
 * A rotated-out CA generation: `ca/previous/<id>/` keeps only its public halves (user_ca.pub, ca.crt) and
 * `meta.json` with `retire_after`, the end of the last certificate it signed. Until then certificates it
 * issued keep working; its private keys are gone (replaced by the new CA's), so it signs nothing more.
 */
export const PREVIOUS_DIR = 'previous';

export interface PreviousCa {
  id: string;
  userCaPubLine: string;
  x509CaPem: string;
  rotatedAt: Date;
  retireAfter: Date;
}

/** Previous CA generations still trusted at `now` (retired ones are skipped and may be deleted). */
export function loadPreviousCas(dataDir: string, now = Date.now()): PreviousCa[] {
  const root = path.join(caDir(dataDir), PREVIOUS_DIR);
  let ids: string[];
  try {
    ids = fs.readdirSync(root).sort();
  } catch {
    return [];
  }
  const out: PreviousCa[] = [];
  for (const id of ids) {
    const dir = path.join(root, id);
    try {
      const meta = JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8')) as { rotated_at: string; retire_after: string };
      const retireAfter = new Date(meta.retire_after);
      if (!(retireAfter.getTime() > now)) continue;
      out.push({
        id,
        userCaPubLine: fs.readFileSync(path.join(dir, `${CA_FILES.userCa}.pub`), 'utf8').trim(),
        x509CaPem: fs.readFileSync(path.join(dir, CA_FILES.x509CaCert), 'utf8'),
        rotatedAt: new Date(meta.rotated_at),
        retireAfter,
      });
    } catch {
      // An incomplete generation (a rotation interrupted before its meta.json) is not trusted.
    }
  }
  return out;
}

export interface RotationResult {
  id: string;
  retireAfter: Date;
  previous: { sshUserCa: string; x509Serial: string; x509Subject: string };
  current: { sshUserCa: string; x509Serial: string; x509Subject: string };
}

function caSummary(dir: string): RotationResult['current'] {
  const pub = fs.readFileSync(path.join(dir, `${CA_FILES.userCa}.pub`), 'utf8').trim();
  const x = new crypto.X509Certificate(fs.readFileSync(path.join(dir, CA_FILES.x509CaCert)));
  return { sshUserCa: pub.split(' ').slice(0, 2).join(' '), x509Serial: x.serialNumber.toLowerCase(), x509Subject: x.subject.replace(/\n/g, ', ') };
}

/**
 * Replace the SSH user CA and the X.509 CA by new ones. The old public halves move to
 * `previous/<id>/` and stay trusted until `retireAfter` (give the latest end of any certificate the old CA
 * signed). The host CA, host key, audit and token keys are unchanged. A running gateway takes the new CA
 * on its next config reload (SIGHUP / `vigil config reload`) or restart.
 */
export async function rotateCa(dataDir: string, retireAfter: Date, now = new Date()): Promise<RotationResult> {
  const dir = caDir(dataDir);
  return withLock(dir, () => {
    const previous = caSummary(dir);
    const id = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z') + '-' + crypto.randomBytes(3).toString('hex');
    const keep = path.join(dir, PREVIOUS_DIR, id);
    fs.mkdirSync(keep, { recursive: true, mode: 0o700 });
    fs.copyFileSync(path.join(dir, `${CA_FILES.userCa}.pub`), path.join(keep, `${CA_FILES.userCa}.pub`));
    fs.copyFileSync(path.join(dir, CA_FILES.x509CaCert), path.join(keep, CA_FILES.x509CaCert));
    // meta.json last: a generation without it is never trusted (see loadPreviousCas).
    writeAtomic(path.join(keep, 'meta.json'), JSON.stringify({ rotated_at: now.toISOString(), retire_after: retireAfter.toISOString() }) + '\n', PUBLIC_MODE);
    writeOpenSshKey(dir, CA_FILES.userCa, newEd25519(), `vigil user CA ${id}`);
    const { certPem, keyPem } = createCaCertificate(randomSerial(), now, `vigil CA ${id}`);
    // Key first, like the server pair: a reader that sees the new certificate finds its key.
    writeAtomic(path.join(dir, CA_FILES.x509CaKey), keyPem, PRIVATE_MODE);
    writeAtomic(path.join(dir, CA_FILES.x509CaCert), certPem, PUBLIC_MODE);
    return { id, retireAfter, previous, current: caSummary(dir) };
  });
}
