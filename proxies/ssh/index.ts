import ssh2 from 'ssh2';
import type { ProxyModule, ProxyInstance } from '../../src/gateway/proxy.ts';
import { sshSectionSchema, sshTargetFields, type SshSection } from './config.ts';
import { Connection, type ListenerContext } from './connection.ts';

/**
 * The SSH proxy: terminates SSH with an ssh2 server on the gateway's listener socket, authenticates vigil
 * user certificates, and relays to targets (username routing `LOGIN@TARGET` or jump-host mode), recording
 * every channel. The gateway owns the TCP listener; each accepted socket is injected here.
 */
export const sshProxy: ProxyModule<SshSection> = {
  name: 'ssh',
  sectionSchema: () => sshSectionSchema(),
  targetFields: (sc) => sshTargetFields(sc),
  create(services, section): ProxyInstance {
    const lc: ListenerContext = { services, section, hostKey: services.identity.sshHostKey(), live: new Set() };
    const limit = services.config.gateway.max_unauthenticated;
    let unauthenticated = 0;
    let closed = false;
    return {
      handleConnection(socket, ctx) {
        if (closed || unauthenticated >= limit) {
          ctx.log.warn({ unauthenticated, limit }, 'too many unauthenticated connections; dropping');
          socket.destroy();
          return;
        }
        unauthenticated++;
        let counted = true;
        const release = () => {
          if (counted) {
            counted = false;
            unauthenticated--;
          }
        };
        socket.once('close', release);
        // Until the SSH greeting arrives the auth timer of the connection does not run yet: cover that gap.
        const greetTimer = setTimeout(() => socket.destroy(), services.config.gateway.auth_timeout);
        greetTimer.unref();
        socket.once('close', () => clearTimeout(greetTimer));
        const server = new ssh2.Server({ hostKeys: [lc.hostKey], ident: 'vigil' });
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
  },
};
