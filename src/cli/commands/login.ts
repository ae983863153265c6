import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { spawn } from 'node:child_process';
import type { Command, CommandArgs } from '../command.ts';
import { UsageError, stringOpt } from '../command.ts';
import { VigilError } from '../../errors.ts';
import { encodeOpenSshPrivateKey } from '../../identity/openssh-privkey.ts';
import { formatPublicKeyLine, fromKeyObject } from '../../identity/ssh-keys.ts';
import { gatewayCall, type GatewayCall } from '../login/api.ts';
import { readOptionFile, requestTimeoutMs, TIMEOUT_OPTION } from '../gateway-request.ts';
import { removeClientConfig, vigilFiles, writeClientConfig, writeFile0600, type LoginView, type SavedSession, type VigilFiles } from '../login/client-config.ts';

/**
 * `vigil login`, `vigil status`, `vigil logout`: sign in with the company's identity provider through the
 * gateway, and leave ssh, psql and mysql configured. Keys are generated here and never leave this machine:
 * the gateway certifies their public halves.
 */

const CALLBACK_PATH = '/callback';
/** How long `vigil login` waits for the browser or the device code before giving up. */
const LOGIN_WAIT_MS = 10 * 60_000;

function readSession(f: VigilFiles): SavedSession | undefined {
  try {
    return JSON.parse(fs.readFileSync(f.session, 'utf8')) as SavedSession;
  } catch {
    return undefined;
  }
}

/** The root to trust for the gateway's TLS: --ca, else the one an earlier login saved, else the system's. */
function caFor(args: CommandArgs, f: VigilFiles): string | undefined {
  const ca = stringOpt(args.values, 'ca');
  if (ca) return ca;
  return fs.existsSync(f.caCert) ? f.caCert : undefined;
}

/** The certificate of the last login, when both halves are still there (else the gateway will say who is missing). */
function clientCertificate(f: VigilFiles): { cert?: string; key?: string } {
  return fs.existsSync(f.tlsCert) && fs.existsSync(f.tlsKey) ? { cert: f.tlsCert, key: f.tlsKey } : {};
}

function newKeys(user: string) {
  const ssh = crypto.generateKeyPairSync('ed25519').privateKey;
  const tls = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    sshPrivate: encodeOpenSshPrivateKey(ssh, user),
    sshPublic: formatPublicKeyLine(fromKeyObject(ssh), user),
    tlsPrivate: tls.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    tlsPublic: tls.publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

function openBrowser(url: string, err: NodeJS.WritableStream): void {
  const browser = process.env.BROWSER;
  if (!browser) return;
  try {
    // $BROWSER may carry arguments (`firefox --new-window`); the URL is always one argument of its own.
    const [cmd, ...rest] = browser.split(' ').filter(Boolean);
    const child = spawn(cmd, [...rest, url], { stdio: 'ignore', detached: true });
    child.on('error', (e) => err.write(`could not start $BROWSER (${e.message}); open the URL yourself\n`));
    child.unref();
  } catch (e) {
    err.write(`could not start $BROWSER (${(e as Error).message}); open the URL yourself\n`);
  }
}

/** A loopback listener for the IdP's redirect: resolves with the full callback URL, answers the browser when told. */
async function loopbackListener(): Promise<{ redirectUri: string; callback: Promise<{ url: string; answer: (ok: boolean, text: string) => void }>; close: () => void }> {
  let deliver!: (v: { url: string; answer: (ok: boolean, text: string) => void }) => void;
  const callback = new Promise<{ url: string; answer: (ok: boolean, text: string) => void }>((r) => (deliver = r));
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (u.pathname !== CALLBACK_PATH) {
      res.writeHead(404).end();
      return;
    }
    const port = (server.address() as net.AddressInfo).port;
    deliver({
      url: `http://127.0.0.1:${port}${req.url}`,
      answer: (ok, text) => {
        const body = `<!doctype html><meta charset="utf-8"><title>vigil login</title><h1>${ok ? 'Signed in' : 'Sign-in failed'}</h1><p>${text.replace(/[<>&]/g, '')}</p><p>You can close this window and return to the terminal.</p>`;
        res.writeHead(ok ? 200 : 400, { 'content-type': 'text/html; charset=utf-8', connection: 'close' }).end(body);
      },
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return { redirectUri: `http://127.0.0.1:${port}${CALLBACK_PATH}`, callback, close: () => server.close() };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new VigilError('VIGIL_LOGIN_TIMEOUT', `${what} did not happen within ${ms / 60_000} minutes`)), ms)))]).finally(() => clearTimeout(t));
}

