import fs from 'node:fs';
import https from 'node:https';
import { parseDuration } from '../config/units.ts';
import { VigilError } from '../errors.ts';
import { stringOpt, UsageError, type CommandArgs, type OptionSpec } from './command.ts';

/**
 * One HTTPS exchange with the gateway's API, bounded by a deadline. Every CLI client goes through here so
 * a gateway that accepts the connection and never answers (hung process, half-open firewall) ends in
 * VIGIL_API_TIMEOUT instead of a CLI that hangs forever.
 */

export const DEFAULT_REQUEST_TIMEOUT_MS = 15_000;

export const TIMEOUT_OPTION: Record<string, OptionSpec> = {
  timeout: { type: 'string', arg: 'DURATION', help: 'give up on an unanswered gateway request after this long, e.g. 5s (default: $VIGIL_TIMEOUT, else 15s)' },
};

/** The deadline from --timeout, else $VIGIL_TIMEOUT, else 15 s. */
export function requestTimeoutMs(values: CommandArgs['values'] = {}): number {
  const fromFlag = stringOpt(values, 'timeout');
  const text = fromFlag ?? process.env.VIGIL_TIMEOUT;
  if (text === undefined || text === '') return DEFAULT_REQUEST_TIMEOUT_MS;
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) throw new UsageError(`${fromFlag !== undefined ? '--timeout' : 'VIGIL_TIMEOUT'} must be a positive duration such as 15s or 500ms, got "${text}"`);
  return ms;
}

export function timeoutError(origin: string, ms: number): VigilError {
  return new VigilError('VIGIL_API_TIMEOUT', `the gateway at ${origin} did not answer within ${formatMs(ms)} (raise it with --timeout or VIGIL_TIMEOUT)`);
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** The API's base URL, checked: a usage error (exit 2) naming `option` rather than a TypeError stack. */
export function apiBaseUrl(text: string, option: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`${option} is not a URL: "${text}" (expected e.g. https://gateway:8443)`);
  }
  if (url.protocol !== 'https:') throw new UsageError(`${option} must be an https:// URL, got ${text}`);
  return url;
}

/** Read a PEM file given by `option`; a missing or unreadable file is a usage error naming the option. */
export function readOptionFile(file: string, option: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    const reason = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as NodeJS.ErrnoException).code === 'EISDIR' ? 'is a directory' : (e as Error).message;
    throw new UsageError(`${option} ${file}: cannot read it (${reason})`);
  }
}

export interface GatewayRequest {
  base: URL;
  method: string;
  path: string;
  body?: unknown;
  agent: https.Agent;
  timeoutMs: number;
}

/** Send `body` as JSON; resolves with the status, the raw answer and its Date header, whatever the status. */
export function gatewayRequest(r: GatewayRequest): Promise<{ status: number; text: string; date?: string }> {
  return new Promise((resolve, reject) => {
    const payload = r.body === undefined ? undefined : JSON.stringify(r.body);
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      fn();
    };
    const req = https.request(
      new URL(r.path, r.base),
      { method: r.method, agent: r.agent, headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => settle(() => reject(unreachable(r.base, e))));
        res.on('end', () => settle(() => resolve({ status: res.statusCode ?? 500, text: Buffer.concat(chunks).toString('utf8'), date: res.headers.date })));
      },
    );
    // One deadline over connect, TLS handshake and the whole answer: a stalled peer can hang any of them.
    const deadline = setTimeout(() => {
      const err = timeoutError(r.base.origin, r.timeoutMs);
      settle(() => reject(err));
      req.destroy(err);
    }, r.timeoutMs);
    req.on('error', (e) => settle(() => reject(unreachable(r.base, e))));
    req.end(payload);
  });
}

function unreachable(base: URL, e: Error): VigilError {
  return new VigilError('VIGIL_API_UNREACHABLE', `cannot reach the gateway at ${base.origin}: ${e.message}`, { cause: e });
}
