import { refusalMessage } from '../../src/guardrails/index.ts';
import type ssh2 from 'ssh2';
import type { AsciicastWriter, WrittenRecording } from '../../recorder/types.ts';
import type { EndReason } from '../../src/sessions/registry.ts';
import { relay, flushed, type TapGate, type TapVerdict } from './relay.ts';
import type { ChannelHost, ChannelObserver, PtyInfo } from './host.ts';
import { parseScpCommand } from './scp/index.ts';
import { readsCommandsFromStdin, startsShell } from './terminal/index.ts';
import { clampTerminalSize } from './terminal/tracker.ts';
import { observeShellInput } from './observers.ts';
import { answerStartedSessionRequest } from './wire.ts';

type Exit = { code: number } | { signal: string; dumped: boolean; message: string };

/** Recording backlog (bytes) above which the target's output is paused until the recording catches up. */
const RECORDING_HIGH_WATER = 8 * 1024 * 1024;

/** Exit status sent when vigil, not the target, ends a channel (OpenSSH uses 255 for its own failures). */
export const GATEWAY_EXIT_STATUS = 255;

/** Like OpenSSH's sshd (session.c refuses env requests beyond 128 variables per session). */
export const MAX_ENV_VARS = 128;
/** Names and values together: a locale or GIT_PROTOCOL is short, a memory flood is not. */
export const MAX_ENV_BYTES = 64 * 1024;
/**
 * Refusals of one request kind recorded one by one per channel; the rest are counted and recorded in one
 * event when the channel ends, so a client looping on refused requests cannot flood the audit log.
 */
export const REFUSALS_RECORDED_EACH = 16;

/** Session channel requests ssh2 hands to SessionChannel; it refuses any other kind itself, without a word. */
const HANDLED_REQUESTS = new Set(['env', 'pty-req', 'window-change', 'x11-req', 'signal', 'auth-agent-req@openssh.com', 'shell', 'exec', 'subsystem']);
/** Emitted on an ssh2 Session for a request ssh2 refuses on its own (`break`, `xon-xoff`, unknown names). */
const UNHANDLED_REQUEST = 'vigil:unhandled-request';

/**
 * Let session channels put on record the requests ssh2 refuses on its own (`ssh -B`/`~B` breaks, unknown
 * request names): ssh2 answers them before any listener hears of them. Call once per client connection.
 */
export function recordUnhandledChannelRequests(conn: unknown): void {
  type Handler = (p: unknown, recipient: number, type: string, wantReply: boolean, data: unknown) => void;
  const c = conn as { _protocol?: { _handlers?: { CHANNEL_REQUEST?: Handler } }; _chanMgr?: { get(id: number): unknown } };
  const handlers = c._protocol?._handlers;
  const original = handlers?.CHANNEL_REQUEST;
  if (!handlers || !original) return;
  handlers.CHANNEL_REQUEST = (p, recipient, type, wantReply, data) => {
    if (!HANDLED_REQUESTS.has(type)) {
      try {
        const session = c._chanMgr?.get(recipient) as { listenerCount?: (e: string) => number; emit(e: string, ...a: unknown[]): boolean } | undefined;
        if (session?.listenerCount?.(UNHANDLED_REQUEST)) session.emit(UNHANDLED_REQUEST, type);
      } catch {
        // Not a channel of this connection: ssh2 deals with it below.
      }
    }
    original(p, recipient, type, wantReply, data);
    // ssh2's automatic refusal says nothing once the session started: the client would wait for it.
    if (wantReply && !HANDLED_REQUESTS.has(type)) answerStartedSessionRequest(c._chanMgr?.get(recipient), false);
  };
}

function envAllowed(patterns: string[], name: string): boolean {
  return patterns.some((p) => (p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : p === name));
}

/**
 * One client "session" channel (shell, exec or the sftp subsystem), relayed to a channel of the same kind
 * on the gateway's backend connection. Requests before the start (pty, env) are collected and replayed in
 * one backend open, so the client hears success or failure of shell/exec only once the target answered.
 */
