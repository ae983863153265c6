/**
 * Address lists of the OpenSSH `source-address` critical option: comma-separated addresses or CIDR
 * blocks, IPv4 and IPv6. A client on an IPv4-mapped IPv6 socket address (::ffff:10.0.0.1, what a
 * dual-stack listener reports) matches IPv4 blocks. Pure; no DNS, no sockets.
 */
export interface CidrBlock {
  bytes: Buffer; // 4 or 16
  prefix: number;
}

function parseIpv4(s: string): Buffer | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out = Buffer.alloc(4);
  for (let i = 0; i < 4; i++) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(parts[i])) return undefined;
    const n = Number(parts[i]);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

function parseIpv6(s: string): Buffer | undefined {
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string): number[] | undefined => {
    if (h === '') return [];
    const out: number[] = [];
    const parts = h.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (i === parts.length - 1 && p.includes('.')) {
        const v4 = parseIpv4(p);
        if (!v4) return undefined;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(p)) out.push(parseInt(p, 16));
      else return undefined;
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...Array(halves.length === 2 ? missing : 0).fill(0), ...tail];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, 2 * i));
  return out;
}

const V4_MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/** Parses an IP address into 4 or 16 bytes exactly as written (no IPv4-mapped folding). */
export function parseIpExact(s: string): Buffer | undefined {
  const addr = s.replace(/%.*$/, '');
  return parseIpv4(addr) ?? parseIpv6(addr);
}

/** Parses an IP address; IPv4-mapped IPv6 addresses become IPv4. A zone id (`%eth0`) is ignored. */
export function parseIp(s: string): Buffer | undefined {
  const addr = s.replace(/%.*$/, '');
  const v4 = parseIpv4(addr);
  if (v4) return v4;
  const v6 = parseIpv6(addr);
  if (v6 && v6.subarray(0, 12).equals(V4_MAPPED_PREFIX)) return Buffer.from(v6.subarray(12));
  return v6;
}

/** Parses `addr` or `addr/len`. Host bits beyond the prefix are refused (as OpenSSH does). */
export function parseCidr(s: string): CidrBlock | undefined {
  const m = s.trim().match(/^([^/]+)(?:\/(\d{1,3}))?$/);
  if (!m) return undefined;
  const raw = m[1].replace(/%.*$/, '');
  const v4 = parseIpv4(raw);
  const bytes = v4 ?? parseIpv6(raw);
  if (!bytes) return undefined;
  const max = bytes.length * 8;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) return undefined;
  for (let bit = prefix; bit < max; bit++) if (bytes[bit >> 3] & (0x80 >> (bit & 7))) return undefined;
  // An IPv4-mapped block (::ffff:10.0.0.0/104) is the IPv4 block it names.
  if (bytes.length === 16 && prefix >= 96 && bytes.subarray(0, 12).equals(V4_MAPPED_PREFIX)) return { bytes: Buffer.from(bytes.subarray(12)), prefix: prefix - 96 };
  return { bytes, prefix };
}

export function cidrContains(block: CidrBlock, ip: Buffer): boolean {
  if (ip.length !== block.bytes.length) return false;
  const full = block.prefix >> 3;
  if (!ip.subarray(0, full).equals(block.bytes.subarray(0, full))) return false;
  const rest = block.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (ip[full] & mask) === (block.bytes[full] & mask);
}

/** Splits and parses a comma-separated list; returns the entries that do not parse in `invalid`. */
export function parseCidrList(list: string): { blocks: CidrBlock[]; invalid: string[] } {
  const blocks: CidrBlock[] = [];
  const invalid: string[] = [];
  for (const entry of list.split(',')) {
    const b = parseCidr(entry);
    if (b) blocks.push(b);
    else invalid.push(entry);
  }
  return { blocks, invalid };
}

export function ipInBlocks(ip: string, blocks: CidrBlock[]): boolean {
  const parsed = parseIp(ip);
  return parsed !== undefined && blocks.some((b) => cidrContains(b, parsed));
}
