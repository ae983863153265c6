import ssh2 from 'ssh2';
import { newId } from '../../src/ids.ts';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { GatewayServices } from '../../src/gateway/services.ts';
import type { TargetConfig } from '../../src/config/schema.ts';
import type { Principal, VerifyResult } from '../../src/identity/types.ts';
import type { Decision } from '../../src/authz/types.ts';
import type { EventType } from '../../src/events/catalog.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { admit, openSession, type AdmitRequest, type OpenSession } from '../../src/sessions/admit.ts';
import type { EndReason } from '../../src/sessions/registry.ts';
import { serverAlgorithms, type SshSection } from './config.ts';
import type { ChannelHost, ChannelObserver, PtyInfo, SftpHooks, TerminalHooks } from './host.ts';
import type { SessionGuardrails } from '../../src/guardrails/index.ts';
import { parseUsername, resolveLogin, type Route } from './route.ts';
import { connectBackend, negotiatedCipher, BackendError } from './backend.ts';
import { SessionChannel, GATEWAY_EXIT_STATUS, recordUnhandledChannelRequests } from './session-channel.ts';
import { FINISH_WAIT_MS } from './terminal/tracker.ts';
import { handleDirectTcpip, remoteForwardDetails, streamlocalDestination, type TcpipInfo } from './forward.ts';
import { sendBanner, sendDisconnect, rejectChannelOpen, OPEN_RESOURCE_SHORTAGE } from './wire.ts';
import { observeScp, observeSftp, observeTerminal } from './observers.ts';
import { recordPreAuthRefused, type PreAuthRefusalReason } from '../../src/gateway/slow-clients.ts';
import type { ScpCommand } from './scp/index.ts';

/** Shared by every connection of one listener. */
export interface ListenerContext {
  services: GatewayServices;
  section: SshSection;
  /** Host key private keys for the outer listener. */
  hostKey: string;
  /** ssh2 server options for the configured ciphers, worked out once for the listener and its jump-host servers. */
  algorithms: ReturnType<typeof serverAlgorithms>;
  /** Live connections, ended at shutdown. */
  live: Set<Connection>;
}

export interface ConnectionOptions {
  id: string;
  source: { ip: string; port: number };
  log: Logger;
  /** Jump-host inner connection: the target is fixed by the outer direct-tcpip, and the same vigil user must log in. */
  inner?: { target: TargetConfig; user: string; outerId: string };
  /** Called once the connection authenticated (or ended before): the unauthenticated slot is released. */
  onAuthenticated?: () => void;
}

const JUMP_TARGET = '(jump)';
/**
 * How long session.end waits for channels' last events (a terminal emulator finishing its input, a
 * recording closing). Longer than a terminal's own bound (FINISH_WAIT_MS), whose timer is set first: even
 * on a starved event loop, where both are due at once, the terminal's last commands are recorded first.
 */
const CHANNEL_SETTLE_MS = FINISH_WAIT_MS + 500;

/**
 * One SSH connection from a client: authenticate with a vigil certificate, then either relay to a target
 * (username routing, or an inner jump-host connection) or act as a jump host whose only service is
 * direct-tcpip to configured targets.
 */
export class Connection implements ChannelHost {
  readonly services: GatewayServices;
  readonly section: SshSection;
  readonly log: Logger;
  readonly keystrokes: boolean;
  readonly binaryOutput: 'summary' | 'full';
  private authAttempts = 0;
  private bannerSent = false;
  /**
   * A signed attempt is being admitted. ssh2's server never hands over another attempt meanwhile (it holds
   * the request until this one is answered: test/ssh/ssh-review2-auth-overlap.test.ts), so the check in
   * onAuth only guards against a library that would.
   */
  private authBusy = false;
  private route: Route | undefined;
  private jumpPrincipal: Principal | undefined;
  private admitted: { principal: Principal; target: TargetConfig; decision: Extract<Decision, { allow: true }>; login: string } | undefined;
  private open: OpenSession | undefined;
  private backendConn: ssh2.Client | undefined;
  private backendUp = false;
  /** Negotiated ciphers of the client's connection and of ours to the target (session.end). */
  private readonly cipher: { client?: string; target?: string } = {};
  private endingReason: EndReason | undefined;
  private readonly channels = new Map<number, SessionChannel>();
  /** Ended channels whose last events are still being written (see channelEnded). */
  private readonly channelsSettling = new Set<Promise<void>>();
  private nextChannel = 0;
  private readonly channelKinds = new Set<string>();
  private readonly recordings: string[] = [];
  /** How the last channel's process ended, for session.end. */
  private lastExit: { exit_status?: number; exit_signal?: string } = {};
  private lastActivity = Date.now();
  private idleTimer: NodeJS.Timeout | undefined;
  private authTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private released = false;
  private finished = false;
  private finishReason: EndReason | undefined;
  private sessionEnded = false;
  private readonly innerServers = new Set<ssh2.Server>();

