import type { ProxyInstance } from '../../src/gateway/proxy.ts';
import type { GatewayServices } from '../../src/gateway/services.ts';
import { compileSecretPattern } from '../../src/config/redaction.ts';
import { SourceLimiter } from '../../src/gateway/preauth.ts';
import { backendAccounts } from '../../src/accounts/manager.ts';
import type { UserProvisioning } from '../../src/accounts/config.ts';
import { postgresAccounts } from './provisioning.ts';
import { CancelKeys } from './cancel.ts';
import { ClientConnection, type ProxyShared } from './connection.ts';
import type { PostgresSection, PostgresTarget } from './config.ts';

/** The PostgreSQL listener: state shared by its connections (cancel keys, TLS context, limits). */
export function createPostgresListener(services: GatewayServices, section: PostgresSection): ProxyInstance {
  const shared: ProxyShared = {
    services,
    section,
    cancelKeys: new CancelKeys(),
    redact: compileSecretPattern(services.config.redaction.patterns),
    serverContext: () => services.identity.tlsContext(),
    unauthenticated: 0,
    perSource: new SourceLimiter(() => services.config.pre_auth.max_per_source),
    live: new Set(),
  };
  // Accounts a previous gateway left open (it died mid-session) are locked as this one starts. With
  // gateway.workers > 1 only the start's one sweeper worker does it (the others skip: src/gateway/workers/worker.ts).
  for (const t of services.config.targets) {
    if (t.protocol !== 'postgres' || !t.user_provisioning) continue;
    void backendAccounts(services).sweep(t, postgresAccounts(t as PostgresTarget, t.user_provisioning as UserProvisioning, services.config.gateway.connect_timeout));
  }
  return {
    // The gateway catches a throw here, logs it and destroys the socket (src/gateway/gateway.ts).
    handleConnection(socket, ctx) {
      new ClientConnection(shared, socket, ctx).start();
    },
    async close() {
      for (const c of [...shared.live]) c.destroy();
    },
  };
}
