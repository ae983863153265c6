import https from 'node:https';
import { ensureConsoleBuilt } from '../../console/build.mjs';

/**
 * The web console in tests: `ensureConsole()` builds console/ into dist/console once (and again only when
 * its sources changed), so a test run never depends on someone having run `npm run build`.
 * `ConsoleClient` speaks to /console/api as the browser does: cookie session and CSRF header.
 */
let built: Promise<unknown> | undefined;
export function ensureConsole(): Promise<unknown> {
  built ??= ensureConsoleBuilt();
  return built;
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  body: any;
}

export function request(url: string, opts: { method?: string; ca: string; cert?: string; key?: string; headers?: Record<string, string>; body?: string }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: opts.method ?? 'GET', ca: opts.ca, cert: opts.cert, key: opts.key, agent: false, headers: opts.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, body });
      });
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

export class ConsoleClient {
  cookie?: string;
  csrf?: string;
  constructor(
    readonly base: string,
    readonly ca: string,
    readonly cert?: { cert: string; key: string },
  ) {}

  async signIn(): Promise<Reply> {
    const r = await request(`${this.base}/console/api/signin`, { method: 'POST', ca: this.ca, ...this.cert, headers: { 'x-requested-with': 'vigil-console' } });
    const set = r.headers['set-cookie'];
    if (r.status === 200 && set) {
      this.cookie = String(set[0]).split(';')[0];
      this.csrf = r.body.csrf;
    }
    return r;
  }

  get(path: string, headers: Record<string, string> = {}): Promise<Reply> {
    return request(`${this.base}${path}`, { ca: this.ca, headers: { ...(this.cookie ? { cookie: this.cookie } : {}), ...headers } });
  }

  /** POST with the CSRF header unless `csrf: false` (or a wrong token given). */
  post(path: string, body: unknown = {}, opts: { csrf?: boolean | string } = {}): Promise<Reply> {
    const token = opts.csrf === false ? undefined : typeof opts.csrf === 'string' ? opts.csrf : this.csrf;
    return request(`${this.base}${path}`, {
      method: 'POST',
      ca: this.ca,
      headers: { 'content-type': 'application/json', ...(this.cookie ? { cookie: this.cookie } : {}), ...(token ? { 'x-vigil-csrf': token } : {}) },
      body: JSON.stringify(body),
    });
  }
}
