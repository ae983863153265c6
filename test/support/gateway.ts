import fs from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../../src/config/load.ts';
import { startGateway, type Gateway } from '../../src/gateway/gateway.ts';
import { silentLogger, createLogger } from '../../src/log.ts';
import type { IssueRequest, IssuedCredentials } from '../../src/identity/types.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { tempDir } from './tmp.ts';

export interface TestGateway {
  gw: Gateway;
  dataDir: string;
  ports: Record<string, number>;
  /** Issue credentials and write them like `vigil cert issue --out DIR` does: returns file paths. */
  issue(req: IssueRequest): Promise<IssuedFiles>;
  /** Events written so far in this run (captured from the bus, in order). */
  events: AuditEvent[];
  /** Wait until an event matching `pred` is seen. */
  waitForEvent(pred: (e: AuditEvent) => boolean, ms?: number): Promise<AuditEvent>;
  stop(): Promise<void>;
}

export interface IssuedFiles {
  creds: IssuedCredentials;
  dir: string;
  /** OpenSSH private key (generated) and `-cert.pub`. */
  sshKey: string;
  sshCert: string;
  crt: string;
  key: string;
  ca: string;
}

/**
 * Start an in-process gateway on random loopback ports with a throwaway data dir. `config` is a YAML-shaped
 * object merged over listeners on 127.0.0.1:0. Set VIGIL_TEST_LOG=debug to see operational logs.
 */
export async function startTestGateway(config: Record<string, unknown> = {}, base = tempDir()): Promise<TestGateway> {
  const dataDir = path.join(base, 'data');
  const doc = {
    data_dir: dataDir,
    api: { listen: '127.0.0.1:0' },
    ssh: { listen: '127.0.0.1:0' },
    postgres: { listen: '127.0.0.1:0' },
    mysql: { listen: '127.0.0.1:0' },
    ...config,
  };
  const parsed = parseConfig(doc, base);
  const log = process.env.VIGIL_TEST_LOG ? createLogger(process.env.VIGIL_TEST_LOG) : silentLogger();
  const gw = await startGateway({ config: parsed, dataDir, file: undefined }, { log });
  const events: AuditEvent[] = [];
  const waiters = new Set<{ pred: (e: AuditEvent) => boolean; resolve: (e: AuditEvent) => void }>();
  gw.services.events.subscribe((e) => {
    events.push(e);
    for (const w of waiters) if (w.pred(e)) { waiters.delete(w); w.resolve(e); }
  });
  let n = 0;
  return {
    gw,
    dataDir,
    ports: gw.ports,
    events,
    async issue(req) {
      const creds = await gw.services.identity.issue(req);
      const dir = path.join(base, `creds-${req.user}-${n++}`);
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      const w = (name: string, content: string, mode = 0o600) => {
        const p = path.join(dir, name);
        fs.writeFileSync(p, content.endsWith('\n') ? content : content + '\n', { mode });
        return p;
      };
      const sshKey = w(req.user, creds.sshPrivateKey ?? '');
      w(`${req.user}.pub`, creds.sshPublicKey, 0o644);
      const sshCert = w(`${req.user}-cert.pub`, creds.sshCertificate, 0o644);
      const crt = w(`${req.user}.crt`, creds.x509Certificate, 0o644);
      const key = w(`${req.user}.key`, creds.x509PrivateKey);
      const ca = w('ca.crt', creds.caCertificate, 0o644);
      return { creds, dir, sshKey, sshCert, crt, key, ca };
    },
    waitForEvent(pred, ms = 10_000) {
      const found = events.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        waiters.add(w);
        setTimeout(() => {
          if (waiters.delete(w)) reject(new Error('timed out waiting for audit event'));
        }, ms).unref();
      });
    },
    stop: () => gw.close(),
  };
}

/** A gateway running as its own process (`vigil serve`), for tests that kill it (kill -9) mid-load. */
export interface GatewayProcess {
  pid: number;
  ports: Record<string, number>;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Start `vigil serve` in a child process. `config` is written as the config file (JSON is YAML) with
 * loopback listeners on random ports unless it sets its own; `base` holds it. Reuse the data dir of an
 * earlier (in-process or child) gateway to keep its CA: credentials issued there stay valid.
 */
export async function startGatewayProcess(config: Record<string, unknown>, base: string): Promise<GatewayProcess> {
  const { spawn } = await import('node:child_process');
  const { waitFor } = await import('./tmp.ts');
  const root = path.resolve(import.meta.dirname, '../..');
  const file = path.join(base, `vigil-child-${Date.now()}-${Math.random().toString(36).slice(2)}.yaml`);
  const doc = {
    data_dir: path.join(base, 'data'),
    api: { listen: '127.0.0.1:0' },
    ssh: { listen: '127.0.0.1:0' },
    postgres: { listen: '127.0.0.1:0' },
    mysql: { listen: '127.0.0.1:0' },
    ...config,
  };
  fs.writeFileSync(file, JSON.stringify(doc, null, 2));
  const child = spawn(process.execPath, [path.join(root, 'bin/vigil.js'), 'serve', '--config', file], { env: { ...process.env, VIGIL_LOG_JSON: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve((exitCode = code))));
  const running = await waitFor(() => {
    if (exitCode !== undefined) throw new Error(`vigil serve exited ${exitCode}: ${out.slice(-2000)}`);
    return out.split('\n').find((l) => l.includes('vigil gateway running'));
  }, 60_000, 'the gateway process to start');
  return {
    pid: child.pid!,
    ports: JSON.parse(running).ports as Record<string, number>,
    output: () => out,
    exited,
    kill: (signal = 'SIGKILL') => void child.kill(signal),
  };
}
