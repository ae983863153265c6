import { z } from 'zod';
import { listenerBase, secretRef, filePath, size, type SchemaContext, type SecretRef } from '../../src/config/types.ts';
import type { TargetConfig } from '../../src/config/schema.ts';
import { userProvisioningSchema, type UserProvisioning } from '../../src/accounts/config.ts';

/**
 * Configuration of the Postgres listener and of `protocol: postgres` targets.
 *
 * Routing: the client's `dbname` names the target. `dbname=TARGET` connects to the target's configured
 * `database`; `dbname=TARGET/DBNAME` picks another database on the same target (authorized through the
 * role's `databases`). Target names cannot contain `/`, so the split is unambiguous.
 */
export function sectionSchema(_sc: SchemaContext) {
  return z.strictObject({
    ...listenerBase('0.0.0.0:6432'),
    /** Largest accepted protocol message in either direction. */
    max_message_size: size().default(64 * 1024 * 1024 as never),
    /** Startup parameters never passed to the backend. A replication connection is refused whatever this lists. */
    blocked_startup_params: z.array(z.string()).default(['replication']),
  });
}

export function targetFields(sc: SchemaContext) {
  return {
    /** Database used when the client names only the target. */
    database: z.string().default('postgres'),
    /** Backend login role (the engineer never sees its password). */
    user: z.string(),
    password: secretRef(sc).optional(),
    /** TLS to the backend: `verify-full` checks the chain (`tls_ca` or system roots) and the host name. */
    tls: z.enum(['disable', 'require', 'verify-full']).default('disable'),
    tls_ca: filePath(sc).optional(),
    /** Name expected in the backend certificate (default: `host`). */
    tls_servername: z.string().optional(),
    /** Development only: accept unencrypted client connections (token as password) for this target. */
    allow_plaintext: z.boolean().default(false),
    /** A backend role per engineer instead of the shared `user` (src/accounts; README "Per-engineer database accounts"). */
    user_provisioning: userProvisioningSchema(sc).optional(),
    /**
     * Largest protocol message in either direction once logged in to this target (default:
     * postgres.max_message_size). A bigger one ends the session with SQLSTATE 54000 naming this key.
     */
    max_message_size: size().optional(),
    /**
     * application_name of the backend connection, so a DBA sees who is behind it in pg_stat_activity.
     * Placeholders: {user} (the vigil identity, required), {client_app} (the client's own
     * application_name, or `unknown`), {target}.
     */
    application_name: z
      .string()
      .default(DEFAULT_APPLICATION_NAME)
      .refine((v) => v.includes('{user}'), { message: 'application_name must contain {user}: the engineer identity is always shown' }),
  };
}

export const DEFAULT_APPLICATION_NAME = '{user} via {client_app}';

/** The server keeps the first NAMEDATALEN-1 bytes of application_name. */
const APPLICATION_NAME_BYTES = 63;

/**
 * The backend's application_name from a target's template. The client's part is shortened when the
 * whole would be cut by the server, so a long client name can never push the engineer's name out.
 */
export function renderApplicationName(template: string, v: { user: string; clientApp: string | undefined; target: string }): string {
  const render = (app: string) => template.replace(/\{(user|client_app|target)\}/g, (_m, k: string) => (k === 'user' ? v.user : k === 'target' ? v.target : app));
  let app = v.clientApp || 'unknown';
  let out = render(app);
  while (Buffer.byteLength(out) > APPLICATION_NAME_BYTES && app.length > 0) {
    app = app.slice(0, -1);
    out = render(app);
  }
  return out;
}

export type PostgresSection = z.output<ReturnType<typeof sectionSchema>>;

export interface PostgresTarget extends TargetConfig {
  database: string;
  user: string;
  password?: SecretRef;
  tls: 'disable' | 'require' | 'verify-full';
  tls_ca?: string;
  tls_servername?: string;
  allow_plaintext: boolean;
  user_provisioning?: UserProvisioning;
  max_message_size?: number;
  application_name: string;
}

/** `TARGET` or `TARGET/DBNAME`. */
export function parseDatabase(dbname: string): { target: string; database?: string } {
  const slash = dbname.indexOf('/');
  if (slash < 0) return { target: dbname };
  return { target: dbname.slice(0, slash), database: dbname.slice(slash + 1) || undefined };
}
