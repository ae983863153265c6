import ssh2 from 'ssh2';
import type { IdentityService } from '../../src/identity/types.ts';
import type { TargetConfig } from '../../src/config/schema.ts';

/** OpenSSH public key line (`algo base64`) of an OpenSSH private key. */
export function publicKeyLine(privateKey: string): string {
  const parsed = ssh2.utils.parseKey(privateKey);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error) throw new Error(`not a usable private key: ${key instanceof Error ? key.message : 'empty'}`);
  return `${key.type} ${key.getPublicSSH().toString('base64')}`;
}

/**
 * known_hosts lines a client needs for vigil: the gateway itself (`[host]:port`) and, for jump-host mode,
 * one line per SSH target with the key vigil presents when it answers for that target. ssh2 cannot present
 * OpenSSH host certificates, so these are plain host keys (stable: derived from vigil's CA state).
 */
export function vigilKnownHosts(identity: IdentityService, targets: readonly TargetConfig[], gatewayHost: string, gatewayPort: number): string[] {
  const name = gatewayPort === 22 ? gatewayHost : `[${gatewayHost}]:${gatewayPort}`;
  const lines = [`${name} ${publicKeyLine(identity.sshHostKey())}`];
  for (const t of targets) {
    if (t.protocol !== 'ssh') continue;
    lines.push(`${t.name} ${publicKeyLine(identity.sshTargetHostKey(t.name).privateKey)}`);
  }
  return lines;
}
