import { createRequire } from 'node:module';

/**
 * Two SSH messages ssh2's public API cannot send with text: a USERAUTH_BANNER (shown by OpenSSH before
 * "Permission denied") and a DISCONNECT carrying a description (printed by the OpenSSH client even at
 * LogLevel ERROR). Both are how a refused user learns why without a channel. They go through ssh2's own
 * packet writer so encryption and sequence numbers stay right.
 */
const require = createRequire(import.meta.url);
const { sendPacket } = require('ssh2/lib/protocol/utils.js') as { sendPacket: (proto: unknown, packet: Buffer, bypass?: boolean) => boolean };

const MSG_DISCONNECT = 1;
const MSG_USERAUTH_BANNER = 53;
export const DISCONNECT_BY_APPLICATION = 11;
export const DISCONNECT_NO_MORE_AUTH_METHODS = 14;

interface PacketWriter {
  allocStart: number;
  alloc(len: number, force?: boolean): Buffer;
  finalize(packet: Buffer, force?: boolean): Buffer;
}
interface ProtocolInternals {
  _packetRW: { write: PacketWriter };
  _kexinit: unknown;
}

function protocolOf(conn: unknown): ProtocolInternals | undefined {
  const proto = (conn as { _protocol?: ProtocolInternals })._protocol;
  return proto && proto._packetRW ? proto : undefined;
}

function stringFields(type: number, head: Buffer, strings: string[]): { len: number; write(p: Buffer, at: number): void } {
  const bufs = strings.map((s) => Buffer.from(s, 'utf8'));
  const len = 1 + head.length + bufs.reduce((n, b) => n + 4 + b.length, 0);
  return {
    len,
    write(packet, at) {
      packet[at++] = type;
      head.copy(packet, at);
      at += head.length;
      for (const b of bufs) {
        packet.writeUInt32BE(b.length, at);
        b.copy(packet, at + 4);
        at += 4 + b.length;
      }
    },
  };
}

function send(conn: unknown, type: number, head: Buffer, strings: string[]): boolean {
  const proto = protocolOf(conn);
  if (!proto) return false;
  try {
    const w = proto._packetRW.write;
    const body = stringFields(type, head, strings);
    const p = w.allocStart;
    const packet = w.alloc(body.len);
    body.write(packet, p);
    sendPacket(proto, w.finalize(packet));
    return true;
  } catch {
    return false;
  }
}

/** Text shown by the client before authentication completes (it may try other keys afterwards). */
export function sendBanner(conn: unknown, text: string): boolean {
  return send(conn, MSG_USERAUTH_BANNER, Buffer.alloc(0), [text.endsWith('\n') ? text.replace(/\r?\n$/, '\r\n') : `${text}\r\n`, '']);
}

/** Disconnect with a reason the user sees ("Received disconnect from …: 11: TEXT"). */
export function sendDisconnect(conn: unknown, text: string, reason = DISCONNECT_BY_APPLICATION): boolean {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(reason, 0);
  return send(conn, MSG_DISCONNECT, head, [text, '']);
}

export const OPEN_ADMINISTRATIVELY_PROHIBITED = 1;
export const OPEN_CONNECT_FAILED = 2;
export const OPEN_RESOURCE_SHORTAGE = 4;

/**
 * Refuse a channel open with a description: ssh2's reject() always sends an empty one, but the OpenSSH
 * client prints it ("channel 3: open failed: administratively prohibited: TEXT"), and it is the only place
 * an `ssh -L` user can learn why. ssh2's own reject still runs (it frees the reserved channel); only the
 * failure packet it writes is given our reason and text.
 */
export function rejectChannelOpen(conn: unknown, reject: () => void, reason: number, text: string): void {
  const proto = (conn as { _protocol?: { channelOpenFail?: (remote: number, reason: number, desc?: string) => void } })._protocol;
  const original = proto?.channelOpenFail;
  if (!proto || typeof original !== 'function') return reject();
  proto.channelOpenFail = (remote: number) => original.call(proto, remote, reason, text);
  try {
    reject();
  } finally {
    proto.channelOpenFail = original;
  }
}

interface StartedSessionInternals {
  _ending?: boolean;
  _chanInfo?: { outgoing: { id: number } };
  _channel?: { _client?: { _protocol?: { channelSuccess(chan: number): void; channelFailure(chan: number): void } } };
}

/**
 * Answer a want-reply request on a session channel that already runs its shell/exec/subsystem. ssh2's
 * accept() and reject() do nothing once the channel started (they check `session._channel`), so a client
 * that asked for a reply would wait forever; this sends the CHANNEL_SUCCESS/FAILURE ssh2 would have sent.
 * Returns false when the session has not started (ssh2's own accept/reject answer then) or is ending.
 */
export function answerStartedSessionRequest(session: unknown, success: boolean): boolean {
  const s = session as StartedSessionInternals;
  const proto = s._channel?._client?._protocol;
  if (!proto || s._ending || !s._chanInfo) return false;
  try {
    if (success) proto.channelSuccess(s._chanInfo.outgoing.id);
    else proto.channelFailure(s._chanInfo.outgoing.id);
    return true;
  } catch {
    return false;
  }
}
