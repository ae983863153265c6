/**
 * The per-user bound on live streams (the API's WebSocket streams and the console's live views): each one
 * holds a connection, a subscription and a recording reader for as long as the session lasts, so a single
 * signed-in user opening them without end would exhaust the gateway.
 */
export const MAX_STREAMS_PER_USER = 16;

export const TOO_MANY_STREAMS = 'VIGIL_TOO_MANY_STREAMS';

/** The refusal's message, the same wherever the stream was asked for. */
export function tooManyStreamsMessage(user: string): string {
  return `Refused: ${MAX_STREAMS_PER_USER} live streams are open for ${user} already; close one first.`;
}

/** Counts the open streams of each user. */
export class StreamSlots {
  private readonly held = new Map<string, number>();

  constructor(private readonly perUser = MAX_STREAMS_PER_USER) {}

  /**
   * Reserve one of `user`'s slots: the returned release frees it (once, however often it is called), or
   * undefined when every slot is taken.
   */
  take(user: string): (() => void) | undefined {
    const held = this.held.get(user) ?? 0;
    if (held >= this.perUser) return undefined;
    this.held.set(user, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.held.get(user) ?? 1) - 1;
      if (left > 0) this.held.set(user, left);
      else this.held.delete(user);
    };
  }
}
