import net from 'node:net';
import tls from 'node:tls';
import type { ConnectionContext } from '../../src/gateway/proxy.ts';
import type { GatewayServices } from '../../src/gateway/services.ts';
import type { TargetConfig } from '../../src/config/schema.ts';
import { readSecret, type SecretRef } from '../../src/config/types.ts';
import type { VerifyResult } from '../../src/identity/types.ts';
import { admit, openSession, type AdmitRequest, type OpenSession } from '../../src/sessions/admit.ts';
import type { EndReason } from '../../src/sessions/registry.ts';
import { ProtocolError } from '../../src/errors.ts';
import type { SourceLimiter } from '../../src/gateway/preauth.ts';
import { PreAuthDeadlines, recordPreAuthProtocolError, recordPreAuthRefused, watchWriteStall, type PreAuthRefusalReason } from '../../src/gateway/slow-clients.ts';
import { MessageFramer } from './framing.ts';
import { decodePassword, decodeStartupPacket, F, PROTOCOL_3_0, type StartupPacket } from './frontend.ts';
import { authenticationCleartextPassword, authenticationOk, backendKeyData, fatal, negotiateProtocolVersion, readyForQuery, B } from './backend.ts';
import { mayChangeRole, roleProbeMessage, RoleProbeReader, ROLE_PROBE_SQL, sessionAuthorization, startupMaySetRole } from './role.ts';
import { loginToBackend, BackendLoginError, type BackendSession, type BackendTlsMode } from './backend-login.ts';
import { redactSql } from './sql.ts';
import { QueryTracker, backendNeedsBody, frontendNeedsBody, type QueryRecord, type StatementStart } from './tracker.ts';
import { forwardCancel, type CancelKeys, type CancelTarget } from './cancel.ts';
import { postgresAccounts } from './provisioning.ts';
import { backendAccounts, ProvisioningError } from '../../src/accounts/manager.ts';
import { accountName, type UserProvisioning } from '../../src/accounts/config.ts';
import { ClientGuard } from './guardrail.ts';
import type { SessionGuardrails } from '../../src/guardrails/index.ts';
import { guardrailsForLogin } from '../../src/guardrails/account-self-protection.ts';
import { DEFAULT_APPLICATION_NAME, parseDatabase, renderApplicationName, type PostgresSection, type PostgresTarget } from './config.ts';

/**
 * `replication` values the server's parse_bool reads as false (case-insensitive; a prefix of `false` or
 * `no`, `of`/`off`, `0`): an ordinary connection. Anything else is a walsender (or refused by the server).
 */
const REPLICATION_OFF = /^(?:f(?:a(?:l(?:se?)?)?)?|no?|off?|0)$/i;

/** Limit of a startup-phase packet (the server uses the same). */
const MAX_STARTUP_PACKET = 10_000;
const PROTOCOL = 'postgres';

/** What a connection needs from its proxy instance. */
export interface ProxyShared {
  services: GatewayServices;
  section: PostgresSection;
  cancelKeys: CancelKeys;
  redact: RegExp | undefined;
  serverContext(): tls.SecureContext;
  /** Connections not yet authenticated (limit: gateway.max_unauthenticated). */
  unauthenticated: number;
  /** Unauthenticated connections per source address (limit: pre_auth.max_per_source). */
  perSource: SourceLimiter;
  live: Set<ClientConnection>;
}

