/** The little of npm oidc-provider (which ships no types) the tests use. */
declare module 'oidc-provider' {
  import type http from 'node:http';
  interface KoaContext {
    path: string;
    method: string;
    body: unknown;
  }
  export class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>);
    use(middleware: (ctx: KoaContext, next: () => Promise<void>) => Promise<void>): void;
    listen(port: number, host?: string): http.Server;
  }
}