export class SessionChannel {
  private pty: PtyInfo | undefined;
  /** The terminal size the client asked for, as "COLSxROWS", when it was larger than vigil takes. */
  private ptyRequested: string | undefined;
  private readonly env: Record<string, string> = {};
  private envBytes = 0;
  /** Refusals per request kind on this channel (beyond REFUSALS_RECORDED_EACH, only counted). */
  private readonly refusals = new Map<string, number>();
  private started = false;
  private client: ssh2.ServerChannel | undefined;
  private backend: ssh2.ClientChannel | undefined;
  private recording: AsciicastWriter | undefined;
  /** Why the recording failed (recording.closed then has outcome failure). */
  private recordingError: Error | undefined;
  private observer: ChannelObserver | undefined;
  private exit: Exit | undefined;
  private kind: 'shell' | 'exec' | 'sftp' | undefined;
  private command: string | undefined;
  /** Under a certificate force-command: what the client asked for (the command, or `shell`/`sftp`). */
  private requested: { kind: 'shell' | 'exec' | 'sftp'; command?: string } | undefined;
  private closed = false;
  /** Why the target refused the channel, for the ssh.exec event. */
  private error: string | undefined;
  private stopRelays: Array<() => void> = [];
  /** How the target said its process ended (`exit` may instead be vigil's own 255). */
  private targetExit: Exit | undefined;
  /** The exec request went out to the target (so an exec without `targetExit` has an unknown result). */
  private execForwarded = false;
  private startedAt = 0;
  private bytesToClient = 0;
  private bytesFromClient = 0;
  /** Why the channel ended when the target did not say (client_closed, backend_closed, the session's reason). */
  private endReason: EndReason | undefined;
  /** The SFTP observer could not decode the stream: nothing more is relayed in either direction. */
  private blocked = false;
  /**
   * What the client chunk being tapped must wait for (strict sftp intents; terminal Enters in strict mode
   * or under SSH guardrails). One resolving to a Buffer replaces the chunk (a refused pty line).
   */
  private durableBeforeForward: Array<Promise<void | Buffer>> = [];

  constructor(
    private readonly host: ChannelHost,
    private readonly session: ssh2.Session,
    readonly index: number,
  ) {
    session.on('pty', (accept, reject, info) => {
      if (!host.principal.extensions.includes('permit-pty')) {
        this.refuse('pty', { why: 'certificate lacks permit-pty' });
        return this.answer(reject, false);
      }
      // Clamped once, here: the target, the recording and the command tracker all get the same size.
      const size = clampTerminalSize(info.cols, info.rows);
      if (size.clamped) {
        this.ptyRequested = `${info.cols}x${info.rows}`;
        host.log.warn({ channel: index, requested: this.ptyRequested, used: `${size.cols}x${size.rows}` }, 'pty size clamped');
      }
      this.pty = { term: info.term, cols: size.cols, rows: size.rows, width: info.width, height: info.height, modes: info.modes as Record<string, number> };
      this.answer(accept, true);
    });
    session.on('window-change', (accept, _reject, info) => {
      const { cols, rows, clamped } = clampTerminalSize(info.cols, info.rows);
      if (clamped) host.log.warn({ channel: index, requested: `${info.cols}x${info.rows}`, used: `${cols}x${rows}` }, 'window size clamped');
      if (this.pty) Object.assign(this.pty, { cols, rows, width: info.width, height: info.height });
      this.backend?.setWindow(rows, cols, info.height, info.width);
      this.recording?.resize(cols, rows);
      this.observer?.resize?.(cols, rows);
      this.answer(accept, true);
    });
    session.on('env', (accept, reject, info) => {
      const why = this.envRefusal(info.key, info.val);
      if (why !== undefined) {
        // The value is not logged: environment variables often carry secrets.
        this.refuse('env', { name: String(info.key).slice(0, 256), ...(why ? { why } : {}) });
        return this.answer(reject, false);
      }
      this.envBytes += info.key.length + info.val.length - (this.env[info.key] !== undefined ? info.key.length + this.env[info.key]!.length : 0);
      this.env[info.key] = info.val;
      this.answer(accept, true);
    });
    session.on('signal', (accept, reject, info) => void this.signal(info.name, accept, reject));
    session.on('x11', (_accept, reject) => {
      this.refuse('x11', {});
      this.answer(reject, false);
    });
    session.on('auth-agent', (_accept, reject) => {
      this.refuse('auth-agent', {});
      this.answer(reject, false);
    });
    session.on('shell', (accept, reject) => this.start('shell', accept, reject));
    session.on('exec', (accept, reject, info) => this.start('exec', accept, reject, info.command));
    session.on('subsystem', (accept, reject, info) => {
      if (info.name !== 'sftp') {
        this.refuse('subsystem', { name: String(info.name).slice(0, 256) });
        return this.answer(reject, false);
      }
      this.start('sftp', accept, reject);
    });
    // Refused by ssh2 itself (reported by recordUnhandledChannelRequests): one budget for all such names,
    // so a client inventing request names cannot flood the log either.
    session.on(UNHANDLED_REQUEST, (type: string) => this.refuse(type.slice(0, 64), { why: 'vigil does not relay this channel request' }, 'unhandled'));
    session.on('close', () => this.clientClosed());
  }

