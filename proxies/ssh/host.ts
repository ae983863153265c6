import type { SessionGuardrails } from '../../src/guardrails/index.ts';
import type ssh2 from 'ssh2';
import type { Logger } from 'pino';
import type { GatewayServices } from '../../src/gateway/services.ts';
import type { TargetConfig } from '../../src/config/schema.ts';
import type { Principal } from '../../src/identity/types.ts';
import type { OpenSession } from '../../src/sessions/admit.ts';
import type { EventType } from '../../src/events/catalog.ts';
import type { EndReason } from '../../src/sessions/registry.ts';
import type { SshSection } from './config.ts';
import type { TapGate } from './relay.ts';
import type { ScpCommand } from './scp/index.ts';

/** Something that watches one channel's bytes (SFTP decoder, terminal command tracker). */
export interface ChannelObserver {
  clientData(chunk: Buffer): void;
  /** False asks the relay to pause the target's output until `gate` drains. */
  serverData(chunk: Buffer): boolean | void;
  gate?: TapGate;
  resize?(cols: number, rows: number): void;
  /** May return a promise: the last events still being worked out (a terminal's last command). */
  close(): void | Promise<void>;
}

/** What a relayed channel needs from the authenticated connection it belongs to. */
export interface ChannelHost {
  readonly services: GatewayServices;
  readonly section: SshSection;
  readonly log: Logger;
  readonly principal: Principal;
  readonly target: TargetConfig;
  readonly session: OpenSession;
  readonly backend: ssh2.Client;
  /** False once the backend connection has dropped. */
  readonly backendAlive: boolean;
  /** What a channel tells its client when the target connection dropped under it. */
  readonly targetLostMessage: string;
  /** True once the session is being ended (no new channels). */
  readonly ending: boolean;
  /** Why the session is ending, once it is. */
  readonly endReason: EndReason | undefined;
  /** Record `i` events too (config.recording.keystrokes). */
  readonly keystrokes: boolean;
  /** Non-text output of channels without a terminal: recorded in full, or as size + SHA-256 (config.recording.binary_output). */
  readonly binaryOutput: 'summary' | 'full';
  /** Traffic seen (idle timeout). */
  touch(): void;
  /** An audit event of this session (fire-and-forget; a write failure ends the session). */
  emit(type: EventType, outcome: 'success' | 'failure' | 'unknown', details: Record<string, unknown>): void;
  /**
   * Record that something is about to be forwarded (`ssh.exec.start`), per audit.durability: undefined
   * (batched: forward now; a later write failure ends the session) or a promise that resolves once the
   * record is durable (strict: forward only then; a rejection means it must not be forwarded).
   */
  beforeForward(type: EventType, details: Record<string, unknown>): Promise<void> | undefined;
  /** Guardrails for this session's roles on its target (undefined: none applies). */
  readonly guardrails: SessionGuardrails | undefined;
  /** Whether the audit log can be written at all (nothing is forwarded while it cannot). */
  readonly auditHealthy: boolean;
  /** End the whole session (all channels, then the connection) with this reason. */
  terminateSession(reason: EndReason, message: string): void;
  /** A channel request refused by policy → `ssh.request` failure event. */
  requestRefused(request: string, details: Record<string, unknown>): void;
  channelStarted(kind: string, index: number, recording: string | undefined, details: Record<string, unknown>): void;
  /** `exit` is `{ exit_status }`, `{ exit_signal }` or empty (the channel ended without either). */
  /** `settled`: resolves once the channel's last events are written (session.end waits for it). */
  channelEnded(index: number, exit: { exit_status?: number; exit_signal?: string }, settled?: Promise<void>): void;
  recordingFailed(err: Error): void;
  /**
   * A forwarded connection is open: `close` cuts it (and records its end) when the session ends; `ended`
   * resolves once its closing `ssh.forward` is emitted (session.end waits for it, like a channel's).
   */
  forwardOpened(close: () => void, ended: Promise<void>): void;
  observeSftp(index: number, hooks: SftpHooks): ChannelObserver | undefined;
  /** `undecodable`: the legacy scp stream cannot be followed (called before the bytes are relayed). */
  observeScp(index: number, command: ScpCommand, undecodable: (why: string) => void): ChannelObserver | undefined;
  observeTerminal(index: number, pty: PtyInfo, recording: string | undefined, hooks?: TerminalHooks): ChannelObserver | undefined;
}

/** A pty as the client asked for it (ssh2's pty-req info). */
export interface PtyInfo {
  term: string;
  cols: number;
  rows: number;
  width: number;
  height: number;
  modes: Record<string, number>;
}

export interface SftpHooks {
  /** The stream cannot be decoded (called from inside clientData/serverData, before the bytes are relayed). */
  undecodable(why: string): void;
  /** A file-changing request is about to be forwarded (`ssh.sftp.start` details); only wanted in strict mode. */
  intent?(details: Record<string, unknown>): void;
}

export interface TerminalHooks {
  /** Strict durability: the `ssh.command.start` of each line an Enter submits is durable before the Enter goes on. */
  strict: boolean;
  /** Guardrails that guard SSH (`guardsSsh`): each line an Enter submits is checked before the Enter goes on. */
  guard?: SessionGuardrails;
  /**
   * Called from `clientData` for a chunk holding an Enter with the promise that the chunk must wait for.
   * It resolves to a replacement chunk when a guardrail refused a line (the bytes before that line's Enter,
   * then Ctrl-U instead of the Enter; the rest dropped); a rejection means the chunk must not be forwarded.
   */
  hold(until: Promise<void | Buffer>): void;
  /** Write to the user's terminal (the client side of the channel). */
  tell(text: string): void;
}
