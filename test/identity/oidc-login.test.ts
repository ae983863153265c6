import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { runCli } from '../../app/main.ts';
import { caDir, CA_FILES } from '../../src/identity/index.ts';
import { BLOCK_BEGIN } from '../../src/cli/login/marked-block.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { startPostgres, clientEnv, PASSWORDS, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, secretsDir } from '../support/tmp.ts';
import { startTestIdp, startBrowser, signInWithBrowser, claimsOf, type TestIdp } from '../support/oidc-provider.ts';

/**
 * `vigil login` end to end: a real OpenID Provider (oidc-provider) in-process, the gateway as its client,
 * headless Chromium signing in on the IdP's pages, then stock ssh and psql using only the files `vigil
 * login` wrote under $HOME. Bad ID tokens come out of the same IdP, rewritten at its token endpoint.
 */

let idp: TestIdp;
let tg: TestGateway;
let sshd: SshdHandle;
let pg: PostgresHandle;
let browser: Browser;
let home: string;
let caFile: string;
let gatewayUrl: string;
const savedHome = process.env.HOME;

beforeAll(async () => {
  const base = tempDir('vigil-oidc-');
  home = path.join(base, 'home');
  fs.mkdirSync(home, { mode: 0o700 });
  [idp, sshd, pg, browser] = await Promise.all([
    startTestIdp({ alice: ['sre', 'dbas', 'staff'], mallory: ['marketing'], carol: ['sre', 'dbas'] }),
    startSshd(),
    startPostgres(),
    startBrowser(),
  ]);
  const secret = secretsDir(base);
  tg = await startTestGateway(
    {
      mysql: { enabled: false },
      identity: {
        oidc: {
          issuer: idp.issuer,
          client_id: idp.clientId,
          client_secret: { file: secret('oidc-client', idp.clientSecret) },
          scopes: ['openid', 'profile', 'groups'],
          role_map: { sre: ['oncall'], dbas: ['dba'] },
          max_cert_ttl: '2h',
        },
      },
      targets: [
        { name: 'web1', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub },
        { name: 'prod-pg', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'scram_user', password: { file: secret('scram', PASSWORDS.scram_user) } },
      ],
      roles: [
        { name: 'oncall', targets: ['web1'], logins: ['*'] },
        { name: 'dba', targets: ['prod-pg'], databases: ['app'] },
      ],
    },
    base,
  );
  caFile = path.join(caDir(tg.dataDir), CA_FILES.x509CaCert);
  gatewayUrl = `https://127.0.0.1:${tg.ports.api}`;
  process.env.HOME = home;
}, 120_000);

afterAll(async () => {
  process.env.HOME = savedHome;
  await browser?.close();
  await tg?.stop();
  await Promise.all([idp?.stop(), sshd?.stop(), pg?.stop()]);
});

/** Run `vigil` in-process; `onOut` sees stdout as it comes (the CLI prints the URL to open, then waits). */
async function vigil(args: string[], onOut?: (text: string) => void): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = new Writable({ write(c, _e, cb) { out += String(c); onOut?.(out); cb(); } });
  const e = new Writable({ write(c, _e, cb) { err += String(c); cb(); } });
  const code = await runCli(args, o, e);
  return { code, out, err };
}