  /**
   * A signal for the target's process: on record (durably first, in strict mode) before it is sent. One
   * that comes before the target's channel is open, or after it closed, has no process to reach: refused
   * and recorded as such, never dropped silently; so is any while the audit log cannot record it.
   */
  private async signal(name: string, accept: (() => void) | undefined, reject: (() => void) | undefined): Promise<void> {
    const { host } = this;
    const details = { request: 'signal', channel: this.index, signal: name };
    const refuse = (why: string) => {
      this.refuse('signal', { signal: String(name).slice(0, 64), why });
      this.answer(reject, false);
    };
    if (!this.backend || this.closed) return refuse(this.closed ? 'the channel is closed' : 'no process runs on this channel yet');
    if (!host.auditHealthy) return this.answer(reject, false);
    const durable = host.beforeForward('ssh.request', details);
    if (durable) {
      try {
        await durable;
      } catch {
        // The session is being ended (audit_unavailable): the signal is not sent.
        return this.answer(reject, false);
      }
    }
    if (this.closed) return refuse('the channel is closed');
    try {
      this.backend.signal(name);
    } catch {
      // ssh2 refuses unknown signal names; the client asked for something no target understands.
      return refuse('unknown signal name');
    }
    this.answer(accept, true);
  }

  /** Why an env request is refused ('' = not allow-listed), or undefined when it is taken. */
  private envRefusal(name: string, value: string): string | undefined {
    if (this.started || !envAllowed(this.host.section.env_allow, name)) return '';
    const known = this.env[name] !== undefined;
    if (!known && Object.keys(this.env).length >= MAX_ENV_VARS) return `at most ${MAX_ENV_VARS} environment variables per channel`;
    const bytes = this.envBytes + name.length + value.length - (known ? name.length + this.env[name]!.length : 0);
    if (bytes > MAX_ENV_BYTES) return `at most ${MAX_ENV_BYTES} bytes of environment variables per channel`;
    return undefined;
  }

  /**
   * Answer a request the client may wait for (accept/reject are undefined without want-reply). Once the
   * channel started, ssh2's own accept/reject do nothing, so the answer is sent by hand: a client waiting
   * for it would otherwise hang.
   */
  private answer(reply: (() => unknown) | undefined, success: boolean): void {
    if (!reply) return;
    if (!answerStartedSessionRequest(this.session, success)) reply();
  }

  /** A refused request on record: each one up to REFUSALS_RECORDED_EACH per kind, then counted (see refusalsSummary). */
  private refuse(request: string, details: Record<string, unknown>, budget = request): void {
    const n = (this.refusals.get(budget) ?? 0) + 1;
    this.refusals.set(budget, n);
    if (n <= REFUSALS_RECORDED_EACH) this.host.requestRefused(request, { channel: this.index, ...details });
  }

  /** The refusals not recorded one by one, as one event per request kind (once, when the channel ends). */
  private recordRefusalsSummary(): void {
    for (const [request, n] of this.refusals) {
      // 'unhandled': requests of kinds ssh2 refuses itself, counted together.
      if (n > REFUSALS_RECORDED_EACH) this.host.requestRefused(request, { channel: this.index, why: 'more refusals of this request than are recorded one by one', refused: n, unrecorded: n - REFUSALS_RECORDED_EACH });
    }
    this.refusals.clear();
  }