  constructor(
    private readonly lc: ListenerContext,
    private readonly conn: ssh2.Connection,
    private readonly opts: ConnectionOptions,
  ) {
    this.services = lc.services;
    this.section = lc.section;
    this.log = opts.log;
    this.keystrokes = lc.services.config.recording.keystrokes;
    this.binaryOutput = lc.services.config.recording.binary_output;
    lc.live.add(this);
    const authTimeout = this.services.config.gateway.auth_timeout;
    this.authTimer = setTimeout(() => {
      this.log.info('authentication timeout');
      sendDisconnect(conn, 'vigil: authentication timed out.');
      this.destroy();
    }, authTimeout);
    this.authTimer.unref();

    conn.on('error', (e: Error) => this.log.debug({ err: e.message }, 'client connection error'));
    conn.once('handshake', (n) => (this.cipher.client = negotiatedCipher(n)));
    conn.on('authentication', (ctx) => void this.onAuth(ctx).catch((e) => {
      this.log.error({ err: e }, 'authentication handler failed');
      this.destroy();
    }));
    conn.on('ready', () => this.onReady());
    conn.on('close', () => void this.finish('client_closed'));
    conn.on('end', () => void this.finish('client_closed'));
  }

  // ---- ChannelHost -------------------------------------------------------------------------------

  get principal(): Principal {
    return this.admitted!.principal;
  }
  private guardCache: { value: SessionGuardrails | undefined } | undefined;
  get guardrails(): SessionGuardrails | undefined {
    const a = this.admitted!;
    return (this.guardCache ??= { value: this.services.guardrails?.forSession({ roles: [...a.principal.roles, ...a.decision.roles], target: a.target.name }) }).value;
  }
  get target(): TargetConfig {
    return this.admitted!.target;
  }
  get session(): OpenSession {
    return this.open!;
  }
  get backend(): ssh2.Client {
    return this.backendConn!;
  }
  get backendAlive(): boolean {
    return this.backendUp;
  }
  get ending(): boolean {
    return this.endingReason !== undefined || this.finished;
  }
  get endReason(): EndReason | undefined {
    return this.endingReason ?? this.finishReason;
  }
  get auditHealthy(): boolean {
    return this.services.events.healthy;
  }

  touch(): void {
    this.lastActivity = Date.now();
  }

  private eventBase(): Pick<AuditEvent, 'actor' | 'source' | 'target' | 'session_id'> {
    if (this.open) return this.open.eventBase();
    const p = this.jumpPrincipal;
    return {
      actor: { user: p?.user ?? 'unknown', roles: p?.roles ?? [], cert_serial: p?.certSerial },
      source: this.opts.source,
      target: { name: JUMP_TARGET, protocol: 'ssh' },
      session_id: this.opts.id,
    };
  }

  emit(type: EventType, outcome: 'success' | 'failure' | 'unknown', details: Record<string, unknown>): void {
    this.services.events.emit({ type, outcome, ...this.eventBase(), details }).catch((e) => this.auditFailed(e as Error));
  }

  beforeForward(type: EventType, details: Record<string, unknown>): Promise<void> | undefined {
    return this.services.events.beforeForward({ type, outcome: 'success', ...this.eventBase(), details }, (e) => this.auditFailed(e));
  }

  terminateSession(reason: EndReason, message: string): void {
    if (this.open) this.open.handle.terminate(reason, message);
    else this.terminate(reason, message);
  }

  private auditFailed(e: Error): void {
    this.log.error({ err: e.message }, 'audit event could not be written; ending session');
    this.terminate('audit_unavailable', 'vigil cannot write its audit log; the session is closed.');
  }

