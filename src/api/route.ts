import type http from 'node:http';
import type { GatewayServices } from '../gateway/services.ts';
import type { AccessService, Actor } from '../access/service.ts';
import type { LinkStore } from '../access/links.ts';

/**
 * The shape of an API route, apart from the route table (routes.ts), so that modules contributing
 * routes (approval links, OIDC self-service) depend on the shape, not on the table that lists them.
 */

/** One API route: method + path pattern (`:name` segments) → handler returning [status, body]. */
export interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  pattern: string;
  /**
   * The route takes the form of its own HTML page (application/x-www-form-urlencoded) besides JSON; the
   * server admits such a post only when it is not cross-site (src/api/cross-site.ts).
   */
  forms?: boolean;
  handle(ctx: RouteContext): Promise<[number, unknown]>;
}

export interface RouteContext {
  actor: Actor;
  params: Record<string, string>;
  query: URLSearchParams;
  req: http.IncomingMessage;
  services: GatewayServices;
  access: AccessService;
  /** One-time approval links (opened on first use). */
  links: () => LinkStore;
}