  private start(asked: 'shell' | 'exec' | 'sftp', accept: () => ssh2.ServerChannel | undefined, reject: (() => void) | undefined, command?: string): void {
    if (this.started) {
      // A second shell/exec/subsystem on one channel (RFC 4254 allows one): refused, on record.
      this.refuse(asked === 'sftp' ? 'subsystem' : asked, { why: `the channel already runs ${this.kind === 'exec' ? 'a command' : `a ${this.kind}`}`, ...(command !== undefined ? { command: command.slice(0, 1024) } : {}) });
      return this.answer(reject, false);
    }
    if (this.host.ending) return this.answer(reject, false);
    this.started = true;
    // A certificate force-command replaces whatever the client asked for (like OpenSSH's sshd does).
    const forced = this.host.principal.forceCommand;
    const kind = forced ? 'exec' : asked;
    this.kind = kind;
    this.command = forced ?? command;
    if (forced) this.requested = { kind: asked, ...(asked === 'exec' ? { command } : {}) };
    // Accept at once: ssh2 drops channel data and treats EOF as the end of a session whose request is not
    // accepted in the same tick. Client input waits unread in the channel (its SSH window stops the
    // client) until the target's channel is open; if the target refuses, the client hears it on stderr.
    const client = accept();
    if (!client) return;
    this.client = client;
    this.startedAt = Date.now();
    client.on('error', (e: Error) => this.host.log.debug({ err: e.message, channel: this.index }, 'client channel error'));
    void this.forward(kind, client, forced ? { requested: asked === 'exec' ? command : asked } : undefined);
  }

  /**
   * Ask the target for the channel, once the audit log allows it: nothing is forwarded while the log
   * cannot be written, and an exec's `ssh.exec.start` is recorded first (durably first, in strict mode).
   */
  private async forward(kind: 'shell' | 'exec' | 'sftp', client: ssh2.ServerChannel, forced: { requested?: string } | undefined): Promise<void> {
    const what = kind === 'exec' ? 'command not run' : kind === 'shell' ? 'shell not started' : 'sftp not started';
    if (!this.host.auditHealthy) return this.refuseUnrecorded(what, 'the audit log is unavailable');
    if (kind === 'exec' && this.refusedByGuardrail()) return;
    if (kind === 'exec') {
      const durable = this.host.beforeForward('ssh.exec.start', {
        channel: this.index,
        command: this.command,
        pty: !!this.pty,
        ...(this.ptyRequested ? { pty_size_requested: this.ptyRequested } : {}),
        ...this.requestedDetails(),
      });
      if (durable) {
        try {
          await durable;
        } catch (e) {
          return this.refuseUnrecorded(what, (e as Error).message);
        }
      }
      if (this.closed || this.host.ending) return this.terminate('the session is closed.', this.host.endReason);
      this.execForwarded = true;
    }
    const done = (err: Error | undefined, ch: ssh2.ClientChannel | undefined) => {
      if (err || !ch || this.host.ending || this.closed) {
        ch?.close();
        if (this.closed) return;
        this.host.log.info({ channel: this.index, err: err?.message }, 'target refused the channel request');
        this.error = err?.message ?? 'session ending';
        // The target answered the exec request with a refusal: it did not run.
        if (err) this.execForwarded = false;
        this.terminate(`${this.host.target.name} refused the ${kind} request.`, err ? undefined : this.host.endReason);
        return;
      }
      try {
        this.attach(client, ch, forced);
      } catch (e) {
        // Never leave a half-set-up channel: tell the client and close both sides.
        this.host.log.error({ err: e, channel: this.index }, 'channel setup failed');
        this.terminate('vigil could not set up this channel.');
      }
    };
    const backend = this.host.backend;
    const pty = this.pty ? { term: this.pty.term, cols: this.pty.cols, rows: this.pty.rows, width: this.pty.width, height: this.pty.height, modes: this.pty.modes } : undefined;
    try {
      if (kind === 'shell') backend.shell(pty ?? false, { env: this.env }, done);
      // Like sshd, a forced command learns what was asked for from SSH_ORIGINAL_COMMAND (the target's sshd
      // must accept it: `AcceptEnv SSH_ORIGINAL_COMMAND`; env requests are refused silently otherwise).
      else if (kind === 'exec') backend.exec(this.command!, { pty, env: this.requested?.command !== undefined ? { ...this.env, SSH_ORIGINAL_COMMAND: this.requested.command } : this.env }, done);
      else backend.subsys('sftp', done);
    } catch (e) {
      done(e as Error, undefined);
    }
  }

