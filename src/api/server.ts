import https from 'node:https';
import type http from 'node:http';
import net from 'node:net';
import type tls from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import { Metrics } from '../metrics.ts';
import type { GatewayServices } from '../gateway/services.ts';
import type { Listen } from '../config/types.ts';
import { AccessService, type Actor } from '../access/service.ts';
import { AccessRefusedError } from '../access/errors.ts';
import { grantIsLive } from '../authz/index.ts';
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
import { loginEndpoints } from '../identity/oidc/routes.ts';

/** A live-stream client that falls this far behind is disconnected rather than buffered without bound. */
const STREAM_MAX_BUFFERED = 4 * 1024 * 1024;
const EVENTS_STREAM_PATH = '/v1/events/stream';

type AuthResult = { ok: true; actor: Actor } | { ok: false; error: ApiError; user?: string; certSerial?: string };

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
 * validity, revocation). Only `GET /healthz` needs no certificate.
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
    if (services.store.isRevoked(p.certSerial)) {
      return { ok: false, error: new ApiError(401, 'VIGIL_UNAUTHENTICATED', 'Client certificate refused: it has been revoked.'), user: p.user, certSerial: p.certSerial };
    }
    if (p.grantId) {
      // A certificate issued for a grant carries the granted role; it speaks for nobody once the grant ended.
      const g = await services.store.getAccess(p.grantId);
      if (!g || !grantIsLive(g, Date.now())) {
        return { ok: false, error: new ApiError(401, 'VIGIL_UNAUTHENTICATED', 'Client certificate refused: the grant it was issued for is no longer active.'), user: p.user, certSerial: p.certSerial };
      }
    }
    if (services.store.isLocked('user', p.user)) {
      return { ok: false, error: new ApiError(403, 'VIGIL_LOCKED', 'Your vigil user is locked. Contact an administrator.'), user: p.user, certSerial: p.certSerial };
    }
    return { ok: true, actor: { user: p.user, roles: p.roles, certSerial: p.certSerial, source: sourceOf(req) } };
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
  const consoleApp = createConsole(services, currentAccess, authenticate, budgetRefusal, (ip) => refusals.take(ip));

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://vigil.invalid');
    if (await consoleApp.handle(req, res, url)) return;
    if (url.pathname === '/healthz' && req.method === 'GET') {
      const healthy = events.healthy;
      return sendJson(res, healthy ? 200 : 503, { status: healthy ? 'ok' : 'failing', audit: healthy ? 'ok' : 'unavailable' });
    }
    // Readiness for load balancers: live (healthz), not draining and (gateway.workers > 1) some worker
    // listening. Open like healthz: it says nothing else.
    if (url.pathname === '/readyz' && req.method === 'GET') {
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
      if (!currentAccess().seesEverything(actor)) return sendJson(res, 403, { error: { code: 'VIGIL_FORBIDDEN', message: 'Metrics are for admins and auditors.' } });
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(metrics.render());
      return;
    }
    try {
      const m = matchRoute(req.method ?? '', url.pathname);
      if (m === 'not_found') throw new ApiError(404, 'VIGIL_NO_ROUTE', `No API endpoint ${url.pathname}.`);
      if (m === 'bad_method') throw new ApiError(405, 'VIGIL_BAD_METHOD', `${req.method} is not supported on ${url.pathname}.`);
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
    const watchId = watchSessionId(path);
    if (watchId !== undefined) return watchUpgrade(req, socket, head, auth.actor, watchId, rejectUpgrade);
    if (path !== EVENTS_STREAM_PATH) return rejectUpgrade(404, 'VIGIL_NO_ROUTE', `No WebSocket endpoint ${path}.`);
    if (!currentAccess().seesEverything(auth.actor)) {
      const msg = 'Only administrators and auditors may read the live audit stream.';
      void recordRefusal(req, { user: auth.actor.user, roles: auth.actor.roles, certSerial: auth.actor.certSerial }, 403, 'VIGIL_FORBIDDEN', msg);
      return rejectUpgrade(403, 'VIGIL_FORBIDDEN', msg);
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      streams.add(ws);
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
      streamSession(webSocketSink(ws), { events, sessions: services.sessions, recordings: services.recordings, log }, actor, session, fromStart);
      log.info({ user: actor.user, session: id }, 'api: session watch opened');
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
