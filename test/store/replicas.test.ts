import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { clientEnv, PASSWORDS, startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import ssh2 from 'ssh2';
import { startCuttableRelay, type CuttableRelay } from '../support/cuttable-relay.ts';
import { apiCall, startReplica } from '../support/replicas.ts';

/**
 * Two in-process gateways (replicas) sharing one PostgreSQL state store: what one decides, the other
 * enforces. The store is reached through a TCP relay the test can cut, to see a replica ride out the
 * database going away. A second PostgreSQL is the target the sessions use.
 */

let target: PostgresHandle;
let storeDb: PostgresHandle;
let sshd: SshdHandle;
let relay: CuttableRelay;
let a: TestGateway;
let b: TestGateway;
let bob: IssuedFiles;
let root: IssuedFiles;
const URL_ENV = 'VIGIL_TEST_REPLICA_STORE_URL';
/** Gateway B's operational log, to check what it says about the store (and that the password is not in it). */
let logB = '';

const storeConfig = { kind: 'postgres', url: { env: URL_ENV }, schema: 'replicas' };

function gatewayConfig() {
  return {
    store: storeConfig,
    targets: [
      { name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1', port: target.port, database: 'app', user: 'trust_user', labels: { env: 'prod' } },
      { name: 'web-dev', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub, labels: { env: 'dev' } },
      { name: 'pg-dev', protocol: 'postgres', host: '127.0.0.1', port: target.port, database: 'app', user: 'trust_user', labels: { env: 'dev' } },
    ],
    roles: [
      { name: 'engineer', target_labels: { env: 'dev' }, logins: ['*'] },
      { name: 'prod-access', target_labels: { env: 'prod' }, logins: ['*'], approvers: ['sre-lead'], max_ttl: '1h' },
      { name: 'sre-lead' },
      { name: 'admin' },
    ],
  };
}

beforeAll(async () => {
  [target, storeDb, sshd] = await Promise.all([startPostgres(), startPostgres(), startSshd()]);
  relay = await startCuttableRelay(storeDb.port);
  process.env[URL_ENV] = `postgres://scram_user:${PASSWORDS.scram_user}@127.0.0.1:${relay.port}/app?sslmode=disable`;
  a = await startTestGateway(gatewayConfig(), tempDir('vigil-replica-a-'));
  const sink = new PassThrough();
  sink.on('data', (d) => (logB += d));
  b = await startReplica(a, gatewayConfig(), 'vigil-replica-b-', { log: pino({ level: 'info' }, sink) });
  [bob, root] = await Promise.all([a.issue({ user: 'bob', roles: ['sre-lead'] }), a.issue({ user: 'root', roles: ['admin'] })]);
}, 180_000);

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await relay?.close();
  delete process.env[URL_ENV];
  await Promise.all([target?.stop(), storeDb?.stop(), sshd?.stop()]);
});

// ---- clients --------------------------------------------------------------------------------------

function psql(gw: TestGateway, who: IssuedFiles, db: string, sql: string) {
  const child = spawn(
    'psql',
    ['-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-d', `host=127.0.0.1 port=${gw.ports.postgres} dbname=${db} user=${who.creds.user} sslmode=verify-full sslrootcert=${who.ca} sslcert=${who.crt} sslkey=${who.key}`, '-c', sql],
    { stdio: ['ignore', 'pipe', 'pipe'], env: clientEnv() },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const exited = new Promise<number | null>((r) => child.once('close', (code) => (clearTimeout(timer), r(code))));
  return { exited, stdout: () => out, stderr: () => err, kill: () => child.kill('SIGKILL') };
}

const api = apiCall;

const liveOn = (gw: TestGateway, user: string, t: string) =>
  waitFor(() => gw.gw.services.sessions.list().find((s) => s.principal.user === user && s.target.name === t), 15_000, `live ${t} session of ${user}`);

const pct = (xs: number[], p: number) => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)];