  /** The audit log cannot take the record: refuse on the client's stderr, and end the session. */
  /**
   * Guardrails (src/guardrails) decide on the exec command's words before it goes to the target: a
   * refused one is never sent; the client reads why on stderr and gets exit status 1.
   */
  private refusedByGuardrail(): boolean {
    const guard = this.host.guardrails;
    if (!guard?.guardsSsh) return false;
    const d = guard.checkCommand(this.command ?? '');
    if (d.action === 'allow') return false;
    const { message, hint } = refusalMessage(d, 'command');
    this.host.emit(d.unparsed ? 'guardrail.unparsed' : 'guardrail.blocked', 'failure', { channel: this.index, command: this.command, decision: d.action, reason: d.reason, rule: d.rule, ...this.requestedDetails() });
    this.error = `refused by guardrail ${d.rule}`;
    this.exit = { code: 1 };
    this.terminate(`${message}.\r\n${hint}`);
    return true;
  }

  private refuseUnrecorded(what: string, why: string): void {
    this.host.log.error({ channel: this.index, err: why }, `audit log unavailable; ${what}`);
    this.error = 'audit_unavailable';
    this.terminate(`audit log unavailable, ${what}`, 'audit_unavailable');
    this.host.terminateSession('audit_unavailable', 'vigil cannot write its audit log; the session is closed.');
  }

