import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { caDir, CA_FILES } from '../../src/identity/index.ts';
import type { IssueRequest } from '../../src/identity/types.ts';
import { publicKeyLine } from '../../proxies/ssh/known-hosts.ts';
import { startTestGateway, type IssuedFiles } from './gateway.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const VIGIL = path.join(ROOT, 'bin/vigil.js');
const LISTENERS = ['api', 'ssh', 'postgres', 'mysql'] as const;

/**
 * The gateway as its own process, started the way operators run it (`vigil serve --config FILE`), for
 * tests that must kill it (kill -9) and restart it over the same data dir.
 */
export interface GatewayProcess {
  child: ChildProcess;
  pid: number;
  /** The config file it runs with (`<base>/vigil.yaml`), e.g. for `vigil cert issue --config`. */
  configFile: string;
  /** Bound ports, from its startup log line. */
  ports: Record<string, number>;
  /** Public half of the gateway's SSH host key (`type base64`), for a known_hosts line. */
  sshHostKey: string;
  /** Credentials issued before the start (`options.issue`). */
  issued?: IssuedFiles;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with the signal that ended it, or its exit code. */
  exited: Promise<NodeJS.Signals | number | null>;
  /** Send `signal` (default SIGKILL: a crash) unless it is already gone, and wait for the exit. */
  kill(signal?: NodeJS.Signals): Promise<NodeJS.Signals | number | null>;
  /** SIGTERM (graceful close: live sessions drained) and wait. */
  stop(): Promise<NodeJS.Signals | number | null>;
}

export interface GatewayProcessOptions {
  /**
   * Issue these credentials first, with an in-process gateway on the same data dir (on random ports, so
   * fixed listen ports in `config` stay free); they stay valid across restarts since the CA lives there.
   */
  issue?: IssueRequest;
  timeoutMs?: number;
}

/**
 * Start `vigil serve` in a child process. `config` (YAML-shaped) is written to `<base>/vigil.yaml` (JSON
 * is YAML) over loopback listeners on random ports and `data_dir: <base>/data`; give fixed listen ports
 * when clients must find the gateway again after a restart.
 */
export async function startGatewayProcess(config: Record<string, unknown>, base: string, options: GatewayProcessOptions = {}): Promise<GatewayProcess> {
  const { issue, timeoutMs = 60_000 } = options;
  const doc: Record<string, unknown> = {
    data_dir: path.join(base, 'data'),
    log: { level: 'info' },
    ...Object.fromEntries(LISTENERS.map((l) => [l, { listen: '127.0.0.1:0' }])),
    ...config,
    // One process unless the test asks for workers: the kill -9 tests kill the process that holds the sessions.
    gateway: { workers: 1, ...(config.gateway as object | undefined) },
  };
  const dataDir = path.resolve(base, String(doc.data_dir));
  let issued: IssuedFiles | undefined;
  if (issue) {
    const onRandomPorts = Object.fromEntries(LISTENERS.map((l) => [l, { ...(doc[l] as object), listen: '127.0.0.1:0' }]));
    const tg = await startTestGateway({ ...doc, ...onRandomPorts }, base);
    try {
      issued = await tg.issue(issue);
    } finally {
      await tg.stop();
    }
  }
  const configFile = path.join(base, 'vigil.yaml');
  fs.writeFileSync(configFile, JSON.stringify(doc, null, 2));
  // node runs bin/vigil.js itself (tsx registers as a loader, not a wrapper process): a signal to
  // `child` is a signal to the gateway.
  // VIGIL_GATEWAY_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=DIR`, which NODE_OPTIONS refuses) go to node; cluster workers inherit them.
  const nodeArgs = process.env.VIGIL_GATEWAY_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const child = spawn(process.execPath, [...nodeArgs, VIGIL, 'serve', '--config', configFile], { cwd: ROOT, env: { ...process.env, VIGIL_LOG_JSON: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
  const kill = (signal: NodeJS.Signals = 'SIGKILL') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  const ports = await new Promise<Record<string, number>>((resolve, reject) => {
    const timer = setTimeout(() => {
      void kill();
      reject(new Error(`vigil serve did not start within ${timeoutMs} ms: ${out.slice(-2000)}`));
    }, timeoutMs);
    const onData = () => {
      const line = out.split('\n').find((l) => l.includes('vigil gateway running'));
      if (!line) return;
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      resolve((JSON.parse(line) as { ports: Record<string, number> }).ports);
    };
    child.stdout!.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`vigil serve exited (${code}) before it was ready: ${out.slice(-2000)}`));
    });
  });
  return {
    child,
    pid: child.pid!,
    configFile,
    ports,
    sshHostKey: publicKeyLine(fs.readFileSync(path.join(caDir(dataDir), CA_FILES.hostKey), 'utf8')),
    issued,
    output: () => out,
    exited,
    kill,
    stop: () => kill('SIGTERM'),
  };
}
