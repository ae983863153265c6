import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCliCaptured, type CliResult } from '../support/cli.ts';
import { tempDir } from '../support/tmp.ts';
import { BLOCK_BEGIN } from '../../src/cli/login/marked-block.ts';

/**
 * The CLI against gateways that misbehave (accept and never answer, a clock minutes behind) and against
 * the mistakes people make at the prompt (a wrong path, a non-https URL, a mistyped --data). Real sockets
 * and real TLS, no mocks.
 */

const STACK = /\n\s+at /;
const SHORT = '400ms';

let pki: string;
let certFile: string;
let keyFile: string;
let home: string;
const savedEnv = { HOME: process.env.HOME, VIGIL_TIMEOUT: process.env.VIGIL_TIMEOUT, VIGIL_CONFIG: process.env.VIGIL_CONFIG, VIGIL_API: process.env.VIGIL_API };

beforeAll(() => {
  pki = tempDir('vigil-cli-pki-');
  certFile = path.join(pki, 'gw.crt');
  keyFile = path.join(pki, 'gw.key');
  // One self-signed certificate for 127.0.0.1: the stub gateway's, its own root, and a client certificate.
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
});

afterAll(() => fs.rmSync(pki, { recursive: true, force: true }));

beforeEach(() => {
  home = tempDir('vigil-cli-home-');
  process.env.HOME = home;
  delete process.env.VIGIL_TIMEOUT;
  delete process.env.VIGIL_CONFIG;
  delete process.env.VIGIL_API;
});

afterEach(() => {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  fs.rmSync(home, { recursive: true, force: true });
});

/** A TCP server that accepts connections and never says a word (a hung gateway, a half-open firewall). */
async function blackhole(): Promise<{ url: string; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** Fails the test with "hung" instead of letting it run into vitest's timeout. */
async function bounded(p: Promise<CliResult>, ms: number): Promise<CliResult> {
  let t!: NodeJS.Timeout;
  const hung = new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`the command hung for more than ${ms} ms`)), ms)));
  return Promise.race([p, hung]).finally(() => clearTimeout(t));
}

const hostKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtQh6Cf0m3xQkTQ7Pz7rZXx1G4Yf2ue0e6nqD1Q3o4b gw';

/**
 * A gateway speaking just enough of /v1/login/device, /poll, /me and /me/logout. `skewMs` shifts its clock
 * (expires_at and the Date header); the first `pendingPolls` polls answer "not yet".
 */
