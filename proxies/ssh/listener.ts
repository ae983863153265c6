import ssh2 from 'ssh2';
import type { ProxyInstance } from '../../src/gateway/proxy.ts';
import type { GatewayServices } from '../../src/gateway/services.ts';
import { SourceLimiter } from '../../src/gateway/preauth.ts';
import { serverAlgorithms, type SshSection } from './config.ts';
import { Connection, type ListenerContext } from './connection.ts';
import { sendDisconnect } from './wire.ts';
import { deliverIdentWhole } from './ident-line.ts';
import { PreAuthDeadlines, recordPreAuthProtocolError, recordPreAuthRefused, watchWriteStall } from '../../src/gateway/slow-clients.ts';
import { startsLikeProxyHeader } from '../../src/gateway/proxy-protocol.ts';

/** The SSH listener: one ssh2 server per accepted socket, capped while unauthenticated. */
export function createSshListener(services: GatewayServices, section: SshSection): ProxyInstance {
  const lc: ListenerContext = { services, section, hostKey: services.identity.sshHostKey(), algorithms: serverAlgorithms(section), live: new Set() };
  let unauthenticated = 0;
  // Both limits are read at each accept: a config reload may change them.
  const perSource = new SourceLimiter(() => services.config.pre_auth.max_per_source);
  let closed = false;
  return {
    handleConnection(socket, ctx) {
      const limit = services.config.gateway.max_unauthenticated;
      const tooMany = (limitKey: string) => recordPreAuthRefused(services, { protocol: 'ssh', source: ctx.remote, connId: ctx.id, phase: 'accept' }, 'too_many_unauthenticated', { limit: limitKey });
      if (closed || unauthenticated >= limit) {
        ctx.log.warn({ unauthenticated, limit }, 'too many unauthenticated connections; dropping');
        // A listener closing for shutdown refuses nobody's access: only the allowance is a refusal.
        if (!closed) tooMany('gateway.max_unauthenticated');
        socket.destroy();
        return;
      }
      // SSH has no error message before its key exchange: a source over its allowance is dropped.
      const releaseSource = perSource.acquire(ctx.remote.ip);
      if (!releaseSource) {
        ctx.log.warn({ source: ctx.remote.ip, limit: services.config.pre_auth.max_per_source }, 'too many unauthenticated connections from one address; dropping');
        tooMany('pre_auth.max_per_source');
        socket.destroy();
        return;
      }
      unauthenticated++;
      let counted = true;
      let client: ssh2.Connection | undefined;
      let connection: Connection | undefined;
      let stopStallWatch = () => {};
      // Slowloris: version exchange + key exchange (pre_auth.handshake_timeout) and the whole
      // unauthenticated phase (gateway.auth_timeout) each have a deadline, from accept.
      const deadlines = new PreAuthDeadlines(services, { protocol: 'ssh', source: ctx.remote, connId: ctx.id }, 'ident', (message) => {
        ctx.log.info({ phase: deadlines.phase }, `ssh ${message}`);
        if (client && deadlines.phase === 'auth') sendDisconnect(client, `vigil: ${message}.`);
        // Give the disconnect message a moment, but never wait on a client that does not read.
        setTimeout(() => socket.destroy(), client && deadlines.phase === 'auth' ? 200 : 0).unref();
      });
      const release = () => {
        deadlines.clear();
        if (counted) {
          counted = false;
          unauthenticated--;
          releaseSource();
          // Authenticated (or gone): a client that then stops reading is cut after write_stall_timeout.
          const stallMs = services.config.slow_clients.write_stall_timeout;
          if (!socket.destroyed && connection) {
            const c = connection;
            stopStallWatch = watchWriteStall(socket, stallMs, () => c.terminateSession('write_stall', `the client read none of the pending output for ${Math.round(stallMs / 1000)}s; the session is closed.`));
          }
        }
      };
      socket.once('close', () => {
        release();
        stopStallWatch();
      });
      const server = new ssh2.Server({ hostKeys: [lc.hostKey], ident: 'vigil', ...lc.algorithms });
      server.on('error', (e: Error) => ctx.log.debug({ err: e.message }, 'ssh error'));
      server.on('connection', (conn) => {
        client = conn;
        deadlines.phase = 'kex';
        // Malformed packets and failed key exchanges (no algorithm in common, a bad signature) before authentication.
        // Socket-level errors (a reset, a timeout) are a client gone, not something it sent.
        conn.on('error', (e: Error & { level?: string }) => {
          if (e.level !== 'socket' && e.level !== 'client-timeout') protocolError(e.message);
        });
        conn.once('handshake', () => {
          deadlines.handshakeDone();
          deadlines.phase = 'auth';
        });
        connection = new Connection(lc, conn, { id: ctx.id, source: ctx.remote, log: ctx.log, onAuthenticated: release });
      });
      // ssh2 refuses what it cannot decode before authentication by closing the connection, without a
      // word to anyone: recorded here (budgeted per source like every pre-authentication refusal).
      const protocolError = (error: string) => {
        if (counted) recordPreAuthProtocolError(services, { protocol: 'ssh', source: ctx.remote, connId: ctx.id, phase: deadlines.phase, error });
      };
      // ssh2 loses an identification line that comes in more than two reads: give it the line whole.
      deliverIdentWhole(socket, 'client', (why, first) => {
        // A PROXY header is the PROXY-header watch's to record (listeners.ts).
        if (!startsLikeProxyHeader(first)) protocolError(why);
      });
      server.injectSocket(socket);
    },
    async close() {
      closed = true;
      for (const c of lc.live) c.shutdown();
    },
  };
}