  private attach(client: ssh2.ServerChannel, backend: ssh2.ClientChannel, forced: { requested?: string } | undefined): void {
    const { host } = this;
    const stats = host.session.stats;
    this.backend = backend;
    const kind = this.kind!;
    if (kind !== 'sftp') {
      this.recording = host.services.recordings.openAsciicast(host.session.handle.id, this.index, {
        width: this.pty?.cols ?? 80,
        height: this.pty?.rows ?? 24,
        timestamp: Math.floor(Date.now() / 1000),
        term: this.pty?.term,
        command: kind === 'exec' ? this.command : undefined,
      }, { binary: this.pty ? 'full' : host.binaryOutput }); // with a terminal, record what the screen showed
      this.recording.onError((e) => {
        this.recordingError = e;
        host.recordingFailed(e);
      });
    }
    this.observer = this.observe(kind);
    host.channelStarted(kind, this.index, this.recording?.id, { command: this.command, pty: !!this.pty, ...(this.ptyRequested ? { pty_size_requested: this.ptyRequested } : {}), ...(forced ? { force_command: true, requested: forced.requested } : {}) });

    const rec = this.recording;
    const obs = this.observer;
    // A shell reading a script from stdin: that script is recorded whatever recording.keystrokes says.
    const input = host.keystrokes || this.shellReadsStdin ? rec : undefined;
    // Each direction waits when its recording or the terminal emulator falls behind, so a fast session
    // runs at their pace instead of queueing without bound (or failing the recording).
    const tapFor = (toClient: boolean, observer: ChannelObserver | undefined, writer: AsciicastWriter | undefined) => {
      let resume: (() => void) | undefined;
      const gate: TapGate = {
        onDrain: (cb) => {
          resume = cb;
          if (toClient) observer?.gate?.onDrain(cb);
        },
      };
      const tap = (chunk: Buffer): TapVerdict => {
        if (this.blocked) return 'drop';
        // Client bytes are what the target acts on (sftp requests, keystrokes, stdin): none pass while the
        // audit log cannot record what they do.
        if (!toClient && !host.auditHealthy) {
          this.auditLost();
          return 'drop';
        }
        if (toClient) stats.bytesToClient += chunk.length;
        else stats.bytesFromClient += chunk.length;
        if (toClient) this.bytesToClient += chunk.length;
        else this.bytesFromClient += chunk.length;
        host.touch();
        let ok = true;
        if (toClient) ok = observer?.serverData(chunk) !== false;
        else observer?.clientData(chunk);
        // The observer could not account for these bytes: they are not forwarded (the channel is ending).
        if (this.blocked) return 'drop';
        if (this.durableBeforeForward.length > 0) {
          const records = Promise.all(this.durableBeforeForward);
          this.durableBeforeForward = [];
          // A record that cannot be made durable: the chunk is dropped and the session ends. A held chunk
          // enters the recording when it is forwarded (the source waits meanwhile, so order is kept).
          return records.then(
            (results) => {
              const replacement = results.find((r): r is Buffer => r instanceof Buffer);
              record(replacement ?? chunk);
              return replacement;
            },
            (e: Error) => {
              this.auditLost(this.kind === 'sftp' ? undefined : 'command not run', e.message);
              throw e;
            },
          );
        }
        return record(chunk) && ok;
      };
      /** Into the recording; false while it is behind (the relay then waits for it). */
      const record = (chunk: Buffer): boolean => {
        if (!writer) return true;
        if (toClient) writer.output(chunk);
        else writer.input(chunk);
        if (writer.onDrained && (writer.queuedBytes ?? 0) > RECORDING_HIGH_WATER) {
          writer.onDrained(() => resume?.());
          return false;
        }
        return true;
      };
      return { tap, gate };
    };
    const out = tapFor(true, obs, rec);
    const err = tapFor(true, undefined, rec);
    const inp = tapFor(false, obs, input);
    // A client that stopped reading (its SSH window stays shut): the target is not read meanwhile
    // (bounded memory); after slow_clients.write_stall_timeout the session ends with reason write_stall.
    const stallMs = this.host.services.config.slow_clients.write_stall_timeout;
    let stallTimer: NodeJS.Timeout | undefined;
    let blockedRelays = 0;
    const onBlocked = (blocked: boolean) => {
      blockedRelays += blocked ? 1 : -1;
      if (blockedRelays > 0 && !stallTimer && stallMs > 0) {
        stallTimer = setTimeout(() => this.host.terminateSession('write_stall', `the client read none of the pending output for ${Math.round(stallMs / 1000)}s; the session is closed.`), stallMs);
        stallTimer.unref();
      } else if (blockedRelays === 0 && stallTimer) {
        clearTimeout(stallTimer);
        stallTimer = undefined;
      }
    };
    this.stopRelays.push(
      relay(backend, client, out.tap, undefined, out.gate, onBlocked),
      relay(backend.stderr, client.stderr, err.tap, undefined, err.gate, onBlocked),
      // Client EOF (e.g. the end of scp's input) goes on to the target as EOF.
      relay(client, backend, inp.tap, () => backend.end(), inp.gate),
    );
    backend.on('exit', (code: number | null, signal?: string, dumped?: boolean, message?: string) => {
      this.exit = code !== null && code !== undefined ? { code } : { signal: (signal ?? 'SIGKILL').replace(/^SIG/, ''), dumped: !!dumped, message: message ?? '' };
      this.targetExit = this.exit;
    });
    backend.once('close', () => void this.backendClosed());
    backend.on('error', (e: Error) => host.log.debug({ err: e.message, channel: this.index }, 'backend channel error'));
  }

  /** A shell (the login shell, or `bash -s`, `sh` … as the command) that reads its commands from stdin. */
  private get readsCommands(): boolean {
    return this.kind === 'shell' || (this.kind === 'exec' && readsCommandsFromStdin(this.command ?? ''));
  }

  /** …without a terminal: its stdin is a script. */
  private get shellReadsStdin(): boolean {
    return !this.pty && this.readsCommands;
  }

