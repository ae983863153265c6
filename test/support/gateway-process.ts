import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * The gateway as a separate process (`vigil serve`), for tests that must SIGKILL it (crash durability).
 * `config` is written as the config file (JSON is YAML); the ports are read from the startup log line.
 * Credentials are issued beforehand with an in-process gateway on the same data dir (startTestGateway).
 */
export interface GatewayProcess {
  child: ChildProcess;
  ports: Record<string, number>;
  /** Resolves with the exit code or signal once the process is gone. */
  exited: Promise<number | string | null>;
  kill(signal?: NodeJS.Signals): Promise<number | string | null>;
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export async function startGatewayProcess(configFile: string, config: Record<string, unknown>, timeoutMs = 30_000): Promise<GatewayProcess> {
  fs.writeFileSync(configFile, JSON.stringify({ log: { level: 'info' }, ...config }, null, 2));
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/vigil.js'), 'serve', '--config', configFile], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | string | null>((r) => child.on('exit', (code, signal) => r(signal ?? code)));
  const ports = await new Promise<Record<string, number>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway process did not start: ${out}${err}`)), timeoutMs);
    child.stdout!.on('data', (d) => {
      out += d;
      for (const line of out.split('\n')) {
        if (!line.includes('vigil gateway running')) continue;
        clearTimeout(timer);
        resolve((JSON.parse(line) as { ports: Record<string, number> }).ports);
        return;
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gateway process exited (${code}): ${out}${err}`));
    });
  });
  // Keep draining its output so it never blocks on a full pipe.
  child.stdout!.removeAllListeners('data');
  child.stdout!.resume();
  return {
    child,
    ports,
    exited,
    kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
