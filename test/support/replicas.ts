import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { startTestGateway, type IssuedFiles, type TestGateway } from './gateway.ts';
import { tempDir } from './tmp.ts';

/**
 * Another replica of gateway `first`: its own data dir (so its own audit log) holding a copy of first's CA,
 * as replicas behind a balancer share the CA in production (the same mounted secret).
 */
export async function startReplica(first: TestGateway, config: Record<string, unknown>, prefix: string, opts: Parameters<typeof startTestGateway>[2] = {}): Promise<TestGateway> {
  const base = tempDir(prefix);
  fs.mkdirSync(path.join(base, 'data'), { recursive: true, mode: 0o700 });
  fs.cpSync(path.join(first.dataDir, 'ca'), path.join(base, 'data', 'ca'), { recursive: true });
  return startTestGateway(config, base, opts);
}

/** A call to a gateway's HTTPS API (or any URL of it) with `who`'s client certificate; the body parsed as JSON. */
export function apiCall(gw: TestGateway, method: string, pathOrUrl: string, who: IssuedFiles, body?: unknown): Promise<{ status: number; body: any }> {
  const url = pathOrUrl.startsWith('https://') ? pathOrUrl : `https://127.0.0.1:${gw.ports.api}${pathOrUrl}`;
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(
      url,
      { method, agent: false, ca: fs.readFileSync(who.ca), cert: fs.readFileSync(who.crt), key: fs.readFileSync(who.key), headers: payload ? { 'content-type': 'application/json' } : {} },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
