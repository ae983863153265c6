import type { VigilConfig, TargetConfig } from '../config/schema.ts';
import type { StateStore, AccessRecord } from '../store/types.ts';
import type { RoleConfig } from './config.ts';
import type { AccessQuery, Authorizer, Decision } from './types.ts';
import { databaseAllowed, loginAllowed, loginIsChosen, roleReachesTarget } from './policy.ts';

export type { Authorizer, Decision, AccessQuery } from './types.ts';
export { roleReachesTarget, loginAllowed, databaseAllowed, isRequestable, hasAnyRole } from './policy.ts';

/** Said for an unknown target and for a target the user may not use alike, so that existence does not leak. */
export const NO_SUCH_TARGET = 'No such target, or access denied.';

type Deny = Extract<Decision, { allow: false }>;

const deny = (reason: string, message: string): Deny => ({ allow: false, reason, message });

/** Is this access record a grant that allows access right now? */
export function grantIsLive(g: AccessRecord, now: number): boolean {
  return g.state === 'active' && g.expiresAt !== undefined && Date.parse(g.expiresAt) > now;
}

/** One way to reach the target: a standing role, or a role held through a grant. */
interface Path {
  role: RoleConfig;
  grant?: AccessRecord;
}

/**
 * Connect-time authorization. Deny by default: access needs a standing role from the certificate or an
 * active grant of the user whose role reaches the target with the login/database asked for. Locks and
 * revocations are checked first, against the store's cache (refreshed every ~250 ms by enforcement).
 *
 * A certificate issued for a grant (`principal.grantId`) is only good while that grant is active, and the
 * granted role it carries counts as grant access (cut when the grant ends), never as standing access.
 */
export function createAuthorizer(config: VigilConfig, store: StateStore): Authorizer {
  const roles = new Map(config.roles.map((r) => [r.name, r]));
  const targets = new Map(config.targets.map((t) => [`${t.protocol}/${t.name}`, t as TargetConfig]));

  return {
    async authorize(q: AccessQuery): Promise<Decision> {
      const p = q.principal;
      // Cheap (one PRAGMA) and makes the check exact even between enforcement passes.
      await store.refresh();
      if (store.isRevoked(p.certSerial)) return deny('revoked', 'Your vigil certificate has been revoked.');
      if (store.isLocked('user', p.user)) return deny('locked', 'Your vigil user is locked. Contact an administrator.');

      const target = targets.get(`${q.protocol}/${q.target}`);
      if (!target) return deny('unknown_target', NO_SUCH_TARGET);

      const now = Date.now();
      const grants = (await store.listAccess({ state: 'active', user: p.user })).filter((g) => g.user === p.user && grantIsLive(g, now));

      let boundGrant: AccessRecord | undefined;
      if (p.grantId) {
        boundGrant = grants.find((g) => g.id === p.grantId);
        if (!boundGrant) {
          const g = await store.getAccess(p.grantId);
          const ended = g?.state === 'revoked' ? 'revoked' : 'grant_expired';
          return deny(ended, `The access grant this certificate was issued for is no longer active (${ended === 'revoked' ? 'revoked' : 'expired'}).`);
        }
      }

      const paths: Path[] = [];
      for (const name of p.roles) {
        const role = roles.get(name);
        if (!role) continue;
        // The granted role in a grant-bound certificate is grant access, not standing access.
        if (boundGrant && boundGrant.role === name) continue;
        paths.push({ role });
      }
      for (const g of grants) {
        const role = roles.get(g.role);
        if (!role) continue;
        if (g.targets.length > 0 && !g.targets.includes(target.name)) continue;
        paths.push({ role, grant: g });
      }

      const reaching = paths.filter((x) => roleReachesTarget(x.role, target));
      if (reaching.length === 0) return deny('no_permission', NO_SUCH_TARGET);

      let allowed = reaching;
      // Deny by default: an SSH session always runs as some login, so one must be named and allowed.
      if (q.protocol === 'ssh' && q.login === undefined) {
        return deny('login_not_allowed', `Target ${target.name} has no default login; connect as LOGIN@${target.name}.`);
      }
      if (q.login !== undefined && loginIsChosen(target, q.login)) {
        allowed = allowed.filter((x) => loginAllowed(x.role, target, q.login!));
        if (allowed.length === 0) return deny('login_not_allowed', `Login "${q.login}" is not allowed on ${target.name}.`);
      }
      if (q.database !== undefined) {
        allowed = allowed.filter((x) => databaseAllowed(x.role, q.database!));
        if (allowed.length === 0) return deny('database_not_allowed', `Database "${q.database}" is not allowed on ${target.name}.`);
      }

      const portForwarding = target.port_forwarding === true && allowed.some((x) => x.role.port_forwarding);
      const standing = allowed.filter((x) => !x.grant);
      if (standing.length > 0 && !boundGrant) {
        return { allow: true, via: 'role', grantIds: [], permissions: { portForwarding }, roles: unique(standing.map((x) => x.role.name)) };
      }

      // The session depends on grants: rely on the one that lasts longest (plus the grant the certificate is
      // bound to), so that the session ends when the first of those ends.
      const viaGrant = allowed.filter((x) => x.grant);
      const relied = new Map<string, AccessRecord>();
      if (viaGrant.length > 0) {
        const longest = viaGrant.reduce((a, b) => (Date.parse(b.grant!.expiresAt!) > Date.parse(a.grant!.expiresAt!) ? b : a));
        relied.set(longest.grant!.id, longest.grant!);
      }
      if (boundGrant) relied.set(boundGrant.id, boundGrant);
      const expiresAt = new Date(Math.min(...[...relied.values()].map((g) => Date.parse(g.expiresAt!))));
      return {
        allow: true,
        via: viaGrant.length > 0 ? 'grant' : 'role',
        grantIds: [...relied.keys()],
        expiresAt,
        permissions: { portForwarding },
        roles: unique(allowed.map((x) => x.role.name)),
      };
    },
  };
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}
