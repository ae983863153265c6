/**
 * MySQL / MariaDB proxy module. Clients connect with TLS and a vigil client certificate (or a vigil
 * token as password); the user field names the target (`TARGET` or `TARGET/dbuser`); see README.md.
 */
import { z } from 'zod';
import type { ProxyModule } from '../../src/gateway/proxy.ts';
import { listenerBase, secretRef, size, filePath } from '../../src/config/types.ts';
import { ConnectionIds } from './connection-ids.ts';
import { MysqlConnection, type MysqlSection, type MysqlShared } from './session.ts';
import { compileSecretPattern } from '../../src/config/redaction.ts';

export const mysqlProxy: ProxyModule<MysqlSection> = {
  name: 'mysql',
  sectionSchema: () =>
    z.strictObject({
      ...listenerBase('0.0.0.0:3307'),
      /** Version string in vigil's greeting (clients show it; the backend's version is not known yet then). */
      server_version: z.string().default('8.0.36-vigil'),
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
    /** RSA public key (PEM) of a MySQL 8 server, for caching_sha2_password full auth without TLS. Fetched from the server when absent. */
    server_public_key_file: filePath(sc).optional(),
  }),
  create(services, section) {
    const secret = compileSecretPattern(services.config.redaction.patterns);
    const shared: MysqlShared = {
      services,
      section,
      ids: new ConnectionIds(),
      unauthenticated: { count: 0 },
      secretName: (name) => name !== '' && secret !== undefined && secret.test(name),
    };
    return {
      // The gateway catches a throw here, logs it and destroys the socket (src/gateway/gateway.ts).
      handleConnection(socket, ctx) {
        new MysqlConnection(shared, socket, ctx).start();
      },
      async close() {},
    };
  },
};
