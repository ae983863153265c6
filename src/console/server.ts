import fs from 'node:fs';
import path from 'node:path';
import type http from 'node:http';
import type { GatewayServices } from '../gateway/services.ts';
import type { AccessService, Actor } from '../access/service.ts';
import type { AccessState } from '../store/types.ts';
import { AccessRefusedError } from '../access/errors.ts';
import { hasAnyRole } from '../authz/index.ts';
import { parseDuration } from '../config/units.ts';
import { dataPaths } from '../data-dir.ts';
import type { EventInput } from '../events/envelope.ts';
import { ApiError, errorResponse, parseBody, readJson } from '../api/http.ts';
import { StreamSlots, TOO_MANY_STREAMS, tooManyStreamsMessage } from '../api/stream-slots.ts';
import { ApproveBody, KillBody, ReasonBody } from '../api/routes.ts';
import { CATCH_UP_WAIT_MS, searchShared, streamShared, type SharedIndexLag } from '../../recorder/audit/shared-index.ts';
import type { AuditEvent } from '../events/envelope.ts';
import { iso, isoUntil } from '../../recorder/audit/read.ts';
import { searchIndexed, HEAD_FILE, chainHeadSeq, AuditIndexError, type AuditQuery } from '../../recorder/audit/index.ts';
import { exportAuditLog, type ExportFormat } from '../../recorder/export/index.ts';
import { SessionCatalog, type SessionFilter } from './catalog.ts';
import { ConsoleSessions, CLEARED_COOKIE, CLEARED_OIDC_COOKIE, csrfMatches, oidcCookie, oidcLoginId, sessionCookie, type ConsoleIdentity, type ConsoleSession } from './sessions.ts';
import { OidcLogin, OidcStartRefused } from '../identity/oidc/login.ts';
import { OidcLoginError, rolesOfGroups } from '../identity/oidc/id-token.ts';
import type { OidcConfig } from '../identity/oidc/config.ts';
import { consoleDir, securityHeaders, serveStatic } from './static.ts';
import { streamCast } from './recording.ts';
import { clientAddress } from '../api/client-address.ts';
import { foreignSite } from '../api/cross-site.ts';
import { killInConsole, liveDeps, liveLinks, watchInConsole } from './live.ts';
import { CREDENTIAL_ENDED, credentialEnded, type CertCredential, type CredentialEnd } from '../api/credential.ts';
import { accessReport, isFramedReport, reportFormat, REPORT_FRAME_CSP, REPORT_TYPES, sendReportError } from './report.ts';
import { ChainVerifier, verifyAnswer } from './audit-status.ts';

/** A verified client certificate, or why not (the API server's own mTLS check). */
export type CertCheck = (req: http.IncomingMessage) => Promise<{ ok: true; actor: Actor; credential: CertCredential } | { ok: false; error: ApiError; user?: string; certSerial?: string }>;
/** Record a refused certificate within the API's per-source refusal budget; says what to answer. */
export type CertRefusal = (req: http.IncomingMessage, auth: { ok: false; error: ApiError; user?: string; certSerial?: string }) => { status: number; code: string; message: string; retryAfter?: number };

/**
 * Links another module offers for a session: the console shows them to those they are for. Empty until
 * something registers; the console never shows a dead control. (The live view's link is the console's
 * own: live.ts.)
 */
export type SessionLinker = (session: { id: string; live: boolean }, viewer: ConsoleSession) => { rel: string; href: string; method: 'GET' | 'POST'; label: string }[];
const linkers: SessionLinker[] = [];
export function addSessionLinks(fn: SessionLinker): void {
  linkers.push(fn);
}

export interface ConsoleHandler {
  /** Handles `/console` and everything under it; false for other paths. */
  handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<boolean>;
  /** The seam for other sign-in methods (OIDC): a verified identity becomes a console session. */
  signIn(who: ConsoleIdentity, req: http.IncomingMessage, res: http.ServerResponse): Promise<ConsoleSession>;
  close(): void;
}

const DEFAULT_TTL_MS = 8 * 3_600_000;
const SESSION_DETAIL_LIMIT = 5000;
const SEARCH_LIMIT_MAX = 1000;

/** Refusals anyone can cause without the IdP's help: counted against the source's refusal budget. */
const CHEAP_OIDC_REFUSALS = new Set(['login_unknown', 'login_expired', 'malformed', 'state_mismatch']);

/**
 * `liveSlots`: the per-user bound on open live views (the API's bound on its streams); pass the API's own
 * to count both against one bound.
 */
