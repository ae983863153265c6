import type { ProxyInstance } from '../../src/gateway/proxy.ts';
import type { GatewayServices } from '../../src/gateway/services.ts';
import { compileSecretPattern } from '../../src/config/redaction.ts';
import { SourceLimiter } from '../../src/gateway/preauth.ts';
import { backendAccounts } from '../../src/accounts/manager.ts';
import type { UserProvisioning } from '../../src/accounts/config.ts';
import { mysqlAccounts } from './provisioning.ts';
import { ConnectionIds } from './connection-ids.ts';
import { MysqlConnection, type MysqlSection, type MysqlShared } from './connection.ts';

/** The MySQL listener: connection ids and limits shared by its connections. */
export function createMysqlListener(services: GatewayServices, section: MysqlSection): ProxyInstance {
  const secret = compileSecretPattern(services.config.redaction.patterns);
  const shared: MysqlShared = {
    services,
    section,
    ids: new ConnectionIds(),
    unauthenticated: { count: 0 },
    perSource: new SourceLimiter(services.config.pre_auth.max_per_source),
    secretName: (name) => name !== '' && secret !== undefined && secret.test(name),
  };
  // Accounts a previous gateway left open (it died mid-session) are locked as this one starts.
  for (const t of services.config.targets) {
    if (t.protocol !== 'mysql' || !t.user_provisioning) continue;
    void backendAccounts(services).sweep(t, mysqlAccounts(t, t.user_provisioning as UserProvisioning, services.config.gateway.connect_timeout));
  }
  return {
    // The gateway catches a throw here, logs it and destroys the socket (src/gateway/gateway.ts).
    handleConnection(socket, ctx) {
      new MysqlConnection(shared, socket, ctx).start();
    },
    async close() {},
  };
}