  requestRefused(request: string, details: Record<string, unknown>): void {
    this.emit('ssh.request', 'failure', { request, ...details });
  }

  channelStarted(kind: string, index: number, recording: string | undefined, details: Record<string, unknown>): void {
    this.channelKinds.add(kind);
    if (this.open) this.open.stats.statements++;
    if (recording) this.recordings.push(recording);
    this.log.info({ channel: index, kind, recording, ...details }, 'channel started');
  }

  channelEnded(index: number, exit: { exit_status?: number; exit_signal?: string }, settled?: Promise<void>): void {
    this.channels.delete(index);
    if (settled) {
      const p = settled.catch(() => {}).finally(() => this.channelsSettling.delete(p));
      this.channelsSettling.add(p);
    }
    if (exit.exit_status !== undefined || exit.exit_signal !== undefined) this.lastExit = exit;
  }

  forwardOpened(close: () => void, ended: Promise<void>): void {
    this.openForwards.add(close);
    const p = ended.finally(() => {
      this.openForwards.delete(close);
      this.channelsSettling.delete(p);
    });
    this.channelsSettling.add(p);
  }

  recordingFailed(err: Error): void {
    this.log.error({ err: err.message }, 'recording failed; ending session (fail closed)');
    this.terminate('recording_failed', 'vigil cannot record this session, so it is closed.');
  }

  observeSftp(index: number, hooks: SftpHooks): ChannelObserver | undefined {
    return observeSftp(this, index, hooks);
  }

  observeScp(index: number, command: ScpCommand, undecodable: (why: string) => void): ChannelObserver | undefined {
    return observeScp(this, index, command, undecodable);
  }

  observeTerminal(index: number, pty: PtyInfo, recording: string | undefined, hooks?: TerminalHooks): ChannelObserver | undefined {
    return observeTerminal(this, index, pty, recording, hooks);
  }

  // ---- authentication ----------------------------------------------------------------------------

  private isTarget = (name: string) => !!this.services.targets.find(name, 'ssh');

  private admitRequest(credential: VerifyResult, targetName: string, login: string | undefined, mode: string): AdmitRequest {
    return {
      protocol: 'ssh',
      connId: this.opts.id,
      source: this.opts.source,
      credential,
      targetName,
      login,
      details: { method: 'publickey', mode, ...(this.opts.inner ? { jump_connection: this.opts.inner.outerId } : {}) },
    };
  }

  /** Record a credential refusal (admit writes auth.failure) and tell the client why, briefly. */
  private async refuseCredential(ctx: ssh2.PublicKeyAuthContext, res: Extract<VerifyResult, { ok: false }>, targetName: string, login: string | undefined): Promise<void> {
    const adm = await admit(this.services, this.admitRequest(res, targetName, login, this.mode()));
    // One banner per connection: a client tries each of its keys (and each signature algorithm), and the
    // first refusal is the one that explains; repeating it per attempt only buries it.
    if (!this.bannerSent) {
      this.bannerSent = true;
      sendBanner(this.conn, `vigil: ${adm.ok ? res.message : adm.message}`);
    }
    ctx.reject(['publickey']);
  }

  private mode(): string {
    if (this.opts.inner) return 'jump';
    return this.route?.kind === 'jump' ? 'jump-host' : 'username';
  }

  /**
   * An attempt refused before any credential was checked: on record with the name it gave and the target
   * it asked for (never what it typed), budgeted per source like every unauthenticated refusal.
   */
  private recordRefused(username: string, reason: PreAuthRefusalReason, details: Record<string, unknown>): void {
    const inner = this.opts.inner;
    const route: Route = inner ? { kind: 'target', target: inner.target.name, login: username } : parseUsername(username, this.isTarget);
    const asked = route.kind === 'target' ? { name: route.target, ...(route.login ? { login: route.login } : {}) } : { name: JUMP_TARGET };
    recordPreAuthRefused(this.services, { protocol: 'ssh', source: this.opts.source, connId: this.opts.id, phase: 'auth', target: asked }, reason, details);
  }