describe('two gateways sharing a PostgreSQL state store', () => {
  it('a grant approved through gateway A is usable through gateway B', async () => {
    const alice = await a.issue({ user: 'alice', roles: ['engineer'] });
    const before = psql(b, alice, 'pg-prod', 'SELECT 1');
    expect(await before.exited).not.toBe(0);
    const req = await api(a, 'POST', '/v1/access/requests', alice, { role: 'prod-access', reason: 'INC-1 replicas', ttl: '10m' });
    expect(req.status).toBe(201);
    const ok = await api(a, 'POST', `/v1/access/requests/${req.body.request.id}/approve`, bob, {});
    expect(ok.body.request.state).toBe('active');
    // B sees the request and the decision too (its API reads the same store).
    const onB = await api(b, 'GET', `/v1/access/requests/${req.body.request.id}`, alice);
    expect(onB.body.request.state).toBe('active');
    const p = psql(b, alice, 'pg-prod', "SELECT 'through-b'");
    expect(await p.exited).toBe(0);
    expect(p.stdout().trim()).toBe('through-b');
  });

  it('a revocation or lock made through A cuts a live psql session on B (delay printed)', async () => {
    const delays: number[] = [];
    for (let i = 0; i < 20; i++) {
      const user = `u${i}`;
      const who = await a.issue({ user, roles: ['engineer'] });
      const p = psql(b, who, 'pg-dev', 'SELECT pg_sleep(60)');
      const live = await liveOn(b, user, 'pg-dev');
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 250)); // spread over the enforcement cycle
      const t0 = Date.now();
      if (i % 2 === 0) {
        const lock = await api(a, 'POST', '/v1/locks', root, { user, reason: 'replica test' });
        expect(lock.status).toBe(201);
      } else {
        await a.gw.services.store.revoke({ serial: who.creds.serial, reason: 'replica test', by: 'root', time: new Date().toISOString() });
      }
      const end = await b.waitForEvent((e) => e.type === 'session.end' && e.session_id === live.id, 15_000);
      expect(end.details.reason).toBe(i % 2 === 0 ? 'locked' : 'revoked');
      expect(await p.exited).not.toBe(0);
      delays.push(Date.parse(end.time) - t0);
    }
    console.log(`revoke/lock on A → session.end on B, ms: ${delays.join(' ')}; p50 ${pct(delays, 50)} p99 ${pct(delays, 99)}`);
  }, 120_000);

  it('a lock made through A cuts a live ssh session on B', async () => {
    const erin = await a.issue({ user: 'erin', roles: ['engineer'] });
    // B presents the host certificate of the shared CA; pin its host key like a client would.
    const key = ssh2.utils.parseKey(b.gw.services.identity.sshHostKey());
    const hostKey = (Array.isArray(key) ? key[0] : key) as ssh2.ParsedKey;
    const knownHosts = path.join(tempDir(), 'known_hosts');
    fs.writeFileSync(knownHosts, `[127.0.0.1]:${b.ports.ssh} ${hostKey.type} ${hostKey.getPublicSSH().toString('base64')}\n`);
    const child = spawn('ssh', ['-F', '/dev/null', '-o', `Port=${b.ports.ssh}`, '-o', `IdentityFile=${erin.sshKey}`, '-o', `CertificateFile=${erin.sshCert}`, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', 'web-dev@127.0.0.1', 'echo started; sleep 60'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((r) => child.once('close', r));
    await waitFor(() => out.includes('started'), 15_000, 'ssh command running').catch((e) => Promise.reject(new Error(`${(e as Error).message}: ${err}`)));
    const live = await liveOn(b, 'erin', 'web-dev');
    const t0 = Date.now();
    expect((await api(a, 'POST', '/v1/locks', root, { user: 'erin', reason: 'replica ssh test' })).status).toBe(201);
    const end = await b.waitForEvent((e) => e.type === 'session.end' && e.session_id === live.id, 15_000);
    expect(end.details.reason).toBe('locked');
    expect(await exited).not.toBe(0);
    expect(err).toMatch(/locked/);
    console.log(`lock on A → ssh session.end on B: ${Date.parse(end.time) - t0} ms`);
  }, 60_000);

  it('vigil cert revoke in a CLI process, on the shared store, cuts a live psql session on B', async () => {
    const root = path.resolve(import.meta.dirname, '../..');
    const configFile = path.join(tempDir(), 'vigil.json');
    // The CLI on gateway A's host: its own config names the same store (the URL comes from the environment).
    fs.writeFileSync(configFile, JSON.stringify({ data_dir: a.dataDir, store: storeConfig }));
    const dave = await a.issue({ user: 'dave', roles: ['engineer'] });
    const p = psql(b, dave, 'pg-dev', 'SELECT pg_sleep(60)');
    const live = await liveOn(b, 'dave', 'pg-dev');
    const r = await new Promise<{ err: Error | null; stdout: string; stderr: string }>((resolve) =>
      execFile(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, 'app/main.ts'), 'cert', 'revoke', dave.creds.serial, '--reason', 'key leaked', '--config', configFile], { cwd: root, timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ err, stdout, stderr }),
      ),
    );
    expect(r.err, r.stderr).toBeNull();
    const end = await b.waitForEvent((e) => e.type === 'session.end' && e.session_id === live.id, 15_000);
    expect(end.details.reason).toBe('revoked');
    expect(await p.exited).not.toBe(0);
    expect(p.stderr()).toMatch(/has been revoked/);
  }, 120_000);

  it('rides out the store database going away: live sessions stay, new requests are refused clearly, then it recovers', async () => {
    const carol = await a.issue({ user: 'carol', roles: ['engineer'] });
    const p = psql(b, carol, 'pg-dev', 'SELECT pg_sleep(60)');
    const live = await liveOn(b, 'carol', 'pg-dev');

    await relay.down();
    const refused = await api(a, 'POST', '/v1/access/requests', carol, { role: 'prod-access', reason: 'INC-2 during outage', ttl: '10m' });
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('VIGIL_STORE_UNAVAILABLE');
    expect(JSON.stringify(refused.body)).not.toContain(PASSWORDS.scram_user);
    // New sessions cannot be checked against grants and locks: refused, saying why. The live one stays.
    const newcomer = psql(b, carol, 'pg-dev', 'SELECT 1');
    expect(await newcomer.exited).not.toBe(0);
    expect(newcomer.stderr()).toMatch(/cannot reach its state store/);
    await b.waitForEvent((e) => e.type === 'auth.failure' && e.actor.user === 'carol' && e.details.reason === 'store_unavailable');
    await new Promise((r) => setTimeout(r, 2000));
    expect(b.gw.services.sessions.get(live.id)?.endReason).toBeUndefined();

    await relay.up();
    const again = await waitFor(async () => {
      const r = await api(a, 'POST', '/v1/access/requests', carol, { role: 'prod-access', reason: 'INC-2 after outage', ttl: '10m' });
      return r.status === 201 ? r : undefined;
    }, 20_000, 'requests to be accepted again');
    expect(again.body.request.state).toBe('pending');
    // B's listener is back too: a lock through A still cuts the session on B.
    await waitFor(() => logB.includes('state store listener reconnected'), 10_000, "B's listener to reconnect");
    const lock = await api(a, 'POST', '/v1/locks', root, { user: 'carol', reason: 'after outage' });
    expect(lock.status).toBe(201);
    const end = await b.waitForEvent((e) => e.type === 'session.end' && e.session_id === live.id, 15_000);
    expect(end.details.reason).toBe('locked');
    await p.exited;
    const events = [a, b].flatMap((g) => g.events).map((e) => JSON.stringify(e)).join('\n');
    expect(events).not.toContain(PASSWORDS.scram_user);
    expect(logB).toMatch(/state store listener disconnected/);
    expect(logB).toMatch(/state store listener reconnected/);
    expect(logB).not.toContain(PASSWORDS.scram_user);
  }, 120_000);
});