export function createConsole(services: GatewayServices, accessOf: () => AccessService, checkCert: CertCheck, refuseCert: CertRefusal, admitRefusal: (ip: string) => boolean = () => true, liveSlots = new StreamSlots()): ConsoleHandler {
  const { events, log } = services;
  const settings = (services.config as { console?: { enabled?: boolean; session_ttl?: number } }).console;
  const enabled = settings?.enabled !== false;
  const ttl = settings?.session_ttl ?? DEFAULT_TTL_MS;
  const sessions = new ConsoleSessions(ttl);
  const paths = dataPaths(services.dataDir);
  let catalog: SessionCatalog | undefined;
  const dir = consoleDir();
  const chainVerifier = new ChainVerifier({ auditDir: paths.audit, publicKeyFile: paths.auditPublicKey });
  // Sign-in with the IdP of `vigil login` (identity.oidc): same client, same role_map, an identity instead of a certificate.
  const oidcCfg = (services.config.identity as { oidc?: OidcConfig } | undefined)?.oidc;
  const oidcLogin = oidcCfg ? new OidcLogin(oidcCfg, { config: services.config, identity: services.identity, events, roleMap: () => currentRoleMap(), ...(services.refusals ? { refusals: services.refusals } : {}) }) : undefined;

  const sourceOf = (req: http.IncomingMessage) => ({ ...clientAddress(req.socket), via: 'console' });
  const actorOf = (s: ConsoleSession, req: http.IncomingMessage): Actor => ({ user: s.user, roles: s.roles, certSerial: s.certSerial, source: sourceOf(req) });
  const canRead = (s: ConsoleSession, req: http.IncomingMessage) => accessOf().seesEverything(actorOf(s, req));
  const approvesFor = (s: ConsoleSession) => services.config.roles.filter((r) => hasAnyRole(s.roles, r.approvers ?? [])).map((r) => r.name);

  function emit(s: ConsoleSession | undefined, req: http.IncomingMessage, e: Omit<EventInput, 'actor' | 'source'> & { actor?: EventInput['actor'] }) {
    return events.emit({
      actor: s ? { user: s.user, roles: s.roles, ...(s.certSerial ? { cert_serial: s.certSerial } : {}) } : { user: 'unknown', roles: [] },
      source: sourceOf(req),
      ...e,
      details: { ...(s ? { console_session: s.id.slice(0, 8) } : {}), ...e.details },
    });
  }

  function json(res: http.ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}) {
    const text = JSON.stringify(body);
    res.writeHead(status, { ...securityHeaders(), 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), 'cache-control': 'no-store', ...extra });
    res.end(text);
  }

  /** A recorded console session for a verified identity (no audit log, no session). */
  async function openSession(who: ConsoleIdentity, req: http.IncomingMessage): Promise<ConsoleSession> {
    // The IdP knows nothing of vigil's locks: a locked user gets no session (certificates are refused earlier).
    if (services.store.isLocked('user', who.user)) {
      const actor = { user: who.user, roles: who.roles, ...(who.certSerial ? { cert_serial: who.certSerial } : {}) };
      const oidc = who.oidc ? { subject: who.oidc.subject, groups: who.oidc.groups } : {};
      await emit(undefined, req, { type: 'console.signin', outcome: 'failure', actor, target: { name: 'console', protocol: 'https' }, details: { method: who.method, reason: 'user_locked', ...oidc } }).catch((e) =>
        log.error({ err: (e as Error).message, user: who.user }, 'console: could not record a refused sign-in'),
      );
      throw new ApiError(403, 'VIGIL_LOCKED', 'Your vigil user is locked. Contact an administrator.');
    }
    const s = sessions.create(who);
    try {
      const oidc = who.oidc ? { subject: who.oidc.subject, groups: who.oidc.groups } : {};
      await emit(s, req, { type: 'console.signin', outcome: 'success', target: { name: 'console', protocol: 'https' }, details: { method: who.method, roles: who.roles, ...oidc } });
    } catch (e) {
      // Nothing is viewed unrecorded: no audit log, no console session.
      sessions.end(s.id);
      throw e;
    }
    return s;
  }

  async function signIn(who: ConsoleIdentity, req: http.IncomingMessage, res: http.ServerResponse): Promise<ConsoleSession> {
    const s = await openSession(who, req);
    json(res, 200, meView(s, req), { 'set-cookie': sessionCookie(s) });
    return s;
  }

  /** A plain page (no script) saying why a browser sign-in was refused. */
  function refusalPage(res: http.ServerResponse, status: number, message: string, extra: Record<string, string | string[]> = {}) {
    const text = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>vigil console: sign-in refused</title></head><body><main><h1>Sign-in refused</h1><p id="reason">${escapeHtml(message)}</p><p><a href="/console/">Back to the console</a></p></main></body></html>`;
    res.writeHead(status, { ...securityHeaders(), 'content-type': 'text/html; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), 'cache-control': 'no-store', ...extra });
    res.end(text);
  }

  /** GET /console/oidc/start and /console/oidc/callback: the browser's round trip through the IdP. */
  async function oidcRoute(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    if (!oidcLogin || !oidcCfg) return refusalPage(res, 404, 'Sign-in with an identity provider is not configured on this gateway (identity.oidc).');
    const host = req.headers.host ?? '';
    // The callback is the console's own address as the browser reached it; the IdP accepts only registered ones.
    if (!/^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(host)) return refusalPage(res, 400, 'Bad Host header.');
    const callback = `https://${host}/console/oidc/callback`;
    const source = clientAddress(req.socket);
    try {
      if (url.pathname === '/console/oidc/start') {
        const started = await oidcLogin.startConsole(callback, source);
        res.writeHead(302, { ...securityHeaders(), location: started.authorizationUrl, 'cache-control': 'no-store', 'set-cookie': oidcCookie(started.loginId, started.expiresAt.getTime() - Date.now()) });
        res.end();
        return;
      }
      const id = await oidcLogin.finishConsole(oidcLoginId(req) ?? '', `${callback}${url.search}`, source);
      const s = await openSession({ user: id.user, roles: id.roles, method: 'oidc', oidc: { subject: id.subject, groups: id.groups }, notAfter: idpNotAfter(id.claims) }, req);
      res.writeHead(302, { ...securityHeaders(), location: '/console/', 'cache-control': 'no-store', 'set-cookie': [sessionCookie(s), CLEARED_OIDC_COOKIE] });
      res.end();
    } catch (e) {
      if (e instanceof ApiError && e.code === 'VIGIL_LOCKED') return refusalPage(res, e.status, e.message, { 'set-cookie': CLEARED_OIDC_COOKIE });
      if (!(e instanceof OidcLoginError)) throw e;
      // Too many starts from this address (summarised as auth.failure.summary, protocol oidc-start) or a full gateway.
      if (e instanceof OidcStartRefused) return refusalPage(res, e.status, e.message, { 'retry-after': String(e.retryAfterSec) });
      // Refused sign-ins are already on the record (auth.oidc.failure); cheap ones are budgeted per source.
      if (CHEAP_OIDC_REFUSALS.has(e.reason) && !admitRefusal(source.ip)) return refusalPage(res, 429, 'Too many refused sign-ins from your address; try again later.', { 'set-cookie': CLEARED_OIDC_COOKIE });
      refusalPage(res, e.reason === 'idp_unreachable' ? 502 : 401, e.message, { 'set-cookie': CLEARED_OIDC_COOKIE });
    }
  }

  function meView(s: ConsoleSession, req: http.IncomingMessage) {
    return { user: s.user, roles: s.roles, method: s.method, csrf: s.csrf, expires_at: new Date(s.expiresAt).toISOString(), can: { read: canRead(s, req), decide_for: approvesFor(s), admin: accessOf().isAdmin(actorOf(s, req)) } };
  }

  /** role_map as configured now (a config reload may have changed it since the sign-in). */
  const currentRoleMap = () => (services.config.identity as { oidc?: OidcConfig } | undefined)?.oidc?.role_map ?? {};

  /**
   * Why `s` no longer speaks for anyone, or undefined. Asked on every request (and every second by a live
   * view), against the state of now: for certificate sign-ins what the API asks of the certificate on each
   * call (expiry, revocation, the grant it was issued for, lock: credential.ts), so a 30-minute grant
   * certificate never becomes an 8-hour console session; a locked user; and for OIDC sign-ins the groups
   * mapped again through the current role_map (roles that were taken away are gone at the next click;
   * none left ends the session).
   */
  async function stillValid(s: ConsoleSession): Promise<CredentialEnd | 'roles_unmapped' | undefined> {
    if (s.method === 'cert' && s.certSerial) {
      const ended = await credentialEnded(services, { user: s.user, certSerial: s.certSerial, notAfter: s.notAfter ?? s.expiresAt, grantId: s.grantId });
      if (ended) return ended;
    } else if (services.store.isLocked('user', s.user)) return 'user_locked';
    if (s.method === 'oidc' && s.oidc) {
      const roles = rolesOfGroups(s.oidc.groups, currentRoleMap());
      if (roles.length === 0) return 'roles_unmapped';
      if (roles.join('\0') !== s.roles.join('\0')) s.roles = roles;
    }
    return undefined;
  }
  const speaksFor = async (s: ConsoleSession) => (await stillValid(s)) === undefined;

  const ENDED: Record<string, string> = {
    ...CREDENTIAL_ENDED,
    roles_unmapped: 'your identity provider groups no longer give a vigil role',
  };

  /** The session behind the cookie, still speaking for someone; one that stopped is ended and recorded. */
  async function current(req: http.IncomingMessage): Promise<ConsoleSession> {
    const s = sessions.fromRequest(req);
    if (!s) {
      // No cookie, an unknown or an expired one: refused and recorded like a call without a certificate,
      // within the same per-source budget (anyone can send this at no cost).
      const r = refuseCert(req, { ok: false, error: new ApiError(401, 'VIGIL_CONSOLE_SIGNIN', 'Sign in to the console first.') });
      throw new ApiError(r.status, r.code, r.message);
    }
    const why = await stillValid(s);
    if (why) {
      if (sessions.end(s.id)) {
        const url = new URL(req.url ?? '/', 'https://console.invalid');
        await emit(s, req, { type: 'console.signout', outcome: 'failure', target: { name: 'console', protocol: 'https' }, details: { reason: why, method: s.method, refused: `${req.method} ${url.pathname}` } });
      }
      throw new ApiError(401, 'VIGIL_CONSOLE_SIGNIN', `Your console session ended: ${ENDED[why]}.`);
    }
    return s;
  }

  function mustRead(s: ConsoleSession, req: http.IncomingMessage) {
    if (!canRead(s, req)) throw new ApiError(403, 'VIGIL_FORBIDDEN', 'Sessions, recordings and events are for auditors and admins.');
  }

  function sessionCatalog(): SessionCatalog {
    catalog ??= SessionCatalog.open(services.dataDir, paths.audit);
    catalog.catchUp();
    return catalog;
  }

  async function api(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const route = url.pathname.slice('/console/api'.length);
    const method = req.method ?? 'GET';
    const q = url.searchParams;

    if (route === '/signin/methods' && method === 'GET') {
      // Which buttons the sign-in page shows (before anyone is signed in).
      return json(res, 200, { cert: true, oidc: oidcCfg ? { start: '/console/oidc/start', provider: new URL(oidcCfg.issuer).host } : null });
    }

    if (route === '/signin' && method === 'POST') {
      // A cross-site page cannot set this header without a CORS preflight, which is never granted.
      if (req.headers['x-requested-with'] !== 'vigil-console') {
        // Recorded within the per-source budget: nobody is signed in yet, and anyone can send this.
        const r = refuseCert(req, { ok: false, error: new ApiError(403, 'VIGIL_CSRF', 'Sign-in must come from the console.') });
        throw new ApiError(r.status, r.code, r.message);
      }
      const auth = await checkCert(req);
      if (!auth.ok) {
        // Recorded like any refused API call (api.request), within the per-source budget: a caller
        // without a certificate must not be able to fill the audit log through the console either.
        const r = refuseCert(req, auth);
        throw new ApiError(r.status, r.code, r.message);
      }
      // The session ends with the certificate (notAfter) and is checked against its grant on every request.
      const c = auth.credential;
      await signIn({ user: auth.actor.user, roles: auth.actor.roles, certSerial: auth.actor.certSerial, method: 'cert', notAfter: c.notAfter, ...(c.grantId ? { grantId: c.grantId } : {}) }, req, res);
      return;
    }

    // SameSite=Strict does not keep the cookie from a sibling host of the same site (or another port of
    // this host): its page could embed an export, a report or a live view and have it done, and recorded,
    // in the viewer's name. The console's own calls are same-origin; an address typed in is `none`.
    const foreign = foreignSite(req);
    if (foreign) throw new ApiError(403, 'VIGIL_CROSS_SITE', `Refused: the request comes from another site (${foreign}). Open the console itself.`);

    const s = await current(req);
    if (method !== 'GET' && method !== 'HEAD' && !csrfMatches(s, req)) {
      throw new ApiError(403, 'VIGIL_CSRF', 'Missing or wrong CSRF token: reload the console.');
    }

    if (route === '/me' && method === 'GET') return json(res, 200, meView(s, req));

    if (route === '/signout' && method === 'POST') {
      sessions.end(s.id);
      await emit(s, req, { type: 'console.signout', outcome: 'success', target: { name: 'console', protocol: 'https' }, details: { reason: 'signed_out' } });
      return json(res, 200, { signed_out: true }, { 'set-cookie': CLEARED_COOKIE });
    }

    if (route === '/sessions' && method === 'GET') {
      mustRead(s, req);
      const state = q.get('state');
      if (state && state !== 'live' && state !== 'past') throw new ApiError(400, 'VIGIL_BAD_REQUEST', 'state: expected live or past');
      const f: SessionFilter = {
        user: q.get('user') || undefined,
        target: q.get('target') || undefined,
        protocol: q.get('protocol') || undefined,
        since: time('since', q.get('since'))?.toISOString(),
        until: time('until', q.get('until'))?.toISOString(),
        state: (state || undefined) as SessionFilter['state'],
      };
      const page = sessionCatalog().list(f, int('limit', q.get('limit')) ?? 50, q.get('cursor') || undefined);
      const live = new Set(services.sessions.list().map((x) => x.id));
      return json(res, 200, { sessions: page.sessions.map((r) => ({ ...r, live: live.has(r.id) })), next: page.next });
    }

    let m = /^\/sessions\/([A-Za-z0-9_-]+)$/.exec(route);
    if (m && method === 'GET') {
      mustRead(s, req);
      const id = m[1];
      const row = sessionCatalog().get(id);
      const evs = searchIndexed(paths.audit, { session: id, limit: SESSION_DETAIL_LIMIT }).map((r) => ({ seq: r.seq, ...r.event }));
      if (!row && evs.length === 0) throw new ApiError(404, 'VIGIL_NOT_FOUND', `No session ${id}.`);
      const recs = await services.recordings.list(id);
      const live = services.sessions.list().some((x) => x.id === id);
      await emit(s, req, { type: 'console.view', outcome: 'success', target: evs[0]?.target ?? { name: row?.target ?? 'unknown', protocol: row?.protocol ?? 'unknown' }, session_id: id, details: { view: 'session', events: evs.length } });
      const statements = evs.filter((e) => e.type === 'db.query').map((e) => ({ seq: e.seq, time: e.time, outcome: e.outcome, ...pick(e.details, ['sql', 'params', 'command', 'rows_returned', 'rows_affected', 'duration_ms', 'error', 'protocol']) }));
      const commands = evs.filter((e) => e.type === 'ssh.command' || e.type === 'ssh.exec').map((e) => ({ seq: e.seq, time: e.time, outcome: e.outcome, type: e.type, ...pick(e.details, ['command', 'exit_status', 'channel', 'source']) }));
      const files = evs.filter((e) => e.type === 'ssh.sftp' || e.type === 'ssh.scp').map((e) => ({ seq: e.seq, time: e.time, outcome: e.outcome, type: e.type, ...e.details }));
      const sources = await Promise.all(recs.map((rid) => services.recordings.open(rid)));
      const recordings = recs.map((rid, i) => ({ id: rid, bytes: sources[i]?.size ?? 0, stored: sources[i]?.where.kind ?? 'local', url: `/console/api/sessions/${id}/recordings/${i}` }));
      const links = [...liveLinks(id, live), ...linkers.flatMap((fn) => fn({ id, live }, s))];
      return json(res, 200, { session: row ?? null, live, events: evs, statements, commands, files, recordings, links, truncated: evs.length === SESSION_DETAIL_LIMIT });
    }

    m = /^\/sessions\/([A-Za-z0-9_-]+)\/recordings\/(\d+)$/.exec(route);
    if (m && (method === 'GET' || method === 'HEAD')) {
      mustRead(s, req);
      const [, id, n] = m;
      const recs = await services.recordings.list(id);
      const rid = recs[Number(n)];
      if (!rid) throw new ApiError(404, 'VIGIL_NOT_FOUND', `Session ${id} has no recording ${n}.`);
      const row = catalog?.get(id);
      // Recorded before a byte leaves: a view that cannot be recorded is not served.
      await emit(s, req, { type: 'console.view', outcome: 'success', target: { name: row?.target ?? 'unknown', protocol: row?.protocol ?? 'ssh' }, session_id: id, details: { view: 'recording', recording: rid, range: typeof req.headers.range === 'string' ? req.headers.range.slice(0, 64) : 'all' } });
      const source = await services.recordings.open(rid);
      if (!source) throw new ApiError(404, 'VIGIL_NOT_FOUND', `Session ${id} has no recording ${n}.`);
      await streamCast(source, req, res, securityHeaders());
      return;
    }

    m = /^\/sessions\/([A-Za-z0-9_-]+)\/live$/.exec(route);
    if (m && method === 'GET') {
      // Not mustRead: beginWatch refuses non-readers itself and records it as session.watch_started.
      const fromStart = q.get('from') !== 'now';
      // A live view outlasts the request that opened it: it ends with the console session (signed out,
      // expired, certificate revoked, user locked, no role mapped) or with the reading role (role_map
      // reloaded), as the next click would.
      const stillSignedIn = async () => sessions.fromRequest(req) === s && (await speaksFor(s)) && canRead(s, req);
      // Each view holds a response, a subscription and a recording reader while the session lasts: bounded
      // per user as the API's streams are (the refusal is recorded as api.request below).
      const release = liveSlots.take(s.user);
      if (!release) throw new ApiError(429, TOO_MANY_STREAMS, tooManyStreamsMessage(s.user));
      res.once('close', release);
      try {
        return await watchInConsole(services, liveDeps(services, accessOf()), actorOf(s, req), m[1], fromStart, res, securityHeaders(), stillSignedIn);
      } catch (e) {
        release();
        throw e;
      }
    }

    m = /^\/sessions\/([A-Za-z0-9_-]+)\/kill$/.exec(route);
    if (m && method === 'POST') {
      const b = parseBody(KillBody, await readJson(req));
      const r = await killInConsole(liveDeps(services, accessOf()), actorOf(s, req), m[1], b.reason);
      return json(res, 200, { killed: r.session, ended: r.ended });
    }

    if ((route === '/events' || route === '/events/export') && method === 'GET') {
      mustRead(s, req);
      const aq: AuditQuery = {
        user: q.get('user') || undefined,
        target: q.get('target') || undefined,
        type: q.get('type') || undefined,
        session: q.get('session') || undefined,
        since: time('since', q.get('since')),
        until: time('until', q.get('until')),
        hideCheckpoints: true,
      };
      const text = q.get('text') || undefined;
      if (route === '/events/export') {
        const kind = q.get('format') ?? 'jsonl';
        if (kind !== 'jsonl' && kind !== 'csv' && kind !== 'ocsf') throw new ApiError(400, 'VIGIL_BAD_REQUEST', 'format: expected jsonl, csv or ocsf');
        if (text) throw new ApiError(400, 'VIGIL_BAD_REQUEST', 'text: exports take the filters only (as `vigil audit export`)');
        await emit(s, req, { type: 'console.view', outcome: 'success', target: { name: 'audit', protocol: 'vigil' }, details: { view: 'export', format: kind, filter: filterText(aq) } });
        // Replicas on a PostgreSQL store: every replica's events, from the shared index, after a bounded wait
        // for this replica's backlog (after an outage it can take hours); how much of it is not in yet is said.
        const shared = services.store.auditChains;
        const lag = shared ? await services.sharedAuditIndex?.catchUp(CATCH_UP_WAIT_MS) : undefined;
        res.writeHead(200, {
          ...securityHeaders(),
          ...(lag ? { 'x-vigil-shared-index-lag-events': String(lag.lagEvents) } : {}),
          'content-type': kind === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
          'content-disposition': `attachment; filename="vigil-events.${kind === 'csv' ? 'csv' : 'jsonl'}"`,
          'cache-control': 'no-store',
          // Known only once streamed: records whose bytes fail their hash are left out, and said so here.
          trailer: 'x-vigil-records-left-out',
        });
        let leftOut = 0;
        const records = shared && streamShared(shared, toSharedQuery(aq, q.get('replica') || undefined), undefined, () => leftOut++);
        await exportAuditLog(paths.audit, res, { format: { kind } as ExportFormat, query: aq, records, onLeftOut: () => leftOut++ });
        res.addTrailers({ 'x-vigil-records-left-out': String(leftOut) });
        if (leftOut) await emit(s, req, { type: 'console.view', outcome: 'failure', target: { name: 'audit', protocol: 'vigil' }, details: { view: 'export', format: kind, filter: filterText(aq), left_out: leftOut, error: `${leftOut} record(s) left out of the export: their bytes do not match their hash` } });
        res.end();
        return;
      }
      const limit = Math.min(SEARCH_LIMIT_MAX, int('limit', q.get('limit')) ?? 200);
      let records: { seq: number; replica?: string; event: AuditEvent }[];
      let lag: SharedIndexLag | undefined;
      const replica = q.get('replica') || undefined;
      const follower = services.sharedAuditIndex;
      if (services.store.auditChains && follower) {
        // Replicas on a PostgreSQL store: every replica's events (this one's signed records copied first,
        // its newest unsigned ones from the local index). A database that is away fails the search (503)
        // rather than answering from one replica's log as if it were all. The wait for this replica's copy is
        // bounded (a backlog after an outage can take hours): the answer says how far behind the index is.
        lag = await follower.catchUp(CATCH_UP_WAIT_MS);
        const localQuery = { ...aq, limit };
        const tail = text === undefined && fs.existsSync(paths.audit) ? { replica: follower.replica, indexedSeq: follower.lag().indexedSeq, records: () => searchIndexed(paths.audit, localQuery) } : undefined;
        records = (await searchShared(services.store.auditChains, { ...toSharedQuery(aq, replica), text, limit }, tail)).records;
      } else {
        if (replica !== undefined) throw new ApiError(400, 'VIGIL_BAD_REQUEST', 'replica: only with replicas on a PostgreSQL store');
        try {
          records = fs.existsSync(paths.audit) ? searchIndexed(paths.audit, { ...aq, text, limit }) : [];
        } catch (e) {
          if (e instanceof AuditIndexError && e.code === 'VIGIL_AUDIT_SEARCH_TEXT') throw new ApiError(400, 'VIGIL_BAD_REQUEST', e.message);
          throw e;
        }
      }
      await emit(s, req, { type: 'console.view', outcome: 'success', target: { name: 'audit', protocol: 'vigil' }, details: { view: 'events', filter: filterText(aq), text, results: records.length } });
      const base = new URLSearchParams([...q].filter(([k]) => k !== 'text' && k !== 'limit' && k !== 'format'));
      const exports = Object.fromEntries(['jsonl', 'csv', 'ocsf'].map((f) => [f, `/console/api/events/export?${new URLSearchParams([...base, ['format', f]])}`]));
      return json(res, 200, { events: records.reverse().map((r) => ({ seq: r.seq, ...(r.replica ? { replica: r.replica } : {}), ...r.event })), exports, ...(lag ? { shared_index: lag } : {}) });
    }

    if (route === '/access/requests' && method === 'GET') {
      const state = q.get('state') || undefined;
      const list = await accessOf().list(actorOf(s, req), { state: state as AccessState | undefined });
      return json(res, 200, { requests: list.reverse(), decide_for: approvesFor(s) });
    }

    m = /^\/access\/requests\/([A-Za-z0-9_-]+)\/(approve|deny)$/.exec(route);
    if (m && method === 'POST') {
      const actor = actorOf(s, req);
      const body = await readJson(req);
      // The access service decides who may decide (approver roles, four-eyes); the console only asks it.
      const rec = m[2] === 'approve' ? await accessOf().approve(actor, m[1], parseBody(ApproveBody, body)) : await accessOf().deny(actor, m[1], parseBody(ReasonBody, body));
      return json(res, 200, { request: rec });
    }

    if (route === '/reports/access' && method === 'GET') {
      mustRead(s, req);
      const format = reportFormat(q.get('format'));
      const since = time('since', q.get('since') || '30d')!;
      const until = time('until', q.get('until')) ?? new Date();
      const { run, text } = await accessReport(services, since, until, format);
      // Recorded before a byte leaves, with the hash that matches the copy the viewer may keep.
      await emit(s, req, { type: 'console.view', outcome: 'success', target: { name: 'report/access', protocol: 'vigil' }, details: { view: 'report', report: 'access', format, since: run.model.period.since, until: run.model.period.until, bytes: run.bytes, sha256: run.sha256, chain_status: run.model.verification.status } });
      const name = `vigil-access-review-${run.model.period.since.slice(0, 10)}-${run.model.period.until.slice(0, 10)}.${format}`;
      const headers = format === 'html' ? { 'content-security-policy': REPORT_FRAME_CSP, 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' } : securityHeaders();
      res.writeHead(200, { ...headers, 'content-type': REPORT_TYPES[format], 'content-length': String(Buffer.byteLength(text)), 'cache-control': 'no-store', 'content-disposition': `${q.get('download') ? 'attachment' : 'inline'}; filename="${name}"` });
      res.end(text);
      return;
    }

    if (route === '/audit/status' && method === 'GET') {
      mustRead(s, req);
      const head = readHead(paths.audit);
      const seq = chainHeadSeq(paths.audit);
      // In a worker, one run at a time, and not started more often than its bounds allow (audit-status.ts).
      const verified = await chainVerifier.current(seq, q.get('verify') === 'now');
      return json(res, 200, {
        head,
        chain_seq: seq,
        verify: verifyAnswer(verified),
        index: services.auditIndex?.lag(),
        shared_index: services.sharedAuditIndex?.lag(),
      });
    }

    throw new ApiError(404, 'VIGIL_NO_ROUTE', `No console endpoint ${method} ${route}.`);
  }

  return {
    signIn,
    async handle(req, res, url) {
      if (!enabled || (url.pathname !== '/console' && !url.pathname.startsWith('/console/'))) return false;
      if (url.pathname === '/console') {
        res.writeHead(308, { location: '/console/', ...securityHeaders() });
        res.end();
        return true;
      }
      if (url.pathname === '/console/oidc/start' || url.pathname === '/console/oidc/callback') {
        if (req.method !== 'GET') {
          json(res, 405, { error: { code: 'VIGIL_BAD_METHOD', message: `${req.method} is not supported on ${url.pathname}.` } });
          return true;
        }
        try {
          await oidcRoute(req, res, url);
        } catch (e) {
          log.error({ err: e, path: url.pathname }, 'console: oidc sign-in failed');
          if (!res.headersSent) refusalPage(res, 500, 'The sign-in failed; try again.');
          else res.destroy();
        }
        return true;
      }
      if (!url.pathname.startsWith('/console/api/')) {
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          json(res, 405, { error: { code: 'VIGIL_BAD_METHOD', message: `${req.method} is not supported on ${url.pathname}.` } });
          return true;
        }
        serveStatic(dir, url.pathname, req, res);
        return true;
      }
      try {
        await api(req, res, url);
      } catch (e) {
        const r = errorResponse(e);
        if (r.status === 500) log.error({ err: e, path: url.pathname }, 'console: handler failed');
        // Refusals of decisions are recorded by the access service (access.refused); other refusals of a
        // signed-in user are recorded here, so probing the console leaves a trace.
        // (Unauthenticated refusals are recorded by refuseCert within the budget, never here.)
        const s = sessions.fromRequest(req);
        if (s && !(e instanceof AccessRefusedError) && r.status !== 401 && r.status !== 404) {
          await emit(s, req, { type: 'api.request', outcome: 'failure', target: { name: 'console', protocol: 'https' }, details: { method: req.method, path: url.pathname, status: r.status, code: r.code, message: r.message } }).catch(() => {});
        }
        if (!res.headersSent && isFramedReport(url)) sendReportError(res, r.status, r.message);
        else if (!res.headersSent) json(res, r.status, { error: { code: r.code, message: r.message } });
        else res.destroy();
      }
      return true;
    },
    close() {
      chainVerifier.close();
      catalog?.close();
      catalog = undefined;
    },
  };
}

