import { z } from 'zod';
import { duration, size, listen, name, proxyProtocol, secretRef, timer, type SchemaContext } from './types.ts';
export { listenerBase } from './types.ts';
import { isValidPattern } from './redaction.ts';
import { parseCidr } from '../identity/cidr.ts';
import { EVENT_CATALOG } from '../events/catalog.ts';
import type { ProxyConfigPart } from './proxy-config.ts';
import { rolesSchema, accessSchema } from '../authz/config.ts';
import { compileTemplate } from '../../recorder/export/template.ts';
import { parseSchedule } from '../../recorder/reports/cron.ts';
import { alertRulesSchema, notifiersSchema } from '../alerts/config.ts';
import { guardrailsSchema } from '../guardrails/config.ts';
import { identitySchema } from '../identity/oidc/config.ts';
import { storeSchema } from '../store/config.ts';
import { availableCpus } from './cpus.ts';

/** gateway.workers when the config does not say: one worker per CPU this process may use (at most 256). */
export function defaultWorkers(): number {
  return Math.min(256, availableCpus());
}

/** `vigil audit export --format template:NAME`: a line with ${field} placeholders (recorder/export/template.ts). */
const exportTemplate = z
  .strictObject({
    /** Short names for fields used in the line: `{ src: source.ip }`. */
    fields: z.record(z.string(), z.string()).default({}),
    line: z.string().min(1),
  })
  .superRefine((t, ctx) => {
    try {
      compileTemplate(t);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message, path: ['line'] });
    }
  });

/** `recording.storage`. Credentials only by reference (`{ env }` / `{ file }`), never inline. */
export const recordingStorageSchema = (sc: SchemaContext) =>
  z
    .discriminatedUnion('kind', [
      z.strictObject({ kind: z.literal('local') }),
      z.strictObject({
        kind: z.literal('s3'),
        bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'expected an S3 bucket name'),
        /**
         * Key prefix, e.g. `recordings/`; keys are `<prefix><session id>/ch<channel>.cast`. A folder: `recordings`
         * means `recordings/` (a purge never reaches a sibling such as `recordings-old/`). vigil deletes under it
         * only objects in its own layout, so the bucket may be shared.
         */
        prefix: z.string().max(512).refine((p) => !p.startsWith('/'), 'a key prefix does not start with /').default(''),
        /** S3-compatible servers (MinIO, Ceph, R2, …): their URL; unset for AWS S3. */
        endpoint: z.string().url().optional(),
        region: z.string().min(1).default('us-east-1'),
        /** `http://endpoint/bucket/key` instead of `http://bucket.endpoint/key` (most S3-compatible servers). */
        force_path_style: z.boolean().default(false),
        /** Both or neither; neither: the AWS SDK's default chain (instance role, AWS_* variables, …). */
        access_key_id: secretRef(sc).optional(),
        secret_access_key: secretRef(sc).optional(),
        /** Size of each multipart part but the last (S3 minimum 5 MiB). */
        part_size: size()
          .default(8 * 1024 * 1024 as never)
          .refine((n) => n >= 5 * 1024 * 1024 && n <= 5 * 1024 * 1024 * 1024, 'part_size must be between 5MiB and 5GiB (S3 limits)'),
        /** Bytes not yet in a part are copied to a pending object this often: a replica lost mid-session loses at most this much recording. */
        flush_interval: timer()
          .default(10_000 as never)
          .refine((ms) => ms >= 100, 'flush_interval must be at least 100ms'),
        /** S3 requests in flight at once for the whole gateway (memory: at most this many parts). */
        max_concurrent_requests: z.number().int().min(1).max(64).default(4),
        request_timeout: timer({ positive: true }).default(30_000 as never),
        retry: z
          .strictObject({
            /** Failures in a row before recording.upload_failed is recorded (uploading goes on at max_delay). */
            attempts: z.number().int().min(1).default(5),
            base_delay: timer().default(1000 as never),
            max_delay: timer().default(60_000 as never),
          })
          .prefault({}),
        /** Keep the local file after the upload completed (default: removed; the object is the recording). */
        keep_local: z.boolean().default(false),
        /**
         * An upload whose manifest (`<key>.upload`, refreshed by a live upload at least every quarter of
         * this) is older than this belongs to a lost replica: any replica completes it from its parts and
         * pending objects (recording.stored, salvaged: true).
         */
        salvage_after: duration()
          .default(15 * 60_000 as never)
          .refine((ms) => ms >= 1000, 'salvage_after must be at least 1s'),
      }).refine((s) => !!s.access_key_id === !!s.secret_access_key, { message: 'give both access_key_id and secret_access_key, or neither', path: ['access_key_id'] }),
    ])
    .default({ kind: 'local' });

