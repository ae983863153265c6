import type net from 'node:net';
import type { z } from 'zod';
import type { Logger } from 'pino';
import type { SchemaContext, Listen } from '../config/types.ts';
import type { GatewayServices } from './services.ts';

/**
 * The contract every protocol proxy implements (one folder under `proxies/`, one line in
 * `proxies/registry.ts`). A proxy never imports another proxy; all it needs comes from `GatewayServices`.
 */
export interface ProxyModule<Section extends ListenerSection = ListenerSection> {
  /** Protocol name: the config section key and the `protocol` value of its targets. */
  readonly name: string;
  /** Schema of the proxy's config section (must contain `enabled` and `listen`; use `listenerBase`). */
  sectionSchema(sc: SchemaContext): z.ZodType<Section>;
  /** Extra fields of a target of this protocol, merged with the common target fields. */
  targetFields(sc: SchemaContext): z.ZodRawShape;
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
