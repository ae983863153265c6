import https from 'node:https';
import { VigilError } from '../../errors.ts';
import { apiBaseUrl, DEFAULT_REQUEST_TIMEOUT_MS, gatewayRequest, readOptionFile } from '../gateway-request.ts';

/** JSON over HTTPS to the gateway's API, optionally with the client certificate `vigil login` got. */
export interface GatewayCall {
  <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T; date?: string }>;
}

/**
 * `files` name where each TLS file came from (the option or the saved login) so a bad one is reported
 * as a usage error naming it. Each call gives up after `timeoutMs` (VIGIL_API_TIMEOUT).
 */
export function gatewayCall(base: string, tls: { ca?: string; cert?: string; key?: string }, opts: { timeoutMs?: number; gatewayOption?: string } = {}): GatewayCall {
  const url = apiBaseUrl(base, opts.gatewayOption ?? '--gateway');
  const read = (f: string | undefined, option: string) => (f ? readOptionFile(f, option) : undefined);
  const agent = new https.Agent({ ca: read(tls.ca, '--ca'), cert: read(tls.cert, 'the client certificate'), key: read(tls.key, 'the client key'), keepAlive: false });
  const timeoutMs = opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  return async <T>(method: string, path: string, body?: unknown) => {
    const { status, text, date } = await gatewayRequest({ base: url, method, path, body, agent, timeoutMs });
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new VigilError('VIGIL_API_PROTOCOL', `the gateway answered ${status} without JSON`);
    }
    if (status >= 400) {
      const err = (parsed as { error?: { code?: string; message?: string; reason?: string } }).error;
      throw new VigilError(err?.code ?? 'VIGIL_API_ERROR', `${err?.message ?? `HTTP ${status}`}${err?.reason ? ` (${err.reason})` : ''}`);
    }
    return { status, body: parsed as T, date };
  };
}
