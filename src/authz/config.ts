import { z } from 'zod';
import { duration, name } from '../config/types.ts';

/**
 * Roles: what a role reaches. Users carry standing roles in their certificates; a just-in-time grant adds
 * a role (optionally narrowed to some targets) for a bounded time.
 */
export function rolesSchema() {
  const role = z.strictObject({
    name: name(),
    description: z.string().optional(),
    /** Target names this role reaches ('*' = all). */
    targets: z.array(z.string()).default([]),
    /** Or targets whose labels include all of these. */
    target_labels: z.record(z.string(), z.string()).optional(),
    /** SSH logins, or database users other than the target's own `user`, allowed on those targets ('*' = any the target allows). */
    logins: z.array(z.string()).default([]),
    /** Databases allowed on those targets ('*' = any). */
    databases: z.array(z.string()).default(['*']),
    /** Allow `ssh -L` (direct-tcpip) through targets that allow it. */
    port_forwarding: z.boolean().default(false),
    /** Roles whose holders may approve requests for this role. Empty = not requestable. */
    approvers: z.array(z.string()).default([]),
    /** Number of distinct approvals a request for this role needs. */
    approvals_required: z.number().int().min(1).default(1),
    /** Longest grant of this role. */
    max_ttl: duration().default(4 * 3_600_000 as never),
  });
  return z.array(role).default([]);
}

export function accessSchema() {
  return z
    .strictObject({
      /** Users who are on call and may self-grant (break-glass) with a reason. */
      on_call: z.array(z.string()).default([]),
      /** Allow break-glass self-grants by on-call users. */
      break_glass: z.boolean().default(true),
      /** A pending request that nobody decides expires after this long. */
      request_ttl: z.union([duration()]).default(3_600_000 as never),
      /** Roles allowed to manage locks and revoke any grant. */
      admin_roles: z.array(z.string()).default(['admin']),
      /** Roles allowed to read every request, session and the live event stream (in addition to admins). */
      auditor_roles: z.array(z.string()).default(['auditor']),
      /**
       * Roles a name given with `--by NAME` holds on the local CLI, which has no certificate to prove them
       * (`--by-roles` overrides). Local data-dir access is admin-equivalent anyway; this keeps the four-eyes
       * rules (approver roles, no self-approval) meaningful for operators acting on the gateway host.
       */
      local_roles: z.record(z.string(), z.array(z.string())).default({}),
      /** Telling approvers where they are: notifications with one-time links, reminders, escalation. */
      approvals: approvalsSchema(),
    })
    .prefault({});
}

/**
 * `access.approvals`: a pending request is sent to the `notify` notifiers with one-time approve/deny links
 * (usable only with an approver's client certificate); nobody deciding within `remind_after` sends a
 * reminder, within `escalate_after` a message to `escalate_to`; the decision is posted back.
 */
export function approvalsSchema() {
  return z
    .strictObject({
      /** Notifier names (the `notifiers:` section) that get every new request. Empty = no notifications. */
      notify: z.array(z.string().min(1)).default([]),
      /** Remind the `notify` notifiers when a request is still pending this long after it was filed. */
      remind_after: duration().optional(),
      /** Tell `escalate_to` when a request is still pending this long after it was filed. */
      escalate_after: duration().optional(),
      escalate_to: z.array(z.string().min(1)).default([]),
      /** Base URL of vigil's API as approvers reach it (default: https://<api listen address>). */
      link_base: z.string().url().optional(),
      /** A link stops working after this long (and never outlives the request's decision window). */
      link_ttl: duration().default(3_600_000 as never),
    })
    .prefault({});
}

export type RoleConfig = z.output<ReturnType<typeof rolesSchema>>[number];
export type AccessConfig = z.output<ReturnType<typeof accessSchema>>;
