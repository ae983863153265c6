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

/** Logins the SSH target itself accepts (`logins` plus `default_login`); empty = the target does not restrict. */
function targetLogins(target: TargetConfig): string[] {
  const logins = Array.isArray(target.logins) ? (target.logins as string[]) : [];
  const dflt = typeof target.default_login === 'string' ? [target.default_login] : [];
  return [...logins, ...dflt];
}

/**
 * May `role` log in as `login` on this SSH target? The role must list the login (or '*'), and when the
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