  /**
   * What watches this channel's bytes: SFTP decoding, the terminal of a pty shell (or of a command that
   * starts one: `ssh -t host bash`, `sudo -i`, `su -`), a shell's script on stdin, or legacy scp.
   */
  private observe(kind: 'shell' | 'exec' | 'sftp'): ChannelObserver | undefined {
    if (kind === 'sftp') {
      // Strict: each file-changing request is on record (ssh.sftp.start) before its bytes go on.
      const strict = this.host.services.events.durability === 'strict';
      return this.host.observeSftp(this.index, {
        undecodable: (why) => this.undecodable(why, 'sftp'),
        intent: strict
          ? (details) => {
              const durable = this.host.beforeForward('ssh.sftp.start', details);
              if (durable) this.durableBeforeForward.push(durable);
            }
          : undefined,
      });
    }
    if (this.pty && (kind === 'shell' || startsShell(this.command ?? ''))) {
      // Strict: the line an Enter submits is on record (ssh.command.start) before the Enter goes on. Under
      // SSH guardrails it is checked first; a refused line's Enter never goes on (nothing is held without
      // either, so batched sessions no guardrail applies to add no latency to Enter).
      const strict = this.host.services.events.durability === 'strict';
      const guard = this.host.guardrails?.guardsSsh ? this.host.guardrails : undefined;
      const hooks =
        strict || guard
          ? {
              strict,
              guard,
              hold: (p: Promise<void | Buffer>) => void this.durableBeforeForward.push(p),
              // The user's terminal and the recording (a replay shows why the line went away).
              tell: (text: string) => {
                if (this.client?.writable) this.client.write(text);
                this.recording?.output(text);
              },
            }
          : undefined;
      return this.host.observeTerminal(this.index, this.pty, this.recording?.id, hooks);
    }
    if (this.readsCommands) return observeShellInput(this.host, this.index, this.recording?.id);
    const scp = this.pty ? null : parseScpCommand(this.command ?? '');
    return scp ? this.host.observeScp(this.index, scp, (why) => this.undecodable(why, 'scp')) : undefined;
  }

  /** The audit log failed while the channel runs: stop forwarding at once and end the session. */
  private auditLost(what = 'nothing more is forwarded', why = 'the audit log became unavailable'): void {
    if (this.blocked) return;
    this.blocked = true;
    for (const stop of this.stopRelays) stop();
    queueMicrotask(() => this.refuseUnrecorded(what, why));
  }

  /**
   * The SFTP (or legacy scp) stream cannot be decoded, so what passes could not be recorded: stop relaying at once (the
   * tap drops the offending chunk), and end the channel once the current chunk's handling returns.
   */
  private undecodable(why: string, protocol: 'sftp' | 'scp'): void {
    if (this.blocked) return;
    this.blocked = true;
    for (const stop of this.stopRelays) stop();
    this.host.emit(protocol === 'sftp' ? 'ssh.sftp.undecodable' : 'ssh.scp.undecodable', 'failure', { channel: this.index, error: why, ...(protocol === 'scp' ? { command: this.command } : {}) });
    const name = protocol === 'sftp' ? 'SFTP' : 'scp';
    queueMicrotask(() => this.terminate(`the ${name} stream could not be decoded, so vigil closed the channel (nothing more was forwarded).`, 'protocol_error'));
  }

  /** The target closed its channel: deliver what is left, then exit status, then EOF + close (in that order). */
  private async backendClosed(): Promise<void> {
    const client = this.client!;
    // OpenSSH always reports how a session's process ended; a channel closed without that means the
    // target (or the connection to it) went away.
    if (!this.targetExit) this.endReason ??= this.host.endReason ?? 'backend_closed';
    if (!this.exit && !this.host.ending) {
      client.stderr.write(`\r\nvigil: ${this.host.targetLostMessage}\r\n`);
      this.exit = { code: GATEWAY_EXIT_STATUS };
    }
    await Promise.all([flushed(client), flushed(client.stderr)]);
    this.sendExit();
    client.end();
    await this.finish();
  }

  private sendExit(): void {
    const client = this.client;
    if (!client || !this.exit) return;
    try {
      if ('code' in this.exit) client.exit(this.exit.code);
      else client.exit(this.exit.signal, this.exit.dumped, this.exit.message);
    } catch {
      // Unknown signal name from the target: report a plain failure instead.
      client.exit(GATEWAY_EXIT_STATUS);
    }
  }