  private async onAuth(ctx: ssh2.AuthContext): Promise<void> {
    if (this.finished) return ctx.reject();
    if (ctx.method !== 'publickey') {
      // Passwords and keyboard-interactive are never accepted; 'none' is how clients ask what is.
      if (ctx.method !== 'none') {
        this.log.info({ method: ctx.method }, 'refused authentication method');
        // An attempt at access (a password guess, or a client without a certificate): on record, with the
        // name it gave and never what it typed; budgeted per source like every unauthenticated refusal.
        this.recordRefused(ctx.username, 'method_not_allowed', { method: ctx.method, user: ctx.username.slice(0, 256), allowed: ['publickey'] });
      }
      return ctx.reject(['publickey']);
    }
    if (++this.authAttempts > this.section.max_auth_attempts || this.authBusy) {
      // Each earlier key has its auth.failure; the disconnect that ends the guessing is on record too (once:
      // a client may have pipelined more attempts before it reads the disconnect).
      if (this.authAttempts === this.section.max_auth_attempts + 1) {
        this.recordRefused(ctx.username, 'too_many_attempts', { user: ctx.username.slice(0, 256), limit: 'ssh.max_auth_attempts', max_auth_attempts: this.section.max_auth_attempts });
      }
      sendDisconnect(this.conn, 'vigil: too many authentication attempts.');
      return this.destroy();
    }
    const pk = ctx as ssh2.PublicKeyAuthContext;
    const inner = this.opts.inner;
    const route: Route = inner ? { kind: 'target', target: inner.target.name, login: ctx.username } : parseUsername(ctx.username, this.isTarget);
    this.route = route;
    const targetName = route.kind === 'target' ? route.target : JUMP_TARGET;
    const target = route.kind === 'target' ? this.services.targets.find(route.target, 'ssh') : undefined;
    const login = route.kind === 'target' ? (target ? resolveLogin(target, route.login) : route.login) : undefined;

    let res = this.services.identity.verifySshAuth({
      keyAlgo: pk.key.algo,
      keyBlob: pk.key.data,
      signedData: pk.blob,
      signature: pk.signature,
      sourceIp: this.opts.source.ip,
    });
    if (res.ok && inner && res.principal.user !== inner.user) {
      res = { ok: false, reason: 'principal_mismatch', message: 'Use the same vigil certificate for the jump host and the target.', user: res.principal.user, certSerial: res.principal.certSerial };
    }
    if (!res.ok) return this.refuseCredential(pk, res, targetName, login);
    // The "would you accept this key?" query: yes only for a certificate that verifies by itself.
    if (!pk.signature) return pk.accept();

    this.authBusy = true;
    try {
      if (route.kind === 'jump') {
        // Jump-host connection: nothing is reachable but direct-tcpip to targets, each admitted (and cut at
        // certificate expiry) on its own. The carrier connection itself ends at expiry too.
        this.jumpPrincipal = res.principal;
        const left = res.principal.notAfter.getTime() - Date.now();
        this.expiryTimer = setTimeout(() => this.terminate('cert_expired', 'Your vigil certificate has expired; the connection is closed.'), Math.min(Math.max(left, 0), 2 ** 31 - 1));
        this.expiryTimer.unref();
        return pk.accept();
      }
      // No login named and none by default: refused in admission (auth.failure), never after auth.success.
      const noLogin = (t: TargetConfig) => (login ? undefined : { reason: 'login_not_allowed', message: `Target ${t.name} has no default login; connect as LOGIN@${t.name}.` });
      const adm = await admit(this.services, { ...this.admitRequest(res, route.target, login, this.mode()), refusal: noLogin });
      if (!adm.ok) {
        if (this.finished) return;
        sendDisconnect(this.conn, `vigil: ${adm.message}`);
        return this.destroy();
      }
      if (!login) throw new Error('admitted without a login'); // unreachable: noLogin refused it
      // A client gone by now (auth.success is written) still gets its session on record: opened, then
      // ended at once below, so the log never stops at an auth.success.
      clearTimeout(this.authTimer);
      // Authenticated and admitted: the pre-authentication deadlines stop here, so that connecting to a
      // slow target is bounded by gateway.connect_timeout (with its own message), not cut as a slow client.
      this.release();
      this.admitted = { principal: adm.principal, target: adm.target, decision: adm.decision, login };
      const req = this.admitRequest(res, route.target, login, this.mode());
      try {
        this.open = await openSession(this.services, req, adm, (reason, message) => this.terminate(reason, message), {
          login,
          mode: this.mode(),
          ...(inner ? { jump_connection: inner.outerId } : {}),
        });
      } catch (e) {
        this.log.error({ err: (e as Error).message }, 'session.start could not be recorded; refusing');
        sendDisconnect(this.conn, 'vigil cannot write its audit log, so new sessions are refused. Contact the gateway operator.');
        return this.destroy();
      }
      // The client may have gone while auth.success or session.start was being written.
      if (this.finished) return void (await this.endSession('client_closed', { target_reached: false }));
      try {
        const ka = this.section.backend_keepalive;
        const backend = await connectBackend(adm.target, login, this.services.config.gateway.connect_timeout, { intervalMs: ka.interval, count: ka.count });
        this.backendConn = backend.client;
        this.cipher.target = backend.cipher;
      } catch (e) {
        const be = e instanceof BackendError ? e : new BackendError('error', `connection to target ${adm.target.name} failed.`, (e as Error).message);
        this.log.warn({ reason: be.reason, detail: be.detail }, 'backend connection failed');
        sendDisconnect(this.conn, `vigil: ${be.message}`);
        this.destroy();
        // session.end first, with the cause (also when the client left while we were connecting).
        await this.endSession('backend_error', { error: be.reason, message: be.message });
        await this.finish('backend_error');
        return;
      }
      if (this.finished) {
        this.backendConn.end();
        return void (await this.endSession('client_closed'));
      }
      this.backendUp = true;
      this.watchBackend(this.backendConn);
      pk.accept();
    } finally {
      this.authBusy = false;
    }
  }

