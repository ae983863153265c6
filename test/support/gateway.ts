import fs from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../../app/config.ts';
import { startGateway, type Gateway } from '../../app/gateway.ts';
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
 * object merged over listeners on 127.0.0.1:0. Set VIGIL_TEST_LOG=debug to see operational logs, or pass
 * `opts.log` to capture them.
 */
export async function startTestGateway(config: Record<string, unknown> = {}, base = tempDir(), opts: { log?: import('pino').Logger; configFile?: string } = {}): Promise<TestGateway> {
  const dataDir = path.join(base, 'data');
  const doc = {
    data_dir: dataDir,
    api: { listen: '127.0.0.1:0' },
    ssh: { listen: '127.0.0.1:0' },
    postgres: { listen: '127.0.0.1:0' },
    mysql: { listen: '127.0.0.1:0' },
    // Every test connects from 127.0.0.1: record every refusal unless a test sets its own budget.
    budgets: { refusals_per_window: 1_000_000 },
    ...config,
  };
  const parsed = parseConfig(doc, base);
  const log = opts.log ?? (process.env.VIGIL_TEST_LOG ? createLogger(process.env.VIGIL_TEST_LOG) : silentLogger());
  // With `configFile` the document is also written there (JSON is YAML), so the gateway can reload it.
  if (opts.configFile) fs.writeFileSync(opts.configFile, JSON.stringify(doc, null, 2));
  const gw = await startGateway({ config: parsed, dataDir, file: opts.configFile }, { log });
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