  /** The client closed the channel first: close ours to the target. */
  private clientClosed(): void {
    if (!this.client) {
      // Closed before it started (refused, or never asked for anything): it no longer counts against
      // ssh.max_sessions.
      if (!this.closed) {
        this.recordRefusalsSummary();
        this.host.channelEnded(this.index, {});
      }
      this.closed = true;
      return;
    }
    this.endReason ??= this.host.endReason ?? 'client_closed';
    this.backend?.close();
    void this.finish();
  }

  /** vigil ends this channel: say why on stderr, exit 255, close both sides. */
  terminate(message: string, reason?: EndReason): void {
    const client = this.client;
    if (!client || this.closed) return;
    this.endReason ??= reason;
    this.exit ??= { code: GATEWAY_EXIT_STATUS };
    try {
      client.stderr.write(`\r\nvigil: ${message}\r\n`);
      this.sendExit();
      client.end();
    } catch {
      // The client went away meanwhile.
    }
    this.backend?.close();
    void this.finish();
  }

  private async finish(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const stop of this.stopRelays) stop();
    const settled = this.observer?.close();
    const exit = this.exit;
    const exitDetails = exit ? ('code' in exit ? { exit_status: exit.code } : { exit_signal: exit.signal }) : {};
    // session.end waits (bounded) for the recording too, so recording.closed usually precedes it.
    const recorded = this.closeRecording();
    this.recordRefusalsSummary();
    this.host.channelEnded(this.index, exitDetails, settled ? Promise.all([settled, recorded]).then(() => {}) : recorded);
    if (this.kind === 'exec') this.recordExec(exitDetails);
    await recorded;
  }

  /**
   * Close the recording and put the SHA-256 and size of the file in the audit log (`recording.closed`): a
   * recording kept on local disk is then as tamper-evident as one in object storage (recording.stored).
   * A failed recording is reported too, with the hash of what reached the disk.
   */
  private async closeRecording(): Promise<void> {
    const rec = this.recording;
    if (!rec) return;
    let written: WrittenRecording;
    try {
      written = await rec.close();
    } catch (e) {
      this.host.log.warn({ err: (e as Error).message }, 'recording close failed');
      return;
    }
    const error = this.recordingError ?? written.error;
    this.host.emit('recording.closed', error ? 'failure' : 'success', {
      recording: rec.id,
      channel: this.index,
      sha256: written.sha256,
      bytes: written.bytes,
      ...(error ? { error: error.message } : {}),
    });
  }

  /**
   * `ssh.exec`: success/failure by the target's exit status; `unknown` when the command was sent but the
   * channel ended (client gone, target gone, session ended) before the target said how it ended.
   */
  /** Under a certificate force-command: what the client asked for, beside what ran. */
  private requestedDetails(): Record<string, unknown> {
    const r = this.requested;
    return r ? { force_command: true, requested: r.kind, ...(r.command !== undefined ? { requested_command: r.command } : {}) } : {};
  }

  private recordExec(exitDetails: Record<string, unknown>): void {
    const target = this.targetExit;
    const outcome = target ? ('code' in target && target.code === 0 ? 'success' : 'failure') : this.execForwarded ? 'unknown' : 'failure';
    const binary = this.recording?.binarySummary('o');
    this.host.emit('ssh.exec', outcome, {
      channel: this.index,
      command: this.command,
      ...this.requestedDetails(),
      recording: this.recording?.id,
      // Without the target's word, the status is vigil's own (255), and only meaningful if nothing ran.
      ...(target || !this.execForwarded ? exitDetails : {}),
      duration_ms: Date.now() - this.startedAt,
      bytes_to_client: this.bytesToClient,
      bytes_from_client: this.bytesFromClient,
      ...(target ? {} : { end_reason: this.endReason ?? this.host.endReason ?? 'client_closed' }),
      ...(binary ? { binary_output: binary } : {}),
      ...(this.error ? { error: this.error } : {}),
    });
  }

  get active(): boolean {
    return !!this.client && !this.closed;
  }
}
