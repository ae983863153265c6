import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { publicKeyLine } from '../../proxies/ssh/known-hosts.ts';
import { startSshd, type SshdHandle, type StartSshdOptions } from '../support/sshd.ts';
import { startTestGateway, type TestGateway, type IssuedFiles } from '../support/gateway.ts';
import type { IssueRequest } from '../../src/identity/types.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { waitFor } from '../support/tmp.ts';

/**
 * A real sshd behind an in-process vigil gateway, with targets pointing at it, and helpers that run the
 * stock OpenSSH clients against the gateway.
 */
export interface SshWorld {
  sshd: SshdHandle;
  gw: TestGateway;
  port: number;
  /** Gateway host key line, for known_hosts. */
  gatewayHostKey: string;
  issue(req?: Partial<IssueRequest>): Promise<IssuedFiles>;
  /** Client options for ssh/scp/sftp (all `-o`), authenticating with `creds`. */
  opts(creds: IssuedFiles, extra?: string[], o?: { certificate?: boolean }): string[];
  run(cmd: 'ssh' | 'scp' | 'sftp', args: string[], input?: string | Buffer, timeoutMs?: number): Promise<RunResult>;
  eventsOf(type: string, pred?: (e: AuditEvent) => boolean): AuditEvent[];
  stop(): Promise<void>;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  stdoutBuf: Buffer;
}

export interface WorldOptions {
  /** Extra gateway config (merged over the defaults below). */
  config?: Record<string, unknown>;
  /** Extra targets (given the backend sshd, for targets that point at it). */
  targets?: (sshd: SshdHandle) => Record<string, unknown>[];
  /** Fields merged into the default `web1` target. */
  web1?: Record<string, unknown>;
  /** Options for the backend sshd (e.g. a ForceCommand that logs what the target runs). */
  sshd?: StartSshdOptions;
  /** The gateway's operational logger (to capture its output), and a file to write its config to (for CLI commands). */
  log?: import('pino').Logger;
  configFile?: string;
}

export async function startWorld(o: WorldOptions = {}): Promise<SshWorld> {
  const sshd = await startSshd(o.sshd);
  const web1 = {
    name: 'web1',
    protocol: 'ssh',
    host: '127.0.0.1',
    port: sshd.port,
    default_login: sshd.user,
    private_key: sshd.clientKey,
    host_key: sshd.hostKeyPub,
    port_forwarding: true,
    ...o.web1,
  };
  const gw = await startTestGateway({
    gateway: { connect_timeout: '3s', auth_timeout: '5s' },
    // Only the SSH listener matters here.
    postgres: { enabled: false },
    mysql: { enabled: false },
    roles: [
      { name: 'dev', targets: ['*'], logins: ['*'], port_forwarding: true },
      { name: 'nofwd', targets: ['*'], logins: ['*'], port_forwarding: false },
    ],
    ...o.config,
    targets: [web1, ...(o.targets?.(sshd) ?? [])],
  }, undefined, { log: o.log, configFile: o.configFile });
  const port = gw.ports.ssh!;
  const gatewayHostKey = publicKeyLine(gw.gw.services.identity.sshHostKey());
  const knownHosts = path.join(gw.dataDir, '..', 'known_hosts');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${port} ${gatewayHostKey}\n`);

  const world: SshWorld = {
    sshd,
    gw,
    port,
    gatewayHostKey,
    issue: (req = {}) => gw.issue({ user: 'alice', roles: ['dev'], extensions: ['permit-pty', 'permit-port-forwarding'], ...req }),
    opts: (creds, extra = [], o = {}) => [
      '-F', '/dev/null',
      '-o', `Port=${port}`,
      '-o', `IdentityFile=${creds.sshKey}`,
      ...(o.certificate === false ? [] : ['-o', `CertificateFile=${creds.sshCert}`]),
      '-o', 'IdentitiesOnly=yes',
      '-o', 'BatchMode=yes',
      '-o', `UserKnownHostsFile=${knownHosts}`,
      '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', 'ConnectTimeout=10',
      ...extra,
    ],
    run: (cmd, args, input, timeoutMs = 30_000) => runClient(cmd, args, input, timeoutMs),
    eventsOf: (type, pred = () => true) => gw.events.filter((e) => e.type === type && pred(e)),
    async stop() {
      await gw.stop();
      await sshd.stop();
    },
  };
  return world;
}

export function runClient(cmd: string, args: string[], input?: string | Buffer, timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} timed out after ${timeoutMs}ms; stderr: ${Buffer.concat(err).toString()}`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdoutBuf = Buffer.concat(out);
      resolve({ code, signal, stdout: stdoutBuf.toString(), stderr: Buffer.concat(err).toString(), stdoutBuf });
    });
    child.stdin.on('error', () => {});
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

/** Spawn a client and keep it running (for live-session tests). */
export function spawnClient(cmd: string, args: string[]): { child: ChildProcess; stdout: () => string; stderr: () => string; exited: Promise<number | null> } {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin!.on('error', () => {});
  const exited = new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** A stock `ssh -tt` session to web1 driven key by key: `until(s)` waits for `s` after what was waited for before. */
export function interactive(w: SshWorld, creds: IssuedFiles) {
  const c = spawnClient('ssh', [...w.opts(creds, ['-tt']), `${w.sshd.user}@web1@127.0.0.1`]);
  let seen = 0;
  return {
    c,
    send: (s: string) => c.child.stdin!.write(s),
    until: async (s: string) => {
      await waitFor(() => {
        const i = c.stdout().indexOf(s, seen);
        if (i < 0) return false;
        seen = i + s.length;
        return true;
      }, 15_000, `output ${s}\n--- so far:\n${c.stdout()}`);
    },
    /** What came after the last `until`. */
    rest: () => c.stdout().slice(seen),
  };
}