/** `vigil login` (browser flow) with `login` signing in at the IdP when the CLI asks for it. */
async function login(as: string, extra: string[] = []) {
  let started = false;
  let signedIn: Promise<string> | undefined;
  const r = await vigil(['login', '--gateway', gatewayUrl, '--ca', caFile, ...extra], (text) => {
    const device = /\(or open (\S+)\)/.exec(text)?.[1];
    const url = device ?? /Open this URL in a browser to sign in:\n\s+(\S+)/.exec(text)?.[1];
    if (url && !started) {
      started = true;
      signedIn = signInWithBrowser(browser, url, as);
    }
  });
  return { ...r, page: await signedIn };
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Stock ssh reading only the config vigil wrote (OpenSSH finds ~ in the password database, not $HOME: hence -F). */
const ssh = (host: string, command: string) => run('ssh', ['-F', path.join(home, '.ssh/config'), '-o', 'BatchMode=yes', host, command], { PATH: process.env.PATH, HOME: home });
/** Stock psql with nothing but `service=NAME`: libpq finds ~/.pg_service.conf under $HOME. */
function psql(service: string, sql: string) {
  const env = clientEnv({ HOME: home });
  delete env.PGSERVICEFILE;
  return run('psql', ['-X', '-qAt', '-d', `service=${service}`, '-c', sql], env);
}

const failures = (reason: string) => tg.events.filter((e) => e.type === 'auth.oidc.failure' && e.details.reason === reason);
const USER_SSH_LINES = 'Host mybox\n    HostName 10.9.8.7\n    User me\n';
const USER_PG_LINES = '# my own services\n[mine]\nhost=db.internal\ndbname=app\n';

describe('vigil login with an OpenID Provider', () => {
  it('browser flow: signs in, certifies keys made here, and stock ssh and psql work from what it wrote', async () => {
    fs.mkdirSync(path.join(home, '.ssh'), { mode: 0o700 });
    fs.writeFileSync(path.join(home, '.ssh/config'), USER_SSH_LINES, { mode: 0o600 });
    fs.writeFileSync(path.join(home, '.pg_service.conf'), USER_PG_LINES, { mode: 0o600 });

    const r = await login('alice');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.page).toContain('signed in to vigil as alice');
    expect(r.out).toMatch(/signed in as alice \(roles: dba, oncall; groups: sre, dbas, staff\)/);

    const ok = await tg.waitForEvent((e) => e.type === 'auth.oidc.success' && e.actor.user === 'alice');
    expect(ok.details).toMatchObject({ flow: 'code', subject: 'alice', groups: ['sre', 'dbas', 'staff'], roles: ['dba', 'oncall'] });
    await tg.waitForEvent((e) => e.type === 'cert.issued' && e.details.serial === ok.details.serial && e.details.via === 'oidc');

    // Keys and certificates are 0600; the certificate certifies the key generated here.
    const dir = path.join(home, '.vigil');
    for (const f of ['id_ed25519', 'id_ed25519-cert.pub', 'tls.key', 'tls.crt', 'ca.crt', 'session.json']) expect(fs.statSync(path.join(dir, f)).mode & 0o777, f).toBe(0o600);
    const pubBlob = fs.readFileSync(path.join(dir, 'id_ed25519.pub'), 'utf8').split(' ')[1];
    const certLine = fs.readFileSync(path.join(dir, 'id_ed25519-cert.pub'), 'utf8');
    const listed = await run('ssh-keygen', ['-L', '-f', path.join(dir, 'id_ed25519-cert.pub')], { PATH: process.env.PATH });
    expect(listed.stdout).toMatch(/Principals:\s+alice/);
    expect(certLine).toMatch(/^ssh-ed25519-cert-v01@openssh.com /);
    // Expiry: capped by identity.oidc.max_cert_ttl (2h).
    const validTo = new Date(String(ok.details.not_after)).getTime();
    expect(validTo - Date.now()).toBeLessThanOrEqual(2 * 3_600_000);
    // The gateway never saw a private key: what it certified is the public key generated here.
    const x509 = new (await import('node:crypto')).X509Certificate(fs.readFileSync(path.join(dir, 'tls.crt')));
    const localPub = (await import('node:crypto')).createPublicKey(fs.readFileSync(path.join(dir, 'tls.key'))).export({ format: 'der', type: 'spki' });
    expect(Buffer.compare(x509.publicKey.export({ format: 'der', type: 'spki' }), localPub)).toBe(0);
    expect(pubBlob.length).toBeGreaterThan(60);

    const s = await ssh('web1', 'echo through-vigil-$((6*7))');
    expect(s.stderr).toBe('');
    expect(s.stdout.trim()).toBe('through-vigil-42');
    const start = await tg.waitForEvent((e) => e.type === 'session.start' && e.target.name === 'web1' && e.actor.user === 'alice');
    expect(start.actor.roles).toEqual(['dba', 'oncall']);

    const q = await psql('prod-pg', 'SELECT current_user');
    expect(q.stderr).toBe('');
    expect(q.stdout.trim()).toBe('scram_user');
    await tg.waitForEvent((e) => e.type === 'db.query' && e.actor.user === 'alice' && e.details.sql === 'SELECT current_user');

    // The user's own lines are untouched, vigil's block is there once.
    const cfg = fs.readFileSync(path.join(home, '.ssh/config'), 'utf8');
    expect(cfg.startsWith(BLOCK_BEGIN)).toBe(true);
    expect(cfg.endsWith(USER_SSH_LINES)).toBe(true);
    expect(fs.readFileSync(path.join(home, '.pg_service.conf'), 'utf8').startsWith(USER_PG_LINES)).toBe(true);
  }, 120_000);

  it('device flow: a second login rewrites nothing that did not change (marked blocks idempotent)', async () => {
    const files = ['.ssh/config', '.ssh/known_hosts', '.pg_service.conf'].map((f) => path.join(home, f));
    const before = files.map((f) => fs.readFileSync(f, 'utf8'));
    const r = await login('alice', ['--device']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    await tg.waitForEvent((e) => e.type === 'auth.oidc.success' && e.details.flow === 'device' && e.actor.user === 'alice');
    const after = files.map((f) => fs.readFileSync(f, 'utf8'));
    expect(after).toEqual(before);
    for (const text of after) expect(text.split(BLOCK_BEGIN).length).toBe(2);
    // The new certificate (new keys) works too.
    const s = await ssh('web1', 'echo device-ok');
    expect(s.stdout.trim()).toBe('device-ok');
    const q = await psql('prod-pg', 'SELECT 7');
    expect(q.stdout.trim()).toBe('7');
  }, 120_000);

  it('vigil status shows who you are, roles, expiry, grants and requests', async () => {
    const r = await vigil(['status', '--json']);
    expect(r.err).toBe('');
    const s = JSON.parse(r.out);
    expect(s).toMatchObject({ user: 'alice', roles: ['dba', 'oncall'], expired: false, grants: [], requests: [] });
    const text = await vigil(['status']);
    expect(text.out).toMatch(/user:\s+alice/);
    expect(text.out).toMatch(/certificate: [0-9a-f]{16}, valid for \d+ min/);
  });

  it.each([
    ['wrong_audience', async (t: string) => idp.resign({ ...claimsOf(t), aud: 'some-other-client' })],
    ['expired', async (t: string) => idp.resign({ ...claimsOf(t), iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 3600 })],
    ['bad_signature', async (t: string) => idp.resign(claimsOf(t), true)],
    ['nonce_replayed', async () => idp.issued[0]],
  ])('an ID token with %s is refused, with an event naming the reason', async (reason, tamper) => {
    const serialsBefore = tg.events.filter((e) => e.type === 'cert.issued').length;
    idp.tamper = tamper;
    try {
      const r = await login('alice');
      expect(r.code).toBe(1);
      expect(r.err).toContain(`(${reason})`);
      expect(r.page).toContain('Sign-in failed');
    } finally {
      idp.tamper = undefined;
    }
    const ev = failures(reason).at(-1)!;
    expect(ev, `auth.oidc.failure ${reason}`).toBeDefined();
    expect(ev.outcome).toBe('failure');
    expect(ev.details).toMatchObject({ flow: 'code', reason });
    expect(ev.details.subject).toBe('alice');
    expect(tg.events.filter((e) => e.type === 'cert.issued').length).toBe(serialsBefore);
  }, 120_000);

  it('a user whose groups map to no role is refused (default deny), with subject and groups', async () => {
    const r = await login('mallory');
    expect(r.code).toBe(1);
    expect(r.err).toContain('(unmapped_group)');
    const ev = failures('unmapped_group').at(-1)!;
    expect(ev.details).toMatchObject({ subject: 'mallory', groups: ['marketing'] });
    expect(ev.actor.user).toBe('mallory');
  }, 120_000);

  it('a user removed from a group loses its role at the next login', async () => {
    const first = await login('carol');
    expect(first.code).toBe(0);
    expect((await ssh('web1', 'echo carol-in')).stdout.trim()).toBe('carol-in');
    idp.accounts.set('carol', ['dbas']);
    const second = await login('carol');
    expect(second.code).toBe(0);
    expect(second.out).toMatch(/signed in as carol \(roles: dba; groups: dbas\)/);
    const ev = tg.events.filter((e) => e.type === 'auth.oidc.success' && e.actor.user === 'carol').at(-1)!;
    expect(ev.details.roles).toEqual(['dba']);
    // web1 is no longer in carol's ssh config, and her new certificate does not open it either.
    expect(fs.readFileSync(path.join(home, '.vigil/ssh_config'), 'utf8')).not.toMatch(/^Host web1$/m);
    const refused = await run('ssh', ['-F', '/dev/null', '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${path.join(home, '.ssh/known_hosts')}`, '-i', path.join(home, '.vigil/id_ed25519'), '-o', `CertificateFile=${path.join(home, '.vigil/id_ed25519-cert.pub')}`, '-o', 'IdentitiesOnly=yes', '-p', String(tg.ports.ssh), 'web1@127.0.0.1', 'echo should-not-run'], { PATH: process.env.PATH, HOME: home });
    expect(refused.code).not.toBe(0);
    expect(refused.stdout).not.toContain('should-not-run');
    await tg.waitForEvent((e) => e.type === 'auth.failure' && e.actor.user === 'carol');
  }, 180_000);

  it('a callback replayed after the sign-in finished is refused (login_unknown), with an event', async () => {
    const crypto = await import('node:crypto');
    const http = await import('node:http');
    const { gatewayCall } = await import('../../src/cli/login/api.ts');
    const { formatPublicKeyLine, fromKeyObject } = await import('../../src/identity/ssh-keys.ts');
    const call = gatewayCall(gatewayUrl, { ca: caFile });
    // Our own loopback listener stands in for the CLI's, so the callback URL can be sent twice.
    let resolveCb!: (u: string) => void;
    const gotCb = new Promise<string>((r) => (resolveCb = r));
    const listener = http.createServer((req, res) => {
      resolveCb(`http://127.0.0.1:${(listener.address() as import('node:net').AddressInfo).port}${req.url}`);
      res.end('ok');
    });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    try {
      const port = (listener.address() as import('node:net').AddressInfo).port;
      const keys = {
        ssh_public_key: formatPublicKeyLine(fromKeyObject(crypto.generateKeyPairSync('ed25519').privateKey), 'alice'),
        x509_public_key: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'pem', type: 'spki' }).toString(),
        redirect_uri: `http://127.0.0.1:${port}/callback`,
      };
      const started = await call<{ login_id: string; authorization_url: string }>('POST', '/v1/login/start', keys);
      await signInWithBrowser(browser, started.body.authorization_url, 'alice');
      const cb = await gotCb;
      const first = await call<{ login: { user: string } }>('POST', '/v1/login/finish', { login_id: started.body.login_id, callback_url: cb });
      expect(first.body.login.user).toBe('alice');
      await expect(call('POST', '/v1/login/finish', { login_id: started.body.login_id, callback_url: cb })).rejects.toThrow(/login_unknown/);
      expect(failures('login_unknown').length).toBeGreaterThan(0);
      // A redirect anywhere but a loopback listener is refused before the IdP is even asked.
      await expect(call('POST', '/v1/login/start', { ...keys, redirect_uri: 'https://evil.example/callback' })).rejects.toThrow(/loopback/);
    } finally {
      listener.close();
    }
  }, 120_000);

  it('vigil logout revokes the certificate and removes keys, certificates and its blocks, not the user\'s lines', async () => {
    const session = JSON.parse(fs.readFileSync(path.join(home, '.vigil/session.json'), 'utf8'));
    const r = await vigil(['logout']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain(`revoked certificate ${session.serial}`);
    await tg.waitForEvent((e) => e.type === 'cert.revoked' && e.details.serial === session.serial && e.outcome === 'success');
    expect(tg.gw.services.store.isRevoked(session.serial)).toBe(true);
    for (const f of ['id_ed25519', 'id_ed25519-cert.pub', 'tls.key', 'tls.crt', 'session.json']) expect(fs.existsSync(path.join(home, '.vigil', f)), f).toBe(false);
    expect(fs.readFileSync(path.join(home, '.ssh/config'), 'utf8')).toBe(USER_SSH_LINES);
    expect(fs.readFileSync(path.join(home, '.pg_service.conf'), 'utf8')).toBe(USER_PG_LINES);
    const st = await vigil(['status']);
    expect(st.code).toBe(1);
  });
});
