import fs from 'node:fs';
import https from 'node:https';
import { VigilError } from '../../errors.ts';

/** JSON over HTTPS to the gateway's API, optionally with the client certificate `vigil login` got. */
export interface GatewayCall {
  <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
}

export function gatewayCall(base: string, tls: { ca?: string; cert?: string; key?: string }): GatewayCall {
  const url = new URL(base);
  if (url.protocol !== 'https:') throw new VigilError('VIGIL_USAGE', `--gateway must be an https:// URL, got ${base}`);
  const read = (f?: string) => (f ? fs.readFileSync(f) : undefined);
  const agent = new https.Agent({ ca: read(tls.ca), cert: read(tls.cert), key: read(tls.key), keepAlive: false });
  return <T>(method: string, path: string, body?: unknown) =>
    new Promise<{ status: number; body: T }>((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = https.request(new URL(path, url), { method, agent, headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {} }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            return reject(new VigilError('VIGIL_API_PROTOCOL', `the gateway answered ${res.statusCode} without JSON`));
          }
          const status = res.statusCode ?? 500;
          if (status >= 400) {
            const err = (parsed as { error?: { code?: string; message?: string; reason?: string } }).error;
            return reject(new VigilError(err?.code ?? 'VIGIL_API_ERROR', `${err?.message ?? `HTTP ${status}`}${err?.reason ? ` (${err.reason})` : ''}`));
          }
          resolve({ status, body: parsed as T });
        });
      });
      req.on('error', (e) => reject(new VigilError('VIGIL_API_UNREACHABLE', `cannot reach the gateway at ${url.origin}: ${e.message}`, { cause: e })));
      req.end(payload);
    });
}
