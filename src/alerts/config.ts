import { z } from 'zod';
import { duration, name, secretRef, filePath, type SchemaContext } from '../config/types.ts';
import { isValidPattern } from '../config/redaction.ts';
import { EVENT_CATALOG } from '../events/catalog.ts';

/**
 * Config of the `notifiers:` and `alerts:` sections (issue 19 shape). Kept here rather than in
 * config/schema.ts so that the alert code and its config change together.
 */

/** Retry policy shared by every notifier: exponential backoff with jitter, then the dead-letter list. */
const delivery = {
  /** Attempts before a notification is moved to the dead letters (`vigil alerts list`). */
  max_attempts: z.number().int().min(1).max(100).default(8),
  /** First retry delay; each further retry doubles it (plus up to 50% jitter), capped by backoff_max. */
  backoff_initial: duration().default(1000 as never),
  backoff_max: duration().default(300_000 as never),
  /** One attempt (connect + answer) fails after this long. */
  timeout: duration().default(10_000 as never),
};

/** A URL given inline or, when it is itself a secret (Slack webhook URLs are), as a secret reference. */
const urlOrSecret = (sc: SchemaContext) => z.union([z.string().url(), secretRef(sc)]);

export function notifiersSchema(sc: SchemaContext) {
  const webhook = z.strictObject({
    name: name(),
    kind: z.literal('webhook'),
    url: urlOrSecret(sc),
    /** HMAC-SHA256 key of the `X-Vigil-Signature: t=<unix>,v1=<hex>` header (over "t.body"). */
    secret: secretRef(sc).optional(),
    ...delivery,
  });
  const slack = z.strictObject({ name: name(), kind: z.literal('slack'), url: urlOrSecret(sc), ...delivery });
  const pagerduty = z.strictObject({
    name: name(),
    kind: z.literal('pagerduty'),
    routing_key: secretRef(sc),
    url: z.string().url().default('https://events.pagerduty.com/v2/enqueue'),
    severity: z.enum(['critical', 'error', 'warning', 'info']).default('error'),
    ...delivery,
  });
  const syslog = z.strictObject({
    name: name(),
    kind: z.literal('syslog'),
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535),
    /** TLS (RFC 5425) when set; `ca` pins the receiver's CA (else the system store). */
    tls: z.union([z.boolean(), z.strictObject({ ca: filePath(sc).optional(), server_name: z.string().optional() })]).default(false),
    /** RFC 5424 facility number (default 13: log audit). */
    facility: z.number().int().min(0).max(23).default(13),
    ...delivery,
  });
  return z
    .array(z.discriminatedUnion('kind', [webhook, slack, pagerduty, syslog]))
    .default([])
    .superRefine((list, ctx) => {
      const seen = new Set<string>();
      list.forEach((n, i) => {
        if (seen.has(n.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `notifiers: the name ${n.name} is used twice` });
        seen.add(n.name);
      });
    });
}

const scalar = z.union([z.string(), z.number(), z.boolean()]);

/**
 * A condition on one `details.NAME` value: a scalar means equality; an object compares numbers
 * (`{ gt: 100000 }` for "returned more than 100k rows"), lists (`in`) or text (`regex`, case-insensitive).
 */
const detailCondition = z.union([
  scalar,
  z
    .strictObject({
      eq: scalar.optional(),
      ne: scalar.optional(),
      gt: z.number().optional(),
      gte: z.number().optional(),
      lt: z.number().optional(),
      lte: z.number().optional(),
      in: z.array(scalar).min(1).optional(),
      regex: z.string().refine(isValidPattern, 'not a valid regular expression').optional(),
    })
    .refine((c) => Object.keys(c).length > 0, 'a details condition needs at least one of eq, ne, gt, gte, lt, lte, in, regex'),
]);
export type DetailCondition = z.output<typeof detailCondition>;

const stringOrList = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).transform((v) => (Array.isArray(v) ? v : [v]));

/** Event fields a rule may group by (dotted paths into the envelope; `details.X` reaches details). */
const groupField = z.string().regex(/^(type|outcome|session_id|actor\.(user|roles|cert_serial)|source\.(ip|via)|target\.(name|protocol|host|login|database)|details\.[A-Za-z0-9_]+)$/, 'group_by: an envelope field such as actor.user, source.ip, target.name or details.NAME');

