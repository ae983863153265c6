import crypto from 'node:crypto';
import { z } from 'zod';
import { secretRef, type SchemaContext, type SecretRef } from '../config/types.ts';

/**
 * `targets[].user_provisioning` (Postgres and MySQL/MariaDB targets): vigil gives every engineer their own
 * backend account, created and unlocked for their sessions and locked in between, so that the database's
 * own privileges (not vigil reading SQL text) decide what a session may do to other sessions and objects.
 */
export const userProvisioningSchema = (sc: SchemaContext) =>
  z.strictObject({
    /** The account vigil manages engineers' accounts with; used for nothing else (never for sessions). */
    admin: z.strictObject({ user: z.string().min(1), password: secretRef(sc).optional() }),
    /** Account name; `{user}` is the vigil user. Sanitized to a safe identifier (see accountName). */
    name_pattern: z
      .string()
      .default('vigil_{user}')
      .refine((p) => p.includes('{user}'), 'name_pattern must contain {user}'),
    /** vigil role → database roles its holders get (exactly these: others are revoked). */
    roles_map: z.record(z.string(), z.array(z.string().min(1))).default({}),
  });

export interface UserProvisioning {
  admin: { user: string; password?: SecretRef };
  name_pattern: string;
  roles_map: Record<string, string[]>;
}

/**
 * The backend account of vigil user `user`: the pattern filled in, lower-cased, every character outside
 * [a-z0-9_] replaced by `_`, so it is a plain identifier on both servers. A name that comes out exactly as
 * the pattern made it is used as it is (`vigil_alice`). Any other gets a tag, `_` and hex digits of
 * SHA-256 of the exact vigil user, so that `a.b`, `A_B` and `a_b` get different accounts:
 *
 * - a name that only sanitizing changed (and that fits whole beside the tag) gets 8 hex digits when the
 *   vigil user has fewer than 2^16 spellings with the same sanitized form (letter case, and which of
 *   `. _ @ + -` separates): the names of existing users stay as they were;
 * - a name that had to be shortened, or that has more spellings than that, gets 16: once characters are
 *   cut, anyone may choose a name with the same beginning and search for one whose tag matches, and 8
 *   digits (2^32 tries) would not stop that;
 * - a name that is already safe but ends like a tag (`bob_smith_365b77fb`) is tagged too, so an untagged
 *   name can never equal another user's tagged one.
 *
 * Bound: the three forms never equal one another (an untagged name never ends in `_` and 8 or 16 hex
 * digits; before the last 8 digits of a 16-digit tag comes a digit, not `_`). Two users share an account
 * only when both names carry tags of the same kind that agree: with 8 digits, only another spelling of
 * the same name can (fewer than 2^16 candidates for 2^32 tags, so any one exists with probability below
 * 2^-16, and searching cannot make one); with 16 digits, finding a second user for a given one takes about
 * 2^64 SHA-256 evaluations.
 */
export function accountName(pattern: string, user: string, maxLength: number): string {
  const raw = pattern.split('{user}').join(user);
  let safe = raw.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  if (!/^[a-z_]/.test(safe)) safe = `_${safe}`;
  if (safe === raw && safe.length <= maxLength && !TAG_SHAPE.test(safe)) return safe;
  const short = safe.length + 1 + SHORT_TAG <= maxLength && spellingBits(user) < 16;
  const digits = short ? SHORT_TAG : LONG_TAG;
  const tag = crypto.createHash('sha256').update(user).digest('hex').slice(0, digits);
  return `${safe.slice(0, maxLength - digits - 1)}_${tag}`;
}

const SHORT_TAG = 8;
const LONG_TAG = 16;
/** How a tagged account name ends (accountName): an untagged one must never look like this. */
const TAG_SHAPE = /_(?:[0-9a-f]{8}|[0-9a-f]{16})$/;
/** The characters of a vigil user name (identity/user-name.ts) that sanitizing turns into `_`. */
const SEPARATORS = /[._@+-]/;

/**
 * log2 of how many vigil user names sanitize to the same form as `user`: each letter in 2 cases, each
 * separator as any of 5. Infinity for a name outside the vigil user alphabet, whose other spellings are
 * not bounded.
 */
function spellingBits(user: string): number {
  let bits = 0;
  for (const c of user) {
    if (/[A-Za-z]/.test(c)) bits += 1;
    else if (SEPARATORS.test(c)) bits += Math.log2(5);
    else if (!/[0-9]/.test(c)) return Infinity;
  }
  return bits;
}

/** Database roles for the vigil roles a session holds: the union of their roles_map entries, sorted. */
export function databaseRoles(map: Record<string, string[]>, vigilRoles: readonly string[]): string[] {
  const out = new Set<string>();
  for (const r of vigilRoles) for (const d of map[r] ?? []) out.add(d);
  return [...out].sort();
}

/** A random login secret for one session: 32 bytes, base64url (plain ASCII, so SASLprep leaves it alone). */
export function sessionPassword(): string {
  return crypto.randomBytes(32).toString('base64url');
}
