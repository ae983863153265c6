/**
 * A larger SSH receive window for the channels vigil reads bulk data from.
 *
 * ssh2 hard-codes a 2 MiB channel window and only grants more once half of it is used up (then back to
 * 2 MiB). For a relay that is short: the sender (sshd on downloads, the client on uploads) stops as soon
 * as its window is spent, and any scheduling delay of the gateway, the sender or the far side of the
 * relay on a busy machine leaves the pipe idle until the adjustment arrives. So while the relay consumes
 * data (its source is flowing), the window is topped up early and kept up to `RECEIVE_WINDOW`.
 *
 * Backpressure is unchanged: nothing is granted while the relay holds the source (a slow client, a
 * recording or terminal emulator behind), so the peer can send at most one window beyond what vigil has
 * passed on, and that is what the paused channel buffers (bounded by RECEIVE_WINDOW per channel).
 *
 * This reads and writes ssh2 internals (channel.incoming, the protocol's channelWindowAdjust), like
 * wire.ts; anything unexpected leaves the channel to ssh2's own window handling.
 */

/** Receive window kept open toward the sender of a relayed channel. */
export const RECEIVE_WINDOW = 8 * 1024 * 1024;
/** Grant more once this much of the window is used: fewer WINDOW_ADJUST messages than per packet, yet
 *  far earlier than ssh2's half-window. */
const ADJUST_STEP = 512 * 1024;

interface ChannelInternals {
  readableLength?: number;
  stderr?: { readableLength?: number };
  incoming?: { window: number; state?: string };
  outgoing?: { id: number; state: string };
  _client?: { _protocol?: { channelWindowAdjust(id: number, amount: number): void } };
}

/**
 * Returns a function to call after each chunk the relay passed on from `channel` without pausing it: it
 * tops the window up when at least ADJUST_STEP of it has been used. Returns undefined
 * for anything that is not an ssh2 channel (then ssh2's defaults apply).
 */
export function windowKeeper(channel: unknown): (() => void) | undefined {
  const ch = channel as ChannelInternals;
  const incoming = ch.incoming;
  const outgoing = ch.outgoing;
  const protocol = ch._client?._protocol;
  if (!incoming || !outgoing || !protocol || typeof protocol.channelWindowAdjust !== 'function' || typeof incoming.window !== 'number') return undefined;
  return () => {
    const used = RECEIVE_WINDOW - incoming.window;
    if (used < ADJUST_STEP || (outgoing.state !== 'open' && outgoing.state !== 'eof')) return;
    // Stdout and stderr share the window: while either has unread data buffered (its relay is paused)
    // nothing more is granted, so a held stderr cannot fill up on the back of a flowing stdout.
    if (ch.readableLength || ch.stderr?.readableLength) return;
    incoming.window = RECEIVE_WINDOW;
    protocol.channelWindowAdjust(outgoing.id, used);
  };
}
