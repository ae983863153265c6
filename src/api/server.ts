import https from 'node:https';
import type http from 'node:http';
import net from 'node:net';
import type tls from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import { Metrics } from '../metrics.ts';
import type { GatewayServices } from '../gateway/services.ts';
import type { Listen } from '../config/types.ts';
import { AccessService, callerCredential, type Actor } from '../access/service.ts';
import { AccessRefusedError } from '../access/errors.ts';
import { ApiError, HtmlBody, errorResponse, sendHtml, sendJson } from './http.ts';
import { matchRoute } from './routes.ts';
import { RefusalBudget } from './refusals.ts';
import { applyKeepAlive } from '../gateway/slow-clients.ts';
import { clientAddress, rememberClientAddress } from './client-address.ts';
import { balancerCheck, readProxyHeader, recordProxyHeaderRefusal } from '../gateway/proxy-protocol.ts';
import { openLinkStore, type LinkStore } from '../access/links.ts';
import { LINK_PATH_PREFIX, redactLinkPath, unauthenticatedLinkRefusal } from './link-routes.ts';
import { beginWatch, streamSession, watchSessionId, webSocketSink } from './watch.ts';
import { SessionNotFoundError } from '../sessions/control.ts';
import { createConsole } from '../console/server.ts';
import { StreamSlots, TOO_MANY_STREAMS, tooManyStreamsMessage } from './stream-slots.ts';
import { loginEndpoints } from '../identity/oidc/routes.ts';
import { CREDENTIAL_ENDED, credentialEnded, type CertCredential, type CredentialEnd } from './credential.ts';
import { foreignSite, stateChangeRefusal } from './cross-site.ts';

/** A live-stream client that falls this far behind is disconnected rather than buffered without bound. */
const STREAM_MAX_BUFFERED = 4 * 1024 * 1024;
const EVENTS_STREAM_PATH = '/v1/events/stream';
/** How soon an open stream notices that its certificate no longer speaks for anyone (as the console's live view). */
const STREAM_CHECK_MS = 1000;

type AuthResult = { ok: true; actor: Actor; credential: CertCredential } | { ok: false; error: ApiError; user?: string; certSerial?: string };

/** The API's words for a certificate refused after its chain was verified (credential.ts). */
const CERT_REFUSED: Record<CredentialEnd, string> = {
  cert_expired: 'Client certificate refused: it has expired.',
  cert_revoked: 'Client certificate refused: it has been revoked.',
  grant_ended: 'Client certificate refused: the grant it was issued for is no longer active.',
  user_locked: 'Your vigil user is locked. Contact an administrator.',
};

export interface ApiOptions {
  /**
   * gateway.workers > 1: whether a worker takes connections now. With none (all dead, restarting after a
   * pause) the shared listening sockets are closed and clients are refused while the API still answers.
   */
  listening?: () => boolean;
}

/**
 * The HTTPS API, authenticated by the caller's vigil client certificate (mTLS). TLS accepts any client
 * certificate (rejectUnauthorized false) so that a missing or foreign one gets a JSON 401 with a stable
 * code instead of a handshake failure; the certificate is then verified by the identity service (chain,
 * validity, revocation). Only the health checks (`/healthz`, `/readyz`, GET or HEAD) need no certificate.
 */
