import { SftpObserver, type SftpIntent, type SftpOperation } from './sftp/index.ts';
import { CommandTracker, ShellInputSplitter, type SubmittedLine } from './terminal/index.ts';
import { ScpObserver, type ScpCommand, type ScpTransfer } from './scp/index.ts';
import type { ChannelHost, ChannelObserver } from './host.ts';
import type { PtyInfo } from './session-channel.ts';

/** SFTP operation → `ssh.sftp` event details (snake_case like every event; paths included). */
export function sftpEventDetails(op: SftpOperation, channel: number): Record<string, unknown> {
  const { outcome, status, ...rest } = op;
  const d: Record<string, unknown> = { channel, result: outcome };
  for (const [k, v] of Object.entries(rest)) d[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = v;
  if (status) d.status = status;
  return d;
}

export interface SftpHooks {
  /** The stream cannot be decoded (called from inside clientData/serverData, before the bytes are relayed). */
  undecodable(why: string): void;
  /** A file-changing request is about to be forwarded (`ssh.sftp.start` details); only wanted in strict mode. */
  intent?(details: Record<string, unknown>): void;
}

/** SFTP intent → `ssh.sftp.start` details (snake_case). */
export function sftpIntentDetails(i: SftpIntent, channel: number): Record<string, unknown> {
  const d: Record<string, unknown> = { channel };
  for (const [k, v] of Object.entries(i)) d[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = v;
  return d;
}

/**
 * Feed an sftp subsystem channel to the SFTP observer; one `ssh.sftp` event per operation. A fatal
 * observation problem (the stream cannot be decoded) calls `undecodable` before the bytes are relayed.
 */
export function observeSftp(host: ChannelHost, index: number, hooks: SftpHooks): ChannelObserver {
  const { undecodable } = hooks;
  const obs = new SftpObserver({
    onIntent: hooks.intent ? (i) => hooks.intent!(sftpIntentDetails(i, index)) : undefined,
    onOperation: (op) => host.emit('ssh.sftp', op.outcome === 'ok' ? 'success' : op.outcome === 'incomplete' ? 'unknown' : 'failure', sftpEventDetails(op, index)),
    onError: (err) => {
      host.log.warn({ err: err.message, code: err.code, channel: index }, 'sftp observation problem');
      if (err.fatal) undecodable(`${err.code}: ${err.message}`);
    },
  });
  return {
    clientData: (c) => obs.clientData(c),
    serverData: (c) => obs.serverData(c),
    close: () => obs.end(),
  };
}

/**
 * scp transfer → `ssh.scp` event details (the path as sent, joined from the directory stack). An upload
 * also names its `destination`: the `scp -t` target the client wrote to (the file is that path, or
 * `destination/path` when the target is an existing directory; only the target's scp knows which).
 */
export function scpEventDetails(t: ScpTransfer, channel: number, command?: ScpCommand): Record<string, unknown> {
  const destination = t.direction === 'upload' && command?.paths[0] !== undefined ? { destination: command.paths[0] } : {};
  if (t.op === 'error') return { channel, op: 'error', direction: t.direction, from: t.from, message: t.message, ...destination };
  const { dirs, name, outcome, ...rest } = t;
  return { channel, ...rest, path: [...dirs, name].join('/'), ...destination, result: outcome };
}

/** Feed a legacy `scp -O` exec channel to the scp observer; one `ssh.scp` event per file or directory. A stream it cannot follow calls `undecodable` before the bytes are relayed. */
export function observeScp(host: ChannelHost, index: number, command: ScpCommand, undecodable: (why: string) => void): ChannelObserver {
  const obs = new ScpObserver({
    command,
    onTransfer: (t) => host.emit('ssh.scp', t.op !== 'error' && t.outcome === 'ok' ? 'success' : t.op !== 'error' && t.outcome === 'incomplete' ? 'unknown' : 'failure', scpEventDetails(t, index, command)),
    onError: (err) => {
      host.log.warn({ err: err.message, channel: index }, 'scp observation problem');
      // Every scp observation error stops the observer: what follows could not be recorded.
      undecodable(`${err.code}: ${err.message}`);
    },
  });
  return {
    clientData: (c) => obs.clientData(c),
    serverData: (c) => obs.serverData(c),
    close: () => obs.end(),
  };
}

export interface TerminalHooks {
  /**
   * Strict durability: called from `clientData` for a chunk holding an Enter with the promise that the
   * chunk must wait for (the `ssh.command.start` of each line it submits is durable; a rejection means
   * the chunk must not be forwarded).
   */
  holdUntilDurable(durable: Promise<void>): void;
}

/**
 * Reconstruct interactive commands of a pty shell from a headless terminal; one `ssh.command` per Enter.
 * The emulator parses asynchronously; when it falls behind, the target's output waits (gate) rather than
 * queueing without bound. With `hooks` (strict mode), each submitted line is on record before its Enter.
 */
export function observeTerminal(host: ChannelHost, index: number, pty: PtyInfo, recording: string | undefined, hooks?: TerminalHooks): ChannelObserver {
  let resume: (() => void) | undefined;
  // Lines whose Enter the tracker has evaluated and whose chunk has not taken them yet.
  const submitted: SubmittedLine[] = [];
  const recordSubmitted = async (): Promise<void> => {
    // Every input event queued so far is evaluated once this resolves, the chunk's own Enters included
    // (the flushes of earlier chunks took theirs).
    await tracker.flush();
    const lines = submitted.splice(0);
    await Promise.all(
      lines.map((l) =>
        host.beforeForward('ssh.command.start', {
          source: 'terminal',
          prompt: l.prompt,
          ...(l.command !== undefined ? { command: l.command } : {}),
          ...(l.keys !== undefined ? { keys: l.keys } : {}),
          ...(l.exact === false ? { exact: false } : {}),
          ...(l.hidden ? { hidden: true } : {}),
          channel: index,
          recording,
        }),
      ),
    );
  };
  const tracker = new CommandTracker({
    cols: pty.cols || 80,
    rows: pty.rows || 24,
    onSubmit: hooks ? (l) => submitted.push(l) : undefined,
    onCommand: (c) =>
      host.emit('ssh.command', 'success', {
        command: c.command,
        source: c.source,
        prompt: c.prompt,
        ...(c.echo === false ? { echo: false } : {}),
        ...(c.exact === false ? { exact: false } : {}),
        channel: index,
        recording,
      }),
    onDrain: () => resume?.(),
  });
  return {
    clientData: (c) => {
      if (tracker.input(c) > 0 && hooks) hooks.holdUntilDurable(recordSubmitted());
    },
    serverData: (c) => tracker.output(c),
    resize: (cols, rows) => tracker.resize(cols, rows),
    gate: { onDrain: (cb) => (resume = cb) },
    close: () => {
      // Let the emulator finish what it was given (the last command's Enter) before dropping it.
      return tracker.flush().finally(() => tracker.dispose());
    },
  };
}

/**
 * A shell without a terminal reading its commands from stdin (`ssh host < script.sh`, `ssh host bash -s`):
 * one `ssh.command` (source: stdin) per complete command, emitted before the byte that completes it is
 * forwarded; what is left unfinished at the end is reported when the channel closes.
 */
export function observeShellInput(host: ChannelHost, index: number, recording: string | undefined): ChannelObserver {
  const splitter = new ShellInputSplitter();
  const emit = (commands: string[]) => {
    for (const command of commands) host.emit('ssh.command', 'success', { command, source: 'stdin', channel: index, recording });
  };
  return {
    clientData: (c) => emit(splitter.push(c)),
    serverData: () => true,
    close: () => emit(splitter.end()),
  };
}