/**
 * The latest a console session signed in through the IdP may last: the ID token's expiry, or the IdP
 * session's end (`session_expires_at`) when that comes first. The console does not outlast what the IdP
 * vouched for (a new sign-in is a redirect away while the IdP session lasts).
 */
function idpNotAfter(claims: { exp?: number; session_expires_at?: unknown }): number | undefined {
  const ends = [claims.exp, claims.session_expires_at].filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
  return ends.length ? Math.min(...ends) * 1000 : undefined;
}

function pick(o: Record<string, unknown> | undefined, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (o && o[k] !== undefined) out[k] = o[k];
  return out;
}

function readHead(auditDir: string): { seq: number; key_id: string; time?: string } | null {
  try {
    const file = path.join(auditDir, HEAD_FILE);
    const h = JSON.parse(fs.readFileSync(file, 'utf8')) as { seq: number; key_id: string };
    return { seq: h.seq, key_id: h.key_id, time: fs.statSync(file).mtime.toISOString() };
  } catch {
    return null;
  }
}

function filterText(q: AuditQuery): string {
  return Object.entries(q)
    .filter(([k, v]) => v !== undefined && k !== 'hideCheckpoints')
    .map(([k, v]) => `${k}=${v instanceof Date ? v.toISOString() : String(v)}`)
    .join(' ');
}

/** `2h` (that long ago) or an ISO time, like `vigil audit search --since`. */
function time(name: string, text: string | null): Date | undefined {
  if (!text) return undefined;
  const ms = parseDuration(text);
  if (ms !== undefined && !/^\d+(\.\d+)?$/.test(text.trim())) return new Date(Date.now() - ms);
  const d = new Date(text);
  if (Number.isNaN(d.getTime()) || !/^\d{4}-\d\d-\d\d/.test(text)) throw new ApiError(400, 'VIGIL_BAD_REQUEST', `${name}: expected a duration like 2h or an ISO time`);
  return d;
}

function int(name: string, text: string | null): number | undefined {
  if (!text) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new ApiError(400, 'VIGIL_BAD_REQUEST', `${name}: expected a positive whole number`);
  return n;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** The console's filter as a query of the shared index. */
function toSharedQuery(aq: AuditQuery, replica: string | undefined) {
  return { user: aq.user, target: aq.target, type: aq.type, session: aq.session, since: iso(aq.since), until: isoUntil(aq.until), hideCheckpoints: aq.hideCheckpoints, replica };
}
