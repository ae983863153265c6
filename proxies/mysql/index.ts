/**
 * MySQL / MariaDB proxy module. Clients connect with TLS and a vigil client certificate (or a vigil
 * token as password); the user field names the target (`TARGET` or `TARGET/dbuser`); see README.md.
 */
import { z } from 'zod';
import type { ProxyModule } from '../../src/gateway/proxy.ts';
import { listenerBase, secretRef, size, filePath } from '../../src/config/types.ts';
import type { MysqlSection } from './connection.ts';
import { userProvisioningSchema } from '../../src/accounts/config.ts';

export const mysqlProxy: ProxyModule<MysqlSection> = {
  name: 'mysql',
  sectionSchema: () =>
    z.strictObject({
      ...listenerBase('0.0.0.0:3307'),
      /** Version string in vigil's greeting instead of the greeting target's own (normally unset). */
      server_version: z.string().optional(),
      /** The target whose server identity (version string, capabilities, charset) the greeting shows; default the first MySQL target. */
      greeting_target: z.string().optional(),
      /** Largest client packet accepted (reassembled); larger ones get ERR 1153 and the connection closes. */
      max_packet: size().default(64 * 1024 * 1024 as never),
      /** Offer CLIENT_QUERY_ATTRIBUTES to clients. Only when every target is MySQL >= 8.0.23: vigil strips
       *  attributes from COM_QUERY for servers without it, but refuses them on COM_STMT_EXECUTE. */
      query_attributes: z.boolean().default(false),
    }) as unknown as z.ZodType<MysqlSection>,
  targetFields: (sc) => ({
    /** Default database when the client names none. */
    database: z.string().optional(),
    /** Database user vigil logs in as (credentials never come from the client). */
    user: z.string(),
    password: secretRef(sc).optional(),
    /** Other database users a client may pick with `TARGET/dbuser` (authz `login`), with their passwords. */
    logins: z.record(z.string(), secretRef(sc)).optional(),
    /** TLS to the backend; verified against `tls_ca` when given. */
    tls: z.boolean().default(false),
    tls_ca: filePath(sc).optional(),
    /** RSA public key (PEM) of a MySQL 8 server, for caching_sha2_password / sha256_password full auth without TLS. */
    server_public_key_file: filePath(sc).optional(),
    /** Without TLS or `server_public_key_file`, ask the server for its RSA key over plaintext. Off: a man in the
     *  middle could substitute its own key and read the password (README "caching_sha2_password without TLS"). */
    allow_public_key_retrieval: z.boolean().default(false),
    /** A MariaDB user per engineer instead of the shared `user` (src/accounts; README "Per-engineer database accounts"). */
    user_provisioning: userProvisioningSchema(sc).optional(),
  }),
  // Only the config schema loads with this module (every CLI command reads the config); the listener is
  // imported when the gateway starts.
  async create(services, section) {
    const { createMysqlListener } = await import('./listener.ts');
    return createMysqlListener(services, section);
  },
};
