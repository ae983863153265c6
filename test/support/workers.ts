import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { IssuedFiles } from './gateway.ts';

/**
 * What the multi-worker tests (`vigil serve` with gateway.workers > 1, test/core/gateway-workers*.test.ts)
 * share: stock clients run as child processes, the gateway's worker pids, and the HTTPS API as a
 * certificate holder.
 */

/** A stock client (psql, mariadb, ssh, the vigil CLI) running as a child process. */
export interface ClientProcess {
  child: ChildProcessWithoutNullStreams;
  stdout(): string;
  stderr(): string;
  /** Resolves with its exit code once its streams closed. */
  exited: Promise<number | null>;
  done(): boolean;
}

/** Start `cmd` with piped stdio, its output collected; added to `list` (killed by the test's afterAll). */
export function spawnClient(list: ClientProcess[], cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): ClientProcess {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env, cwd: opts.cwd });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  child.stdin.on('error', () => {});
  let code: number | null | undefined;
  const exited = new Promise<number | null>((r) => child.once('close', (c) => r((code = c))));
  const c: ClientProcess = { child, stdout: () => out, stderr: () => err, exited, done: () => code !== undefined };
  list.push(c);
  return c;
}

/** The gateway's workers: its children running vigil (not, say, the esbuild service tsx may start). */
export function gatewayWorkerPids(gatewayPid: number): number[] {
  const dir = `/proc/${gatewayPid}/task`;
  const children = fs.readdirSync(dir).flatMap((t) => fs.readFileSync(path.join(dir, t, 'children'), 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
  return children.filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('vigil.js');
    } catch {
      return false;
    }
  });
}

/**
 * One API request as `who` (no client certificate when undefined: only /healthz and /readyz answer), the
 * body sent as JSON; the answer's status and parsed body.
 */
export function apiRequest(port: number, who: IssuedFiles | undefined, method: string, p: string, body?: unknown): Promise<{ status: number; body: any }> {
  const tls = who ? { ca: fs.readFileSync(who.ca), cert: fs.readFileSync(who.crt), key: fs.readFileSync(who.key) } : { rejectUnauthorized: false };
  return new Promise((resolve, reject) => {
    const req = https.request(`https://127.0.0.1:${port}${p}`, { method, agent: false, timeout: 5000, ...tls, headers: body === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
      let t = '';
      res.on('data', (d) => (t += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: t ? JSON.parse(t) : undefined }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
