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
 * [a-z0-9_] replaced by `_`, so it is a plain identifier on both servers. When that changed the name (or
 * it had to be shortened), a hash of the exact vigil user is appended: `a.b` and `a_b` get different
 * accounts, never a shared one.
 */
export function accountName(pattern: string, user: string, maxLength: number): string {
  const raw = pattern.split('{user}').join(user);
  let safe = raw.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  if (!/^[a-z_]/.test(safe)) safe = `_${safe}`;
  if (safe === raw && safe.length <= maxLength) return safe;
  const tag = crypto.createHash('sha256').update(user).digest('hex').slice(0, 8);
  return `${safe.slice(0, maxLength - tag.length - 1)}_${tag}`;
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
