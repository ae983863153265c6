import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { startApi } from '../../src/api/server.ts';
import { createAuthorizer } from '../../src/authz/index.ts';
import type { GatewayServices } from '../../src/gateway/services.ts';
import { initIdentity, openIdentity } from '../../src/identity/index.ts';
import { silentLogger } from '../../src/log.ts';
import { SessionRegistry } from '../../src/sessions/registry.ts';
import { tempDir } from '../support/tmp.ts';
import { accessEnv, type AccessEnv } from '../access/support.ts';

export interface ClientCert {
  user: string;
  serial: string;
  cert: string;
  key: string;
}

export interface ApiEnv extends AccessEnv {
  services: GatewayServices;
  url: string;
  ca: string;
  caFile: string;
  /** Issue a real vigil client certificate for `user` with `roles`, written to files too. */
  client(user: string, roles: string[]): Promise<ClientCert & { certFile: string; keyFile: string }>;
  /** A client certificate from a different vigil CA (a foreign deployment). */
  foreign(user: string, roles: string[]): Promise<ClientCert>;
  call(method: string, p: string, who?: ClientCert, body?: unknown): Promise<{ status: number; body: any; headers: Record<string, string | string[] | undefined> }>;
  stop(): Promise<void>;
}

/**
 * The API over real parts, without the protocol listeners: real identity (CA, X.509 issuing and
 * verification), real SQLite store, real HTTPS server; audit events kept in memory.
 */
export async function apiEnv(overrides: Record<string, unknown> = {}): Promise<ApiEnv> {
  const base = tempDir();
  const env = await accessEnv(overrides, path.join(base, 'data'));
  await initIdentity(env.dataDir, env.config);
  const identity = await openIdentity(env.dataDir, env.config, env.store);
  const services = {
    config: env.config,
    dataDir: env.dataDir,
    log: silentLogger(),
    events: env.events,
    identity,
    store: env.store,
    authz: createAuthorizer(env.config, env.store),
    sessions: new SessionRegistry(),
  } as unknown as GatewayServices;
  const { server, port } = await startApi(services, { host: '127.0.0.1', port: 0 });
  const ca = identity.tls().ca;
  const caFile = path.join(base, 'ca.crt');
  fs.writeFileSync(caFile, ca);

  let foreignIdentity: Awaited<ReturnType<typeof openIdentity>> | undefined;
  return {
    ...env,
    services,
    url: `https://127.0.0.1:${port}`,
    ca,
    caFile,
    async client(user, roles) {
      const c = await identity.issue({ user, roles });
      const certFile = path.join(base, `${user}-${c.serial}.crt`);
      const keyFile = path.join(base, `${user}-${c.serial}.key`);
      fs.writeFileSync(certFile, c.x509Certificate);
      fs.writeFileSync(keyFile, c.x509PrivateKey, { mode: 0o600 });
      return { user, serial: c.serial, cert: c.x509Certificate, key: c.x509PrivateKey, certFile, keyFile };
    },
    async foreign(user, roles) {
      if (!foreignIdentity) {
        const other = await accessEnv(overrides, path.join(tempDir(), 'data'));
        await initIdentity(other.dataDir, other.config);
        foreignIdentity = await openIdentity(other.dataDir, other.config, other.store);
      }
      const c = await foreignIdentity.issue({ user, roles });
      return { user, serial: c.serial, cert: c.x509Certificate, key: c.x509PrivateKey };
    },
    call(method, p, who, body) {
      return new Promise((resolve, reject) => {
        const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
        const req = https.request(
          `https://127.0.0.1:${port}${p}`,
          { method, ca, cert: who?.cert, key: who?.key, agent: false, headers: payload ? { 'content-type': 'application/json' } : {} },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString('utf8')), headers: res.headers }));
          },
        );
        req.on('error', reject);
        req.end(payload);
      });
    },
    async stop() {
      await new Promise<void>((r) => server.close(() => r()));
      await env.close();
    },
  };
}