export async function startApi(services: GatewayServices, listen: Listen, ports: Record<string, number> = {}, opts: ApiOptions = {}): Promise<{ server: https.Server; port: number }> {
  const { log, events } = services;
  // The gateway's link store when it sends approval links; else opened on the first link used here.
  let ownLinks: LinkStore | undefined;
  const links = () => services.accessLinks ?? (ownLinks ??= openLinkStore(services.dataDir, services.store));
  // Rebuilt when a config reload swaps services.config, so new roles and approvers apply to the next call.
  let accessFor = services.config;
  let accessService = new AccessService({ config: services.config, store: services.store, events, identity: services.identity });
  const currentAccess = () => {
    if (services.config !== accessFor) {
      accessFor = services.config;
      accessService = new AccessService({ config: services.config, store: services.store, events, identity: services.identity });
    }
    return accessService;
  };
  const metrics = new Metrics(events, services.sessions, services.refusals, services.auditIndex, () => services.alerts, () => services.guardrails, services.sharedAuditIndex);
  const material = services.identity.tls();
  const server = https.createServer({
    cert: material.cert,
    key: material.key,
    ca: material.ca,
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
    // Slowloris: the TLS handshake and the request headers each have a deadline, checked every second.
    handshakeTimeout: services.config.pre_auth.handshake_timeout,
    connectionsCheckingInterval: 1000,
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = services.config.slow_clients.api_headers_timeout;
  server.on('connection', (socket: net.Socket) => applyKeepAlive(socket, services.config.slow_clients.keepalive));
  server.on('tlsClientError', (e) => log.debug({ err: e.message }, 'api: TLS handshake failed'));

  // Refused calls without a valid certificate are recorded one by one up to a budget per source address;
  // beyond it they get 429 and one summary event per source and minute (refusals.ts says why).
  // Health checkers and load balancers (budgets.allow) are never limited: each refusal is recorded.
  const refusals = new RefusalBudget(services.config.api.refused_calls_per_minute, (s) => {
    events
      .emit({
        type: 'api.request',
        outcome: 'failure',
        actor: { user: 'unknown', roles: [] },
        source: { ip: s.ip, via: 'api' },
        target: { name: 'api', protocol: 'https' },
        details: { status: 429, code: 'VIGIL_RATE_LIMITED', suppressed: s.suppressed, since: s.since.toISOString(), message: `${s.suppressed} further refused calls without a valid certificate in one minute` },
      })
      .catch((e) => log.error({ err: (e as Error).message }, 'api: could not record the refused-call summary'));
  }, Date.now, services.config.budgets?.allow ?? []);
  /** Record an unauthenticated refusal, or count it when its source is over budget (then answer 429). */
  function budgetRefusal(req: http.IncomingMessage, auth: Extract<AuthResult, { ok: false }>): { status: number; code: string; message: string; retryAfter?: number } {
    const ip = clientAddress(req.socket).ip;
    if (!refusals.take(ip)) {
      return { status: 429, code: 'VIGIL_RATE_LIMITED', message: 'Too many refused calls from your address; try again later.', retryAfter: refusals.retryAfter(ip) };
    }
    void recordRefusal(req, { user: auth.user, certSerial: auth.certSerial }, auth.error.status, auth.error.code, auth.error.message);
    return { status: auth.error.status, code: auth.error.code, message: auth.error.message };
  }

  // `vigil login` endpoints: the caller has no certificate yet; the IdP's answer is what proves who they are.
  const login = loginEndpoints(services, ports, (ip) => refusals.take(ip));

  const sourceOf = (req: http.IncomingMessage) => ({ ...clientAddress(req.socket), via: 'api' });

  async function authenticate(req: http.IncomingMessage): Promise<AuthResult> {
    const socket = req.socket as tls.TLSSocket;
    const peer = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : undefined;
    if (!peer || !peer.raw) {
      return { ok: false, error: new ApiError(401, 'VIGIL_NO_CLIENT_CERT', 'A vigil client certificate is required (mTLS).') };
    }
    const result = services.identity.verifyClientCertificate(peer.raw, clientAddress(socket).ip);
    if (!result.ok) {
      return { ok: false, error: new ApiError(401, 'VIGIL_UNAUTHENTICATED', `Client certificate refused: ${result.message}`), user: result.user, certSerial: result.certSerial };
    }
    const p = result.principal;
    // A certificate issued for a grant carries the granted role; it speaks for nobody once the grant ended.
    // Kept with the actor: streams and console sessions opened with it ask the same question again later.
    const credential: CertCredential = { user: p.user, certSerial: p.certSerial, notAfter: p.notAfter.getTime(), ...(p.grantId ? { grantId: p.grantId } : {}) };
    const ended = await credentialEnded(services, credential);
    if (ended) {
      const error = ended === 'user_locked' ? new ApiError(403, 'VIGIL_LOCKED', CERT_REFUSED[ended]) : new ApiError(401, 'VIGIL_UNAUTHENTICATED', CERT_REFUSED[ended]);
      return { ok: false, error, user: p.user, certSerial: p.certSerial };
    }
    return { ok: true, actor: { user: p.user, roles: p.roles, certSerial: p.certSerial, source: sourceOf(req), credential: callerCredential(p) }, credential };
  }

  /** A call refused before the access service saw it (no/bad certificate, bad input, unknown route). */
  async function recordRefusal(req: http.IncomingMessage, who: { user?: string; roles?: string[]; certSerial?: string }, status: number, code: string, message: string) {
    await events
      .emit({
        type: 'api.request',
        outcome: 'failure',
        actor: { user: who.user ?? 'unknown', roles: who.roles ?? [], ...(who.certSerial ? { cert_serial: who.certSerial } : {}) },
        source: sourceOf(req),
        target: { name: 'api', protocol: 'https' },
        details: { method: req.method, path: redactLinkPath((req.url ?? '').split('?')[0]), status, code, message },
      })
      .catch((e) => log.error({ err: (e as Error).message }, 'api: could not record refused call'));
  }

  // The web console (/console/): signs in with the same client certificate check, then works on its own
  // cookie session, so identities proven otherwise (OIDC) can use it too.
  // Live streams (audit stream, session watches, console live views) one user may hold open at once, one
  // bound for all three: each is re-checked every second and fed every event.
  const streamSlots = new StreamSlots();
  const consoleApp = createConsole(services, currentAccess, authenticate, budgetRefusal, (ip) => refusals.take(ip), streamSlots);

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://vigil.invalid');
    if (await consoleApp.handle(req, res, url)) return;
    // HEAD too: load balancers probe with it (HAProxy's `option httpchk HEAD`); refusing it would mark the
    // gateway down and record each probe as a refused call.
    const probe = req.method === 'GET' || req.method === 'HEAD';
    if (url.pathname === '/healthz' && probe) {
      const healthy = events.healthy;
      return sendJson(res, healthy ? 200 : 503, { status: healthy ? 'ok' : 'failing', audit: healthy ? 'ok' : 'unavailable' });
    }
    // Readiness for load balancers: live (healthz), not draining and (gateway.workers > 1) some worker
    // listening. Open like healthz: it says nothing else.
    if (url.pathname === '/readyz' && probe) {
      const noWorkers = opts.listening !== undefined && !opts.listening();
      const ready = events.healthy && !services.draining && !noWorkers;
      return sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : services.draining ? 'draining' : noWorkers ? 'no_workers' : 'failing' });
    }
    if (await login.handle(req, res, url.pathname)) return;
    const auth = await authenticate(req);
    if (!auth.ok) {
      const r = budgetRefusal(req, auth);
      if (r.status !== 429 && url.pathname.startsWith(LINK_PATH_PREFIX)) {
        // A link opened without an approver's certificate: the link alone decides nothing.
        const token = url.pathname.slice(LINK_PATH_PREFIX.length);
        await unauthenticatedLinkRefusal(links(), { source: sourceOf(req), user: auth.user, certSerial: auth.certSerial }, token, auth.error.code, auth.error.message).then((e) => events.emit(e)).catch((e) => log.error({ err: (e as Error).message }, 'api: could not record a refused link'));
      }
      if (r.retryAfter) res.setHeader('retry-after', String(r.retryAfter));
      return sendJson(res, r.status, { error: { code: r.code, message: r.message } });
    }
    const actor = auth.actor;
    if (url.pathname === '/metrics' && req.method === 'GET') {
      // Prometheus scrape: operators and auditors only (scrape with a vigil client certificate).
      if (!currentAccess().seesEverything(actor)) {
        const msg = 'Metrics are for admins and auditors.';
        await recordRefusal(req, { user: actor.user, roles: actor.roles, certSerial: actor.certSerial }, 403, 'VIGIL_FORBIDDEN', msg);
        return sendJson(res, 403, { error: { code: 'VIGIL_FORBIDDEN', message: msg } });
      }
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(metrics.render());
      return;
    }
    try {
      const m = matchRoute(req.method ?? '', url.pathname);
      // The message is recorded with the refusal: an approval link's path names it without its token.
      if (m === 'not_found') throw new ApiError(404, 'VIGIL_NO_ROUTE', `No API endpoint ${redactLinkPath(url.pathname)}.`);
      if (m === 'bad_method') throw new ApiError(405, 'VIGIL_BAD_METHOD', `${req.method} is not supported on ${redactLinkPath(url.pathname)}.`);
      // A certificate in a browser is presented to any site's request: a change needs proof it is not cross-site.
      const foreign = stateChangeRefusal(req, { forms: m.route.forms });
      if (foreign) throw foreign;
      const [status, body] = await m.route.handle({ actor, params: m.params, query: url.searchParams, req, services, access: currentAccess(), links });
      if (body instanceof HtmlBody) sendHtml(res, status, body.html);
      else sendJson(res, status, body);
    } catch (e) {
      const r = errorResponse(e);
      if (r.status === 500) log.error({ err: e, path: redactLinkPath(url.pathname) }, 'api: handler failed');
      // The access service already wrote access.refused for its refusals (link routes access.link_refused); record the rest here.
      if (!(e instanceof AccessRefusedError) && !(e as { recorded?: boolean }).recorded) {
        await recordRefusal(req, { user: actor.user, roles: actor.roles, certSerial: actor.certSerial }, r.status, r.code, r.message);
      }
      if (!res.headersSent) sendJson(res, r.status, { error: { code: r.code, message: r.message } });
      else res.destroy();
    }
  }

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    handle(req, res).catch((e) => {
      log.error({ err: e }, 'api: request failed');
      if (!res.headersSent) sendJson(res, 500, { error: { code: 'VIGIL_INTERNAL', message: 'Internal error.' } });
    });
  });

  // ---- live audit stream (WebSocket), admins and auditors only -----------------------------------------
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4096 });
  const streams = new Set<WebSocket>();
  /** Reserve one of `user`'s stream slots for this socket until it closes (whether or not it upgrades). */
  const takeStreamSlot = (user: string, socket: net.Socket): boolean => {
    const release = streamSlots.take(user);
    if (!release) return false;
    socket.once('close', release);
    return true;
  };

  async function upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): Promise<void> {
    const rejectUpgrade = (status: number, code: string, message: string, retryAfter?: number) => {
      const body = JSON.stringify({ error: { code, message } });
      socket.end(
        `HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : status === 403 ? 'Forbidden' : status === 429 ? 'Too Many Requests' : status === 503 ? 'Service Unavailable' : 'Not Found'}\r\n` +
          (retryAfter ? `retry-after: ${retryAfter}\r\n` : '') +
          `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    };
    const path = (req.url ?? '').split('?')[0];
    const auth = await authenticate(req);
    if (!auth.ok) {
      const r = budgetRefusal(req, auth);
      return rejectUpgrade(r.status, r.code, r.message, r.retryAfter);
    }
    const who = { user: auth.actor.user, roles: auth.actor.roles, certSerial: auth.actor.certSerial };
    // Cross-site WebSocket hijacking: a browser holding the certificate presents it to any page's socket,
    // and the same-origin policy does not apply to WebSockets; the Origin it always sends tells them apart.
    const foreign = foreignSite(req);
    if (foreign) {
      const msg = `Refused: the stream was opened from another site (${foreign}).`;
      await recordRefusal(req, who, 403, 'VIGIL_CROSS_SITE', msg);
      return rejectUpgrade(403, 'VIGIL_CROSS_SITE', msg);
    }
    const watchId = watchSessionId(path);
    if ((watchId !== undefined || path === EVENTS_STREAM_PATH) && !takeStreamSlot(auth.actor.user, socket)) {
      const msg = tooManyStreamsMessage(auth.actor.user);
      void recordRefusal(req, who, 429, TOO_MANY_STREAMS, msg);
      return rejectUpgrade(429, TOO_MANY_STREAMS, msg);
    }
    if (watchId !== undefined) return watchUpgrade(req, socket, head, auth.actor, auth.credential, watchId, rejectUpgrade);
    if (path !== EVENTS_STREAM_PATH) {
      const msg = `No WebSocket endpoint ${redactLinkPath(path)}.`;
      void recordRefusal(req, who, 404, 'VIGIL_NO_ROUTE', msg);
      return rejectUpgrade(404, 'VIGIL_NO_ROUTE', msg);
    }
    if (!currentAccess().seesEverything(auth.actor)) {
      const msg = 'Only administrators and auditors may read the live audit stream.';
      void recordRefusal(req, who, 403, 'VIGIL_FORBIDDEN', msg);
      return rejectUpgrade(403, 'VIGIL_FORBIDDEN', msg);
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      streams.add(ws);
      // The stream lasts only while the certificate that opened it would still be accepted (and its role).
      guardStream(ws, auth.credential, () => (currentAccess().seesEverything(auth.actor) ? undefined : 'role_removed'), (why, text) => {
        void recordRefusal(req, who, why === 'check_failed' ? 503 : 401, 'VIGIL_STREAM_ENDED', `Live audit stream closed: ${text}.`);
        ws.close(why === 'check_failed' ? 1013 : 1008, text);
      });
      const unsubscribe = events.subscribe((e) => {
        if (ws.readyState !== ws.OPEN) return;
        // Explicit backpressure: a reader that cannot keep up is cut off, never buffered without bound.
        if (ws.bufferedAmount > STREAM_MAX_BUFFERED) {
          ws.close(1013, 'reader too slow; reconnect');
          return;
        }
        ws.send(JSON.stringify(e));
      });
      ws.on('close', () => {
        unsubscribe();
        streams.delete(ws);
      });
      ws.on('error', () => ws.terminate());
      log.info({ user: auth.actor.user }, 'api: live audit stream opened');
    });
  }

  /** GET /v1/sessions/:id/watch (src/api/watch.ts): admins and auditors, recorded before the first byte. */
  async function watchUpgrade(
    req: http.IncomingMessage,
    socket: net.Socket,
    head: Buffer,
    actor: Actor,
    credential: CertCredential,
    id: string,
    rejectUpgrade: (status: number, code: string, message: string) => void,
  ): Promise<void> {
    const control = { sessions: services.sessions, events, seesEverything: (a: Actor) => currentAccess().seesEverything(a), isAdmin: (a: Actor) => currentAccess().isAdmin(a) };
    const fromStart = new URL(req.url ?? '/', 'https://vigil.invalid').searchParams.get('from') !== 'now';
    let session;
    try {
      session = await beginWatch(control, actor, id, fromStart);
    } catch (e) {
      const r = errorResponse(e);
      if (e instanceof SessionNotFoundError) void recordRefusal(req, { user: actor.user, roles: actor.roles, certSerial: actor.certSerial }, 404, 'VIGIL_NOT_FOUND', r.message);
      return rejectUpgrade(r.status, r.code, r.message);
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      streams.add(ws);
      ws.on('close', () => streams.delete(ws));
      const watch = streamSession(webSocketSink(ws), { events, sessions: services.sessions, recordings: services.recordings, log }, actor, session, fromStart);
      // Ended like the audit stream; session.watch_ended records why (access_ended, with the reason).
      guardStream(ws, credential, () => (currentAccess().seesEverything(actor) ? undefined : 'role_removed'), (why, text) => watch.end(why === 'check_failed' ? 1013 : 1008, text, why));
      log.info({ user: actor.user, session: id }, 'api: session watch opened');
    });
  }

  /**
   * Check an open stream's certificate again every STREAM_CHECK_MS, as the next API call would (expiry,
   * revocation, live grant, lock) and whether the role that let it in still does (a config reload), and
   * call `end` once when it no longer does. A check that cannot be made (the store is away) ends it too:
   * access that cannot be confirmed is not kept.
   */
  function guardStream(ws: WebSocket, credential: CertCredential, roleGone: () => 'role_removed' | undefined, end: (why: CredentialEnd | 'role_removed' | 'check_failed', text: string) => void): void {
    let busy = false;
    let ended = false;
    const stop = (why: CredentialEnd | 'role_removed' | 'check_failed', text: string) => {
      if (ended) return;
      ended = true;
      clearInterval(timer);
      log.info({ user: credential.user, why }, 'api: stream closed, its access ended');
      end(why, text);
    };
    const timer = setInterval(() => {
      if (busy || ended || ws.readyState !== ws.OPEN) return;
      busy = true;
      credentialEnded(services, credential)
        .then((why) => {
          if (why) return stop(why, CREDENTIAL_ENDED[why]);
          if (roleGone()) stop('role_removed', 'your role no longer allows this stream');
        })
        .catch((e) => {
          log.error({ err: (e as Error).message, user: credential.user }, 'api: could not check an open stream\'s certificate');
          stop('check_failed', 'your access cannot be checked now; reconnect');
        })
        .finally(() => (busy = false));
    }, STREAM_CHECK_MS);
    timer.unref();
    ws.once('close', () => {
      ended = true;
      clearInterval(timer);
    });
  }

  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    socket.on('error', () => {});
    upgrade(req, socket, head).catch((e) => {
      log.error({ err: e }, 'api: stream upgrade failed');
      socket.destroy();
    });
  });

  // Closing the API also ends keep-alive connections and live streams, so shutdown is not held open.
  const close = server.close.bind(server);
  server.close = ((cb?: (err?: Error) => void) => {
    close(cb);
    refusals.close();
    void ownLinks?.close();
    consoleApp.close();
    for (const ws of streams) ws.terminate();
    server.closeAllConnections();
    return server;
  }) as typeof server.close;

  // Behind a load balancer (api.proxy_protocol): a plain TCP listener reads the PROXY header from the
  // trusted balancers, then hands the socket to the HTTPS server; everyone else reaches it unchanged.
  const pp = services.config.api.proxy_protocol;
  const fromBalancer = balancerCheck({ proxy_protocol: pp } as Parameters<typeof balancerCheck>[0]);
  const front: net.Server = pp
    ? net.createServer((socket) => {
        socket.on('error', () => {});
        const peer = { ip: socket.remoteAddress ?? 'unknown', port: socket.remotePort ?? 0 };
        if (!fromBalancer(peer.ip)) return void server.emit('connection', socket);
        void readProxyHeader(socket, pp.header_timeout).then((h) => {
          if (socket.destroyed) return;
          // Shut down while the header was awaited: not served (the audit log may be sealed already).
          if (!front.listening) return void socket.destroy();
          if (!h.ok) {
            recordProxyHeaderRefusal(services, 'https', peer, h.reason);
            return void socket.destroy();
          }
          rememberClientAddress(socket, h.source ?? peer);
          server.emit('connection', socket);
        });
      })
    : server;
  if (front !== server) {
    const closeHttps = server.close;
    server.close = ((cb?: (err?: Error) => void) => {
      front.close();
      return closeHttps.call(server, cb);
    }) as typeof server.close;
  }
  const port = await new Promise<number>((resolve, reject) => {
    front.once('error', reject);
    front.listen(listen.port, listen.host, () => {
      front.off('error', reject);
      resolve((front.address() as net.AddressInfo).port);
    });
  });
  server.on('error', (e) => log.error({ err: e }, 'api: listener error'));
  log.info({ listen: `${listen.host}:${port}` }, 'api listener ready');
  return { server, port };
}
