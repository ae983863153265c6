import { z } from 'zod';
import type ssh2 from 'ssh2';
import { listenerBase, filePath, secretRef, duration, type SchemaContext } from '../../src/config/types.ts';

/**
 * Ciphers the SSH listener can offer: the AEAD and CTR ciphers of ssh2 that OpenSSH also has (no CBC,
 * no arcfour). Listed here rather than read from ssh2 so that loading the config does not load ssh2.
 */
export const SSH_CIPHERS = [
  'chacha20-poly1305@openssh.com',
  'aes128-gcm@openssh.com',
  'aes256-gcm@openssh.com',
  'aes128-ctr',
  'aes192-ctr',
  'aes256-ctr',
] as const;

/** The `ssh:` config section. */
export function sshSectionSchema() {
  return z.strictObject({
    ...listenerBase('0.0.0.0:2222'),
    /** Environment variables a client may pass (`SendEnv`); a trailing `*` matches a prefix. Others are refused. */
    env_allow: z.array(z.string()).default(['LANG', 'LC_*', 'GIT_PROTOCOL']),
    /** Authentication attempts (keys tried) per connection before it is dropped. */
    max_auth_attempts: z.number().int().min(1).default(6),
    /**
     * Session channels (shell, exec, subsystem: scp, sftp) open at once on one connection, as OpenSSH's
     * MaxSessions (same default). Each holds a target channel and its window of queued bytes, so one
     * connection cannot make the gateway hold an unbounded number of them.
     */
    max_sessions: z.number().int().min(1).max(1024).default(10),
    /** `ssh -L` channels (direct-tcpip) open at once on one connection. */
    max_forwards: z.number().int().min(1).max(4096).default(64),
    /**
     * Ciphers offered to clients. The client's preference picks among them (stock OpenSSH asks for
     * chacha20-poly1305 first), so leaving one out is how to steer clients to another; unset: all of
     * SSH_CIPHERS, which every stock client accepts.
     */
    ciphers: z.array(z.enum(SSH_CIPHERS)).min(1).optional(),
    /**
     * Keepalives towards targets, so a target that stops answering (network partition, paused VM, stopped
     * sshd) ends the session (reason backend_error) instead of hanging it: vigil answers the client's own
     * keepalives, so the client cannot notice. An SSH keepalive every `interval` of silence; the target is
     * given up after `count` unanswered ones. TCP keepalive on the socket too (first probe after
     * `interval`). `interval: 0` disables both.
     */
    backend_keepalive: z
      .strictObject({
        interval: duration().default(15_000 as never),
        count: z.number().int().min(1).max(100).default(3),
      })
      .prefault({}),
  });
}

export type SshSection = z.output<ReturnType<typeof sshSectionSchema>>;

/** ssh2 server options for the configured cipher list (ssh2's own defaults when none is configured). */
export function serverAlgorithms(section: SshSection): { algorithms?: ssh2.Algorithms } {
  return section.ciphers ? { algorithms: { cipher: [...section.ciphers] } } : {};
}

/** Fields of an SSH target. Exactly one of private_key/password; one of host_key/known_hosts. */
export function sshTargetFields(sc: SchemaContext) {
  return {
    /** Logins that may be used on this target ('*' = any). Roles narrow this further. */
    logins: z.array(z.string()).default([]),
    /** Login used for `ssh TARGET@gateway` (no login given). */
    default_login: z.string().optional(),
    /** Private key (file) vigil uses to log in to the target. Never shown to users. */
    private_key: filePath(sc).optional(),
    /** Or a password from a file or an environment variable. */
    password: secretRef(sc).optional(),
    /** Target host public key (OpenSSH line(s)); a target presenting any other key is refused. */
    host_key: z.string().optional(),
    /** Or an OpenSSH known_hosts file with the target's key. */
    known_hosts: filePath(sc).optional(),
    /** Allow `ssh -L` through this target (the role and the certificate must allow it too). */
    port_forwarding: z.boolean().default(false),
  };
}
