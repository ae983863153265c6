import crypto from 'node:crypto';
import { tlv, seq, set, octets, oid, explicit, uint } from './der.ts';

/**
 * Key formats for Java clients (pgjdbc, MariaDB Connector/J), which read neither PEM keys nor SEC1:
 *   - DER PKCS#8 (`alice.pk8`), unencrypted: pgjdbc's `sslkey` default format;
 *   - PKCS#12 (`alice.p12`) holding the client certificate and its key, for `sslkey=alice.p12` or a Java
 *     KeyStore. The key is a PBES2 (PBKDF2-SHA256, AES-256-CBC) shrouded key bag, the whole is protected by
 *     an HMAC-SHA256 MAC (RFC 7292): what OpenSSL 3 writes by default and Java 17 reads. Both bags carry the
 *     same localKeyId and friendlyName, so KeyStore pairs them under the alias `friendlyName`.
 * Pure: no files, no OpenSSL CLI.
 */

const OID_DATA = '1.2.840.113549.1.7.1';
const OID_CERT_BAG = '1.2.840.113549.1.12.10.1.3';
const OID_SHROUDED_KEY_BAG = '1.2.840.113549.1.12.10.1.2';
const OID_X509_CERT = '1.2.840.113549.1.9.22.1';
const OID_FRIENDLY_NAME = '1.2.840.113549.1.9.20';
const OID_LOCAL_KEY_ID = '1.2.840.113549.1.9.21';
const OID_SHA256 = '2.16.840.1.101.3.4.2.1';
const MAC_ITERATIONS = 2048;

/** DER PKCS#8 PrivateKeyInfo of a PEM (or KeyObject) private key, unencrypted. */
export function pkcs8Der(key: string | crypto.KeyObject): Buffer {
  const k = typeof key === 'string' ? crypto.createPrivateKey(key) : key;
  return k.export({ type: 'pkcs8', format: 'der' });
}

/** DER of the first certificate in a PEM text. */
export function certificateDer(pem: string): Buffer {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(pem);
  if (!m) throw new Error('no certificate in PEM');
  return Buffer.from(m[1].replace(/\s+/g, ''), 'base64');
}

/** `password` as a PKCS#12 BMPString with its two-byte terminator (RFC 7292 B.1). */
function bmpPassword(password: string): Buffer {
  const out = Buffer.alloc(password.length * 2 + 2);
  for (let i = 0; i < password.length; i++) out.writeUInt16BE(password.charCodeAt(i), i * 2);
  return out;
}

function repeatTo(b: Buffer, v: number): Buffer {
  if (b.length === 0) return b;
  const n = v * Math.ceil(b.length / v);
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = b[i % b.length];
  return out;
}

/** The PKCS#12 key derivation (RFC 7292 appendix B.2) with SHA-256; `id` 3 = MAC key. */
export function pkcs12Kdf(password: string, salt: Buffer, iterations: number, id: number, n: number): Buffer {
  const u = 32;
  const v = 64;
  const D = Buffer.alloc(v, id);
  const I = Buffer.concat([repeatTo(salt, v), repeatTo(bmpPassword(password), v)]);
  const out: Buffer[] = [];
  for (let produced = 0; produced < n; produced += u) {
    let A = crypto.createHash('sha256').update(D).update(I).digest();
    for (let r = 1; r < iterations; r++) A = crypto.createHash('sha256').update(A).digest();
    out.push(A);
    const B = repeatTo(A, v);
    // I_j = (I_j + B + 1) mod 2^(8v), per v-byte block, big-endian.
    for (let j = 0; j < I.length; j += v) {
      let carry = 1;
      for (let k = v - 1; k >= 0; k--) {
        const sum = I[j + k] + B[k] + carry;
        I[j + k] = sum & 0xff;
        carry = sum >> 8;
      }
    }
  }
  return Buffer.concat(out).subarray(0, n);
}

const dataContent = (der: Buffer) => seq(oid(OID_DATA), explicit(0, octets(der)));

function bagAttributes(friendlyName: string, localKeyId: Buffer): Buffer {
  const bmp = Buffer.alloc(friendlyName.length * 2);
  for (let i = 0; i < friendlyName.length; i++) bmp.writeUInt16BE(friendlyName.charCodeAt(i), i * 2);
  return set(seq(oid(OID_FRIENDLY_NAME), set(tlv(0x1e, bmp))), seq(oid(OID_LOCAL_KEY_ID), set(octets(localKeyId))));
}

export interface Pkcs12Input {
  certificatePem: string;
  privateKeyPem: string;
  /** Protects the key and the MAC; '' is allowed (Java and OpenSSL open it with an empty password). */
  password: string;
  /** KeyStore alias. */
  friendlyName: string;
}

/** A PKCS#12 (PFX) file with one certificate and its private key. */
export function buildPkcs12(input: Pkcs12Input): Buffer {
  const certDer = certificateDer(input.certificatePem);
  const localKeyId = crypto.createHash('sha1').update(certDer).digest();
  const attrs = bagAttributes(input.friendlyName, localKeyId);
  const certBag = seq(oid(OID_CERT_BAG), explicit(0, seq(oid(OID_X509_CERT), explicit(0, octets(certDer)))), attrs);
  const shrouded = crypto.createPrivateKey(input.privateKeyPem).export({ type: 'pkcs8', format: 'der', cipher: 'aes-256-cbc', passphrase: input.password });
  const keyBag = seq(oid(OID_SHROUDED_KEY_BAG), explicit(0, shrouded), attrs);
  const authSafe = seq(dataContent(seq(certBag)), dataContent(seq(keyBag)));

  const salt = crypto.randomBytes(16);
  const macKey = pkcs12Kdf(input.password, salt, MAC_ITERATIONS, 3, 32);
  const mac = crypto.createHmac('sha256', macKey).update(authSafe).digest();
  const nullParam = Buffer.from([0x05, 0x00]);
  const macData = seq(seq(seq(oid(OID_SHA256), nullParam), octets(mac)), octets(salt), uint(intBytes(MAC_ITERATIONS)));
  return seq(uint(Buffer.from([3])), dataContent(authSafe), macData);
}

function intBytes(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  let i = 0;
  while (i < 3 && b[i] === 0) i++;
  return b.subarray(i);
}
