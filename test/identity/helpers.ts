import crypto, { type KeyObject } from 'node:crypto';
import path from 'node:path';
import { parseConfig } from '../../app/config.ts';
import type { VigilConfig } from '../../src/config/schema.ts';
import { initIdentity, openIdentity } from '../../src/identity/index.ts';
import { loadCaKeys, type CaKeys } from '../../src/identity/ca.ts';
import type { IdentityService } from '../../src/identity/types.ts';
import { SSH_CERT_USER, certAlgoFor, encodeCertificate, option, type SshCertificateFields } from '../../src/identity/openssh-cert.ts';
import { fromKeyObject, publicKeyBlob, signEd25519, signSsh } from '../../src/identity/ssh-keys.ts';
import { sshString } from '../../src/identity/ssh-wire.ts';
import type { AccessRecord, HoldRecord, IdentityBinding, IssuedCertRecord, LockRecord, RevocationRecord, StateStore } from '../../src/store/types.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * In-memory StateStore for identity unit tests: the identity module only needs issuance records,
 * revocations and grant lookups, and its tests must not depend on the SQLite store being present.
 */
export class MemoryStore implements StateStore {
  issued = new Map<string, IssuedCertRecord>();
  revoked = new Map<string, RevocationRecord>();
  access = new Map<string, AccessRecord>();
  locks = new Map<string, LockRecord>();
  async recordIssuedCert(rec: IssuedCertRecord) {
    this.issued.set(rec.serial, rec);
  }
  async getIssuedCert(serial: string) {
    return this.issued.get(serial);
  }
  async listIssuedCerts(range: { since: string; until: string }) {
    return [...this.issued.values()].filter((c) => c.notAfter >= range.since && c.notBefore <= range.until);
  }
  async listRevocations() {
    return [...this.revoked.values()];
  }
  async revoke(rec: RevocationRecord) {
    if (this.revoked.has(rec.serial)) return false;
    this.revoked.set(rec.serial, rec);
    return true;
  }
  async getRevocation(serial: string) {
    return this.revoked.get(serial);
  }
  isRevoked(serial: string) {
    return this.revoked.has(serial);
  }
  async createAccess(rec: AccessRecord) {
    this.access.set(rec.id, rec);
  }
  async getAccess(id: string) {
    return this.access.get(id);
  }
  async updateAccess(id: string, fn: (cur: AccessRecord) => AccessRecord) {
    const cur = this.access.get(id);
    if (!cur) throw new Error(`no access ${id}`);
    const next = fn(cur);
    this.access.set(id, next);
    return next;
  }
  async listAccess() {
    return [...this.access.values()];
  }
  async putLock(rec: LockRecord) {
    this.locks.set(`${rec.kind}/${rec.name}`, rec);
  }
  async deleteLock(kind: LockRecord['kind'], name: string) {
    return this.locks.delete(`${kind}/${name}`);
  }
  async listLocks() {
    return [...this.locks.values()];
  }
  bindings = new Map<string, IdentityBinding>();
  async bindIdentity(rec: IdentityBinding) {
    const byUser = this.bindings.get(rec.user);
    if (byUser) return byUser.issuer === rec.issuer && byUser.subject === rec.subject ? undefined : byUser;
    const bySubject = [...this.bindings.values()].find((b) => b.issuer === rec.issuer && b.subject === rec.subject);
    if (bySubject) return bySubject;
    this.bindings.set(rec.user, rec);
    return undefined;
  }
  async getIdentityBinding(user: string) {
    return this.bindings.get(user);
  }
  async userSpellings(name: string) {
    const folded = name.toLowerCase();
    const names = [...this.issued.values()].map((c) => c.user).concat([...this.bindings.keys()], [...this.locks.values()].filter((l) => l.kind === 'user').map((l) => l.name));
    return [...new Set(names.filter((n) => n.toLowerCase() === folded))].sort();
  }
  holds = new Map<string, HoldRecord>();
  async putHold(rec: HoldRecord) {
    this.holds.set(rec.id, rec);
  }
  async getHold(id: string) {
    return this.holds.get(id);
  }
  async listHolds() {
    return [...this.holds.values()];
  }
  isLocked(kind: LockRecord['kind'], name: string) {
    return this.locks.get(`${kind}/${name}`);
  }
  async refresh() {
    return false;
  }
  async close() {}
}

export interface TestIdentity {
  base: string;
  dataDir: string;
  config: VigilConfig;
  store: MemoryStore;
  identity: IdentityService;
  keys: CaKeys;
}

export async function setupIdentity(doc: Record<string, unknown> = {}): Promise<TestIdentity> {
  const base = tempDir('vigil-identity-');
  const dataDir = path.join(base, 'data');
  const config = parseConfig({ data_dir: dataDir, ...doc }, base);
  await initIdentity(dataDir, config);
  const store = new MemoryStore();
  const identity = await openIdentity(dataDir, config, store);
  return { base, dataDir, config, store, identity, keys: await loadCaKeys(dataDir) };
}

/** A user certificate with sane defaults (valid now for an hour, principal alice), signed by `ca`. */
export function makeUserCert(ca: KeyObject, userKey: KeyObject, over: Partial<SshCertificateFields> = {}): Buffer {
  const now = BigInt(Math.floor(Date.now() / 1000));
  const fields: SshCertificateFields = {
    nonce: crypto.randomBytes(32),
    key: fromKeyObject(userKey),
    serial: 0x1234n,
    certType: SSH_CERT_USER,
    keyId: 'test',
    principals: ['alice'],
    validAfter: now - 60n,
    validBefore: now + 3600n,
    criticalOptions: [],
    extensions: [option('permit-pty')],
    signatureKey: publicKeyBlob(fromKeyObject(ca)),
    ...over,
  };
  return encodeCertificate(fields, (d) => signEd25519(ca, d));
}

/**
 * The data an SSH client signs for publickey auth (RFC 4252 §7), and its signature, as OpenSSH sends
 * them: string session id, byte 50, string user, string service, string "publickey", bool TRUE,
 * string algorithm, string key blob (the certificate).
 */
export function clientAuth(certBlob: Buffer, userKey: KeyObject, opts: { algo?: string; sigAlgo?: string; login?: string } = {}) {
  const algo = opts.algo ?? certAlgoFor(fromKeyObject(userKey).type);
  const signedData = Buffer.concat([
    sshString(crypto.randomBytes(32)),
    Buffer.from([50]),
    sshString(opts.login ?? 'root'),
    sshString('ssh-connection'),
    sshString('publickey'),
    Buffer.from([1]),
    sshString(algo),
    sshString(certBlob),
  ]);
  return { keyAlgo: algo, keyBlob: certBlob, signedData, signature: signSsh(userKey, signedData, opts.sigAlgo), sourceIp: '127.0.0.1' };
}
