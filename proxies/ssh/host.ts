import type ssh2 from 'ssh2';
import type { Logger } from 'pino';
import type { GatewayServices } from '../../src/gateway/services.ts';
import type { TargetConfig } from '../../src/config/schema.ts';
import type { Principal } from '../../src/identity/types.ts';
import type { OpenSession } from '../../src/sessions/admit.ts';
import type { EventType } from '../../src/events/catalog.ts';
import type { SshSection } from './config.ts';
import type { PtyInfo } from './session-channel.ts';
import type { TapGate } from './relay.ts';
import type { ScpCommand } from './scp/index.ts';

/** Something that watches one channel's bytes (SFTP decoder, terminal command tracker). */
export interface ChannelObserver {
  clientData(chunk: Buffer): void;
  /** False asks the relay to pause the target's output until `gate` drains. */
  serverData(chunk: Buffer): boolean | void;
  gate?: TapGate;
  resize?(cols: number, rows: number): void;
  close(): void;
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
  /** True once the session is being ended (no new channels). */
  readonly ending: boolean;
  /** Record `i` events too (config.recording.keystrokes). */
  readonly keystrokes: boolean;
  /** Non-text output of channels without a terminal: recorded in full, or as size + SHA-256 (config.recording.binary_output). */
  readonly binaryOutput: 'summary' | 'full';
  /** Traffic seen (idle timeout). */
  touch(): void;
  /** An audit event of this session (fire-and-forget; a write failure ends the session). */
  emit(type: EventType, outcome: 'success' | 'failure', details: Record<string, unknown>): void;
  /** A channel request refused by policy → `ssh.request` failure event. */
  requestRefused(request: string, details: Record<string, unknown>): void;
  channelStarted(kind: string, index: number, recording: string | undefined, details: Record<string, unknown>): void;
  /** `exit` is `{ exit_status }`, `{ exit_signal }` or empty (the channel ended without either). */
  channelEnded(index: number, exit: { exit_status?: number; exit_signal?: string }): void;
  recordingFailed(err: Error): void;
  observeSftp(index: number): ChannelObserver | undefined;
  observeScp(index: number, command: ScpCommand): ChannelObserver | undefined;
  observeTerminal(index: number, pty: PtyInfo, recording: string | undefined): ChannelObserver | undefined;
}