export const alertRulesSchema = () =>
  z
    .array(
      z.strictObject({
        name: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/i, 'an alert name is letters, digits, - and _'),
        match: z
          .strictObject({
            /** Event types; `auth.*` matches a type prefix. */
            type: stringOrList.refine(
              (ts) => ts.every((t) => (t.endsWith('.*') ? Object.keys(EVENT_CATALOG).some((k) => k.startsWith(t.slice(0, -1))) : t in EVENT_CATALOG)),
              'match.type: not an event type of the catalog (or a prefix.* of one)',
            ),
            user: stringOrList.optional(),
            /** Any of the actor's roles. */
            role: stringOrList.optional(),
            target: stringOrList.optional(),
            /** Every label must equal the target's label in the config. */
            target_labels: z.record(z.string(), z.string()).optional(),
            outcome: z.union([z.enum(['success', 'failure', 'unknown']), z.array(z.enum(['success', 'failure', 'unknown']))]).transform((v) => (Array.isArray(v) ? v : [v])).optional(),
            /** Class of details.sql from the database's own parser (recorder/reports/classify-sql.ts). */
            statement_class: stringOrList.pipe(z.array(z.enum(['ddl', 'dml', 'config', 'privilege', 'procedure', 'read', 'session', 'other', 'unclassified']))).optional(),
            /** Case-insensitive regular expression over details.command or details.sql. */
            command: z.string().refine(isValidPattern, 'not a valid regular expression').optional(),
            /** Conditions on details fields, all of which must hold: `{ rows: { gt: 100000 } }`. */
            details: z.record(z.string().regex(/^[A-Za-z0-9_]+$/, 'a details field name'), detailCondition).optional(),
            /**
             * true: only events of sessions admitted through a just-in-time grant or break-glass; false: only
             * events of sessions admitted by a standing role ("DDL outside an approved grant").
             */
            via_grant: z.boolean().optional(),
          }),
        group_by: z.array(groupField).default([]),
        /** Fires when the group's count of matching events in (t - window, t] reaches it. */
        threshold: z.number().int().min(1).default(1),
        window: duration().default(60_000 as never),
        notify: z.array(z.string()).default([]),
        /**
         * Fires once for a matching session.start whose session is still open this long after it began
         * ("session longer than 2 h"); a session that ends earlier never fires.
         */
        longer_than: duration().optional(),
        /**
         * Fires when the group (group_by) had no matching event for this long, or never ("first access of a
         * user to a target in 30 days"). Last-seen times are kept in state.db, so a restart does not re-fire.
         */
        first_in: duration().optional(),
      }),
    )
    .default([])
    .superRefine((list, ctx) => {
      const seen = new Set<string>();
      list.forEach((r, i) => {
        if (r.longer_than !== undefined && r.first_in !== undefined) ctx.addIssue({ code: 'custom', path: [i], message: 'alerts: a rule has longer_than or first_in, not both' });
        if (r.longer_than !== undefined && !r.match.type.every((t) => t === 'session.start'))
          ctx.addIssue({ code: 'custom', path: [i, 'match', 'type'], message: 'alerts: longer_than watches sessions: match.type must be session.start' });
        if ((r.longer_than !== undefined || r.first_in !== undefined) && r.threshold !== 1)
          ctx.addIssue({ code: 'custom', path: [i, 'threshold'], message: 'alerts: longer_than and first_in fire per event; threshold must stay 1' });
        if (r.first_in !== undefined && r.group_by.length === 0)
          ctx.addIssue({ code: 'custom', path: [i, 'group_by'], message: 'alerts: first_in needs group_by (first access of what? e.g. [actor.user, target.name])' });
        if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `alerts: the name ${r.name} is used twice` });
        seen.add(r.name);
      });
    });

export type NotifierConfig = z.output<ReturnType<typeof notifiersSchema>>[number];
export type AlertRuleConfig = z.output<ReturnType<typeof alertRulesSchema>>[number];
