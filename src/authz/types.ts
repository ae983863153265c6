import type { Principal } from '../identity/types.ts';

/** What a connection asks for. */
export interface AccessQuery {
  principal: Principal;
  /** Target name from config. */
  target: string;
  protocol: string;
  /** SSH login on the target. */
  login?: string;
  /** Database on the target (Postgres/MySQL). */
  database?: string;
}

export interface Permissions {
  portForwarding: boolean;
}

export type Decision =
  | {
      allow: true;
      /** `role` (standing access) or `grant`. */
      via: 'role' | 'grant';
      /** Grants that allow this access (the session is cut if any of them ends). */
      grantIds: string[];
      /** Access ends at this time (the earliest grant expiry), if a grant is involved. */
      expiresAt?: Date;
      permissions: Permissions;
      /** Roles that matched. */
      roles: string[];
    }
  | {
      allow: false;
      /** Machine reason for `auth.failure`: unknown_target, no_permission, login_not_allowed, database_not_allowed, locked, revoked, grant_expired (a grant-bound certificate whose grant ended). */
      reason: string;
      /** Client-facing text. Must not reveal whether the target exists when the user may not see it. */
      message: string;
    };

export interface Authorizer {
  /** Deny by default: only an explicit role or active grant allows. */
  authorize(query: AccessQuery): Promise<Decision>;
}
