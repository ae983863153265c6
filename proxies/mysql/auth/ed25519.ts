/**
 * MariaDB's `client_ed25519` signature. The auth_ed25519 plugin (ref10-based) signs the server's 32-byte
 * scramble with Ed25519, but derives the key differently from RFC 8032: the 64-byte hash
 * `az = SHA-512(password)` of the whole password (any length) takes the place of SHA-512(seed); the low
 * half, clamped, is the secret scalar and the high half is the nonce prefix. node:crypto only accepts a
 * 32-byte seed, so the curve arithmetic is done here with BigInt (extended twisted Edwards coordinates).
 * Only ever signs (no verification needed), a few milliseconds per login.
 */
import { createHash } from 'node:crypto';

const P = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const D = mod(-121665n * inv(121666n));
const GY = mod(4n * inv(5n));
const GX = recoverX(GY);

function mod(a: bigint, m = P): bigint {
  const r = a % m;
  return r >= 0n ? r : r + m;
}

function pow(b: bigint, e: bigint, m = P): bigint {
  let r = 1n;
  b = mod(b, m);
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}

function inv(a: bigint): bigint {
  return pow(a, P - 2n);
}

function recoverX(y: bigint): bigint {
  const y2 = y * y;
  const x2 = mod((y2 - 1n) * inv(D * y2 + 1n));
  let x = pow(x2, (P + 3n) / 8n);
  if (mod(x * x - x2) !== 0n) x = mod(x * pow(2n, (P - 1n) / 4n));
  if (x & 1n) x = P - x;
  return x;
}

type Point = [bigint, bigint, bigint, bigint]; // X, Y, Z, T with x = X/Z, y = Y/Z, xy = T/Z

function add(p: Point, q: Point): Point {
  const [X1, Y1, Z1, T1] = p;
  const [X2, Y2, Z2, T2] = q;
  const A = mod((Y1 - X1) * (Y2 - X2));
  const B = mod((Y1 + X1) * (Y2 + X2));
  const C = mod(2n * D * T1 * T2);
  const Dd = mod(2n * Z1 * Z2);
  const E = B - A;
  const F = Dd - C;
  const G = Dd + C;
  const H = B + A;
  return [mod(E * F), mod(G * H), mod(F * G), mod(E * H)];
}

function scalarMultBase(k: bigint): Point {
  let result: Point = [0n, 1n, 1n, 0n];
  let addend: Point = [GX, GY, 1n, mod(GX * GY)];
  while (k > 0n) {
    if (k & 1n) result = add(result, addend);
    addend = add(addend, addend);
    k >>= 1n;
  }
  return result;
}

function encodePoint(p: Point): Buffer {
  const zi = inv(p[2]);
  const x = mod(p[0] * zi);
  const y = mod(p[1] * zi);
  const out = numberToLE(y, 32);
  if (x & 1n) out[31]! |= 0x80;
  return out;
}

function leToNumber(b: Buffer): bigint {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]!);
  return n;
}

function numberToLE(n: bigint, len: number): Buffer {
  const out = Buffer.alloc(len);
  for (let i = 0; i < len; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

const sha512 = (...parts: Buffer[]) => {
  const h = createHash('sha512');
  for (const p of parts) h.update(p);
  return h.digest();
};

function secretFromPassword(password: Buffer): { a: bigint; prefix: Buffer } {
  const az = sha512(password);
  az[0]! &= 248;
  az[31]! &= 63;
  az[31]! |= 64;
  return { a: leToNumber(az.subarray(0, 32)), prefix: az.subarray(32) };
}

/** The public key MariaDB stores for `PASSWORD('…')` under ed25519 (base64 without padding in mysql.global_priv). */
export function mariadbEd25519PublicKey(password: string | Buffer): Buffer {
  const { a } = secretFromPassword(Buffer.from(password));
  return encodePoint(scalarMultBase(a));
}

/** The 64-byte client_ed25519 response to `scramble`. */
export function mariadbEd25519Sign(password: string | Buffer, scramble: Buffer): Buffer {
  const { a, prefix } = secretFromPassword(Buffer.from(password));
  const A = encodePoint(scalarMultBase(a));
  const r = mod(leToNumber(sha512(prefix, scramble)), L);
  const R = encodePoint(scalarMultBase(r));
  const k = mod(leToNumber(sha512(R, A, scramble)), L);
  const S = mod(r + k * a, L);
  return Buffer.concat([R, numberToLE(S, 32)]);
}