  private watchBackend(b: ssh2.Client): void {
    b.on('error', (e: Error & { level?: string }) => {
      this.log.warn({ err: e.message }, 'backend connection error');
      // ssh2's keepalive gave up (ssh.backend_keepalive): the target stopped answering.
      if (e.level === 'client-timeout') {
        const ka = this.section.backend_keepalive;
        this.backendSilent = true;
        this.backendError = `keepalive timeout: no answer to ${ka.count} keepalives ${Math.round(ka.interval / 1000)}s apart`;
      } else this.backendError = e.message;
    });
    b.on('close', () => {
      this.backendUp = false;
      if (this.finished || this.endingReason) return;
      // Decided now, not when the timer fires: the channels closing make the client leave within that
      // time, and its close must not be taken for the cause.
      this.backendLost = this.backendError ? 'backend_error' : 'backend_closed';
      // Channels still open learn it from their own close; the session ends once they have reported.
      const message = this.targetLostMessage;
      setTimeout(() => this.terminate(this.backendLost!, message), 100).unref();
    });
  }
  get targetLostMessage(): string {
    return this.backendSilent
      ? `target ${this.target.name} stopped answering (no reply to keepalives); the session is closed.`
      : `the connection to ${this.target.name} was lost.`;
  }
  private backendError: string | undefined;
  /** The target stopped answering keepalives (ssh.backend_keepalive). */
  private backendSilent = false;
  /** Why the target connection dropped while the session was live (the session's end reason). */
  private backendLost: EndReason | undefined;
  /** Open forwarded connections: each one's `close` (the session ending cuts them and records their end). */
  private readonly openForwards = new Set<() => void>();
  /** direct-tcpip channels open or being opened (ssh.max_forwards). */
  private forwards = 0;
  /** Channel opens refused over a limit, and the kinds already reported by an event. */
  private refusedChannels = 0;
  private readonly refusedKinds = new Set<string>();

  // ---- after authentication ----------------------------------------------------------------------

