import type { ProxyModule } from '../../src/gateway/proxy.ts';
import { sectionSchema, targetFields, type PostgresSection } from './config.ts';

/**
 * PostgreSQL wire-protocol proxy: stock psql/pgbench/drivers connect with a vigil client certificate (or
 * a token as password) over TLS; vigil logs in to the real server with the target's credentials and
 * relays byte for byte while recording every statement (`db.query`). See README in this folder.
 *
 * Only the config schema loads with this module (every CLI command reads the config); the listener is
 * imported when the gateway starts.
 */
export const postgresProxy: ProxyModule<PostgresSection> = {
  name: 'postgres',
  sectionSchema,
  targetFields,
  async create(services, section) {
    const { createPostgresListener } = await import('./listener.ts');
    return createPostgresListener(services, section);
  },
};
