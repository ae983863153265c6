/**
 * What vigil's greeting says about the server: the target's own version string, capabilities and
 * charset, learned from the real backend. The greeting goes out before the client names its target (the
 * target is in the user field of the handshake response), so one listener shows one server: the target
 * named by `mysql.greeting_target`, or else the first MySQL target in the configuration. Each target's
 * identity is learned at gateway start (a login with the target's own credentials, then COM_QUIT) and
 * refreshed by every session's backend login, so a server upgrade shows in the next greeting.
 */
import type { Greeting } from './handshake.ts';

export interface ServerIdentity {
  serverVersion: string;
  capabilities: number;
  mariadbCapabilities: number;
  charset: number;
  status: number;
}

/** Shown until a target's server has been seen (unreachable at start, no session yet). */
export const FALLBACK_IDENTITY: ServerIdentity = { serverVersion: '8.0.36-vigil', capabilities: 0xffffffff, mariadbCapabilities: 0, charset: 45, status: 2 };

export class ServerIdentities {
  private readonly known = new Map<string, ServerIdentity>();
  /** Probes at gateway start; the first greeting waits for them (each bounded by the connect timeout). */
  private probing: Promise<void> = Promise.resolve();

  /** @param shown the target whose identity the greeting shows; @param override `mysql.server_version`. */
  constructor(
    private readonly shown: string | undefined,
    private readonly override: string | undefined,
  ) {}

  learn(target: string, g: Greeting): void {
    this.known.set(target, { serverVersion: g.serverVersion, capabilities: g.capabilities, mariadbCapabilities: g.mariadbCapabilities ?? 0, charset: g.charset, status: g.status });
  }

  probe(run: Promise<unknown>[]): void {
    this.probing = Promise.allSettled(run).then(() => undefined);
  }

  ready(): Promise<void> {
    return this.probing;
  }

  /** The identity the next greeting shows. */
  current(): ServerIdentity {
    const id = (this.shown !== undefined ? this.known.get(this.shown) : undefined) ?? FALLBACK_IDENTITY;
    return this.override !== undefined ? { ...id, serverVersion: this.override } : id;
  }
}