  private onReady(): void {
    clearTimeout(this.authTimer);
    this.release();
    recordUnhandledChannelRequests(this.conn);
    const idle = this.services.config.gateway.idle_timeout;
    if (idle > 0) this.armIdle(idle);
    this.conn.on('session', (accept, reject) => {
      if (this.admitted && this.channels.size >= this.section.max_sessions) {
        return this.refuseChannel(reject, 'session', `at most ${this.section.max_sessions} sessions at once on one connection (ssh.max_sessions)`);
      }
      const session = accept();
      const index = this.nextChannel++;
      if (!this.admitted) return this.jumpHostSession(session);
      this.channels.set(index, new SessionChannel(this, session, index));
    });
    this.conn.on('tcpip', (accept, reject, info: TcpipInfo) => {
      // Jump-host channels count too: each one runs an inner SSH server.
      if (this.forwards >= this.section.max_forwards) {
        return this.refuseChannel(reject, 'direct-tcpip', `at most ${this.section.max_forwards} forwarded connections at once on one connection (ssh.max_forwards)`);
      }
      // Counted from the request on (the target is asked first), until the channel closes or is refused.
      this.forwards++;
      let counted = true;
      const uncount = () => {
        if (counted) this.forwards--;
        counted = false;
      };
      const acceptCounted = () => {
        const ch = accept();
        ch.once('close', uncount);
        return ch;
      };
      const rejectCounted = () => {
        uncount();
        reject();
      };
      if (!this.admitted) return this.jumpTo(acceptCounted, rejectCounted, info);
      handleDirectTcpip(this, this.conn, this.admitted.decision.permissions.portForwarding, this.admitted.decision.roles, acceptCounted, rejectCounted, info);
    });
    this.conn.on('request', (accept, reject, name, info) => {
      if (name === 'tcpip-forward' || (name as string) === 'streamlocal-forward@openssh.com') {
        this.emit('ssh.request', 'failure', { request: name, why: 'remote forwarding is not allowed', ...remoteForwardDetails(info) });
      }
      reject?.();
    });
    this.conn.on('openssh.streamlocal', (_accept, reject, info) => {
      this.emit('ssh.forward', 'failure', { destination: streamlocalDestination(info), reason: 'unix socket forwarding is not allowed' });
      reject();
    });
  }

  /**
   * A channel over the connection's limit: refused with the reason as the open-failure text. The first
   * refusal of each kind is an event; the rest are counted on session.end (`refused_channels`), so a client
   * looping on channel opens cannot flood the log.
   */
  private refuseChannel(reject: () => void, kind: 'session' | 'direct-tcpip', why: string): void {
    this.refusedChannels++;
    if (!this.refusedKinds.has(kind)) {
      this.refusedKinds.add(kind);
      this.requestRefused(kind, { why });
    }
    rejectChannelOpen(this.conn, reject, OPEN_RESOURCE_SHORTAGE, `vigil: ${why}`);
  }

  private armIdle(idle: number): void {
    const check = () => {
      const quiet = Date.now() - this.lastActivity;
      if (quiet >= idle) {
        if (this.open) this.open.handle.terminate('idle_timeout', `the session was idle for ${Math.round(idle / 1000)}s and is closed.`);
        else this.terminate('idle_timeout', `the connection was idle for ${Math.round(idle / 1000)}s and is closed.`);
        return;
      }
      this.idleTimer = setTimeout(check, idle - quiet);
      this.idleTimer.unref();
    };
    this.idleTimer = setTimeout(check, idle);
    this.idleTimer.unref();
  }

  /** `ssh alice@gateway` without a target: explain how to reach one, then close. */
  private jumpHostSession(session: ssh2.Session): void {
    const explain = (accept: () => ssh2.ServerChannel | undefined) => {
      const ch = accept();
      if (!ch) return;
      ch.stderr.write(
        `vigil: "${this.jumpPrincipal?.user}" is not a target. Connect with "ssh LOGIN@TARGET@gateway" or use vigil as a jump host: "ssh -J ${this.jumpPrincipal?.user}@gateway LOGIN@TARGET".\r\n`,
      );
      ch.exit(1);
      ch.end();
    };
    session.on('pty', (accept) => accept?.());
    session.on('env', (accept) => accept?.());
    session.on('shell', (accept) => explain(accept));
    session.on('exec', (accept) => explain(accept));
    session.on('subsystem', (accept) => explain(accept));
  }

