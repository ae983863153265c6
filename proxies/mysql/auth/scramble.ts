/**
 * Password scrambles of the MySQL auth plugins vigil uses towards backends. The password comes from the
 * target's config and never leaves this process except inside these one-way responses (or, for a
 * caching_sha2_password full authentication, over TLS or RSA-OAEP encrypted to the server's key).
 */
import { createHash, publicEncrypt, constants } from 'node:crypto';

const hash = (alg: 'sha1' | 'sha256', ...parts: Buffer[]) => {
  const h = createHash(alg);
  for (const p of parts) h.update(p);
  return h.digest();
};

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i % b.length]!;
  return out;
}

/** Only the first 20 bytes of the server's auth data are the scramble (a trailing NUL may follow). */
const nonce20 = (scramble: Buffer) => scramble.subarray(0, 20);

/** mysql_native_password: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))). Empty password → empty response. */
export function nativePasswordScramble(password: string, scramble: Buffer): Buffer {
  if (password === '') return Buffer.alloc(0);
  const s1 = hash('sha1', Buffer.from(password, 'utf8'));
  const s2 = hash('sha1', s1);
  return xor(s1, hash('sha1', nonce20(scramble), s2));
}

/** caching_sha2_password fast path: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + scramble). */
export function cachingSha2Scramble(password: string, scramble: Buffer): Buffer {
  if (password === '') return Buffer.alloc(0);
  const s1 = hash('sha256', Buffer.from(password, 'utf8'));
  const s2 = hash('sha256', s1);
  return xor(s1, hash('sha256', s2, nonce20(scramble)));
}

/**
 * caching_sha2_password / sha256_password full authentication without TLS: the NUL-terminated password,
 * XORed with the scramble, encrypted with the server's RSA public key (OAEP, SHA-1 — what MySQL 8 uses).
 */
export function rsaEncryptedPassword(password: string, scramble: Buffer, publicKeyPem: string | Buffer): Buffer {
  const plain = xor(Buffer.from(password + '\0', 'utf8'), nonce20(scramble));
  return publicEncrypt({ key: publicKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, plain);
}

/** Full authentication over TLS: the password in clear, NUL-terminated (the channel is encrypted). */
export function clearPassword(password: string): Buffer {
  return Buffer.from(password + '\0', 'utf8');
}

/** caching_sha2_password AuthMoreData status bytes. */
export const CACHING_SHA2 = {
  REQUEST_PUBLIC_KEY: 0x02,
  FAST_AUTH_SUCCESS: 0x03,
  PERFORM_FULL_AUTH: 0x04,
} as const;
