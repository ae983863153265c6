import https from 'node:https';
import { WebSocket } from 'ws';
import { VigilError } from '../errors.ts';
import { stringOpt, UsageError, type CommandArgs, type OptionSpec } from './command.ts';
import { apiBaseUrl, gatewayRequest, readOptionFile, requestTimeoutMs, timeoutError, TIMEOUT_OPTION } from './gateway-request.ts';

/**
 * Commands that only make sense against a running gateway (live sessions: list, kill, watch) talk to its
 * HTTPS API with the caller's vigil client certificate; the gateway records them as that user.
 */
export const GATEWAY_API_OPTIONS: Record<string, OptionSpec> = {
  api: { type: 'string', arg: 'URL', help: 'the running gateway\'s API, e.g. https://vigil:8443 (default: $VIGIL_API)' },
  cert: { type: 'string', arg: 'FILE', help: 'your vigil client certificate; you act as its user (default: $VIGIL_CERT)' },
  key: { type: 'string', arg: 'FILE', help: 'private key of --cert (default: $VIGIL_KEY)' },
  ca: { type: 'string', arg: 'FILE', help: 'CA certificate the API server is checked against (default: $VIGIL_CA)' },
  ...TIMEOUT_OPTION,
};

export interface GatewayApi {
  call<T>(method: string, path: string, body?: unknown): Promise<T>;
  /** Open a WebSocket on `path` (mTLS like the calls); rejects with the API's error when refused. */
  socket(path: string): Promise<WebSocket>;
}

export function gatewayApi(args: CommandArgs): GatewayApi {
  const v = args.values;
  const url = stringOpt(v, 'api') ?? process.env.VIGIL_API;
  if (!url) throw new UsageError('--api (or VIGIL_API) is required: this command talks to a running gateway');
  const base = apiBaseUrl(url, stringOpt(v, 'api') ? '--api' : 'VIGIL_API');
  const file = (flag: string, env: string) => {
    const f = stringOpt(v, flag) ?? process.env[env];
    if (!f) throw new UsageError(`--${flag} (or ${env}) is required with --api`);
    return readOptionFile(f, stringOpt(v, flag) ? `--${flag}` : env);
  };
  const tls = { cert: file('cert', 'VIGIL_CERT'), key: file('key', 'VIGIL_KEY'), ca: file('ca', 'VIGIL_CA') };
  const timeoutMs = requestTimeoutMs(v);
  const apiError = (status: number | undefined, text: string): VigilError => {
    try {
      const err = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
      return new VigilError(err?.code ?? 'VIGIL_API_ERROR', err?.message ?? `HTTP ${status}`);
    } catch {
      return new VigilError('VIGIL_API_PROTOCOL', `the API answered ${status} without JSON`);
    }
  };
  const unreachable = (e: Error) => new VigilError('VIGIL_API_UNREACHABLE', `cannot reach the vigil API at ${base.origin}: ${e.message}`, { cause: e });
  return {
    async call<T>(method: string, path: string, body?: unknown): Promise<T> {
      const { status, text } = await gatewayRequest({ base, method, path, body, agent: new https.Agent({ ...tls, keepAlive: false }), timeoutMs });
      if (status >= 400) throw apiError(status, text);
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new VigilError('VIGIL_API_PROTOCOL', `the API answered ${status} without JSON`);
      }
    },
    socket(path: string): Promise<WebSocket> {
      const wsUrl = new URL(path, base);
      wsUrl.protocol = 'wss:';
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(wsUrl, { ...tls });
        // Only opening the stream is bounded: once open, a quiet session may stay quiet for hours.
        const handshake = setTimeout(() => {
          reject(timeoutError(base.origin, timeoutMs));
          ws.terminate();
        }, timeoutMs);
        ws.once('open', () => {
          clearTimeout(handshake);
          resolve(ws);
        });
        ws.once('unexpected-response', (_req, res) => {
          clearTimeout(handshake);
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => reject(apiError(res.statusCode, Buffer.concat(chunks).toString('utf8'))));
        });
        ws.once('error', (e) => {
          clearTimeout(handshake);
          reject(unreachable(e));
        });
      });
    },
  };
}
