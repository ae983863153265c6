import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { parseDuration, parseListen, parseSize } from './units.ts';
import { parseCidr } from '../identity/cidr.ts';

/**
 * Reusable zod pieces for config sections. Every proxy's own section is built from these, so that
 * units, listen addresses, secrets and file references are written and reported the same way everywhere.
 * Paths in the config are resolved against the config file's directory (`base`).
 */
export interface SchemaContext {
  /** Directory that relative paths in the config resolve against. */
  base: string;
  /** When false, file references are not checked for existence (used for `config check` of examples). */
  checkFiles: boolean;
}

/** Duration (`30s`, `1h`) parsed to milliseconds. */
export const duration = () =>
  z.union([z.string(), z.number()]).transform((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected a duration like "30s", "15m" or "1h", got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return ms;
  });

/** The longest delay a Node timer takes: setTimeout turns anything longer into 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A duration that arms a timer (a timeout, an interval, a delay). Capped at MAX_TIMER_MS (about 24.8 days)
 * so `auth_timeout: 30d` is refused rather than firing at once on every connection. `positive`: for
 * deadlines where 0 cannot mean "off" (it would cut everything at once).
 */
export const timer = (opts: { positive?: boolean } = {}) =>
  duration().superRefine((ms, ctx) => {
    if (ms > MAX_TIMER_MS) ctx.addIssue({ code: 'custom', message: `must be at most 24d (a longer timer would fire at once), got ${ms}ms` });
    else if (opts.positive && ms <= 0) ctx.addIssue({ code: 'custom', message: 'must be longer than 0 (it would cut every connection at once)' });
  });

/** Size (`64MiB`, `4096`) parsed to bytes. */
export const size = () =>
  z.union([z.string(), z.number()]).transform((v, ctx) => {
    const n = parseSize(v);
    if (n === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected a size like "64MiB" or a byte count, got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return n;
  });

/** `host:port` listen address. */
export const listen = () =>
  z.string().transform((v, ctx) => {
    const l = parseListen(v);
    if (!l) {
      ctx.addIssue({ code: 'custom', message: `expected "host:port", got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    return l;
  });

export type Listen = { host: string; port: number };

/** A path to an existing file, resolved against the config directory. */
export const filePath = (sc: SchemaContext) =>
  z.string().transform((v, ctx) => {
    const p = path.resolve(sc.base, v);
    if (sc.checkFiles && !fs.existsSync(p)) {
      ctx.addIssue({ code: 'custom', message: `file not found: ${p}` });
      return z.NEVER;
    }
    return p;
  });

/**
 * A secret given by reference, never inline: `{ file: path }` or `{ env: NAME }`. The value is read at
 * use time by `readSecret`, so it never sits in the parsed config object (which may be logged).
 */
export const secretRef = (sc: SchemaContext) =>
  z.union([
    z.strictObject({ file: filePath(sc) }),
    z.strictObject({ env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name') }),
  ]);

export type SecretRef = { file: string } | { env: string };

/** Reads a secret reference. Throws an error that names the reference, never the value. */
export function readSecret(ref: SecretRef): string {
  if ('file' in ref) return fs.readFileSync(ref.file, 'utf8').replace(/\r?\n$/, '');
  const v = process.env[ref.env];
  if (v === undefined) throw new Error(`environment variable ${ref.env} is not set`);
  return v;
}

export const name = () => z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'expected a name of letters, digits, ".", "_" or "-"');

/**
 * PROXY protocol (v1 or v2) from load balancers: connections from `trusted` addresses must begin with a
 * header naming the real client, which events then carry. Connections from other addresses are served
 * as they come and a header from them is never honoured (it would be a forged source address).
 */
export const proxyProtocol = () =>
  z.strictObject({
    /** Addresses or CIDR blocks of the load balancers (e.g. 10.0.0.0/24, 127.0.0.3). */
    trusted: z.array(z.string().refine((s) => parseCidr(s) !== undefined, 'expected an IP address or CIDR block')).min(1),
    /** A trusted connection whose header is not complete this soon after accept is closed. */
    header_timeout: timer({ positive: true }).default(5000 as never),
  });

/** Fields `enabled` + `listen` (+ `proxy_protocol`) every proxy section starts from. */
export function listenerBase(defaultListen: string) {
  return {
    enabled: z.boolean().default(true),
    listen: listen().prefault(defaultListen),
    proxy_protocol: proxyProtocol().optional(),
  };
}