/** Instructions for the person signing in: on stderr with --json, so every stdout line stays JSON. */
function prompts(args: CommandArgs): NodeJS.WritableStream {
  return args.values.json === true ? args.err : args.out;
}

/**
 * How long the device code stays valid, measured on the gateway's clock (its absolute expiry minus the
 * answer's Date header): comparing the gateway's timestamp with this machine's clock would give up at
 * once when the laptop runs ahead. The gateway's poll answer still has the last word.
 */
export function deviceCodeLifetimeMs(expiresAt: string, gatewayDate: string | undefined): number {
  const expiry = Date.parse(expiresAt);
  const gatewayNow = gatewayDate ? Date.parse(gatewayDate) : NaN;
  if (Number.isNaN(expiry)) return LOGIN_WAIT_MS;
  // Date has whole seconds: up to one second of lifetime is lost, never gained.
  return Math.max(0, expiry - (Number.isNaN(gatewayNow) ? Date.now() : gatewayNow) - 1000);
}

async function codeFlow(call: GatewayCall, keys: ReturnType<typeof newKeys>, args: CommandArgs): Promise<LoginView> {
  const listener = await loopbackListener();
  try {
    const started = await call<{ login_id: string; authorization_url: string }>('POST', '/v1/login/start', { ssh_public_key: keys.sshPublic, x509_public_key: keys.tlsPublic, redirect_uri: listener.redirectUri });
    prompts(args).write(`Open this URL in a browser to sign in:\n  ${started.body.authorization_url}\n`);
    openBrowser(started.body.authorization_url, args.err);
    const cb = await withTimeout(listener.callback, LOGIN_WAIT_MS, 'the sign-in in the browser');
    const q = new URL(cb.url).searchParams;
    if (q.get('error')) {
      cb.answer(false, `the identity provider said: ${q.get('error')}`);
      throw new VigilError('VIGIL_OIDC_REFUSED', `the identity provider refused the sign-in: ${q.get('error')}${q.get('error_description') ? ` (${q.get('error_description')})` : ''}`);
    }
    try {
      const done = await call<{ login: LoginView }>('POST', '/v1/login/finish', { login_id: started.body.login_id, callback_url: cb.url });
      cb.answer(true, `signed in to vigil as ${done.body.login.user}`);
      return done.body.login;
    } catch (e) {
      cb.answer(false, (e as Error).message);
      throw e;
    }
  } finally {
    listener.close();
  }
}

async function deviceFlow(call: GatewayCall, keys: ReturnType<typeof newKeys>, args: CommandArgs): Promise<LoginView> {
  const started = await call<{ login_id: string; user_code: string; verification_uri: string; verification_uri_complete: string | null; interval: number; expires_at: string }>('POST', '/v1/login/device', { ssh_public_key: keys.sshPublic, x509_public_key: keys.tlsPublic });
  const d = started.body;
  prompts(args).write(`To sign in, open ${d.verification_uri} on any device and enter the code ${d.user_code}\n`);
  if (d.verification_uri_complete) prompts(args).write(`  (or open ${d.verification_uri_complete})\n`);
  const until = Date.now() + Math.min(deviceCodeLifetimeMs(d.expires_at, started.date), LOGIN_WAIT_MS);
  for (;;) {
    await new Promise((r) => setTimeout(r, Math.max(1, d.interval) * 1000));
    const r = await call<{ pending?: boolean; login?: LoginView }>('POST', '/v1/login/device/poll', { login_id: d.login_id });
    if (r.status === 200 && r.body.login) return r.body.login;
    if (Date.now() > until) throw new VigilError('VIGIL_LOGIN_TIMEOUT', 'the device code was not confirmed in time; run vigil login --device again');
  }
}

