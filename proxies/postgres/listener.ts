import tls from 'node:tls';
import type { ProxyInstance } from '../../src/gateway/proxy.ts';
import type { GatewayServices } from '../../src/gateway/services.ts';
import { compileSecretPattern } from '../../src/config/redaction.ts';
import { CancelKeys } from './cancel.ts';
import { ClientConnection, type ProxyShared } from './connection.ts';
import type { PostgresSection } from './config.ts';

/** The PostgreSQL listener: state shared by its connections (cancel keys, TLS context, limits). */
export function createPostgresListener(services: GatewayServices, section: PostgresSection): ProxyInstance {
  let cached: { cert: string; key: string; ca: string; context: tls.SecureContext } | undefined;
  const shared: ProxyShared = {
    services,
    section,
    cancelKeys: new CancelKeys(),
    redact: compileSecretPattern(services.config.redaction.patterns),
    // One SecureContext for all connections, rebuilt only when the identity hands out new material.
    // identity.tls() returns a fresh object per call, so compare the PEM strings (a few ms of key and
    // CA parsing per connection otherwise).
    serverContext() {
      const m = services.identity.tls();
      if (!cached || cached.cert !== m.cert || cached.key !== m.key || cached.ca !== m.ca) {
        cached = { cert: m.cert, key: m.key, ca: m.ca, context: tls.createSecureContext({ cert: m.cert, key: m.key, ca: m.ca }) };
      }
      return cached.context;
    },
    unauthenticated: 0,
    live: new Set(),
  };
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
