import fs from 'node:fs';
import net from 'node:net';
import { deliverIdentWhole } from './ident-line.ts';
import ssh2 from 'ssh2';
import { readSecret, type SecretRef } from '../../src/config/types.ts';
import type { TargetConfig } from '../../src/config/schema.ts';
import { fingerprint, hostKeyAlgorithms, isPinned, parseHostKeyLines, parseKnownHosts, type HostKeyPins } from './hostkeys.ts';

/** Why the gateway could not reach a target; `message` is safe for the client (no secrets, no paths). */
export class BackendError extends Error {
  constructor(
    readonly reason: 'config' | 'host_key_unknown' | 'host_key_mismatch' | 'timeout' | 'unreachable' | 'auth' | 'error',
    message: string,
    readonly detail?: string,
  ) {
    super(message);
    this.name = 'BackendError';
  }
}

/** The fields of an SSH target this module reads (from the ssh proxy's targetFields). */
export interface SshTargetFields {
  logins: string[];
  default_login?: string;
  private_key?: string;
  password?: SecretRef;
  host_key?: string;
  known_hosts?: string;
  port_forwarding: boolean;
}

export function sshFields(t: TargetConfig): SshTargetFields {
  return t as unknown as SshTargetFields;
}

/** The host keys a target may present. Throws BackendError('config') when none are configured. */
export function targetPins(t: TargetConfig): HostKeyPins {
  const f = sshFields(t);
  if (f.host_key) return { keys: parseHostKeyLines(f.host_key), revoked: [] };
  if (f.known_hosts) {
    let text: string;
    try {
      text = fs.readFileSync(f.known_hosts, 'utf8');
    } catch (e) {
      throw new BackendError('config', `target ${t.name} cannot be verified (its known_hosts file is unreadable); refusing.`, (e as Error).message);
    }
    return parseKnownHosts(text, t.host, t.port);
  }
  return { keys: [], revoked: [] };
}

function credential(t: TargetConfig): { privateKey?: Buffer; password?: string } {
  const f = sshFields(t);
  try {
    if (f.private_key) return { privateKey: fs.readFileSync(f.private_key) };
    if (f.password) return { password: readSecret(f.password) };
  } catch (e) {
    // The error names the file or variable, never the secret.
    throw new BackendError('config', `vigil has no usable credential for target ${t.name}; contact the gateway operator.`, (e as Error).message);
  }
  throw new BackendError('config', `vigil has no credential configured for target ${t.name}; contact the gateway operator.`);
}

/** An authenticated connection to a target, and the cipher it negotiated (for session.end). */
export interface Backend {
  client: ssh2.Client;
  cipher: string;
}

/** The negotiated cipher of a handshake; both directions in one name when they agree (they do with OpenSSH). */
export function negotiatedCipher(n: ssh2.NegotiatedAlgorithms): string {
  return n.cs.cipher === n.sc.cipher ? n.cs.cipher : `${n.cs.cipher} / ${n.sc.cipher}`;
}

/**
 * Open the gateway's own SSH connection to a target with the configured credential, refusing any host key
 * that is not pinned. Resolves once authenticated; rejects with a BackendError within `timeoutMs`.
 * vigil is the SSH client here, so its preference picks the cipher: ssh2's default order, which puts
 * aes128-gcm first on CPUs with AES instructions (the cheapest for both ends there) and
 * chacha20-poly1305 first on CPUs without.
 */
/** Keepalives towards a target (ssh.backend_keepalive): `intervalMs` 0 = off. */
export interface BackendKeepalive {
  intervalMs: number;
  count: number;
}

export function connectBackend(t: TargetConfig, login: string, timeoutMs: number, keepalive: BackendKeepalive = { intervalMs: 0, count: 0 }): Promise<Backend> {
  return new Promise((resolve, reject) => {
    let pins: HostKeyPins;
    let cred: ReturnType<typeof credential>;
    try {
      pins = targetPins(t);
      cred = credential(t);
    } catch (e) {
      reject(e);
      return;
    }
    if (pins.keys.length === 0) {
      reject(new BackendError('host_key_unknown', `target ${t.name} has no known host key configured; vigil refuses to connect to an unverified host.`));
      return;
    }
    const client = new ssh2.Client();
    let cipher = '';
    client.once('handshake', (n) => (cipher = negotiatedCipher(n)));
    if (keepalive.intervalMs > 0) {
      // TCP keepalive as well: finds a peer that vanished from the network (its kernel gone or unreachable).
      client.once('connect', () => (client as unknown as { _sock?: { setKeepAlive?(on: boolean, delay: number): void } })._sock?.setKeepAlive?.(true, keepalive.intervalMs));
    }
    // The target's identification line (and any banner before it) reaches ssh2 in one read (ident-line.ts).
    client.once('connect', () => {
      const sock = (client as unknown as { _sock?: unknown })._sock;
      if (sock instanceof net.Socket) deliverIdentWhole(sock, 'server');
    });
    let settled = false;
    let hostKeyProblem: BackendError | undefined;
    const timer = setTimeout(() => fail(new BackendError('timeout', `target ${t.name} did not answer within ${Math.round(timeoutMs / 1000)}s.`)), timeoutMs);
    const fail = (e: BackendError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      client.removeAllListeners('ready');
      client.on('error', () => {});
      client.end();
      client.destroy();
      reject(e);
    };
    client.on('ready', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ client, cipher });
    });
    client.on('error', (e: Error & { level?: string; code?: string }) => {
      if (hostKeyProblem) return fail(hostKeyProblem);
      if (e.level === 'client-authentication') return fail(new BackendError('auth', `target ${t.name} refused vigil's credential; contact the gateway operator.`, e.message));
      if (e.level === 'client-timeout') return fail(new BackendError('timeout', `target ${t.name} did not answer within ${Math.round(timeoutMs / 1000)}s.`));
      if (e.code === 'ECONNREFUSED' || e.code === 'EHOSTUNREACH' || e.code === 'ENETUNREACH' || e.code === 'ENOTFOUND' || e.code === 'ECONNRESET')
        return fail(new BackendError('unreachable', `target ${t.name} is unreachable (${e.code}).`, e.message));
      fail(new BackendError('error', `connection to target ${t.name} failed.`, e.message));
    });
    client.on('close', () => fail(hostKeyProblem ?? new BackendError('unreachable', `target ${t.name} closed the connection.`)));
    try {
      client.connect({
        host: t.host,
        port: t.port,
        username: login,
        ...cred,
        readyTimeout: timeoutMs,
        // SSH keepalives (from authentication on): a target that stops answering (a stopped sshd, a paused
        // VM: its kernel still ACKs) fails with level 'client-timeout' after `count` unanswered ones.
        keepaliveInterval: keepalive.intervalMs,
        keepaliveCountMax: keepalive.count,
        algorithms: { serverHostKey: hostKeyAlgorithms(pins) as never },
        hostVerifier: (key: Buffer) => {
          if (isPinned(pins, key)) return true;
          hostKeyProblem = new BackendError(
            'host_key_mismatch',
            `target ${t.name} presented a host key vigil does not know (${fingerprint(key)}); refusing to connect.`,
          );
          return false;
        },
      });
    } catch (e) {
      fail(new BackendError('error', `connection to target ${t.name} failed.`, (e as Error).message));
    }
  });
}
