/**
 * Gateway-issued MySQL connection ids. The id a client sees in the handshake is vigil's own (the greeting
 * goes out before any backend connection exists); `SELECT CONNECTION_ID()` answers the backend's thread
 * id. `KILL [QUERY] <id>` takes either, and only for a connection of the same vigil user on the same
 * target: a handshake id is mapped to that connection's backend thread, a backend id is one of that
 * user's own threads on the same server.
 */
export interface KillableConnection {
  /** vigil user owning the connection (undefined before authentication). */
  readonly user: string | undefined;
  readonly targetName: string | undefined;
  readonly sessionId: string;
  /** Backend thread id once connected. */
  readonly backendThreadId: number | undefined;
  /**
   * A `KILL CONNECTION` of this connection's backend thread is on its way from another session of the
   * same user (undefined: withdrawn). The server closes a killed thread without a word; this is how the
   * connection knows to tell its client "Connection was killed" (1927) rather than that the server went away.
   */
  killRequested(by: string | undefined): void;
}

/**
 * Handshake ids are taken from the upper half of the 32-bit range: a server's thread ids count up from 1
 * and do not get there, so an id names a handshake or a backend thread, never both.
 */
export const FIRST_GATEWAY_ID = 0x80000000;
const LAST_GATEWAY_ID = 0xfffffffe;

export class ConnectionIds {
  private readonly byId = new Map<number, KillableConnection>();
  private next = FIRST_GATEWAY_ID;

  allocate(conn: KillableConnection): number {
    for (;;) {
      const id = this.next;
      this.next = this.next >= LAST_GATEWAY_ID ? FIRST_GATEWAY_ID : this.next + 1;
      if (!this.byId.has(id)) {
        this.byId.set(id, conn);
        return id;
      }
    }
  }

  release(id: number): void {
    this.byId.delete(id);
  }

  get(id: number): KillableConnection | undefined {
    return this.byId.get(id);
  }

  /**
   * The connection `id` names for `user` on `targetName`: its handshake id first, else a backend thread
   * id of one of that user's connections to the same target. Undefined when it names none of theirs.
   */
  resolveOwn(id: number, user: string | undefined, targetName: string | undefined): { conn: KillableConnection; by: 'gateway_id' | 'backend_thread_id' } | undefined {
    if (user === undefined) return undefined;
    const own = (c: KillableConnection | undefined) => c !== undefined && c.user === user && c.targetName === targetName && c.backendThreadId !== undefined;
    const byGateway = this.byId.get(id);
    if (own(byGateway)) return { conn: byGateway!, by: 'gateway_id' };
    for (const c of this.byId.values()) if (own(c) && c.backendThreadId === id) return { conn: c, by: 'backend_thread_id' };
    return undefined;
  }
}
