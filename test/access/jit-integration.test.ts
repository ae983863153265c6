import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import https from 'node:https';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { startPostgres, clientEnv, type PostgresHandle } from '../support/postgres.ts';
import { startMariadb, type MariadbHandle } from '../support/mariadb.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { runCli } from '../../app/main.ts';
import { verifyAuditLog } from '../../recorder/audit/index.ts';
import { PassThrough } from 'node:stream';

/**
 * The whole just-in-time story against real backends and stock clients: request → approve over the API →
 * psql and ssh connect through the grant → revoke → both cut within a second with the right messages and
 * events; a short grant cutting a live mysql session at expiry; a lock refusing new connections and
 * cutting live ones; and the audit log verifying clean afterwards.
 */

let sshd: SshdHandle;
let pg: PostgresHandle;
let maria: MariadbHandle;
let tg: TestGateway;
let base: string;
let alice: IssuedFiles, bob: IssuedFiles, root: IssuedFiles;
let knownHosts: string;

const MYSQL_PASSWORD = 'my-app-pass';

beforeAll(async () => {
  [sshd, pg, maria] = await Promise.all([startSshd(), startPostgres(), startMariadb()]);
  await maria.query(`CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY '${MYSQL_PASSWORD}'; GRANT ALL ON *.* TO 'app'@'127.0.0.1'`);
  base = tempDir('vigil-jit-');
  const secret = path.join(base, 'mysql.pass');
  fs.writeFileSync(secret, MYSQL_PASSWORD, { mode: 0o600 });
  tg = await startTestGateway(
    {
      targets: [
        { name: 'web-prod', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub, labels: { env: 'prod' } },
        { name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user', labels: { env: 'prod' } },
        { name: 'pg-dev', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user', labels: { env: 'dev' } },
        { name: 'my-prod', protocol: 'mysql', host: '127.0.0.1', port: maria.port, user: 'app', password: { file: secret }, labels: { env: 'prod' } },
      ],
      roles: [
        { name: 'engineer', target_labels: { env: 'dev' } },
        { name: 'prod-access', target_labels: { env: 'prod' }, logins: ['*'], approvers: ['sre-lead'], max_ttl: '1h' },
        { name: 'sre-lead' },
        { name: 'admin' },
      ],
      access: { on_call: ['carol'] },
    },
    base,
  );
  [alice, bob, root] = await Promise.all([
    tg.issue({ user: 'alice', roles: ['engineer'] }),
    tg.issue({ user: 'bob', roles: ['sre-lead'] }),
    tg.issue({ user: 'root', roles: ['admin'] }),
  ]);
  const key = ssh2.utils.parseKey(tg.gw.services.identity.sshHostKey());
  const hostKey = (Array.isArray(key) ? key[0] : key) as ssh2.ParsedKey;
  knownHosts = path.join(base, 'known_hosts');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${tg.ports.ssh} ${hostKey.type} ${hostKey.getPublicSSH().toString('base64')}\n`);
});

afterAll(async () => {
  await tg?.stop();
  await Promise.all([sshd?.stop(), pg?.stop(), maria?.stop()]);
});

// ---- clients ------------------------------------------------------------------------------------------

interface Client {
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; at: number }>;
  kill(): void;
}

function spawnClient(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Client {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  child.stdin.on('error', () => {});
  const exited = new Promise<{ code: number | null; at: number }>((r) => child.once('close', (code) => r({ code, at: Date.now() })));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  void exited.then(() => clearTimeout(timer));
  return { stdout: () => out, stderr: () => err, exited, kill: () => child.kill('SIGKILL') };
}

const psql = (who: IssuedFiles, target: string, sql: string) =>
  spawnClient(
    'psql',
    ['-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-d', `host=127.0.0.1 port=${tg.ports.postgres} dbname=${target} user=${who.creds.user} sslmode=verify-full sslrootcert=${who.ca} sslcert=${who.crt} sslkey=${who.key}`, '-c', sql],
    clientEnv(),
  );

const ssh = (who: IssuedFiles, target: string, command: string) =>
  spawnClient('ssh', [
    '-F', '/dev/null',
    '-o', `Port=${tg.ports.ssh}`,
    '-o', `IdentityFile=${who.sshKey}`,
    '-o', `CertificateFile=${who.sshCert}`,
    '-o', 'IdentitiesOnly=yes',
    '-o', 'BatchMode=yes',
    '-o', `UserKnownHostsFile=${knownHosts}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes',
    `${target}@127.0.0.1`,
    command,
  ]);

const mysql = (who: IssuedFiles, target: string, sql: string) =>
  spawnClient('mariadb', [
    '--no-defaults', '--protocol=TCP', '-h', '127.0.0.1', '-P', String(tg.ports.mysql), '-u', target,
    `--ssl-ca=${who.ca}`, `--ssl-cert=${who.crt}`, `--ssl-key=${who.key}`, '--ssl-verify-server-cert',
    '--batch', '--skip-column-names', '-e', sql,
  ]);

function api(method: string, p: string, who: IssuedFiles | undefined, body?: unknown): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(
      `https://127.0.0.1:${tg.ports.api}${p}`,
      { method, agent: false, ca: fs.readFileSync(alice.ca), cert: who && fs.readFileSync(who.crt), key: who && fs.readFileSync(who.key), headers: payload ? { 'content-type': 'application/json' } : {} },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const ev = (type: string, pred: (e: AuditEvent) => boolean = () => true) => tg.waitForEvent((e) => e.type === type && pred(e), 15_000);
const ms = (a: AuditEvent, b: AuditEvent) => Date.parse(b.time) - Date.parse(a.time);

async function grantFor(who: IssuedFiles, body: Record<string, unknown>) {
  const req = await api('POST', '/v1/access/requests', who, body);
  expect(req.status).toBe(201);
  const ok = await api('POST', `/v1/access/requests/${req.body.request.id}/approve`, bob, { comment: 'approved in test' });
  expect(ok.status).toBe(200);
  expect(ok.body.request.state).toBe('active');
  return ok.body.request as { id: string; expiresAt: string };
}

/** Wait until the gateway has a live session of `user` on `target` (the client is connected and running). */
const liveOn = (user: string, target: string) =>
  waitFor(() => tg.gw.services.sessions.list().find((s) => s.principal.user === user && s.target.name === target), 15_000, `live ${target} session`);

describe('just-in-time access, end to end', () => {
  it('API calls without a client certificate are refused', async () => {
    const r = await api('GET', '/v1/access/requests', undefined);
    expect(r).toMatchObject({ status: 401, body: { error: { code: 'VIGIL_NO_CLIENT_CERT' } } });
  });

  it('request → approve → psql and ssh through the grant → revoke cuts both within 1 s', async () => {
    // Without a grant alice may not use production.
    const before = psql(alice, 'pg-prod', 'SELECT 1');
    expect((await before.exited).code).not.toBe(0);
    expect(before.stderr()).toMatch(/No such target, or access denied/);
    await ev('auth.failure', (e) => e.actor.user === 'alice' && e.details.reason === 'no_permission');

    const req = await api('POST', '/v1/access/requests', alice, { role: 'prod-access', reason: 'INC-4521 replica lag', ttl: '30m' });
    expect(req.status).toBe(201);
    const id = req.body.request.id;
    const self = await api('POST', `/v1/access/requests/${id}/approve`, alice, {});
    expect(self.body.error.code).toBe('VIGIL_SELF_APPROVAL');
    const approved = await api('POST', `/v1/access/requests/${id}/approve`, bob, {});
    expect(approved.body.request.state).toBe('active');

    const p = psql(alice, 'pg-prod', 'SELECT pg_sleep(30)');
    const s = ssh(alice, 'web-prod', 'echo started; sleep 30');
    const [pgLive, sshLive] = await Promise.all([liveOn('alice', 'pg-prod'), liveOn('alice', 'web-prod')]);
    expect(pgLive.grantIds).toEqual([id]);
    expect(sshLive.grantIds).toEqual([id]);
    await waitFor(() => s.stdout().includes('started'), 30_000, 'ssh command running');

    const t0 = Date.now();
    const revoked = await api('POST', `/v1/access/grants/${id}/revoke`, bob, { reason: 'incident closed' });
    expect(revoked.body.request.state).toBe('revoked');
    const [pe, se] = await Promise.all([p.exited, s.exited]);
    expect(pe.at - t0).toBeLessThan(1500);
    expect(se.at - t0).toBeLessThan(1500);
    expect(pe.code).not.toBe(0);
    expect(se.code).not.toBe(0);
    expect(p.stderr()).toMatch(/Your access grant has been revoked/);
    expect(s.stderr()).toMatch(/Your access grant has been revoked/);

    const revokeEv = await ev('access.revoked', (e) => e.details.request_id === id);
    expect(revokeEv.actor.user).toBe('bob');
    const pgEnd = await ev('session.end', (e) => e.session_id === pgLive.id);
    const sshEnd = await ev('session.end', (e) => e.session_id === sshLive.id);
    expect(pgEnd.details.reason).toBe('revoked');
    expect(sshEnd.details.reason).toBe('revoked');
    expect(ms(revokeEv, pgEnd)).toBeLessThan(1000);
    expect(ms(revokeEv, sshEnd)).toBeLessThan(1000);

    // And new connections on the revoked grant are refused.
    const after = psql(alice, 'pg-prod', 'SELECT 1');
    expect((await after.exited).code).not.toBe(0);
  });

  it('a grant expiring cuts a live mysql session and writes access.expired', async () => {
    const g = await grantFor(alice, { role: 'prod-access', targets: ['my-prod'], reason: 'INC-4600 slow query', ttl: '4s' });
    const m = mysql(alice, 'my-prod', 'SELECT SLEEP(30)');
    const live = await liveOn('alice', 'my-prod');
    expect(live.accessExpiresAt?.toISOString()).toBe(g.expiresAt);
    const done = await m.exited;
    expect(done.code).not.toBe(0);
    expect(m.stderr()).toMatch(/Your access grant has expired/);
    const end = await ev('session.end', (e) => e.session_id === live.id);
    expect(end.details.reason).toBe('grant_expired');
    // The gateway ends the session within 1 s of the expiry; the client then prints the ERR and exits.
    expect(Date.parse(end.time) - Date.parse(g.expiresAt)).toBeLessThan(1000);
    expect(done.at - Date.parse(g.expiresAt)).toBeLessThan(5000);
    const expired = await ev('access.expired', (e) => e.details.request_id === g.id);
    expect(Date.parse(expired.time) - Date.parse(g.expiresAt)).toBeLessThan(1000);
  });

  it('access.expired is written at expiry with nobody connected', async () => {
    const g = await grantFor(alice, { role: 'prod-access', targets: ['pg-prod'], reason: 'INC-4700 check', ttl: '1s' });
    const expired = await ev('access.expired', (e) => e.details.request_id === g.id);
    const late = Date.parse(expired.time) - Date.parse(g.expiresAt);
    expect(late).toBeGreaterThanOrEqual(0);
    expect(late).toBeLessThan(1000);
  });

  it('break-glass by an on-call user is flagged', async () => {
    const carol = await tg.issue({ user: 'carol', roles: ['engineer'] });
    const r = await api('POST', '/v1/access/requests', carol, { role: 'prod-access', reason: 'INC-9 site down', ttl: '15m', break_glass: true });
    expect(r.status).toBe(201);
    expect(r.body.request).toMatchObject({ state: 'active', breakGlass: true });
    const e = await ev('access.approved', (x) => x.details.request_id === r.body.request.id);
    expect(e.details.break_glass).toBe(true);
    const refused = await api('POST', '/v1/access/requests', alice, { role: 'prod-access', reason: 'me too', break_glass: true });
    expect(refused.body.error.code).toBe('VIGIL_NOT_ON_CALL');
  });

  it('a locked user is cut when connected and refused at connect', async () => {
    const p = psql(alice, 'pg-dev', 'SELECT pg_sleep(30)');
    const live = await liveOn('alice', 'pg-dev');
    expect(live.grantIds).toEqual([]);
    const t0 = Date.now();
    const lock = await api('POST', '/v1/locks', root, { user: 'alice', reason: 'laptop stolen' });
    expect(lock.status).toBe(201);
    const done = await p.exited;
    expect(done.at - t0).toBeLessThan(1500);
    expect(p.stderr()).toMatch(/locked/);
    const end = await ev('session.end', (e) => e.session_id === live.id);
    expect(end.details.reason).toBe('locked');

    const again = psql(alice, 'pg-dev', 'SELECT 1');
    expect((await again.exited).code).not.toBe(0);
    expect(again.stderr()).toMatch(/locked/);
    await ev('auth.failure', (e) => e.actor.user === 'alice' && e.details.reason === 'locked');

    expect((await api('DELETE', '/v1/locks/user/alice', root)).status).toBe(200);
    const ok = psql(alice, 'pg-dev', 'SELECT 41 + 1');
    expect((await ok.exited).code).toBe(0);
    expect(ok.stdout().trim()).toBe('42');
  });

  it('the audit log verifies clean after the whole scenario', async () => {
    await tg.stop();
    const audit = path.join(tg.dataDir, 'audit');
    const result = verifyAuditLog(audit, fs.readFileSync(path.join(tg.dataDir, 'ca', 'audit_signing.pub')));
    expect(result.firstBad).toBeUndefined();
    expect(result.ok).toBe(true);
    expect(result.records).toBeGreaterThanOrEqual(tg.events.length);
    for (const type of ['access.requested', 'access.approved', 'access.revoked', 'access.expired', 'access.refused', 'lock.created', 'lock.deleted']) {
      expect(tg.events.some((e) => e.type === type)).toBe(true);
    }
    // And the operator's command says the same.
    const out = new PassThrough();
    const err = new PassThrough();
    let text = '';
    out.on('data', (d) => (text += d));
    err.on('data', (d) => (text += d));
    const code = await runCli(['audit', 'verify', '--data', tg.dataDir], out, err);
    expect(code, text).toBe(3); // intact and sealed; no witness, so completeness is not claimed
  });
});