export const loginCommand: Command = {
  name: 'login',
  summary: 'Sign in with your identity provider (OIDC) and configure ssh, psql and mysql for the targets you may reach.',
  usage:
    '--gateway https://GATEWAY:PORT [--device] [--ca FILE]\n\n' +
    '  Generates a key pair in ~/.vigil (never sent anywhere), has the gateway certify it after you signed in\n' +
    '  with the company\'s identity provider, and writes ~/.vigil/{id_ed25519,id_ed25519-cert.pub,tls.key,tls.crt,\n' +
    '  ca.crt} (0600) plus vigil\'s marked block in ~/.ssh/config (Include ~/.vigil/ssh_config: one Host per SSH\n' +
    '  target), ~/.ssh/known_hosts, ~/.pg_service.conf (psql service=TARGET) and ~/.my.cnf (mysql\n' +
    '  --defaults-group-suffix=_TARGET). Lines outside the block are never touched. Without --device the sign-in\n' +
    '  runs in a browser (opened with $BROWSER when set, else open the printed URL) that returns to a listener on\n' +
    '  127.0.0.1; --device prints a code to enter on any other device (for machines without a browser).',
  options: {
    gateway: { type: 'string', arg: 'URL', help: 'the gateway API, e.g. https://gw.example.com:8443 (default: the one of the last login)' },
    device: { type: 'boolean', help: 'sign in with a code on another device instead of a browser here' },
    ca: { type: 'string', arg: 'FILE', help: 'root certificate of the gateway\'s API (default: ~/.vigil/ca.crt from an earlier login, else the system\'s roots)' },
    ...TIMEOUT_OPTION,
    json: { type: 'boolean', help: 'print the result as one JSON object on stdout (sign-in instructions go to stderr)' },
  },
  examples: ['login --gateway https://gw.example.com:8443', 'login --gateway https://gw.example.com:8443 --device', 'login --gateway https://localhost:8443 --ca ./data/ca/ca.crt'],
  async run(args) {
    const f = vigilFiles();
    const gateway = stringOpt(args.values, 'gateway') ?? readSession(f)?.gateway;
    if (!gateway) throw new UsageError('--gateway URL is required (no earlier login to take it from)');
    const call = gatewayCall(gateway, { ca: caFor(args, f) }, { timeoutMs: requestTimeoutMs(args.values), gatewayOption: stringOpt(args.values, 'gateway') ? '--gateway' : `the gateway saved in ${f.session}` });
    const keys = newKeys(process.env.USER ?? 'vigil');
    const view = args.values.device === true ? await deviceFlow(call, keys, args) : await codeFlow(call, keys, args);

    // Keys first, then the certificates for them, then the configs that point at both.
    writeFile0600(f.sshKey, keys.sshPrivate);
    writeFile0600(f.sshPub, keys.sshPublic);
    writeFile0600(f.sshCert, view.certificate.ssh_certificate);
    writeFile0600(f.tlsKey, keys.tlsPrivate);
    writeFile0600(f.tlsCert, view.certificate.x509_certificate);
    writeFile0600(f.caCert, view.certificate.ca_certificate);
    const host = new URL(gateway).hostname.replace(/^\[|\]$/g, '');
    const changed = writeClientConfig(f, view, host);
    const session: SavedSession = { gateway, user: view.user, roles: view.roles, groups: view.groups, subject: view.subject, serial: view.certificate.serial, not_after: view.certificate.not_after, targets: view.targets };
    writeFile0600(f.session, JSON.stringify(session, null, 2));
    if (args.values.json === true) {
      args.out.write(JSON.stringify({ ...session, files: f, changed }) + '\n');
      return 0;
    }
    args.out.write(
      `signed in as ${view.user} (roles: ${view.roles.join(', ')}; groups: ${view.groups.join(', ') || '-'})\n` +
        `certificate ${view.certificate.serial} valid until ${view.certificate.not_after}\n` +
        view.targets.map((t) => `  ${t.protocol.padEnd(8)} ${t.name.padEnd(20)} ${t.protocol === 'ssh' ? `ssh ${t.name}` : t.protocol === 'postgres' ? `psql service=${t.name}` : `mysql --defaults-group-suffix=_${t.name.replace(/[^A-Za-z0-9_]/g, '_')}`}\n`).join(''),
    );
    return 0;
  },
};

