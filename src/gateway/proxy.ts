import type net from 'node:net';
import type { Logger } from 'pino';
import type { Listen } from '../config/types.ts';
import type { ProxyConfigPart } from '../config/proxy-config.ts';
import type { GatewayServices } from './services.ts';

/**
 * The contract every protocol proxy implements (one folder under `proxies/`, one line in
 * `proxies/registry.ts`; app/ hands that list to the core). A proxy never imports another proxy; all it
 * needs comes from `GatewayServices`.
 */
export interface ProxyModule<Section extends ListenerSection = ListenerSection> extends ProxyConfigPart<Section> {
  /** Build the proxy. Called once at gateway start, after config validation. */
  create(services: GatewayServices, section: Section): Promise<ProxyInstance> | ProxyInstance;
}

export interface ListenerSection {
  enabled: boolean;
  listen: Listen;
  proxy_protocol?: { trusted: string[]; header_timeout: number };
}

export interface ConnectionContext {
  /** Connection id (ULID); becomes the session id once authenticated. */
  id: string;
  remote: { ip: string; port: number };
  log: Logger;
}

export interface ProxyInstance {
  /** Take over an accepted TCP connection. Must never throw; errors end this connection only. */
  handleConnection(socket: net.Socket, ctx: ConnectionContext): void;
  /** Stop taking new work; live sessions are ended by the registry at shutdown. */
  close(): Promise<void>;
}
