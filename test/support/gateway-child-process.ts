import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IssueRequest } from '../../src/identity/types.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..', '..');

/** A gateway running in its own process (so a test can kill -9 it), over a data dir that outlives it. */
export interface GatewayProcess {
  child: ChildProcess;
  ports: Record<string, number>;
  sshHostKey: string;
  /** Resolves when the process is gone. */
  exited: Promise<void>;
  /** SIGTERM (graceful close) and wait. */
  stop(): Promise<void>;
}

/**
 * Start `test/support/gateway-child.ts` with `config` (YAML-shaped object; give fixed listen ports if the
 * gateway is restarted over the same `base`). With `issue`, credentials are issued once into `issue.dir`
 * (`key`, `key-cert.pub`). Resolves once the gateway listens.
 */
export function startGatewayProcess(config: Record<string, unknown>, base: string, issue?: { request: IssueRequest; dir: string }, timeoutMs = 30_000): Promise<GatewayProcess> {
  // node itself runs the gateway (tsx as a loader, not as a wrapper process), so a signal to `child` is
  // a signal to the gateway.
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'gateway-child.ts'), JSON.stringify({ config, base, issue })], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gateway process did not start within ${timeoutMs} ms: ${err}`));
    }, timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('READY '));
      if (!line) return;
      clearTimeout(timer);
      const info = JSON.parse(line.slice(6)) as { ports: Record<string, number>; sshHostKey: string };
      resolve({
        child,
        ports: info.ports,
        sshHostKey: info.sshHostKey,
        exited,
        stop: async () => {
          child.kill('SIGTERM');
          await exited;
        },
      });
    });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`gateway process exited (${code ?? sig}) before it was ready: ${err}`));
    });
  });
}
