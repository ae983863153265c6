import type { ProxyInstance } from '../../src/gateway/proxy.ts';
import type { GatewayServices } from '../../src/gateway/services.ts';
import { compileSecretPattern } from '../../src/config/redaction.ts';
import { SourceLimiter } from '../../src/gateway/preauth.ts';
import { backendAccounts } from '../../src/accounts/manager.ts';
import type { UserProvisioning } from '../../src/accounts/config.ts';
import { mysqlAccounts } from './provisioning.ts';
import { ConnectionIds } from './connection-ids.ts';
import { MysqlConnection, type MysqlSection, type MysqlShared } from './connection.ts';
import { ServerIdentities } from './server-identity.ts';
import { connectBackend } from './backend.ts';
import { encodePacket } from './framing.ts';
import { CLIENT, COM } from './wire.ts';
import { readSecret, type SecretRef } from '../../src/config/types.ts';
import type { TargetConfig } from '../../src/config/schema.ts';

/** The target whose server the greeting shows: the configured one, else the first MySQL target. */
function greetingTarget(services: GatewayServices, section: MysqlSection): TargetConfig | undefined {
  const targets = services.config.targets.filter((t) => t.protocol === 'mysql');
  if (section.greeting_target !== undefined) {
    const named = targets.find((t) => t.name === section.greeting_target);
    if (!named) services.log.warn({ greeting_target: section.greeting_target }, 'mysql.greeting_target names no MySQL target; the greeting uses the fallback identity');
    return named;
  }
  return targets[0];
}

/** Log in to the target with its own credentials, keep its greeting, quit. Failures leave the fallback. */
async function probe(services: GatewayServices, t: TargetConfig, identities: ServerIdentities): Promise<void> {
  try {
    const backend = await connectBackend(
      {
        host: t.host as string,
        port: t.port as number,
        user: t.user as string,
        password: t.password ? readSecret(t.password as SecretRef) : '',
        tls: t.tls ? { ca: t.tls_ca as string | undefined } : false,
        serverPublicKey: t.server_public_key_file ? readSecret({ file: t.server_public_key_file as string }) : undefined,
        allowPublicKeyRetrieval: t.allow_public_key_retrieval === true,
        name: t.name,
      },
      CLIENT.LONG_PASSWORD | CLIENT.PROTOCOL_41 | CLIENT.TRANSACTIONS | CLIENT.SECURE_CONNECTION | CLIENT.PLUGIN_AUTH | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT.CONNECT_ATTRS,
      0,
      services.config.gateway.connect_timeout,
      { _client_name: 'vigil', program_name: 'vigil-greeting-probe' },
    );
    identities.learn(t.name, backend.greeting);
    backend.socket.end(encodePacket(0, Buffer.from([COM.QUIT])));
  } catch (e) {
    services.log.warn({ target: t.name, err: (e as Error).message }, 'could not learn the MySQL greeting target\'s server identity; the greeting uses the fallback until a session reaches it');
  }
}

/** The MySQL listener: connection ids and limits shared by its connections. */
export function createMysqlListener(services: GatewayServices, section: MysqlSection): ProxyInstance {
  const secret = compileSecretPattern(services.config.redaction.patterns);
  const shared: MysqlShared = {
    services,
    section,
    ids: new ConnectionIds(),
    unauthenticated: { count: 0 },
    perSource: new SourceLimiter(() => services.config.pre_auth.max_per_source),
    secretName: (name) => name !== '' && secret !== undefined && secret.test(name),
    identities: new ServerIdentities(undefined, section.server_version),
  };
  // Accounts a previous gateway left open (it died mid-session) are locked as this one starts. With
  // gateway.workers > 1 only the start's one sweeper worker does it (the others skip: src/gateway/workers/worker.ts).
  for (const t of services.config.targets) {
    if (t.protocol !== 'mysql' || !t.user_provisioning) continue;
    void backendAccounts(services).sweep(t, mysqlAccounts(t, t.user_provisioning as UserProvisioning, services.config.gateway.connect_timeout));
  }
  const shown = greetingTarget(services, section);
  if (shown) {
    shared.identities = new ServerIdentities(shown.name, section.server_version);
    shared.identities.probe([probe(services, shown, shared.identities)]);
  }
  return {
    // The gateway catches a throw here, logs it and destroys the socket (src/gateway/gateway.ts).
    handleConnection(socket, ctx) {
      new MysqlConnection(shared, socket, ctx).start();
    },
    async close() {},
  };
}