class Refusal extends Error {
  constructor(
    readonly sqlstate: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/**
 * Startup parameters for the backend: the client's (less blocked ones), with application_name from the
 * target's template so a DBA sees the engineer in pg_stat_activity. The client's own name (or libpq's
 * fallback_application_name) stays visible inside it; a later SET application_name still works.
 */
function backendParams(passthrough: [string, string][], t: PostgresTarget, user: string): [string, string][] {
  const own = new Map(passthrough);
  const clientApp = own.get('application_name') || own.get('fallback_application_name');
  const out = passthrough.filter(([k]) => k !== 'application_name' && k !== 'fallback_application_name');
  out.push(['application_name', renderApplicationName(t.application_name ?? DEFAULT_APPLICATION_NAME, { user, clientApp, target: t.name })]);
  return out;
}

/** Where a message limit comes from, for the 54000 error: the limit and the config key that sets it. */
function oversizeNote(t: PostgresTarget, limit: number): string {
  const key = t.max_message_size !== undefined ? `max_message_size of target "${t.name}"` : `postgres.max_message_size (per target: max_message_size of target "${t.name}")`;
  return `the limit is ${limit} bytes, set by ${key} in the vigil configuration`;
}

const OVERSIZE_HINT = 'Raise the limit for large values (a big bytea through pg_dump, for instance): it is per target.';

/** Reads whole packets from a socket during the startup phase (before the relay takes over). */
class PacketReader {
  private rest: Buffer = Buffer.alloc(0);
  constructor(
    private readonly socket: net.Socket,
    private readonly framer: MessageFramer,
  ) {}

  /** Bytes received after the last packet returned. */
  get leftover(): Buffer {
    return this.rest;
  }

  next(): Promise<{ type: number; msg: Buffer }> {
    return new Promise((resolve, reject) => {
      let got: { type: number; msg: Buffer } | undefined;
      const feed = (chunk: Buffer): boolean => {
        const off = this.framer.push(chunk, (type, msg) => (got = { type, msg: msg! }), () => got !== undefined);
        this.rest = chunk.subarray(off);
        return got !== undefined;
      };
      const cleanup = () => {
        this.socket.off('data', onData);
        this.socket.off('close', onClose);
        this.socket.off('end', onClose);
      };
      const onData = (chunk: Buffer) => {
        try {
          if (feed(chunk)) {
            cleanup();
            this.socket.pause();
            resolve(got!);
          }
        } catch (e) {
          cleanup();
          reject(e);
        }
      };
      const onClose = () => {
        cleanup();
        reject(new Refusal('08006', 'client closed the connection'));
      };
      try {
        if (this.rest.length && feed(this.rest)) return resolve(got!);
      } catch (e) {
        return reject(e);
      }
      this.rest = Buffer.alloc(0);
      this.socket.on('data', onData);
      this.socket.once('close', onClose);
      this.socket.once('end', onClose);
      this.socket.resume();
    });
  }
}

function failure(reason: 'no_certificate' | 'principal_mismatch', message: string, detail?: string, user?: string, certSerial?: string): VerifyResult {
  return { ok: false, reason, message, detail, user, certSerial };
}

/**
 * One client connection: SSL/GSSENC negotiation, startup, credential (client certificate or token),
 * admission, backend login, then the observed relay until either side ends.
 */
export class ClientConnection {
  private client: net.Socket;
  private backend: net.Socket | undefined;
  private session: OpenSession | undefined;
  private tracker: QueryTracker | undefined;
  private counted = true;
  private ended = false;
  private terminating: { reason: EndReason; message: string; code: string } | undefined;
  private backendFramer: MessageFramer | undefined;
  private lastBackendError: string | undefined;
  private releaseKey: (() => void) | undefined;
  private cancelTarget: CancelTarget | undefined;
  private deadlines: PreAuthDeadlines | undefined;
  private stopStallWatch: (() => void) | undefined;
  private releaseSource: (() => void) | undefined;
  private clientTerminated = false;
  private flushRecords: (() => void) | undefined;
  private longRunningTimer: NodeJS.Timeout | undefined;
  /** For a 54000 error: the message limit and which setting raises it. */
  private limitNote: string | undefined;
  /** Guardrails that apply to this session's roles on its target (none: nothing is asked). */
  private guard: SessionGuardrails | undefined;

  constructor(
    private readonly shared: ProxyShared,
    private readonly raw: net.Socket,
    private readonly ctx: ConnectionContext,
  ) {
    this.client = raw;
  }

  start(): void {
    const { services } = this.shared;
    this.shared.live.add(this);
    this.shared.unauthenticated++;
    this.raw.setNoDelay(true);
    this.raw.on('error', () => {});
    this.raw.once('close', () => this.onClientGone());
    if (this.shared.unauthenticated > services.config.gateway.max_unauthenticated) {
      this.recordRefused('accept', 'too_many_unauthenticated', { limit: 'gateway.max_unauthenticated' });
      this.refuse(new Refusal('53300', 'too many connections are authenticating; try again shortly'));
      return;
    }
    this.releaseSource = this.shared.perSource.acquire(this.ctx.remote.ip);
    if (!this.releaseSource) {
      this.recordRefused('accept', 'too_many_unauthenticated', { limit: 'pre_auth.max_per_source' });
      this.refuse(new Refusal('53300', 'too many connections from your address are authenticating; try again shortly'));
      return;
    }
    // Slowloris: the handshake (SSL/TLS + startup) and the whole unauthenticated phase each have a deadline.
    // Mid-handshake there is no way to send an error the client could read: the connection is just closed.
    this.deadlines = new PreAuthDeadlines(services, { protocol: PROTOCOL, source: this.ctx.remote, connId: this.ctx.id }, 'startup', (message) => {
      const speaking = this.deadlines!.phase === 'password' || this.deadlines!.phase === 'admission';
      this.refuse(speaking ? new Refusal('08P01', `vigil: ${message} (gateway.auth_timeout)`) : new Refusal('08006', message));
    });
    this.negotiate().catch((e) => this.refuse(e));
  }

  /** A refusal before any credential was checked (budgeted per source: see recordPreAuthRefused). */
  private recordRefused(phase: string, reason: PreAuthRefusalReason, details: Record<string, unknown>, target?: { name: string; login?: string; database?: string }): void {
    const { remote, id } = this.ctx;
    recordPreAuthRefused(this.shared.services, { protocol: PROTOCOL, source: remote, connId: id, phase, ...(target ? { target } : {}) }, reason, details);
  }

  private uncount(): void {
    if (this.counted) {
      this.counted = false;
      this.shared.unauthenticated--;
    }
    this.releaseSource?.();
    this.deadlines?.clear();
  }

  /** Send a FATAL error if the client can still read one, then close. Pre-session only. */
  private refuse(e: unknown): void {
    if (this.session) {
      this.ctx.log.warn({ err: e }, 'postgres session failed');
      if (!this.ended && this.client.writable) this.client.write(fatal('XX000', 'internal error in the vigil gateway; the session is closed'));
      return this.endSession('error', { error: (e as Error).message });
    }
    if (this.ended) return;
    this.ended = true;
    this.endedBeforeSession = e instanceof Refusal && e.sqlstate === '57P01' ? 'shutdown' : 'error';
    this.uncount();
    this.shared.live.delete(this);
    let msg: Buffer | undefined;
    if (e instanceof Refusal) msg = fatal(e.sqlstate, e.message, e.hint);
    else if (e instanceof ProtocolError && e.code === 'VIGIL_PG_OVERSIZED') msg = fatal('54000', `vigil: ${e.message} before authentication (pre_auth.max_message_size)`);
    else if (e instanceof ProtocolError) msg = fatal('08P01', `protocol violation: ${e.message}`);
    else {
      this.ctx.log.warn({ err: e }, 'postgres connection failed');
      msg = fatal('XX000', 'internal error in the vigil gateway');
    }
    this.ctx.log.debug({ err: (e as Error).message }, 'connection refused');
    if (e instanceof ProtocolError) {
      const { remote, id } = this.ctx;
      recordPreAuthProtocolError(this.shared.services, { protocol: PROTOCOL, source: remote, connId: id, phase: this.deadlines?.phase ?? 'startup', error: e.message });
    }
    if (this.client.writable && !(e instanceof Refusal && e.sqlstate === '08006')) this.client.end(msg);
    else this.client.end();
    setTimeout(() => this.client.destroy(), 1000).unref();
    if (this.client !== this.raw) setTimeout(() => this.raw.destroy(), 1000).unref();
  }

  /** Why a connection ended before its session opened, if the gateway ended it (else the client left). */
  private endedBeforeSession: EndReason | undefined;

  private async negotiate(): Promise<void> {
    const { section } = this.shared;
    let reader = new PacketReader(this.raw, new MessageFramer({ maxLength: MAX_STARTUP_PACKET, untyped: true }));
    let encrypted = false;
    let packet: StartupPacket;
    for (;;) {
      const { msg } = await reader.next();
      packet = decodeStartupPacket(msg);
      if (packet.kind === 'gssenc') {
        this.client.write('N');
        continue;
      }
      if (packet.kind === 'ssl') {
        if (encrypted) throw new ProtocolError('SSLRequest inside TLS');
        if (reader.leftover.length) {
          // Bytes pipelined after SSLRequest would be taken as if they came over TLS (CVE-2021-23214).
          this.ctx.log.warn('client sent data after SSLRequest before the TLS handshake; closing');
          const { remote, id } = this.ctx;
          recordPreAuthProtocolError(this.shared.services, { protocol: PROTOCOL, source: remote, connId: id, phase: 'ssl_request', error: 'data sent after SSLRequest before the TLS handshake' });
          this.ended = true;
          this.uncount();
          this.shared.live.delete(this);
          this.raw.destroy();
          return;
        }
        this.client.write('S');
        this.deadlines!.phase = 'tls_handshake';
        this.client = await this.upgrade();
        this.deadlines!.phase = 'startup';
        encrypted = true;
        reader = new PacketReader(this.client, new MessageFramer({ maxLength: MAX_STARTUP_PACKET, untyped: true }));
        continue;
      }
      break;
    }
    this.deadlines!.handshakeDone();
    if (packet.kind === 'cancel') return this.cancel(packet.processId, packet.secretKey);
    if (packet.kind !== 'startup') throw new ProtocolError('unexpected startup packet');
    const params = packet.params;
    this.negotiateVersion(packet.version, params);
    const user = params.get('user') ?? '';
    const { target: targetName, database: requestedDb } = parseDatabase(params.get('database') || user);
    const target = this.shared.services.targets.find(targetName, PROTOCOL) as PostgresTarget | undefined;
    // A walsender is refused whatever blocked_startup_params lists: its stream (logical changes,
    // BASE_BACKUP of the whole cluster) is no statement vigil can record, and a physical one ignores the
    // authorized database. Only the values the server reads as false (an ordinary connection) pass.
    const replication = params.get('replication');
    if (replication !== undefined && !REPLICATION_OFF.test(replication)) {
      // The user the client claims is not authenticated yet: a detail, not the actor.
      const asked = { name: targetName, ...(requestedDb ? { database: requestedDb } : {}) };
      this.recordRefused('startup', 'replication_refused', { replication: replication.slice(0, 64), user: user.slice(0, 128), tls: encrypted }, asked);
      throw new Refusal('28000', 'replication connections are not allowed through vigil');
    }
    // Until authenticated only a password message is expected: a small limit, checked on the length header
    // before any of the body is buffered (the post-auth limit would let a stranger make us hold 64 MiB).
    const typed = new PacketReader(this.client, new MessageFramer({ maxLength: this.shared.services.config.pre_auth.max_message_size }));
    // Leftover typed bytes (a client that pipelines its password) carry over.
    (typed as unknown as { rest: Buffer }).rest = reader.leftover;

    let credential: VerifyResult;
    let method: string;
    const cert = encrypted ? (this.client as tls.TLSSocket).getPeerCertificate(true) : undefined;
    if (!encrypted && !target?.allow_plaintext) {
      method = 'none';
      credential = failure('no_certificate', 'vigil requires an encrypted connection: connect with sslmode=verify-full (or require) and a vigil certificate or token', 'plaintext startup refused');
    } else if (cert && cert.raw) {
      method = 'x509';
      credential = this.shared.services.identity.verifyClientCertificate(cert.raw, this.ctx.remote.ip);
    } else {
      method = 'token';
      this.deadlines!.phase = 'password';
      this.client.write(authenticationCleartextPassword());
      const { type, msg } = await typed.next();
      if (type !== F.Password) throw new ProtocolError('expected a password message');
      credential = this.shared.services.identity.verifyToken(decodePassword(msg), this.ctx.remote.ip);
    }
    if (credential.ok && user !== credential.principal.user) {
      const p = credential.principal;
      credential = failure('principal_mismatch', `the database user "${user}" does not match your vigil identity "${p.user}"; connect with user=${p.user}`, undefined, p.user, p.certSerial);
    }
    this.deadlines!.phase = 'admission';
    const database = requestedDb ?? (target?.database as string | undefined);
    const req: AdmitRequest = {
      protocol: PROTOCOL,
      connId: this.ctx.id,
      source: this.ctx.remote,
      credential,
      targetName,
      // With user_provisioning the session logs in as the engineer's own account, not the target's user.
      login: target?.user_provisioning ? undefined : target?.user,
      database,
      details: { method, tls: encrypted },
    };
    const admission = await admit(this.shared.services, req);
    if (!admission.ok) throw new Refusal('28000', admission.message);
    this.guard = this.shared.services.guardrails?.forSession({ roles: [...admission.principal.roles, ...admission.decision.roles], target: admission.target.name });

    const passthrough: [string, string][] = [];
    for (const [k, v] of params) {
      // `_pq_.` options are protocol extensions for the gateway, which declined them (negotiateVersion).
      if (k === 'user' || k === 'database' || k.startsWith('_pq_.') || section.blocked_startup_params.includes(k)) continue;
      passthrough.push([k, v]);
    }
    const provisioning = (admission.target as PostgresTarget).user_provisioning as UserProvisioning | undefined;
    const account = provisioning && accountName(provisioning.name_pattern, admission.principal.user, 63);
    // The account's password is vigil's alone: statements that would change how it logs in are refused.
    this.guard = await guardrailsForLogin(account, this.guard);
    this.session = await openSession(this.shared.services, account ? { ...req, login: account } : req, admission, (reason, message) => this.terminate(reason, message), {
      method,
      client_tls: encrypted,
      params: Object.fromEntries(passthrough),
    });
    // The client left, or the connection was cut (auth deadline, shutdown), while the admission was being
    // written: auth.success is on record, so the session is too, ended at once; the target is never reached.
    if (this.ended) return void (await this.session.end(this.endedBeforeSession ?? 'client_closed', { target_reached: false }));
    this.uncount();
    const t = admission.target as PostgresTarget;
    const maxMessage = t.max_message_size ?? section.max_message_size;
    let backend: BackendSession;
    const login = (user: string, password: string | undefined) =>
      loginToBackend({
        host: t.host,
        port: t.port,
        user,
        database: database ?? t.database,
        password,
        tls: t.tls as BackendTlsMode,
        caFile: t.tls_ca,
        servername: t.tls_servername,
        params: backendParams(passthrough, t, admission.principal.user),
        timeoutMs: this.shared.services.config.gateway.connect_timeout,
        maxMessage,
      });
    try {
      if (provisioning) {
        const { services } = this.shared;
        const session = this.session;
        const leased = await backendAccounts(services).lease(
          {
            target: t,
            sessionId: session.handle.id,
            roles: admission.decision.roles,
            user: admission.principal.user,
            eventBase: session.eventBase(),
            driver: postgresAccounts(t, provisioning, services.config.gateway.connect_timeout),
          },
          (cred) => login(cred.user, cred.password),
        );
        backend = leased.value;
        leased.lease.backendId = backend.processId;
      } else {
        backend = await login(t.user, t.password ? readSecret(t.password as SecretRef) : undefined);
      }
    } catch (e) {
      if (e instanceof ProvisioningError) {
        if (!this.ended && this.client.writable) this.client.write(fatal('08004', `vigil could not prepare your database account on target "${t.name}"; the operator can see why in the audit log`));
        return this.endSession('backend_error', { error: e.message, sqlstate: '08004' });
      }
      const detail = (e as Error).message;
      const sqlstate = e instanceof BackendLoginError ? e.sqlstate : '08006';
      if (!this.ended && this.client.writable) this.client.write(fatal(sqlstate, `vigil could not connect to target "${t.name}": ${detail}`));
      return this.endSession('backend_error', { error: detail, sqlstate });
    }
    if (this.ended) {
      backend.socket.destroy();
      return;
    }
    this.startRelay(backend, t, maxMessage, typed.leftover, startupMaySetRole(passthrough));
  }

  /**
   * The gateway speaks protocol 3.0 to its clients, whatever the target runs: a newer minor version
   * (PostgreSQL 18 clients ask for 3.2) or `_pq_.` options are answered like a PostgreSQL 15 server does,
   * with NegotiateProtocolVersion (newest 3.0, the options it does not know) before anything else, and
   * the startup goes on in 3.0.
   */
  private negotiateVersion(version: number, params: Map<string, string>): void {
    const unknown = [...params.keys()].filter((k) => k.startsWith('_pq_.'));
    if (version === PROTOCOL_3_0 && unknown.length === 0) return;
    this.client.write(negotiateProtocolVersion(PROTOCOL_3_0, unknown));
  }

  private upgrade(): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      const t = new tls.TLSSocket(this.raw, {
        isServer: true,
        secureContext: this.shared.serverContext(),
        requestCert: true,
        rejectUnauthorized: false,
      });
      t.on('error', () => {});
      const onErr = (e: Error & { code?: string }) => {
        // What the client sent is not TLS, or its TLS failed (an alert, no cipher in common): on record like
        // any undecodable handshake. A client that merely went away (a reset) refused nothing.
        if (e.code?.startsWith('ERR_SSL_')) {
          const { remote, id } = this.ctx;
          recordPreAuthProtocolError(this.shared.services, { protocol: PROTOCOL, source: remote, connId: id, phase: 'tls_handshake', error: `TLS handshake failed: ${e.message}` });
        }
        reject(new Refusal('08006', `TLS handshake failed: ${e.message}`));
      };
      t.once('error', onErr);
      t.once('secure', () => {
        t.off('error', onErr);
        t.setNoDelay?.(true);
        resolve(t);
      });
      this.raw.resume();
    });
  }

  private async cancel(processId: number, secretKey: Buffer): Promise<void> {
    const { services } = this.shared;
    const target = this.shared.cancelKeys.find(processId, secretKey);
    this.uncount();
    this.ended = true;
    this.shared.live.delete(this);
    this.client.end();
    if (!target) {
      if (services.refusals && !services.refusals.take(PROTOCOL, this.ctx.remote.ip, 'unknown_cancel_key')) return;
      await services.events
        .emit({
          type: 'db.cancel',
          outcome: 'failure',
          actor: { user: 'unknown', roles: [] },
          source: this.ctx.remote,
          target: { name: '(none)', protocol: PROTOCOL },
          details: { reason: 'unknown_cancel_key' },
        })
        .catch(() => {});
      return;
    }
    try {
      await forwardCancel(target, services.config.gateway.connect_timeout);
      target.onCancel();
    } catch (e) {
      this.ctx.log.warn({ err: (e as Error).message }, 'could not forward cancel request');
    }
  }

  private startRelay(backend: BackendSession, target: PostgresTarget, maxMessage: number, clientLeftover: Buffer, roleFromStartup: boolean): void {
    const { services, section } = this.shared;
    const session = this.session!;
    const client = this.client;
    const b = backend.socket;
    this.backend = b;
    const base = session.eventBase();
    const cancelTarget: CancelTarget = {
      host: target.host,
      port: target.port,
      processId: backend.processId,
      secretKey: backend.secretKey,
      onCancel: () => {
        services.events.record({ type: 'db.cancel', outcome: 'success', ...base, details: { forwarded: true } });
      },
    };
    this.cancelTarget = cancelTarget;
    const key = this.shared.cancelKeys.issue(cancelTarget);
    this.releaseKey = key.release;

    const stats = session.stats;
    const onAuditError = (e: Error) => {
      services.log.error({ err: e.message, session: session.handle.id }, 'db.query could not be recorded; ending the session');
      session.handle.terminate('audit_unavailable', 'vigil cannot write its audit log; the session is closed.');
    };
    // current_user as the server last said it: session_authorization at login, then vigil's probes.
    let role: string | undefined;
    for (const m of backend.replay) if (m[0] === B.ParameterStatus) role = sessionAuthorization(m) ?? role;
    /** A statement that may have changed current_user completed since the server last said: records
     *  after it wait (`heldForRole`) for the probe sent at the next safe point. */
    let roleUncertain = roleFromStartup;
    /** A statement of this session may have changed current_user: a transaction's end may change it back. */
    let roleTouched = roleFromStartup;
    const heldForRole: QueryRecord[] = [];
    const emitRecord = (r: QueryRecord, runAs: string | undefined = role, type: 'db.query' | 'db.session_query' = 'db.query') => {
      if (type === 'db.query') stats.statements++;
      // One literal, keys in sorted order: every event has the same hidden class and the canonical JSON
      // encoder (keys sorted) serialises it as is instead of building a sorted copy. Undefined members
      // are left out of the recorded JSON.
      const details = {
        command: r.command,
        copy: r.copy,
        duration_ms: Math.round(r.durationMs * 1000) / 1000,
        end_reason: r.endReason,
        error: r.error || undefined,
        function_oid: r.functionOid,
        params: r.params,
        portal: r.portal || undefined,
        protocol: r.protocol,
        role: runAs,
        rolled_back: r.rolledBack,
        rows_affected: r.rowsAffected,
        rows_returned: r.rowsReturned,
        sql: r.sql,
        sqlstate: r.sqlstate || undefined,
        statement: r.statement || undefined,
        suspended: r.suspended || undefined,
        unsplit: r.unsplit,
      };
      // Fire and forget (no promise per query); a failed write ends the session: fail closed.
      // Fields listed rather than spread from `base` (a spread copies property by property per event).
      services.events.record(
        { type, outcome: r.outcome, session_id: base.session_id, actor: base.actor, source: base.source, target: base.target, details },
        onAuditError,
      );
    };
    // Records completed by a backend chunk are written after that chunk went to the client, so building
    // and appending the event never adds to the client's latency.
    const completed: QueryRecord[] = [];
    const flush = (this.flushRecords = () => {
      for (let i = 0; i < completed.length; i++) {
        const r = completed[i];
        if (roleUncertain) heldForRole.push(r);
        else {
          // A statement runs under the role in force before it; the ones after it wait if it may have changed it.
          emitRecord(r);
          if (mayChangeRole(r.command, r.sql, roleTouched)) roleUncertain = roleTouched = true;
        }
      }
      completed.length = 0;
      // The session ends: what waited for a probe is written with the role unknown.
      if (this.ended) releaseHeld(undefined);
    });
    const releaseHeld = (runAs: string | undefined) => {
      for (let i = 0; i < heldForRole.length; i++) emitRecord(heldForRole[i], runAs);
      heldForRole.length = 0;
    };
    const startEvent = (s: StatementStart, announced: 'before_forward' | 'long_running') => ({
      type: 'db.query.start' as const,
      outcome: 'unknown' as const,
      session_id: base.session_id,
      actor: base.actor,
      source: base.source,
      target: base.target,
      details: {
        announced,
        function_oid: s.functionOid,
        params: s.params,
        portal: s.portal,
        protocol: s.protocol,
        running_ms: s.runningMs === undefined ? undefined : Math.round(s.runningMs),
        sql: s.sql,
        statement: s.statement,
      },
    });
    const tracker = (this.tracker = new QueryTracker({
      redact: this.shared.redact,
      onRecord: (r) => completed.push(r),
      onStart: (s) => services.events.record(startEvent(s, 'long_running'), onAuditError),
    }));

    // One timer per session announces statements still running after audit.long_running_after.
    const longRunningAfter = services.config.audit.long_running_after;
    const checkLongRunning = () => {
      this.longRunningTimer = undefined;
      if (this.ended) return;
      const t = performance.now();
      const next = tracker.announceDue(t, longRunningAfter);
      if (next !== undefined) armLongRunning(next - t);
    };
    const armLongRunning = (ms: number) => {
      if (longRunningAfter <= 0 || this.longRunningTimer || this.ended) return;
      this.longRunningTimer = setTimeout(checkLongRunning, Math.max(1, ms));
      this.longRunningTimer.unref();
    };
    // The login's ParameterStatus reports (standard_conforming_strings, client_encoding) set the lexer's mode.
    for (const m of backend.replay) if (m[0] === B.ParameterStatus) tracker.backend(B.ParameterStatus, m, m.length, 0);
    const cf = new MessageFramer({ maxLength: maxMessage, headerOnly: (t) => !frontendNeedsBody(t) });
    const bf = (this.backendFramer = new MessageFramer({ maxLength: maxMessage, headerOnly: (t) => !backendNeedsBody(t) }));
    this.limitNote = oversizeNote(target, maxMessage);

    let now = 0;
    const onFrontend = (type: number, msg: Buffer | undefined, length: number) => {
      if (type === F.Terminate) this.clientTerminated = true;
      tracker.frontend(type, msg, length, now);
    };
    // Guardrails: a refused statement is swapped for one that raises 42501 (guardrail.ts); recorded here.
    const clientGuard = this.guard?.guardsSql
      ? new ClientGuard(cf, this.guard, onFrontend, (r) => {
          const d = r.decision;
          services.events.record(
            {
              type: d.unparsed ? 'guardrail.unparsed' : 'guardrail.blocked',
              outcome: 'failure',
              session_id: base.session_id,
              actor: base.actor,
              source: base.source,
              target: base.target,
              details: { decision: d.action, protocol: r.protocol, reason: d.reason, rule: d.rule, sql: redactSql(r.sql, this.shared.redact).text, statement: r.statement },
            },
            onAuditError,
          );
        }, () => tracker.lexMode())
      : undefined;
    let txStatus = 0x49; /* I */
    const onBackend = (type: number, msg: Buffer | undefined, length: number) => {
      if (type === B.ErrorResponse && msg && msg.length > 10) this.noteBackendError(msg);
      if (type === B.ReadyForQuery && msg) txStatus = msg[5];
      tracker.backend(type, msg, length, now);
    };

    /**
     * Fail closed, strict durability: a chunk that would start statements is forwarded only if the audit
     * log is writable, and in strict mode only once their intent records (db.query.start) are durable.
     * Meanwhile the client is paused and later chunks wait behind it, in order. For the extended
     * protocol the intent is taken at Execute (Parse and Bind run nothing); a chunk is held as a whole,
     * so the Parse/Bind sent with that Execute (as libpq does) are held with it.
     */
    const strict = services.events.durability === 'strict';
    let holding = false;
    const held: Buffer[] = [];
    const fromClient = (chunk: Buffer) => {
      if (holding) {
        held.push(chunk);
        return;
      }
      if (roleUncertain && !probe && tracker.pending === 0) {
        // The role is not known yet (set by startup options): learn it before the first statement.
        held.push(chunk);
        if (startRoleProbe()) return;
        held.pop();
      }
      now = performance.now();
      let out = chunk;
      try {
        if (clientGuard) out = clientGuard.push(chunk);
        else cf.push(chunk, onFrontend);
      } catch (e) {
        tracker.discardUnforwarded();
        return this.protocolViolation(e as Error);
      }
      stats.bytesFromClient += chunk.length;
      if (out.length === 0) return;
      if (tracker.statementsToForward === 0) return forward(out, false);
      if (!services.events.healthy) return refuseUnrecorded(services.events.failure?.message ?? 'the audit log cannot be written');
      if (!strict) return forward(out, false);
      const starts = tracker.startsToForward();
      const pending: Promise<void>[] = [];
      for (const s of starts) pending.push(services.events.beforeForward(startEvent(s, 'before_forward')) ?? Promise.resolve());
      holding = true;
      client.pause();
      Promise.all(pending).then(
        () => {
          if (this.ended) return;
          holding = false;
          forward(out, true);
          while (!holding && !this.ended && held.length) fromClient(held.shift()!);
          if (!holding && !this.ended && !b.writableNeedDrain) client.resume();
        },
        (e: Error) => {
          if (!this.ended) refuseUnrecorded(e.message);
        },
      );
    };
    const forward = (chunk: Buffer, announced: boolean) => {
      const starts = tracker.statementsToForward > 0;
      tracker.forwarded(announced, announced ? performance.now() : undefined);
      if (!b.write(chunk)) client.pause();
      if (starts) armLongRunning(longRunningAfter);
    };
    /** The statements in hand cannot be recorded: refuse them (never forwarded) and end the session. */
    const refuseUnrecorded = (why: string) => {
      tracker.discardUnforwarded();
      services.log.error({ err: why, session: session.handle.id }, 'audit log unavailable: statement refused, session ended');
      if (client.writable) {
        client.write(fatal('58030', 'audit log unavailable: vigil cannot record this statement, so it was not sent to the database; the session is closed'));
      }
      this.endSession('audit_unavailable', { error: why });
    };

    /**
     * Backend bytes are framed before they are relayed: every message's length is checked first, so an
     * oversized one is never partly relayed. A header split across chunks is held back until it is whole.
     */
    /**
     * The role probe (role.ts): sent when a statement may have changed current_user, once its request
     * has ended (ReadyForQuery, nothing in flight) and not in a failed transaction (where no query runs:
     * the ROLLBACK that ends it is itself a trigger). Client chunks wait meanwhile; the answer is read
     * here and never relayed (asynchronous messages in between are). Both directions must be at a message
     * boundary: client chunks are forwarded as they come, so the start of a client message may already
     * be on its way to the server (or held by the guard) with the rest to follow; a probe written then
     * would land inside that message. The probe waits for the end of the request that message makes.
     */
    let probe: { reader: RoleProbeReader; framer: MessageFramer; started: number } | undefined;
    const startRoleProbe = (): boolean => {
      if (!roleUncertain || probe || holding || this.ended || this.terminating || tracker.pending > 0 || !bf.atBoundary || heldHeader || !cf.atBoundary) return false;
      if (txStatus === 0x45 /* E */) {
        releaseHeld(undefined);
        return false;
      }
      holding = true;
      client.pause();
      probe = { reader: new RoleProbeReader(), framer: new MessageFramer({ maxLength: section.max_message_size }), started: performance.now() };
      b.write(roleProbeMessage());
      return true;
    };
    const fromProbe = (chunk: Buffer) => {
      const p = probe!;
      let done: { role?: string; error?: string } | undefined;
      let upto: number;
      try {
        upto = p.framer.push(
          chunk,
          (type, msg) => {
            const step = p.reader.onMessage(type, msg!);
            if (step.kind === 'relay') {
              if (type === B.ParameterStatus) tracker.backend(type, msg, msg!.length, now);
              client.write(msg!);
            } else if (step.kind === 'done') done = step;
          },
          () => done !== undefined,
        );
      } catch (e) {
        return backendViolation(e as Error, chunk);
      }
      if (!done) return;
      probe = undefined;
      const outcome = done.error ? 'failure' : 'success';
      emitRecord({ protocol: 'simple', sql: ROLE_PROBE_SQL, command: 'SELECT', rowsReturned: done.error ? 0 : 1, outcome, error: done.error, durationMs: performance.now() - p.started }, done.role, 'db.session_query');
      role = done.role;
      roleUncertain = false;
      releaseHeld(role);
      holding = false;
      if (upto < chunk.length) fromBackend(chunk.subarray(upto));
      while (!holding && !this.ended && held.length) fromClient(held.shift()!);
      if (!holding && !this.ended && !b.writableNeedDrain) client.resume();
    };

    let heldHeader: Buffer | undefined;
    const fromBackend = (chunk: Buffer) => {
      now = performance.now();
      if (probe) return fromProbe(chunk);
      if (this.terminating) return relayUntilBoundary(chunk);
      try {
        bf.push(chunk, onBackend);
      } catch (e) {
        return backendViolation(e as Error, chunk);
      }
      const ok = relay(chunk, chunk.length);
      if (completed.length > 0) flush();
      if (!ok) b.pause();
      if (roleUncertain) startRoleProbe();
    };
    /** Relay `chunk[0, upto)` plus any header held back, keeping back a header the framer has not checked. */
    const relay = (chunk: Buffer, upto: number): boolean => {
      let out = upto === chunk.length ? chunk : chunk.subarray(0, upto);
      if (heldHeader) {
        out = Buffer.concat([heldHeader, out]);
        heldHeader = undefined;
      }
      const hold = bf.pendingHeaderBytes;
      if (hold > 0) {
        heldHeader = Buffer.from(out.subarray(out.length - hold));
        out = out.subarray(0, out.length - hold);
      }
      if (out.length === 0) return true;
      stats.bytesToClient += out.length;
      return client.write(out);
    };
    /** While terminating: relay up to the end of the message in progress, then end the session. */
    const relayUntilBoundary = (chunk: Buffer) => {
      let upto: number;
      try {
        upto = bf.atBoundary ? 0 : bf.push(chunk, onBackend, () => true);
      } catch (e) {
        return backendViolation(e as Error, chunk);
      }
      if (upto > 0) relay(chunk, upto);
      flush();
      if (bf.atBoundary) return this.finishTermination();
    };
    const backendViolation = (e: Error, chunk: Buffer) => {
      const oversized = (e as ProtocolError).code === 'VIGIL_PG_OVERSIZED';
      this.ctx.log.warn({ err: e.message }, oversized ? 'backend message over the size limit' : 'backend protocol error');
      // The whole messages before the bad one are relayed (their rows were counted); none of it is.
      const start = bf.messageStart;
      if (start >= 0) relay(chunk, start);
      else heldHeader = undefined;
      flush();
      if (client.writable) {
        client.write(
          oversized
            ? fatal('54000', `vigil: the target database sent a message over the size limit (${e.message}): ${this.limitNote}; the session is closed`, OVERSIZE_HINT)
            : fatal('08P01', 'the target database sent an invalid message; the session is closed'),
        );
      }
      this.endSession('backend_error', { error: e.message, sqlstate: oversized ? '54000' : '08P01' });
    };

    client.on('data', fromClient);
    client.on('drain', () => b.resume());
    b.on('data', fromBackend);
    // While statements are held for their intents, the client stays paused (its chunks would only queue).
    b.on('drain', () => {
      if (!holding) client.resume();
    });
    b.on('error', (e) => {
      this.lastBackendError ??= e.message;
    });
    b.once('close', () => this.onBackendGone());
    client.once('end', () => this.endSession('client_closed'));
    // A client that stopped reading: the backend is paused above (bounded memory); after
    // slow_clients.write_stall_timeout without progress the session ends (what ran is recorded).
    const stallMs = services.config.slow_clients.write_stall_timeout;
    this.stopStallWatch = watchWriteStall(client, stallMs, () =>
      session.handle.terminate('write_stall', `The client read none of the pending results for ${Math.round(stallMs / 1000)} s; the session is closed.`),
    );
    const idle = services.config.gateway.idle_timeout;
    if (idle > 0) {
      // Idle = no traffic either way and no statement running (a long query is not idleness).
      client.setTimeout(idle, () => {
        if (!tracker.pending) session.handle.terminate('idle_timeout', `The session was idle for more than ${Math.round(idle / 1000)} s and is closed.`);
      });
    }

    // Login complete: the client sees AuthenticationOk, the backend's parameters and the gateway's key.
    client.cork();
    client.write(authenticationOk());
    for (const m of backend.replay) client.write(m);
    client.write(backendKeyData(key.processId, key.secretKey));
    client.write(readyForQuery('I'));
    client.uncork();
    if (backend.leftover.length) fromBackend(backend.leftover);
    if (clientLeftover.length) fromClient(clientLeftover);
    b.resume();
    client.resume();
  }

  private noteBackendError(msg: Buffer): void {
    // FATAL/PANIC from the backend explains a following close (e.g. terminated by an administrator).
    const s = msg.indexOf('SFATAL\0', 5) >= 0 || msg.indexOf('SPANIC\0', 5) >= 0;
    if (s) {
      const m = msg.indexOf(0x4d /* M */, 5);
      const end = m >= 0 ? msg.indexOf(0, m) : -1;
      if (m >= 0 && end > m) this.lastBackendError = msg.toString('utf8', m + 1, end);
    }
  }

  private protocolViolation(e: Error): void {
    this.ctx.log.info({ err: e.message }, 'client protocol violation');
    const oversized = (e as ProtocolError).code === 'VIGIL_PG_OVERSIZED';
    if (this.client.writable) {
      this.client.write(oversized ? fatal('54000', `vigil: your message is over the size limit (${e.message}): ${this.limitNote}; the session is closed`, OVERSIZE_HINT) : fatal('08P01', `protocol violation: ${e.message}`));
    }
    this.endSession('protocol_error', { error: e.message, ...(oversized ? { sqlstate: '54000' } : {}) });
  }

  /** Registry terminator: send a FATAL ErrorResponse at a message boundary, then close. */
  private terminate(reason: EndReason, message: string): void {
    if (this.ended) return;
    const code = reason === 'shutdown' || reason === 'terminated' ? '57P01' : reason === 'audit_unavailable' ? '58000' : reason === 'idle_timeout' ? '57P05' : reason === 'write_stall' ? '08006' : '28000';
    this.terminating = { reason, message, code };
    if (!this.backendFramer || this.backendFramer.atBoundary) return this.finishTermination();
    // Mid-message from the backend: the next chunk is cut at the boundary; do not wait forever.
    setTimeout(() => this.finishTermination(), 2000).unref();
  }

  private finishTermination(): void {
    const t = this.terminating;
    if (!t || this.ended) return;
    this.backend?.pause();
    if (this.client.writable) this.client.write(fatal(t.code, t.message));
    this.endSession(t.reason);
  }

  private onBackendGone(): void {
    if (this.ended) return;
    // The server closes after the client's Terminate: a normal end, whichever close is seen first.
    if (this.clientTerminated) return this.endSession('client_closed');
    const pending = (this.tracker?.pending ?? 0) > 0;
    const why = this.lastBackendError;
    if (this.client.writable && !why) {
      // The backend vanished without saying why (crash, kill, network): tell the client.
      this.client.write(fatal('08006', 'the connection to the target database was lost'));
    }
    this.endSession(pending || !why ? 'backend_error' : 'backend_closed', { error: why ?? (pending ? 'backend connection lost during a query' : 'backend connection lost') });
  }

  private onClientGone(): void {
    if (this.session) this.endSession('client_closed');
    else if (!this.ended) {
      this.ended = true;
      this.uncount();
      this.shared.live.delete(this);
    }
  }

  private endSession(reason: EndReason, details: Record<string, unknown> = {}): void {
    if (this.ended && !this.session) return;
    this.ended = true;
    this.uncount();
    this.shared.live.delete(this);
    this.releaseKey?.();
    if (this.longRunningTimer) clearTimeout(this.longRunningTimer);
    this.stopStallWatch?.();
    // A statement still running would go on after the client is gone (the server only notices a closed
    // socket when it writes): cancel it first.
    if (this.cancelTarget && (this.tracker?.pending ?? 0) > 0 && reason !== 'backend_error' && reason !== 'backend_closed') {
      forwardCancel(this.cancelTarget, 2000).catch(() => {});
    }
    this.backend?.destroy();
    this.client.end();
    setTimeout(() => this.client.destroy(), 2000).unref();
    // Statements forwarded and never answered are recorded (outcome unknown) before session.end.
    this.tracker?.abandon(this.session?.handle.endReason ?? reason, performance.now());
    this.flushRecords?.();
    // session.end is written once by OpenSession, after this session's db.query events.
    const backendPid = this.cancelTarget?.processId;
    void this.session?.end(reason, backendPid === undefined ? details : { ...details, backend_pid: backendPid });
  }

  /** Gateway shutdown of a connection that is not a session yet. */
  destroy(): void {
    if (!this.session) this.refuse(new Refusal('57P01', 'the vigil gateway is shutting down'));
  }
}