  /** Jump-host mode: a direct-tcpip to a configured target is answered by vigil itself (inner SSH server). */
  private jumpTo(accept: () => ssh2.ServerChannel, reject: () => void, info: TcpipInfo): void {
    const target = this.services.targets.find(info.destIP, 'ssh');
    const principal = this.jumpPrincipal;
    if (!target || !principal || (info.destPort !== 22 && info.destPort !== target.port) || this.ending) {
      this.emit('ssh.forward', 'failure', { destination: `${info.destIP}:${info.destPort}`, reason: target ? 'wrong port for target' : 'not a configured target (jump host forwards to targets only)' });
      return reject();
    }
    let key: { privateKey: string; certificate: string };
    try {
      key = this.services.identity.sshTargetHostKey(target.name);
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'no host key for target');
      return reject();
    }
    const channel = accept();
    channel.on('error', () => {});
    const server = new ssh2.Server({ hostKeys: [key.privateKey], ident: 'vigil', ...this.lc.algorithms });
    this.innerServers.add(server);
    server.on('error', (e: Error) => this.log.debug({ err: e.message }, 'inner ssh error'));
    const id = newId();
    server.on('connection', (conn) => {
      new Connection(this.lc, conn, {
        id,
        source: this.opts.source,
        log: this.log.child({ inner: id, target: target.name }),
        inner: { target, user: principal.user, outerId: this.opts.id },
      });
    });
    channel.on('close', () => this.innerServers.delete(server));
    server.injectSocket(channel as unknown as import('node:net').Socket);
  }

  // ---- ending ------------------------------------------------------------------------------------

  /** Terminator: end the session the SSH way (message on stderr, exit status, close). Idempotent. */
  terminate(reason: EndReason, message: string): void {
    if (this.endingReason || this.finished) return;
    this.endingReason = reason;
    this.log.info({ reason }, 'ending session');
    for (const ch of this.channels.values()) ch.terminate(message, reason);
    for (const close of [...this.openForwards]) close();
    // Give the channel close messages a moment to reach the client before the transport goes.
    setTimeout(() => {
      sendDisconnect(this.conn, `vigil: ${message}`);
      this.destroy();
      void this.finish(reason);
    }, 200).unref();
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.opts.onAuthenticated?.();
  }

  private destroy(): void {
    try {
      this.conn.end();
    } catch {
      // already gone
    }
    setTimeout(() => (this.conn as unknown as { _sock?: Duplex })._sock?.destroy(), 1000).unref();
  }

  private async finish(reason: EndReason, extra: Record<string, unknown> = {}): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    // The client leaving after its target went away is a consequence, not the cause.
    if (reason === 'client_closed' && this.backendLost) reason = this.backendLost;
    this.finishReason = reason;
    clearTimeout(this.authTimer);
    clearTimeout(this.idleTimer);
    clearTimeout(this.expiryTimer);
    this.release();
    this.lc.live.delete(this);
    for (const ch of this.channels.values()) ch.terminate('the session is closed.', this.endingReason ?? reason);
    for (const close of [...this.openForwards]) close();
    for (const s of this.innerServers) s.close();
    if (this.backendConn) {
      this.backendConn.end();
      this.backendConn.on('error', () => {});
    }
    await this.endSession(reason, extra);
  }

  /** Write session.end once (a no-op before the session opened, and after it ended). */
  private async endSession(reason: EndReason, extra: Record<string, unknown> = {}): Promise<void> {
    if (!this.open || this.sessionEnded) return;
    this.sessionEnded = true;
    // A channel's last events (the terminal's last command) come before session.end; bounded, so a stuck
    // emulator can never keep a session from ending.
    if (this.channelsSettling.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(this.channelsSettling), new Promise((r) => (timer = setTimeout(r, CHANNEL_SETTLE_MS)))]);
      clearTimeout(timer);
    }
    const finalReason = this.endingReason ?? reason;
    await this.open.end(finalReason, {
      login: this.admitted?.login,
      channel_kinds: [...this.channelKinds],
      recordings: this.recordings,
      ...(this.refusedChannels ? { refused_channels: this.refusedChannels } : {}),
      ...this.lastExit,
      mode: this.mode(),
      ...(this.cipher.client ? { cipher: { ...this.cipher } } : {}),
      ...(this.backendError ? { backend_error: this.backendError } : {}),
      ...extra,
    });
  }

  /** Gateway shutdown before a session exists (sessions are ended through the registry). */
  shutdown(): void {
    if (!this.open) {
      sendDisconnect(this.conn, 'vigil: the gateway is shutting down.');
      this.destroy();
    }
  }
}

export { GATEWAY_EXIT_STATUS };
