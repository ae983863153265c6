import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { IssueRequest } from '../../src/identity/types.ts';
import { startTestGateway, type IssuedFiles } from './gateway.ts';
import type { GatewayProcess } from './gateway-process.ts';
import { clientEnv } from './postgres.ts';
import type { SshdHandle } from './sshd.ts';
import { waitFor } from './tmp.ts';

/**
 * What the multi-worker tests (`vigil serve` with gateway.workers > 1, test/core/gateway-workers*.test.ts)
 * share: their configs, credentials issued before `vigil serve` starts, stock clients run as child
 * processes, the gateway's worker pids and their replacement, the HTTPS API as a certificate holder, and
 * the afterAll that ends it all.
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

/**
 * Issue `people`'s credentials with an in-process gateway on `config` and `base` (it creates the CA in the
 * data dir), then stop it, so that `vigil serve` started on the same data dir accepts them.
 */
export async function issueCredentials<K extends string>(config: Record<string, unknown>, base: string, people: Record<K, IssueRequest>): Promise<Record<K, IssuedFiles>> {
  const tg = await startTestGateway(config, base);
  const names = Object.keys(people) as K[];
  const issued = await Promise.all(names.map((name) => tg.issue(people[name])));
  await tg.stop();
  return Object.fromEntries(names.map((name, i) => [name, issued[i]])) as Record<K, IssuedFiles>;
}

/** The target and role of the psql-driven worker tests: `pg1`, logging in as the trusted `trust_user`, for role `engineer`. */
export function trustedPostgresTarget(port: number): { targets: object[]; roles: object[] } {
  return {
    targets: [{ name: 'pg1', protocol: 'postgres', host: '127.0.0.1', port, database: 'app', user: 'trust_user' }],
    roles: [{ name: 'engineer', targets: ['pg1'], databases: ['*'] }],
  };
}

/** The target and role of the per-engineer account worker tests: `pgp`, with user provisioning for role `oncall`. */
export function provisionedPostgresTarget(port: number, superuser: string): { targets: object[]; roles: object[] } {
  return {
    targets: [
      {
        name: 'pgp', protocol: 'postgres', host: '127.0.0.1', port, database: 'app', user: 'unused_with_provisioning',
        user_provisioning: { admin: { user: superuser }, roles_map: { oncall: ['pg_read_all_data'] } },
      },
    ],
    roles: [{ name: 'oncall', targets: ['pgp'], databases: ['app'] }],
  };
}

/**
 * The config of `vigil serve` with two workers, a quick drain and only the PostgreSQL listener; `more`
 * adds sections (audit, postgres, targets and roles) and `gateway` settings over these.
 */
export function twoPostgresWorkersConfig(base: string, more: { gateway?: Record<string, unknown>; [section: string]: unknown }): Record<string, unknown> {
  const { gateway, ...sections } = more;
  return {
    data_dir: path.join(base, 'data'),
    gateway: { workers: 2, shutdown_drain: '1s', drain_notice: '0s', ...gateway },
    ssh: { enabled: false },
    mysql: { enabled: false },
    ...sections,
  };
}

/** The config of `vigil serve` with two workers and one SSH target `web1` on `sshd`, for role `engineer`. */
export function twoSshWorkersConfig(base: string, sshd: SshdHandle): Record<string, unknown> {
  return {
    data_dir: path.join(base, 'data'),
    // Explicit: these tests are about sessions held by another process than the API's.
    gateway: { workers: 2 },
    targets: [{ name: 'web1', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub }],
    roles: [{ name: 'engineer', targets: ['*'], logins: ['*'] }],
  };
}

/** What a multi-worker test started, to be ended by {@link endWorkersTest}; any part may be missing. */
export interface WorkersTestParts {
  clients?: ClientProcess[];
  /** Processes the test stopped (SIGSTOP) that must not outlive it. */
  stoppedPids?: number[];
  gp?: GatewayProcess;
  /** The backend (PostgreSQL, sshd) the targets point at. */
  backend?: { stop(): Promise<void> };
  base?: string;
}

/** The afterAll of a multi-worker test: clients first, then the gateway, then its backend and files. */
export async function endWorkersTest(parts: WorkersTestParts): Promise<void> {
  for (const c of parts.clients ?? []) c.child.kill('SIGKILL');
  for (const pid of parts.stoppedPids ?? []) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  await parts.gp?.kill('SIGKILL');
  await parts.backend?.stop();
  if (parts.base) fs.rmSync(parts.base, { recursive: true, force: true });
}

/** A psql session of `who` (as `user`) on gateway target `dbname` that stays open, running each statement written to its stdin. */
export function psqlSession(list: ClientProcess[], gp: GatewayProcess, who: IssuedFiles, user: string, dbname: string): ClientProcess {
  const conninfo = `host=127.0.0.1 port=${gp.ports.postgres} dbname=${dbname} user=${user} sslmode=verify-full sslrootcert=${who.ca} sslcert=${who.crt} sslkey=${who.key}`;
  return spawnClient(list, 'psql', ['-X', '-qAt', '-d', conninfo], { env: clientEnv() });
}

/** A session as GET /v1/sessions?live=1 lists it; the worker tests look at who holds it. */
export interface LiveSessionRow {
  id: string;
  user: string;
  worker_pid?: number;
}

/** The live sessions, as `who` (an admin or auditor) sees them. */
export async function liveSessionsOf<Row extends LiveSessionRow = LiveSessionRow>(gp: GatewayProcess, who: IssuedFiles): Promise<Row[]> {
  return (await apiRequest(gp.ports.api, who, 'GET', '/v1/sessions?live=1')).body.sessions;
}

/**
 * Wait until the gateway runs two workers again, none of them one of `gone`, and each logged that it is
 * ready: their pids.
 */
export async function replacedWorkers(gp: GatewayProcess, gone: number[]): Promise<number[]> {
  const one = gone.length === 1;
  const now = await waitFor(() => {
    const w = gatewayWorkerPids(gp.pid);
    return w.length === 2 && w.every((p) => !gone.includes(p)) ? w : undefined;
  }, 60_000, one ? 'a replacement worker' : 'replacement workers');
  await waitFor(() => now.every((p) => gp.output().includes(`gateway worker ready (pid ${p})`)), 60_000, one ? 'the replacement ready' : 'the replacements ready');
  return now;
}

/**
 * The arguments of an OpenSSH client that logs in to `web1` as `login` through the gateway with `who`'s
 * certificate, trusting only the gateway's host key (written to `<base>/known_hosts`), and runs `command`.
 */
export function sshThroughGateway(gp: GatewayProcess, who: IssuedFiles, login: string, base: string, command: string): string[] {
  const knownHosts = path.join(base, 'known_hosts');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${gp.ports.ssh} ${gp.sshHostKey}\n`);
  return [
    '-F', '/dev/null', '-p', String(gp.ports.ssh), '-o', `IdentityFile=${who.sshKey}`, '-o', `CertificateFile=${who.sshCert}`, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
    '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', `${login}@web1@127.0.0.1`, command,
  ];
}
