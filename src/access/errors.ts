import { VigilError } from '../errors.ts';

/**
 * What kind of refusal an access action got; the API turns it into an HTTP status, the CLI into a
 * message. The stable machine code is `code` (VIGIL_SELF_APPROVAL, VIGIL_NOT_APPROVER, …).
 */
export type RefusalKind = 'invalid' | 'forbidden' | 'conflict' | 'not_found';

/** An access lifecycle action that policy refuses. Always recorded as an `access.refused` event. */
export class AccessRefusedError extends VigilError {
  readonly kind: RefusalKind;
  constructor(code: string, kind: RefusalKind, message: string) {
    super(code, message);
    this.kind = kind;
  }
}

export const refused = {
  reasonRequired: (what: string) => new AccessRefusedError('VIGIL_REASON_REQUIRED', 'invalid', `A reason is required to ${what}.`),
  badText: (field: string) =>
    new AccessRefusedError('VIGIL_BAD_TEXT', 'invalid', `The ${field} contains control characters or malformed Unicode; write it as plain text.`),
  unknownRole: (role: string) => new AccessRefusedError('VIGIL_UNKNOWN_ROLE', 'invalid', `No role "${role}" is configured.`),
  notRequestable: (role: string) =>
    new AccessRefusedError('VIGIL_NOT_REQUESTABLE', 'invalid', `Role "${role}" cannot be requested: it has no approvers.`),
  ttlTooLong: (role: string, max: string) =>
    new AccessRefusedError('VIGIL_TTL_TOO_LONG', 'invalid', `The requested duration exceeds the maximum of ${max} for role "${role}".`),
  badTtl: () => new AccessRefusedError('VIGIL_BAD_TTL', 'invalid', 'The requested duration must be a positive length of time.'),
  unknownTarget: (target: string) => new AccessRefusedError('VIGIL_UNKNOWN_TARGET', 'invalid', `No target "${target}" is configured.`),
  targetNotInRole: (target: string, role: string) =>
    new AccessRefusedError('VIGIL_TARGET_NOT_IN_ROLE', 'invalid', `Role "${role}" does not reach target "${target}".`),
  notFound: (id: string) => new AccessRefusedError('VIGIL_NOT_FOUND', 'not_found', `No access request "${id}".`),
  alreadyDecided: (id: string, state: string) =>
    new AccessRefusedError('VIGIL_ALREADY_DECIDED', 'conflict', `Request ${id} was already decided (it is ${state}).`),
  requestExpired: (id: string) =>
    new AccessRefusedError('VIGIL_REQUEST_EXPIRED', 'conflict', `Request ${id} expired before anyone decided it; ask for a new one.`),
  selfApproval: () => new AccessRefusedError('VIGIL_SELF_APPROVAL', 'forbidden', 'You cannot decide a request you filed or that grants you access.'),
  notApprover: (role: string) =>
    new AccessRefusedError('VIGIL_NOT_APPROVER', 'forbidden', `You do not hold a role that may approve requests for "${role}".`),
  alreadyApproved: (id: string) =>
    new AccessRefusedError('VIGIL_ALREADY_APPROVED', 'conflict', `You already approved request ${id}; it needs approvals from other people.`),
  breakGlassDisabled: () =>
    new AccessRefusedError('VIGIL_BREAK_GLASS_DISABLED', 'forbidden', 'Break-glass access is turned off by policy.'),
  notOnCall: () => new AccessRefusedError('VIGIL_NOT_ON_CALL', 'forbidden', 'Only users on call may use break-glass access.'),
  breakGlassForOthers: () => new AccessRefusedError('VIGIL_FORBIDDEN', 'forbidden', 'Break-glass access can only be taken for yourself.'),
  forOthers: () =>
    new AccessRefusedError('VIGIL_FORBIDDEN', 'forbidden', 'You may only request access for yourself.'),
  notAdmin: (what: string) => new AccessRefusedError('VIGIL_NOT_ADMIN', 'forbidden', `Only administrators may ${what}.`),
  notActive: (id: string, state: string) =>
    new AccessRefusedError('VIGIL_NOT_ACTIVE', 'conflict', `Grant ${id} is not active (it is ${state}).`),
  mayNotRevoke: () =>
    new AccessRefusedError('VIGIL_FORBIDDEN', 'forbidden', 'Only the grant holder, an approver of its role or an administrator may revoke it.'),
  notHolder: (id: string) => new AccessRefusedError('VIGIL_FORBIDDEN', 'forbidden', `Only the holder of grant ${id} may get certificates for it.`),
  noSuchLock: (user: string) => new AccessRefusedError('VIGIL_NOT_FOUND', 'not_found', `User "${user}" is not locked.`),
};
