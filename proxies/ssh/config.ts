import { z } from 'zod';
import { listenerBase, filePath, secretRef, type SchemaContext } from '../../src/config/types.ts';

/** The `ssh:` config section. */
export function sshSectionSchema() {
  return z.strictObject({
    ...listenerBase('0.0.0.0:2222'),
    /** Environment variables a client may pass (`SendEnv`); a trailing `*` matches a prefix. Others are refused. */
    env_allow: z.array(z.string()).default(['LANG', 'LC_*']),
    /** Authentication attempts (keys tried) per connection before it is dropped. */
    max_auth_attempts: z.number().int().min(1).default(6),
  });
}

export type SshSection = z.output<ReturnType<typeof sshSectionSchema>>;

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