async function stubGateway(opts: { skewMs?: number; pendingPolls?: number } = {}): Promise<{ url: string; close: () => Promise<void>; paths: string[] }> {
  const skew = opts.skewMs ?? 0;
  let polls = 0;
  const paths: string[] = [];
  const ca = fs.readFileSync(certFile, 'utf8');
  const view = {
    user: 'alice',
    roles: ['dev'],
    groups: ['eng'],
    subject: 'sub-1',
    certificate: { serial: 'abcd', not_before: new Date().toISOString(), not_after: new Date(Date.now() + 3600e3).toISOString(), ssh_certificate: 'ssh-ed25519-cert-v01@openssh.com AAAA stub', x509_certificate: ca, ca_certificate: ca },
    gateway: { ports: { ssh: 2222, postgres: 5433, mysql: 3307, api: 8443 }, ssh_host_key: hostKey, ssh_host_ca: hostKey },
    targets: [
      { name: 'web1', protocol: 'ssh', login: 'ubuntu' },
      { name: 'pg-prod', protocol: 'postgres' },
      { name: 'maria-prod', protocol: 'mysql' },
    ],
  };
  const server = https.createServer({ key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) }, (req, res) => {
    req.resume();
    req.on('end', () => {
      paths.push(req.url ?? '');
      const gatewayNow = Date.now() + skew;
      const send = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json', date: new Date(gatewayNow).toUTCString() }).end(JSON.stringify(body));
      if (req.url === '/v1/login/device') {
        return send(201, { login_id: 'L1', user_code: 'ABCD-EFGH', verification_uri: 'https://idp.example/device', verification_uri_complete: 'https://idp.example/device?code=ABCD-EFGH', interval: 1, expires_at: new Date(gatewayNow + 300_000).toISOString() });
      }
      if (req.url === '/v1/login/device/poll') {
        polls++;
        return polls <= (opts.pendingPolls ?? 0) ? send(202, { pending: true }) : send(200, { login: view });
      }
      if (req.url === '/v1/me') return send(200, { user: 'alice', roles: ['dev'], cert_serial: 'abcd', not_after: view.certificate.not_after, grants: [], requests: [] });
      if (req.url === '/v1/me/logout') return send(200, {});
      send(404, { error: { code: 'VIGIL_NO_ROUTE', message: 'no such route' } });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return { url: `https://127.0.0.1:${port}`, paths, close: () => new Promise((r) => server.close(() => r())) };
}

/** What a finished `vigil login` leaves in ~/.vigil, pointing at `gateway`. */
function fakeSignedIn(gateway: string): { session: string; tlsCert: string; tlsKey: string } {
  const dir = path.join(home, '.vigil');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files = { session: path.join(dir, 'session.json'), tlsCert: path.join(dir, 'tls.crt'), tlsKey: path.join(dir, 'tls.key') };
  fs.writeFileSync(files.session, JSON.stringify({ gateway, user: 'alice', roles: ['dev'], groups: [], subject: 's', serial: 'abcd', not_after: new Date(Date.now() + 3600e3).toISOString(), targets: [] }));
  fs.copyFileSync(certFile, files.tlsCert);
  fs.copyFileSync(keyFile, files.tlsKey);
  fs.copyFileSync(certFile, path.join(dir, 'ca.crt'));
  return files;
}

describe('requests to a gateway that never answers end in VIGIL_API_TIMEOUT', () => {
  let hole: Awaited<ReturnType<typeof blackhole>>;
  beforeEach(async () => {
    hole = await blackhole();
  });
  afterEach(() => hole.close());

  it('logout gives up on the revocation after VIGIL_TIMEOUT and still removes session.json, tls.crt and tls.key', async () => {
    const files = fakeSignedIn(hole.url);
    process.env.VIGIL_TIMEOUT = SHORT;
    const r = await bounded(runCliCaptured(['logout']), 10_000);
    expect(r.err).toContain('VIGIL_API_TIMEOUT');
    expect(r.err).not.toMatch(STACK);
    expect(r.code).toBe(1);
    for (const f of Object.values(files)) expect(fs.existsSync(f), f).toBe(false);
  });

  it('status fails with the timeout code (text and --json)', async () => {
    fakeSignedIn(hole.url);
    const text = await bounded(runCliCaptured(['status', '--timeout', SHORT]), 10_000);
    expect(text.code).toBe(1);
    expect(text.out).toMatch(/not reachable.*did not answer within 400ms.*\[VIGIL_API_TIMEOUT\]/);
    const json = await bounded(runCliCaptured(['status', '--json', '--timeout', SHORT]), 10_000);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.out)).toMatchObject({ gateway_error_code: 'VIGIL_API_TIMEOUT' });
  });

  it('login fails at its start with the timeout code, device and browser flows', async () => {
    for (const flow of [['--device'], []]) {
      const r = await bounded(runCliCaptured(['login', '--gateway', hole.url, '--ca', certFile, '--timeout', SHORT, ...flow]), 10_000);
      expect(r.code).toBe(1);
      expect(r.err).toContain('[VIGIL_API_TIMEOUT]');
      expect(r.err).not.toMatch(STACK);
    }
  });

  it('access, lock, sessions, config reload and the opening of watch all time out', async () => {
    process.env.VIGIL_TIMEOUT = SHORT;
    const conn = ['--api', hole.url, '--cert', certFile, '--key', keyFile, '--ca', certFile];
    for (const argv of [['access', 'list'], ['lock', 'list'], ['sessions', 'list', '--live'], ['config', 'reload'], ['watch', 'S1']]) {
      const r = await bounded(runCliCaptured([...argv, ...conn]), 10_000);
      expect(r.err, argv.join(' ')).toContain('[VIGIL_API_TIMEOUT]');
      expect(r.code, argv.join(' ')).toBe(1);
    }
  });

  it('a malformed --timeout is a usage error', async () => {
    fakeSignedIn(hole.url);
    const r = await runCliCaptured(['status', '--timeout', 'soon']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('--timeout must be a positive duration');
  });
});

describe('vigil login against a gateway whose clock is 6.7 minutes behind', () => {
  it('keeps polling until the gateway confirms, instead of giving up at once', async () => {
    const gw = await stubGateway({ skewMs: -402_000, pendingPolls: 1 });
    try {
      const r = await bounded(runCliCaptured(['login', '--gateway', gw.url, '--ca', certFile, '--device']), 20_000);
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      expect(gw.paths.filter((p) => p === '/v1/login/device/poll')).toHaveLength(2);
      expect(r.out).toContain('signed in as alice');
    } finally {
      await gw.close();
    }
  });
});

describe('vigil login --json', () => {
  it('keeps stdout to JSON lines: the sign-in instructions go to stderr', async () => {
    const gw = await stubGateway();
    try {
      const r = await bounded(runCliCaptured(['login', '--gateway', gw.url, '--ca', certFile, '--device', '--json']), 20_000);
      expect(r.code).toBe(0);
      const lines = r.out.split('\n').filter(Boolean);
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
      expect(JSON.parse(lines[0])).toMatchObject({ user: 'alice' });
      expect(r.err).toContain('To sign in, open https://idp.example/device');
      expect(r.err).toContain('ABCD-EFGH');
    } finally {
      await gw.close();
    }
  });
});

describe('a symlinked ~/.ssh/config (dotfiles)', () => {
  it('stays a symlink through login and logout; the block is written in and removed from its target', async () => {
    const dotfiles = path.join(home, 'dotfiles');
    fs.mkdirSync(dotfiles);
    fs.mkdirSync(path.join(home, '.ssh'), { mode: 0o700 });
    const target = path.join(dotfiles, 'ssh_config');
    fs.writeFileSync(target, 'Host mine\n  User me\n', { mode: 0o644 });
    const link = path.join(home, '.ssh', 'config');
    fs.symlinkSync('../dotfiles/ssh_config', link);
    const gw = await stubGateway();
    try {
      const login = await bounded(runCliCaptured(['login', '--gateway', gw.url, '--ca', certFile, '--device']), 20_000);
      expect(login.err).toBe('');
      expect(login.code).toBe(0);
      expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
      const text = fs.readFileSync(target, 'utf8');
      expect(text).toContain(BLOCK_BEGIN);
      expect(text).toContain('Host mine\n  User me\n');
      expect(fs.statSync(target).mode & 0o777).toBe(0o644);
      expect(fs.readdirSync(dotfiles)).toEqual(['ssh_config']);

      // The stub certifies no key (its certificate does not match the new tls.key), so revocation fails; removal must not.
      const logout = await bounded(runCliCaptured(['logout']), 10_000);
      expect(logout.out).toContain('removed');
      expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
      expect(fs.readFileSync(target, 'utf8')).toBe('Host mine\n  User me\n');
    } finally {
      await gw.close();
    }
  });
});

describe('bad files and URLs are usage errors that name the option (exit 2, no stack trace)', () => {
  const missing = '/nonexistent/vigil/file.pem';
  const cases: Array<[string, () => string[], RegExp]> = [
    ['login --ca missing', () => ['login', '--gateway', 'https://127.0.0.1:1', '--ca', missing], /--ca \/nonexistent\/vigil\/file\.pem: cannot read it \(no such file\)/],
    ['login --gateway http://', () => ['login', '--gateway', 'http://127.0.0.1:1'], /--gateway must be an https:\/\/ URL/],
    ['login --gateway not a URL', () => ['login', '--gateway', 'gw.example.com'], /--gateway is not a URL/],
    ['access list --cert missing', () => ['access', 'list', '--api', 'https://127.0.0.1:1', '--cert', missing, '--key', keyFile, '--ca', certFile], /--cert .*cannot read it/],
    ['lock list --api not a URL', () => ['lock', 'list', '--api', '::bad::', '--cert', certFile, '--key', keyFile, '--ca', certFile], /--api is not a URL/],
    ['sessions list --live --key missing', () => ['sessions', 'list', '--live', '--api', 'https://127.0.0.1:1', '--cert', certFile, '--key', missing, '--ca', certFile], /--key .*cannot read it/],
    ['config reload --ca a directory', () => ['config', 'reload', '--api', 'https://127.0.0.1:1', '--cert', certFile, '--key', keyFile, '--ca', pki], /--ca .*cannot read it \(is a directory\)/],
    ['config reload --api http://', () => ['config', 'reload', '--api', 'http://127.0.0.1:1', '--cert', certFile, '--key', keyFile, '--ca', certFile], /--api must be an https:\/\/ URL/],
  ];
  for (const [name, argv, message] of cases) {
    it(name, async () => {
      const r = await runCliCaptured(argv());
      expect(r.err).not.toMatch(STACK);
      expect(r.err).toMatch(message);
      expect(r.code).toBe(2);
    });
  }
});

describe('--json listings print one compact JSON object per line', () => {
  it('lock list: one line per lock, each parsing on its own', async () => {
    const data = path.join(home, 'data');
    for (const user of ['bob', 'carol']) {
      const r = await runCliCaptured(['lock', 'user', user, '--reason', `laptop of ${user} stolen`, '--data', data, '--json']);
      expect(r.err).toBe('');
      expect(r.out.trim().split('\n')).toHaveLength(1);
    }
    const list = await runCliCaptured(['lock', 'list', '--json', '--data', data]);
    expect(list.code).toBe(0);
    const lines = list.out.split('\n').filter(Boolean);
    expect(lines).toHaveLength(2);
    expect(lines.map((l) => JSON.parse(l).name).sort()).toEqual(['bob', 'carol']);
  });

  it('alerts list: its one object on one line', async () => {
    const data = path.join(home, 'data');
    await runCliCaptured(['lock', 'user', 'bob', '--reason', 'creates the data dir', '--data', data]);
    const r = await runCliCaptured(['alerts', 'list', '--json', '--data', data]);
    expect(r.code).toBe(0);
    const lines = r.out.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toHaveProperty('rules');
  });
});

describe('a mistyped --data', () => {
  it('audit search and audit tail fail with "no audit log" (exit 1) instead of an empty answer', async () => {
    const missing = path.join(home, 'no-such-data');
    for (const argv of [['audit', 'search'], ['audit', 'search', '--json'], ['audit', 'search', '--scan'], ['audit', 'tail']]) {
      const r = await runCliCaptured([...argv, '--data', missing]);
      expect(r.code, argv.join(' ')).toBe(1);
      expect(r.err).toContain(`no audit log in ${missing}`);
      expect(r.err).toContain('[VIGIL_NOT_FOUND]');
    }
    expect(fs.existsSync(missing)).toBe(false);
  });

  it('read-only listings say so and create no data dir (no new state.db)', async () => {
    const missing = path.join(home, 'no-such-data');
    for (const argv of [['alerts', 'list'], ['hold', 'list'], ['lock', 'list'], ['access', 'list'], ['access', 'show', 'R1']]) {
      const r = await runCliCaptured([...argv, '--data', missing]);
      expect(r.code, argv.join(' ')).toBe(1);
      expect(r.err).toContain(`no data directory at ${missing}`);
      expect(fs.existsSync(missing), argv.join(' ')).toBe(false);
    }
  });
});
