import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { readSecret, type SecretRef } from '../config/types.ts';
import type { NotifierConfig } from '../alerts/config.ts';
import { pagerDutyBody, signature, slackBody, syslogFrame, webhookBody, type Notification } from './format.ts';
import { accessPagerDutyBody, accessSlackBody, accessSyslogFrame, accessWebhookBody, isAccessNotification, type AccessNotification } from './access-format.ts';

/** A delivery failed; the message never contains a secret (URLs given as secrets are not quoted). */
export class DeliveryError extends Error {
  readonly code = 'NOTIFY_DELIVERY_FAILED';
}

const urlOf = (u: string | SecretRef): string => (typeof u === 'string' ? u : readSecret(u));

/**
 * `https://user:password@host/…` as fetch can send it: the credentials as an `Authorization: Basic` header
 * (what a browser or curl does with them), the URL without them. fetch refuses a URL with credentials,
 * and its error quotes the whole URL, password included.
 */
function withoutCredentials(url: string): { url: string; headers: Record<string, string> } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new DeliveryError('the configured URL is not a valid URL');
  }
  if (!u.username && !u.password) return { url, headers: {} };
  const user = decodeURIComponent(u.username);
  const password = decodeURIComponent(u.password);
  u.username = '';
  u.password = '';
  return { url: u.toString(), headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` } };
}

/** An error text without the URL or any `scheme://user:password@` in it (errors are logged and stored in last_error). */
export function scrubUrls(text: string, url: string): string {
  return text
    .split(url)
    .join('<url>')
    .replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@]*@/gi, '$1***@');
}

async function post(rawUrl: string, body: string, headers: Record<string, string>, timeoutMs: number, secretUrl: boolean): Promise<void> {
  const { url, headers: auth } = withoutCredentials(rawUrl);
  const where = secretUrl ? 'the configured URL' : new URL(url).origin;
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', 'user-agent': 'vigil', ...auth, ...headers }, signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
  } catch (e) {
    const err = e as Error;
    const why = err.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (err.cause as Error | undefined)?.message ?? err.message;
    throw new DeliveryError(`POST to ${where} failed: ${scrubUrls(scrubUrls(why, rawUrl), url)}`);
  }
  await res.arrayBuffer().catch(() => undefined);
  if (res.status < 200 || res.status >= 300) throw new DeliveryError(`POST to ${where} answered HTTP ${res.status}`);
}

/** Write one framed message and close; resolves once the receiver has everything and closed cleanly. */
function sendSyslog(cfg: Extract<NotifierConfig, { kind: 'syslog' }>, frame: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const opts = cfg.tls === false ? undefined : typeof cfg.tls === 'object' ? cfg.tls : {};
    const socket: net.Socket = opts
      ? tls.connect({ host: cfg.host, port: cfg.port, servername: opts.server_name ?? (net.isIP(cfg.host) ? undefined : cfg.host), ca: opts.ca ? fs.readFileSync(opts.ca) : undefined })
      : net.connect({ host: cfg.host, port: cfg.port });
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(new DeliveryError(`syslog to ${cfg.host}:${cfg.port} failed: ${err.message}`));
      else resolve();
    };
    const timer = setTimeout(() => finish(new Error(`no completion within ${cfg.timeout} ms`)), cfg.timeout);
    socket.once('error', finish);
    socket.once(opts ? 'secureConnect' : 'connect', () => {
      socket.end(frame);
    });
    // The write is complete once our FIN is sent after the data; closing without an error means delivered.
    socket.once('close', (hadError) => finish(hadError ? new Error('connection reset') : undefined));
    socket.resume();
  });
}

/** Deliver one notification with the notifier's protocol. Secrets are read at send time, never cached. */
export async function deliver(cfg: NotifierConfig, n: Notification | AccessNotification): Promise<void> {
  // Alert firings and access-request messages share the outbox, the retries and the signing.
  const access = isAccessNotification(n) ? n : undefined;
  const alert = n as Notification;
  switch (cfg.kind) {
    case 'webhook': {
      const body = access ? accessWebhookBody(access) : webhookBody(alert);
      const headers: Record<string, string> = {};
      if (cfg.secret) headers['x-vigil-signature'] = signature(readSecret(cfg.secret), body, Math.floor(Date.now() / 1000));
      return post(urlOf(cfg.url), body, headers, cfg.timeout, typeof cfg.url !== 'string');
    }
    case 'slack':
      return post(urlOf(cfg.url), access ? accessSlackBody(access) : slackBody(alert), {}, cfg.timeout, typeof cfg.url !== 'string');
    case 'pagerduty': {
      const key = readSecret(cfg.routing_key);
      return post(cfg.url, access ? accessPagerDutyBody(access, key, cfg.severity) : pagerDutyBody(alert, key, cfg.severity), {}, cfg.timeout, false);
    }
    case 'syslog':
      return sendSyslog(cfg, access ? accessSyslogFrame(access, cfg.facility) : syslogFrame(alert, cfg.facility));
  }
}
