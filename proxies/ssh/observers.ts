import { SftpObserver, type SftpOperation } from './sftp/index.ts';
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

/** Feed an sftp subsystem channel to the SFTP observer; one `ssh.sftp` event per operation. */
export function observeSftp(host: ChannelHost, index: number): ChannelObserver {
  const obs = new SftpObserver({
    onOperation: (op) => host.emit('ssh.sftp', op.outcome === 'ok' ? 'success' : 'failure', sftpEventDetails(op, index)),
    onError: (err) => host.log.warn({ err: err.message, channel: index }, 'sftp observation problem'),
  });
  return {
    clientData: (c) => obs.clientData(c),
    serverData: (c) => obs.serverData(c),
    close: () => obs.end(),
  };
}

/** Reconstruct interactive commands of a pty shell from a headless terminal; one `ssh.command` per Enter. */
export function observeTerminal(_host: ChannelHost, _index: number, _pty: PtyInfo, _recording: string | undefined): ChannelObserver | undefined {
  // Wired to proxies/ssh/terminal (CommandTracker) once it lands; see the next commit.
  return undefined;
}
