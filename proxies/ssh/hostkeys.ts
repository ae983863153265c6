import crypto from 'node:crypto';

/**
 * Backend host key pinning: the keys a target may present, from its `host_key` (one or more OpenSSH public
 * key lines) or an OpenSSH known_hosts file. Pure: the caller reads the file. A backend key that matches
 * none of them is refused.
 */
export interface PinnedKey {
  algo: string;
  blob: Buffer;
}

export interface HostKeyPins {
  keys: PinnedKey[];
  /** Keys marked `@revoked` in known_hosts: refused even if also listed. */
  revoked: PinnedKey[];
}

function parseKeyFields(algo: string | undefined, b64: string | undefined): PinnedKey | undefined {
  if (!algo || !b64 || !/^[A-Za-z0-9+/]+=*$/.test(b64)) return undefined;
  const blob = Buffer.from(b64, 'base64');
  // The blob starts with its own algorithm name; a line whose two disagree is not a key.
  if (blob.length < 4) return undefined;
  const n = blob.readUInt32BE(0);
  if (4 + n > blob.length || blob.toString('latin1', 4, 4 + n) !== algo) return undefined;
  return { algo, blob };
}

/** Parse `host_key`: one or more `algo base64 [comment]` lines. Returns the keys, or throws naming the bad line. */
export function parseHostKeyLines(text: string): PinnedKey[] {
  const keys: PinnedKey[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [algo, b64] = line.split(/\s+/);
    const key = parseKeyFields(algo, b64);
    if (!key) throw new Error(`host_key line ${i + 1} is not an OpenSSH public key ("ssh-ed25519 AAAA…")`);
    keys.push(key);
  }
  return keys;
}

/** Name known_hosts uses for a host: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp('^' + pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$', 'i');
  return re.test(name);
}

/** Does one known_hosts host field (comma list, patterns, `!negation`, or `|1|salt|hash`) name `name`? */
export function hostFieldMatches(field: string, name: string): boolean {
  if (field.startsWith('|1|')) {
    const [, , salt, hash] = field.split('|');
    if (!salt || !hash) return false;
    const mac = crypto.createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64');
    return mac === hash;
  }
  let matched = false;
  for (const pat of field.split(',')) {
    if (pat.startsWith('!')) {
      if (globMatch(pat.slice(1), name)) return false;
    } else if (globMatch(pat, name)) matched = true;
  }
  return matched;
}

/** Keys known_hosts pins for `host:port` (`@cert-authority` lines are not supported and are skipped). */
export function parseKnownHosts(text: string, host: string, port: number): HostKeyPins {
  const name = knownHostsName(host, port);
  const pins: HostKeyPins = { keys: [], revoked: [] };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    let marker: string | undefined;
    if (fields[0]!.startsWith('@')) marker = fields.shift();
    const [hosts, algo, b64] = fields;
    if (!hosts || marker === '@cert-authority' || !hostFieldMatches(hosts, name)) continue;
    const key = parseKeyFields(algo, b64);
    if (!key) continue;
    (marker === '@revoked' ? pins.revoked : pins.keys).push(key);
  }
  return pins;
}

/** Is the key blob a backend presented one of the pinned keys (and not revoked)? */
export function isPinned(pins: HostKeyPins, presented: Buffer): boolean {
  if (pins.revoked.some((k) => k.blob.equals(presented))) return false;
  return pins.keys.some((k) => k.blob.equals(presented));
}

/** SSH host key algorithms to offer so the backend presents a key type we have pinned. */
export function hostKeyAlgorithms(pins: HostKeyPins): string[] {
  const out = new Set<string>();
  for (const k of pins.keys) {
    if (k.algo === 'ssh-rsa') ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'].forEach((a) => out.add(a));
    else out.add(k.algo);
  }
  return [...out];
}

/** SHA256 fingerprint as OpenSSH prints it, for messages and events. */
export function fingerprint(blob: Buffer): string {
  return 'SHA256:' + crypto.createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}