export const statusCommand: Command = {
  name: 'status',
  summary: 'Who you are signed in as: roles, certificate expiry, active grants and pending requests.',
  usage: '[--json]\n\n  Asks the gateway of the last `vigil login` with your certificate; offline, shows what ~/.vigil records.',
  options: { json: { type: 'boolean' }, ca: { type: 'string', arg: 'FILE', help: 'root certificate of the gateway\'s API (default: ~/.vigil/ca.crt)' }, ...TIMEOUT_OPTION },
  examples: ['status', 'status --json'],
  async run(args) {
    const f = vigilFiles();
    const s = readSession(f);
    if (!s) {
      args.err.write('not signed in (run vigil login --gateway URL)\n');
      return 1;
    }
    let live: { user: string; roles: string[]; cert_serial: string | null; not_after: string | null; grants: Array<{ id: string; role: string; targets?: string[]; expiresAt?: string }>; requests: Array<{ id: string; role: string; state: string }> } | undefined;
    let problem: string | undefined;
    let problemCode: string | undefined;
    const call = gatewayCall(s.gateway, { ca: caFor(args, f), ...clientCertificate(f) }, { timeoutMs: requestTimeoutMs(args.values), gatewayOption: `the gateway saved in ${f.session}` });
    try {
      live = (await call<NonNullable<typeof live>>('GET', '/v1/me')).body;
    } catch (e) {
      problem = (e as Error).message;
      problemCode = e instanceof VigilError ? e.code : undefined;
    }
    const expired = Date.parse(s.not_after) <= Date.now();
    const view = {
      gateway: s.gateway,
      user: live?.user ?? s.user,
      roles: live?.roles ?? s.roles,
      groups: s.groups,
      serial: s.serial,
      not_after: s.not_after,
      expired,
      grants: live?.grants ?? null,
      requests: live?.requests ?? null,
      ...(problem ? { gateway_error: problem, ...(problemCode ? { gateway_error_code: problemCode } : {}) } : {}),
    };
    if (args.values.json === true) {
      args.out.write(JSON.stringify(view) + '\n');
      return problem ? 1 : 0;
    }
    const left = Math.round((Date.parse(s.not_after) - Date.now()) / 60_000);
    args.out.write(
      `user:        ${view.user} (via ${s.gateway})\n` +
        `roles:       ${view.roles.join(', ') || '-'}\n` +
        `certificate: ${s.serial}, ${expired ? 'EXPIRED' : `valid for ${left} min`} (until ${s.not_after})\n` +
        (live
          ? `grants:      ${live.grants.map((g) => `${g.role} (${g.id}${g.expiresAt ? `, until ${g.expiresAt}` : ''})`).join('; ') || '-'}\n` + `requests:    ${live.requests.map((r) => `${r.role} (${r.id}, ${r.state})`).join('; ') || '-'}\n`
          : `gateway:     not reachable with this certificate: ${problem}${problemCode ? ` [${problemCode}]` : ''}\n`),
    );
    return problem ? 1 : 0;
  },
};

export const logoutCommand: Command = {
  name: 'logout',
  summary: 'Revoke your certificate at the gateway and remove the keys, certificates and client configuration vigil login wrote.',
  usage: '[--ca FILE] [--timeout DURATION]\n\n  The local files are removed even when the gateway cannot be reached or does not answer within --timeout\n  (the certificate then simply expires).',
  options: { ca: { type: 'string', arg: 'FILE', help: 'root certificate of the gateway\'s API (default: ~/.vigil/ca.crt)' }, ...TIMEOUT_OPTION },
  examples: ['logout'],
  async run(args) {
    const f = vigilFiles();
    const s = readSession(f);
    // Mistyped options stop here, before anything is removed; everything after only bounds the revocation.
    const timeoutMs = requestTimeoutMs(args.values);
    const ca = stringOpt(args.values, 'ca');
    if (ca) readOptionFile(ca, '--ca');
    let code = 0;
    if (s && fs.existsSync(f.tlsCert) && fs.existsSync(f.tlsKey)) {
      try {
        await gatewayCall(s.gateway, { ca: caFor(args, f), cert: f.tlsCert, key: f.tlsKey }, { timeoutMs, gatewayOption: `the gateway saved in ${f.session}` })('POST', '/v1/me/logout', {});
        args.out.write(`revoked certificate ${s.serial}\n`);
      } catch (e) {
        args.err.write(`could not revoke the certificate at ${s.gateway}: ${(e as Error).message}${e instanceof VigilError ? ` [${e.code}]` : ''}\n`);
        code = 1;
      }
    }
    const removed = removeClientConfig(f);
    args.out.write(removed.length ? `removed ${removed.join(', ')}\n` : 'nothing to remove (not signed in)\n');
    return code;
  },
};

export const LOGIN_COMMANDS: Command[] = [loginCommand, statusCommand, logoutCommand];