/** Fields common to every target, whatever its protocol. */
function targetCommon(protocol: string) {
  return {
    name: name(),
    protocol: z.literal(protocol),
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535),
    labels: z.record(z.string(), z.string()).default({}),
    description: z.string().optional(),
    /** Roles that may use this target (in addition to roles that name it). */
    roles: z.array(z.string()).default([]),
  };
}

/** `proxies`: the protocols this vigil is assembled with (app/config.ts); each adds its section and target kind. */
export function buildConfigSchema(sc: SchemaContext, proxies: readonly ProxyConfigPart[] = []) {
  const targetVariants = proxies.map((p) => z.strictObject({ ...targetCommon(p.name), ...p.targetFields(sc) }));
  const target = z.discriminatedUnion('protocol', targetVariants as unknown as [z.ZodObject, ...z.ZodObject[]]);

  const proxySections: Record<string, z.ZodType> = {};
  for (const p of proxies) proxySections[p.name] = p.sectionSchema(sc).prefault({});

  return z.strictObject({
    /** Where keys, the audit log, recordings and state live. */
    data_dir: z.string().default('./data'),
    /** Shared state (certificates, revocations, access, locks, holds): sqlite in data_dir, or postgres for replicas. */
    store: storeSchema(sc),
    log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info') }).prefault({}),
    gateway: z
      .strictObject({
        /** Subject alternative names of the gateway's TLS server certificate. */
        tls_sans: z.array(z.string()).default(['localhost', '127.0.0.1']),
        /** How long live sessions may finish after SIGTERM. */
        shutdown_drain: timer().default(10_000 as never),
        /**
         * Behind a load balancer: on SIGTERM, `GET /readyz` answers 503 for this long while every listener
         * still accepts, so the balancer stops sending new connections before any listener closes.
         */
        drain_notice: timer().default(0 as never),
        /** Backend connect timeout. */
        connect_timeout: timer({ positive: true }).default(10_000 as never),
        /** Unauthenticated connections are dropped after this long. */
        auth_timeout: timer({ positive: true }).default(15_000 as never),
        /** Limit of connections that have not authenticated yet, per listener. */
        max_unauthenticated: z.number().int().min(1).default(256),
        /** Sessions without traffic are ended after this long (0 = never). */
        idle_timeout: timer().default(0 as never),
        /**
         * `vigil serve` runs the protocol proxies in this many processes sharing the listeners (Node cluster);
         * the primary keeps the API, console, audit writer and alerts. Default: the CPUs this process may run
         * on: its CPU affinity, and its cgroup's CPU quota when it has one (src/config/cpus.ts).
         * 1: one process, no cluster. In-process gateways (startGateway, tests) are one process whatever it says.
         */
        workers: z.number().int().min(1).max(256).default(defaultWorkers),
      })
      .prefault({}),
    /**
     * Limits while a connection has not authenticated yet (all protocols). The deadline of the whole
     * phase is `gateway.auth_timeout`, the total per listener `gateway.max_unauthenticated`.
     */
    pre_auth: z
      .strictObject({
        /** Largest client message accepted before authentication (Postgres password/SASL, MySQL handshake response). */
        max_message_size: size().default(16 * 1024 as never),
        /** Unauthenticated connections at once from one source address, per listener. */
        max_per_source: z.number().int().min(1).default(32),
        /**
         * Deadline of the handshake phase, from accept: Postgres SSLRequest + TLS handshake + startup packet,
         * MySQL SSLRequest + TLS handshake, SSH version exchange + key exchange, API TLS handshake.
         */
        handshake_timeout: timer({ positive: true }).default(5_000 as never),
      })
      .prefault({}),
    /** Slow and half-open clients on every listener (issue #16 item 4). */
    slow_clients: z
      .strictObject({
        /**
         * A session whose client has not taken any of the gateway's pending output for this long (it stopped
         * reading a large result) is ended with reason `write_stall` (0 = never). Meanwhile the backend is
         * paused (backpressure), so memory per connection stays bounded.
         */
        write_stall_timeout: timer().default(60_000 as never),
        /** TCP keepalive on accepted sockets: first probe after this much silence (0 = off); finds half-open peers. */
        keepalive: timer().default(30_000 as never),
        /** API: a request's headers must all arrive within this long (slowloris on headers); checked every second. */
        api_headers_timeout: timer({ positive: true }).default(5_000 as never),
      })
      .prefault({}),
    certs: z
      .strictObject({
        default_ttl: duration().default(3_600_000 as never),
        max_ttl: duration().default(12 * 3_600_000 as never),
        /** Allowance for clocks that disagree, applied to not_before only (an expired certificate is refused at once). */
        clock_skew: duration().default(60_000 as never),
      })
      .prefault({}),
    audit: z
      .strictObject({
        segment_max_bytes: size().default(64 * 1024 * 1024 as never),
        checkpoint_interval: timer().default(1000 as never),
        checkpoint_every: z.number().int().min(1).default(1000),
        /** Group commit window: events arriving within it share one fsync (awaited decisions wait at most this long). */
        commit_window: timer().default(5 as never),
        /** The same for groups of fire-and-forget events only (queries, file operations): fewer fsyncs. */
        background_commit_window: timer().default(25 as never),
        /**
         * A statement (or command) still running this long after it was forwarded gets a start event
         * (`db.query.start`), so live monitoring sees long work before it ends (0 = never).
         */
        long_running_after: timer().default(1000 as never),
        /**
         * `batched`: statements are forwarded at once and their records join the next group commit (a
         * crash loses the records of at most `background_commit_window` + one fsync). `strict`: each
         * statement's or command's record is durable before its first byte reaches the backend.
         */
        durability: z.enum(['batched', 'strict']).default('batched'),
        /**
         * Strict mode: commit window of appends that hold a statement back (0 = commit as soon as the previous
         * fsync is done; sessions appending meanwhile still share the next one).
         */
        strict_commit_window: timer().default(0 as never),
        /**
         * Where every signed head is published once durable, so `vigil audit verify --witness` can prove the
         * log was not cut back or rolled back: a file on storage this host cannot rewrite, and/or an HTTP
         * endpoint (POST JSON head; GET returns the newest).
         */
        witness: z
          .strictObject({
            file: z.string().optional(),
            url: z.string().url().optional(),
            timeout: timer({ positive: true }).default(5000 as never),
          })
          .optional(),
        /**
         * The search index (audit/index.sqlite) the gateway keeps up with the log, off the hot path (in a
         * worker thread): every `interval` it indexes newly committed records, `batch` per transaction.
         * Off: `vigil audit search` still catches the index up itself before answering.
         */
        index: z
          .strictObject({
            enabled: z.boolean().default(true),
            interval: timer().default(1000 as never),
            batch: z.number().int().min(1).default(2000),
          })
          .prefault({}),
      })
      .prefault({}),
    /**
     * How long audit events are kept (`vigil audit purge`): `default` and per event class (a type or a dot
     * prefix, e.g. `db.query: 90d`; longest prefix wins), `recordings` for session recordings (unset: kept
     * forever). `floor` (at least 90d) is the minimum: nothing younger is ever purged, whatever a class says.
     * Legal holds (`vigil hold add`) override all of it.
     */
    retention: z
      .object({
        floor: duration()
          .default(90 * 86_400_000 as never)
          .refine((ms) => ms >= 90 * 86_400_000, 'retention.floor must be at least 90d'),
        default: duration().default(400 * 86_400_000 as never),
        recordings: duration().optional(),
        /** The gateway purges by itself once a day (off: only `vigil audit purge` does). */
        auto_purge: z.boolean().default(false),
      })
      .catchall(duration())
      .superRefine((r, ctx) => {
        // A misspelt class would silently fall back to the default: every class must name event types.
        const types = Object.keys(EVENT_CATALOG);
        for (const cls of Object.keys(r)) {
          if (cls === 'floor' || cls === 'default' || cls === 'recordings' || cls === 'auto_purge') continue;
          if (!types.some((t) => t === cls || t.startsWith(cls + '.'))) {
            ctx.addIssue({ code: 'custom', path: [cls], message: `retention.${cls}: no event type is or starts with "${cls}."` });
          }
        }
      })
      .prefault({}),
    recording: z
      .strictObject({
        /** Also record keystrokes (`i` events). Off by default: passwords typed at prompts would be stored. */
        keystrokes: z.boolean().default(false),
        /**
         * Output of a channel without a terminal (`ssh host 'cat dump.gz'`) once it is not text: `summary`
         * records its size and SHA-256 from the first non-text byte on; `full` records it like text.
         */
        binary_output: z.enum(['summary', 'full']).default('summary'),
        /**
         * Where recordings are kept: `local` (default) in <data_dir>/recordings; `s3`: uploaded while they are
         * written to S3-compatible object storage (recorder/recordings/s3.ts, README "Recordings in object
         * storage"), the local file being the first copy until the upload is complete.
         */
        storage: recordingStorageSchema(sc),
      })
      .prefault({}),
    redaction: z
      .strictObject({
        /** Case-insensitive regular expressions; parameters and columns whose names match are masked. */
        patterns: z.array(z.string().refine(isValidPattern, 'not a valid regular expression')).default(['pass(word)?', 'secret', 'token', 'api_?key', 'credential']),
      })
      .prefault({}),
    api: z
      .strictObject({
        enabled: z.boolean().default(true),
        listen: listen().prefault('127.0.0.1:8443'),
        /** Refused calls without a valid certificate recorded one by one per source address and minute. */
        refused_calls_per_minute: z.number().int().min(1).default(30),
        /** Behind a load balancer: read the PROXY protocol header from these sources (README "Load balancers"). */
        proxy_protocol: proxyProtocol().optional(),
      })
      .prefault({}),
    /** The web console served by the API server under /console/ (README "Web console"). */
    console: z
      .strictObject({
        enabled: z.boolean().default(true),
        /** How long a console sign-in lasts before signing in again. */
        session_ttl: duration().default(8 * 3_600_000 as never),
      })
      .prefault({}),
    budgets: z
      .strictObject({
        /**
         * Unauthenticated refusals (bad or missing credential, unknown cancel key) recorded one by one per
         * listener protocol, source address and window; the rest are counted into one
         * `auth.failure.summary` per source and window. Successes never consume budget.
         */
        refusals_per_window: z.number().int().min(1).default(20),
        window: duration().default(60_000 as never),
        /** Addresses or CIDR blocks (health checkers, load balancers) whose refusals are always recorded one by one. */
        allow: z.array(z.string().refine((c) => parseCidr(c) !== undefined, 'not an IP address or CIDR block')).default([]),
      })
      .prefault({}),
    export: z
      .strictObject({
        templates: z.record(z.string().regex(/^[a-z0-9][a-z0-9_-]*$/i, 'a template name is letters, digits, - and _'), exportTemplate).default({}),
      })
      .prefault({}),
    /**
     * Access-review reports the gateway writes by itself into <data_dir>/reports/ (`vigil report access`
     * on a schedule): `schedule` is a 5-field cron expression in UTC, @hourly/@daily/@weekly/@monthly, or
     * `@every DURATION`; each report covers the `period` before its run time.
     */
    reports: z
      .strictObject({
        schedules: z
          .array(
            z.strictObject({
              name: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/i, 'a report name is letters, digits, - and _'),
              schedule: z.string().superRefine((text, ctx) => {
                try {
                  parseSchedule(text);
                } catch (e) {
                  ctx.addIssue({ code: 'custom', message: (e as Error).message });
                }
              }),
              period: duration().default(30 * 86_400_000 as never),
              format: z.enum(['html', 'md', 'json']).default('html'),
            }),
          )
          .default([])
          .superRefine((list, ctx) => {
            const seen = new Set<string>();
            list.forEach((r, i) => {
              if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `reports.schedules: the name ${r.name} is used twice` });
              seen.add(r.name);
            });
          }),
      })
      .prefault({}),
    /** Where alert firings are delivered (README "Alerts and notifications"). */
    notifiers: notifiersSchema(sc),
    /** Alert rules evaluated over the event stream, off the proxies' hot path. */
    alerts: alertRulesSchema(),
    /** Statement and command rules the proxies ask before forwarding (README "Guardrails"). */
    guardrails: guardrailsSchema(),
    /** Sign-in with the company's OpenID Provider (`vigil login`; src/identity/oidc/config.ts). */
    identity: identitySchema(sc),
    ...proxySections,
    targets: z.array(target).default([]),
    roles: rolesSchema(),
    access: accessSchema(),
  }).superRefine((c, ctx) => {
    // Targets (per protocol) and roles are referred to by name, like notifiers, alerts and guardrails
    // (checked in their own schemas): a second one of the same name would silently shadow the first.
    const once = <T>(section: string, items: readonly T[], key: (x: T) => string, what: (x: T) => string) => {
      const seen = new Set<string>();
      items.forEach((x, i) => {
        const k = key(x);
        if (seen.has(k)) ctx.addIssue({ code: 'custom', path: [section, i, 'name'], message: `${section}: ${what(x)} is defined twice` });
        seen.add(k);
      });
    };
    once('targets', c.targets, (t) => `${t.protocol}/${t.name}`, (t) => `the ${t.protocol} target ${t.name}`);
    once('roles', c.roles, (r) => r.name, (r) => `the role ${r.name}`);
    // A rule notifying a notifier that does not exist would fire into nothing.
    const names = new Set(c.notifiers.map((n) => n.name));
    c.alerts.forEach((r, i) => r.notify.forEach((n, j) => {
      if (!names.has(n)) ctx.addIssue({ code: 'custom', path: ['alerts', i, 'notify', j], message: `alerts.${r.name}: no notifier named ${n}` });
    }));
    for (const key of ['notify', 'escalate_to'] as const) {
      c.access.approvals[key].forEach((n, j) => {
        if (!names.has(n)) ctx.addIssue({ code: 'custom', path: ['access', 'approvals', key, j], message: `access.approvals.${key}: no notifier named ${n}` });
      });
    }
  });
}

export type VigilConfig = Omit<z.output<ReturnType<typeof buildConfigSchema>>, 'targets'> & { targets: TargetConfig[] } & Record<string, unknown>;
/** A target as proxies see it: common fields typed, protocol-specific fields (from the proxy's targetFields) by name. */
export interface TargetConfig {
  name: string;
  protocol: string;
  host: string;
  port: number;
  labels: Record<string, string>;
  description?: string;
  roles: string[];
  [field: string]: unknown;
}
