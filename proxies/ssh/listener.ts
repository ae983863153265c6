import ssh2 from 'ssh2';
import type { ProxyInstance } from '../../src/gateway/proxy.ts';
import type { GatewayServices } from '../../src/gateway/services.ts';
import { SourceLimiter } from '../../src/gateway/preauth.ts';
import { serverAlgorithms, type SshSection } from './config.ts';
import { Connection, type ListenerContext } from './connection.ts';

/** The SSH listener: one ssh2 server per accepted socket, capped while unauthenticated. */
export function createSshListener(services: GatewayServices, section: SshSection): ProxyInstance {
  const lc: ListenerContext = { services, section, hostKey: services.identity.sshHostKey(), algorithms: serverAlgorithms(section), live: new Set() };
  const limit = services.config.gateway.max_unauthenticated;
  let unauthenticated = 0;
  const perSource = new SourceLimiter(services.config.pre_auth.max_per_source);
  let closed = false;
  return {
    handleConnection(socket, ctx) {
      if (closed || unauthenticated >= limit) {
        ctx.log.warn({ unauthenticated, limit }, 'too many unauthenticated connections; dropping');
        socket.destroy();
        return;
      }
      // SSH has no error message before its key exchange: a source over its allowance is dropped.
      const releaseSource = perSource.acquire(ctx.remote.ip);
      if (!releaseSource) {
        ctx.log.warn({ source: ctx.remote.ip, limit: services.config.pre_auth.max_per_source }, 'too many unauthenticated connections from one address; dropping');
        socket.destroy();
        return;
      }
      unauthenticated++;
      let counted = true;
      const release = () => {
        if (counted) {
          counted = false;
          unauthenticated--;
          releaseSource();
        }
      };
      socket.once('close', release);
      // Until the SSH greeting arrives the auth timer of the connection does not run yet: cover that gap.
      const greetTimer = setTimeout(() => socket.destroy(), services.config.gateway.auth_timeout);
      greetTimer.unref();
      socket.once('close', () => clearTimeout(greetTimer));
      const server = new ssh2.Server({ hostKeys: [lc.hostKey], ident: 'vigil', ...lc.algorithms });
      server.on('error', (e: Error) => ctx.log.debug({ err: e.message }, 'ssh error'));
      server.on('connection', (conn) => {
        clearTimeout(greetTimer);
        new Connection(lc, conn, { id: ctx.id, source: ctx.remote, log: ctx.log, onAuthenticated: release });
      });
      server.injectSocket(socket);
    },
    async close() {
      closed = true;
      for (const c of lc.live) c.shutdown();
    },
  };
}
