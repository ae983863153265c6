/**
 * Gateway-issued MySQL connection ids. The id a client sees in the handshake (and in CONNECTION_ID()
 * answers it cannot trust) is vigil's own; `KILL [QUERY] <id>` is mapped through this table to the
 * backend thread of that connection, and only for the same vigil user on the same target.
 */
export interface KillableConnection {
  /** vigil user owning the connection (undefined before authentication). */
  readonly user: string | undefined;
  readonly targetName: string | undefined;
  readonly sessionId: string;
  /** Backend thread id once connected. */
  readonly backendThreadId: number | undefined;
}

export class ConnectionIds {
  private readonly byId = new Map<number, KillableConnection>();
  private next = 1;

  allocate(conn: KillableConnection): number {
    for (;;) {
      const id = this.next;
      this.next = this.next >= 0xfffffffe ? 1 : this.next + 1;
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
}
