import type { TargetConfig } from '../config/schema.ts';
import type { RoleConfig } from './config.ts';

/**
 * Pure policy questions about roles and targets, shared by the connect-time authorizer and the access
 * lifecycle (a request for a role narrowed to targets must name targets the role reaches).
 */

/** Does `role` reach `target`: by name (or '*'), by labels (all of role.target_labels on the target), or
 *  because the target lists the role. */
export function roleReachesTarget(role: RoleConfig, target: TargetConfig): boolean {
  if (role.targets.includes('*') || role.targets.includes(target.name)) return true;
  if (target.roles.includes(role.name)) return true;
  const want = role.target_labels;
  if (want && Object.keys(want).length > 0) {
    for (const [k, v] of Object.entries(want)) if (target.labels[k] !== v) return false;
    return true;
  }
  return false;
}

/**
 * Logins the target itself accepts; empty = the target does not restrict. SSH targets list `logins` plus
 * `default_login`; database targets log in as `user`, plus the keys of a `logins` map of other users.
 */
function targetLogins(target: TargetConfig): string[] {
  const out: string[] = [];
  if (Array.isArray(target.logins)) out.push(...(target.logins as string[]));
  else if (target.logins && typeof target.logins === 'object') out.push(...Object.keys(target.logins));
  if (typeof target.default_login === 'string') out.push(target.default_login);
  if (target.protocol !== 'ssh' && typeof target.user === 'string') out.push(target.user);
  return out;
}

/**
 * Is the login a choice the client made (and so subject to the role's `logins`)? Always for SSH; for a
 * database target only when it is not the target's configured `user`, which every role reaching the
 * target may use.
 */
export function loginIsChosen(target: TargetConfig, login: string): boolean {
  if (target.protocol === 'ssh') return true;
  return typeof target.user !== 'string' || login !== target.user;
}

/**
 * May `role` log in as `login` on this target? The role must list the login (or '*'), and when the
 * target lists logins, the login must be one of them too. A role with no logins allows none.
 */
export function loginAllowed(role: RoleConfig, target: TargetConfig, login: string): boolean {
  const onTarget = targetLogins(target);
  if (onTarget.length > 0 && !onTarget.includes(login)) return false;
  return role.logins.includes('*') || role.logins.includes(login);
}

export function databaseAllowed(role: RoleConfig, database: string): boolean {
  return role.databases.includes('*') || role.databases.includes(database);
}

/** A role can be requested just in time only when someone can approve it. */
export function isRequestable(role: RoleConfig): boolean {
  return role.approvers.length > 0;
}

export function hasAnyRole(held: readonly string[], wanted: readonly string[]): boolean {
  return held.some((r) => wanted.includes(r));
}
