import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { searchAuditLog } from '../../recorder/audit/index.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { splitStatements } from '../../proxies/postgres/sql.ts';
import { bastionVigilConfig, HAPROXY_CFG, LISTENER_PORT_VARS, type ListenerName } from '../support/bastion.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startTestGateway, type IssuedFiles } from '../support/gateway.ts';
import { parseConfig } from '../../app/config.ts';
import { initIdentity } from '../../src/identity/index.ts';
import { clientEnv, PASSWORDS, startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { freePort, secretsDir, tempDir, waitFor } from '../support/tmp.ts';
import { serverLog, serverStatements, STATEMENT_LOG } from '../postgres/helpers.ts';

/**
 * The bastion of deploy/compose/ on loopback addresses: three `vigil serve` processes started from its
 * vigil.yaml (only targets, roles and addresses are this test's) on one PostgreSQL state store, behind a
 * real HAProxy running its haproxy.cfg unchanged (TCP, PROXY protocol v2, health checks on /readyz).
 *
 * Sessions spread over the three; a grant decided through one replica opens (and its revocation closes)
 * sessions that the balancer puts on the others; one replica is killed (SIGKILL) under a load of psql
 * sessions, its clients reconnect and land on the other two; and every statement the target PostgreSQL
 * ran (its own statement log is the oracle) is in the union of the three replicas' audit logs.
 */

const ENV_STORE_URL = 'VIGIL_STORE_URL';
const LISTENERS: ListenerName[] = ['ssh', 'postgres', 'mysql', 'api'];

// Each run on its own loopback /24: replicas .1-.3, HAProxy binds .10 and connects from .9.
const NET = `127.${100 + Math.floor(Math.random() * 150)}.${1 + Math.floor(Math.random() * 250)}`;
const REPLICA_ADDR = [1, 2, 3].map((i) => `${NET}.${i}`);
const LB_BIND = `${NET}.10`;
const LB_SOURCE = `${NET}.9`;

let target: PostgresHandle;
let sshd: SshdHandle;
let haproxy: ChildProcess;
let haproxyLog = '';
const replicas: (GatewayProcess | undefined)[] = [];
const bases: string[] = [];
const ports = {} as Record<ListenerName, number>;
let alice: IssuedFiles;
let bob: IssuedFiles;
let carol: IssuedFiles;
let knownHosts: string;
const root = tempDir('vigil-bastion-');

function replicaConfig(secret: string): Record<string, unknown> {
  const doc = bastionVigilConfig();
  delete doc.data_dir; // each replica's own, under its base dir
  for (const l of LISTENERS) doc[l] = { ...doc[l], listen: '127.0.0.1:0', proxy_protocol: { ...doc[l].proxy_protocol, trusted: [LB_SOURCE] } };
  doc.store = { ...doc.store, schema: 'bastion' };
  doc.budgets = { refusals_per_window: 1_000_000 };
  doc.targets = [
    { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: target.port, database: 'app', user: 'scram_user', password: { file: secret } },
    { name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1', port: target.port, database: 'app', user: 'scram_user', password: { file: secret }, labels: { env: 'prod' } },
    { name: 'web', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub },
  ];
  doc.roles = [
    { name: 'dba', targets: ['pg', 'web'], logins: ['*'] },
    { name: 'engineer' },
    { name: 'prod', target_labels: { env: 'prod' }, approvers: ['lead'], max_ttl: '1h' },
    { name: 'lead' },
    { name: 'admin' },
  ];
  return doc;
}

const onReplica = (doc: Record<string, unknown>, i: number) => ({
  ...doc,
  ...Object.fromEntries(LISTENERS.map((l) => [l, { ...(doc[l] as object), listen: `${REPLICA_ADDR[i]}:${ports[l]}` }])),
});

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, host, () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
  });
}

beforeAll(async () => {
  // One PostgreSQL server is both the target (database app, role scram_user, every statement logged:
  // the oracle) and the state store (database vigil_store, role md5_user, not logged).
  [target, sshd] = await Promise.all([startPostgres({ conf: STATEMENT_LOG.filter((l) => !l.startsWith('log_statement')) }), startSshd()]);
  target.psql("ALTER ROLE scram_user SET log_statement = 'all'; CREATE TABLE ledger (entry text NOT NULL); GRANT ALL ON ledger TO scram_user");
  target.psql('CREATE DATABASE vigil_store OWNER md5_user');
  process.env[ENV_STORE_URL] = `postgres://md5_user:${PASSWORDS.md5_user}@127.0.0.1:${target.port}/vigil_store?sslmode=disable`;
  for (const l of LISTENERS) ports[l] = await freePort();
  const secret = secretsDir(root)('target', PASSWORDS.scram_user);
  const doc = replicaConfig(secret);

  // The shared CA (compose: vigil-init into the vigil-ca volume), then the replicas and, meanwhile, the
  // users' credentials from an in-process gateway with its own data dir (and so its own audit log).
  const seed = path.join(root, 'seed', 'data');
  await initIdentity(seed, parseConfig({ ...doc, data_dir: seed }, root));
  const issuerBase = path.join(root, 'issuer');
  for (const base of [...[0, 1, 2].map((i) => path.join(root, `vigil-${i + 1}`)), issuerBase]) fs.cpSync(path.join(seed, 'ca'), path.join(base, 'data', 'ca'), { recursive: true });
  bases.push(...[0, 1, 2].map((i) => path.join(root, `vigil-${i + 1}`)));
  const issuing = (async () => {
    const issuer = await startTestGateway(doc, issuerBase);
    try {
      [alice, bob, carol] = await Promise.all([
        issuer.issue({ user: 'alice', roles: ['dba'] }),
        issuer.issue({ user: 'bob', roles: ['lead'] }),
        issuer.issue({ user: 'carol', roles: ['engineer'] }),
      ]);
    } finally {
      await issuer.stop();
    }
  })();
  await Promise.all([...[0, 1, 2].map(async (i) => (replicas[i] = await startGatewayProcess(onReplica(doc, i), bases[i]))), issuing]);
  const env = {
    ...process.env,
    VIGIL_LB_BIND: LB_BIND,
    VIGIL_LB_SOURCE: LB_SOURCE,
    VIGIL_REPLICA_1: REPLICA_ADDR[0],
    VIGIL_REPLICA_2: REPLICA_ADDR[1],
    VIGIL_REPLICA_3: REPLICA_ADDR[2],
    ...Object.fromEntries(LISTENERS.map((l) => [LISTENER_PORT_VARS[l], String(ports[l])])),
  };
  haproxy = spawn('haproxy', ['-db', '-f', HAPROXY_CFG], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  haproxy.stdout!.on('data', (d) => (haproxyLog += d));
  haproxy.stderr!.on('data', (d) => (haproxyLog += d));
  await waitFor(async () => (await Promise.all(LISTENERS.map((l) => canConnect(LB_BIND, ports[l])))).every(Boolean), 15_000, `haproxy listening (${haproxyLog})`);
  const sshKey = replicas[0]!.sshHostKey;
  knownHosts = path.join(root, 'known_hosts');
  fs.writeFileSync(knownHosts, `[${LB_BIND}]:${ports.ssh} ${sshKey}\n`);
}, 120_000);

afterAll(async () => {
  haproxy?.kill('SIGKILL');
  await Promise.all(replicas.map((r) => r?.kill('SIGKILL')));
  delete process.env[ENV_STORE_URL];
  await Promise.all([target?.stop(), sshd?.stop()]);
  fs.rmSync(root, { recursive: true, force: true });
});

// ---- clients, all through the balancer --------------------------------------------------------------

interface Run {
  exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
  kill(): void;
}

function client(cmd: string, args: string[], env: NodeJS.ProcessEnv = clientEnv()): Run {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const exited = new Promise<number | null>((r) => child.once('close', (code) => (clearTimeout(timer), r(code))));
  return { exited, stdout: () => out, stderr: () => err, kill: () => child.kill('SIGKILL') };
}

/** psql through HAProxy; `app` (application_name) names the session in the server's log and in session.start. */
function psql(who: IssuedFiles, db: string, app: string, ...sql: string[]): Run {
  const conn = `host=localhost hostaddr=${LB_BIND} port=${ports.postgres} dbname=${db} user=${who.creds.user} sslmode=verify-full sslrootcert=${who.ca} sslcert=${who.crt} sslkey=${who.key}`;
  return client('psql', ['-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-d', conn, ...sql.flatMap((s) => ['-c', s])], clientEnv({ PGAPPNAME: app }));
}

function ssh(who: IssuedFiles, command: string): Run {
  const opts = [`Port=${ports.ssh}`, `IdentityFile=${who.sshKey}`, `CertificateFile=${who.sshCert}`, 'IdentitiesOnly=yes', 'BatchMode=yes', `UserKnownHostsFile=${knownHosts}`, 'GlobalKnownHostsFile=/dev/null', 'StrictHostKeyChecking=yes'];
  return client('ssh', ['-F', '/dev/null', ...opts.flatMap((o) => ['-o', o]), `web@${LB_BIND}`, command]);
}

/** An API call; `replica` goes to that replica directly (from 127.0.0.1, not a trusted balancer), else through HAProxy. */
function api(who: IssuedFiles, method: string, p: string, body: unknown, replica?: number): Promise<{ status: number; body: any }> {
  const host = replica === undefined ? LB_BIND : REPLICA_ADDR[replica];
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = https.request(
      { host, port: ports.api, path: p, method, servername: 'localhost', agent: false, ca: fs.readFileSync(who.ca), cert: fs.readFileSync(who.crt), key: fs.readFileSync(who.key), headers: { 'content-type': 'application/json' } },
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

// ---- what each replica recorded: its own audit log, read from its data dir --------------------------

async function logOf(i: number): Promise<AuditEvent[]> {
  return (await searchAuditLog(path.join(bases[i], 'data', 'audit'))).records.map((r) => r.event);
}
const allLogs = () => Promise.all([0, 1, 2].map(logOf));

const appOf = (e: AuditEvent) => (e.details.params as Record<string, string> | undefined)?.application_name;

/** Which replica recorded the session.start of the psql session named `app` (waits for it). */
async function replicaOfApp(app: string): Promise<number> {
  return waitFor(async () => {
    const logs = await allLogs();
    const i = logs.findIndex((l) => l.some((e) => e.type === 'session.start' && appOf(e) === app));
    return i >= 0 ? i + 1 : undefined;
  }, 20_000, `session.start of ${app}`).then((n) => n - 1);
}

describe('three replicas on one PostgreSQL store behind HAProxy (deploy/compose topology)', () => {
  it('sessions spread over all three replicas, and their events name the client, not the balancer', async () => {
    for (let k = 0; k < 6; k++) {
      const r = psql(alice, 'pg', `spread-${k}`, `INSERT INTO ledger VALUES ('spread-${k}')`, `SELECT 'spread-${k}'`);
      expect(await r.exited, r.stderr()).toBe(0);
      expect(r.stdout().trim()).toBe(`spread-${k}`);
    }
    for (let k = 0; k < 3; k++) {
      const r = ssh(alice, `echo ssh-spread-${k}`);
      expect(await r.exited, r.stderr()).toBe(0);
      expect(r.stdout().trim()).toBe(`ssh-spread-${k}`);
    }
    const logs = await waitFor(async () => {
      const l = await allLogs();
      return l.flat().filter((e) => e.type === 'ssh.exec' && String(e.details.command).startsWith('echo ssh-spread')).length === 3 ? l : undefined;
    }, 20_000, 'the three ssh.exec events');
    const pgStarts = logs.map((l) => l.filter((e) => e.type === 'session.start' && String(appOf(e)).startsWith('spread-')));
    const sshExecs = logs.map((l) => l.filter((e) => e.type === 'ssh.exec' && String(e.details.command).startsWith('echo ssh-spread')));
    console.log(`psql sessions per replica: ${pgStarts.map((s) => s.length).join(' ')}; ssh: ${sshExecs.map((s) => s.length).join(' ')}`);
    for (const i of [0, 1, 2]) {
      expect(pgStarts[i].length, `psql sessions on replica ${i + 1}`).toBeGreaterThan(0);
      expect(sshExecs[i].length, `ssh sessions on replica ${i + 1}`).toBeGreaterThan(0);
    }
    for (const e of [...pgStarts.flat(), ...sshExecs.flat()]) expect(e.source.ip).toBe('127.0.0.1');
    // The MySQL frontend reaches a replica too: its greeting (protocol 10) comes through.
    const greeting = await new Promise<Buffer>((resolve, reject) => {
      const s = net.connect(ports.mysql, LB_BIND);
      s.once('data', (d) => (s.destroy(), resolve(d)));
      s.once('error', reject);
    });
    expect(greeting[4]).toBe(10);
  });

  it('a grant decided through one replica opens sessions on the others; its revocation through another closes them', async () => {
    const before = psql(carol, 'pg-prod', 'carol-before', "SELECT 'no grant yet'");
    expect(await before.exited).not.toBe(0);
    expect(before.stderr()).toMatch(/denied|not allowed|no role|permission/i);

    // Requested on replica 1, approved through the balancer (whichever replica HAProxy picks).
    const req = await api(carol, 'POST', '/v1/access/requests', { role: 'prod', reason: 'INC-7 bastion', ttl: '10m' }, 0);
    expect(req.status, JSON.stringify(req.body)).toBe(201);
    const ok = await api(bob, 'POST', `/v1/access/requests/${req.body.request.id}/approve`, {});
    expect(ok.body.request.state).toBe('active');

    const landed: number[] = [];
    for (let k = 0; k < 3; k++) {
      const r = psql(carol, 'pg-prod', `carol-granted-${k}`, `SELECT 'granted-${k}'`);
      expect(await r.exited, r.stderr()).toBe(0);
      expect(r.stdout().trim()).toBe(`granted-${k}`);
      landed.push(await replicaOfApp(`carol-granted-${k}`));
    }
    expect(landed.some((i) => i !== 0), `landed on ${landed}`).toBe(true);

    // A live session under the grant, on some replica; the grant revoked through another one.
    const live = psql(carol, 'pg-prod', 'carol-live', 'SELECT pg_sleep(60)');
    const on = await replicaOfApp('carol-live');
    const elsewhere = (on + 1) % 3;
    const revoked = await api(bob, 'POST', `/v1/access/grants/${req.body.request.id}/revoke`, { reason: 'INC-7 closed' }, elsewhere);
    expect(revoked.status, JSON.stringify(revoked.body)).toBe(200);
    const end = await waitFor(async () => {
      const log = await logOf(on);
      const start = log.find((e) => e.type === 'session.start' && appOf(e) === 'carol-live');
      return log.find((e) => e.type === 'session.end' && e.session_id === start?.session_id);
    }, 20_000, `carol's live session on replica ${on + 1} to end`);
    expect(String(end.details.reason)).toMatch(/grant|revok/);
    expect(await live.exited).not.toBe(0);

    const refusedOn = new Set<number>();
    for (let k = 0; k < 3; k++) {
      const r = psql(carol, 'pg-prod', `carol-after-${k}`, `SELECT 'after-${k}'`);
      expect(await r.exited).not.toBe(0);
      expect(r.stdout()).not.toContain(`after-${k}`);
    }
    const logs = await allLogs();
    logs.forEach((l, i) => l.some((e) => e.type === 'auth.failure' && e.actor.user === 'carol' && e.time > end.time) && refusedOn.add(i));
    expect(refusedOn.size, 'replicas that refused carol after the revocation').toBeGreaterThanOrEqual(2);
  }, 90_000);

  it('one replica killed under load: clients reconnect to the others, and nothing the database ran is missing from the logs', async () => {
    // Three long sessions and no other traffic: round robin puts one on each replica.
    const longs = [0, 1, 2].map((k) => ({ app: `long-${k}`, run: psql(alice, 'pg', `long-${k}`, `INSERT INTO ledger VALUES ('long-${k}')`, `SELECT pg_sleep(60)`) }));
    const longOn = await Promise.all(longs.map((l) => replicaOfApp(l.app)));
    const victim = 1;
    const cut = longs[longOn.indexOf(victim)] ?? longs[0];
    const victimIndex = longOn[longs.indexOf(cut)];

    // The load: four clients, each running psql sessions back to back; a failed one is retried (reconnect).
    let stop = false;
    const results: { app: string; ok: boolean; startedAt: number }[] = [];
    const worker = async (w: number) => {
      for (let k = 0; !stop; k++) {
        const app = `load-${w}-${k}`;
        const startedAt = Date.now();
        const r = psql(alice, 'pg', app, `INSERT INTO ledger VALUES ('${app}')`, 'SELECT pg_sleep(0.1)', `SELECT '${app} done'`);
        results.push({ app, ok: (await r.exited) === 0 && r.stdout().includes(`${app} done`), startedAt });
      }
    };
    const workers = [0, 1, 2, 3].map(worker);
    const sessionsOn = async () => (await allLogs()).map((l) => l.filter((e) => e.type === 'session.start' && String(appOf(e)).startsWith('load-')).length);
    await waitFor(async () => (await sessionsOn()).every((n) => n >= 2), 30_000, 'load sessions on every replica');

    await replicas[victimIndex]!.kill('SIGKILL');
    const killedAt = Date.now();
    // Its client is cut mid-statement and reconnects: the balancer sends it to another replica.
    expect(await cut.run.exited).not.toBe(0);
    const again = psql(alice, 'pg', `${cut.app}-again`, `SELECT 'reconnected'`);
    expect(await again.exited, again.stderr()).toBe(0);
    expect(await replicaOfApp(`${cut.app}-again`)).not.toBe(victimIndex);
    // The health checks (/readyz) take it out of rotation.
    const down = new RegExp(`vigil_postgres/vigil-${victimIndex + 1} is DOWN`);
    await waitFor(() => down.test(haproxyLog), 20_000, `HAProxy to mark vigil-${victimIndex + 1} down`);

    // Every client keeps working on the other two: each completes sessions started after the kill.
    await waitFor(() => [0, 1, 2, 3].every((w) => results.filter((r) => r.app.startsWith(`load-${w}-`) && r.ok && r.startedAt > killedAt).length >= 3), 45_000, 'sessions after the kill');
    stop = true;
    await Promise.all(workers);
    for (const l of longs) if (l !== cut) l.run.kill();
    await Promise.all(longs.map((l) => l.run.exited));

    const logs = await waitFor(async () => {
      const l = await allLogs();
      const live = [0, 1, 2].filter((i) => i !== victimIndex).every((i) => {
        const starts = l[i].filter((e) => e.type === 'session.start').map((e) => e.session_id);
        const ends = new Set(l[i].filter((e) => e.type === 'session.end').map((e) => e.session_id));
        return starts.every((s) => ends.has(s));
      });
      return live ? l : undefined;
    }, 30_000, 'every session on the surviving replicas to end');

    const after = results.filter((r) => r.startedAt > killedAt);
    const failed = results.filter((r) => !r.ok);
    const perReplica = logs.map((l) => l.filter((e) => e.type === 'session.start' && String(appOf(e)).startsWith('load-')).length);
    console.log(`load: ${results.length} psql sessions (${failed.length} cut by the kill, retried), per replica ${perReplica.join(' ')}; ${after.length} started after the kill`);
    // Nothing that started after the kill ran on the dead replica.
    const appsOnVictim = new Set(logs[victimIndex].filter((e) => e.type === 'session.start').map(appOf));
    for (const r of after) expect(appsOnVictim.has(r.app), r.app).toBe(false);

    // The oracle: every statement the target ran, for every session of this test, is in the union of
    // the three logs (its db.query record, or the intent record written before it was forwarded).
    const sessionApp = new Map<string, string>();
    for (const e of logs.flat()) if (e.type === 'session.start') sessionApp.set(e.session_id!, String(appOf(e)));
    const recorded = new Map<string, { query: number; start: number }>();
    for (const e of logs.flat()) {
      if (e.type !== 'db.query' && e.type !== 'db.query.start') continue;
      const key = `${sessionApp.get(e.session_id!)}\0${e.details.sql}`;
      const c = recorded.get(key) ?? { query: 0, start: 0 };
      if (e.type === 'db.query') c.query++;
      else c.start++;
      recorded.set(key, c);
    }
    const server = serverStatementsByApp();
    const seen = new Map<string, number>();
    const missing: string[] = [];
    for (const s of server) {
      const key = `${s.app}\0${s.sql}`;
      const n = (seen.get(key) ?? 0) + 1;
      seen.set(key, n);
      const c = recorded.get(key);
      if (!c || n > Math.max(c.query, c.start)) missing.push(`${s.app}: ${s.sql}`);
    }
    const ledger = target.psql('SELECT count(*) FROM ledger');
    console.log(`target ran ${server.length} statements for this test's sessions (${ledger} ledger rows); missing from the replicas' logs: ${missing.length}`);
    expect(server.filter((s) => s.app === cut.app).map((s) => s.sql)).toContain('SELECT pg_sleep(60)');
    expect(server.length).toBeGreaterThan(50);
    expect(missing).toEqual([]);
  }, 150_000);

  it('a replica stopped with SIGTERM tells HAProxy first (/readyz 503) and lets its live session finish', async () => {
    const live = psql(alice, 'pg', 'drain-live', 'SELECT pg_sleep(4)', "SELECT 'finished'");
    const on = await replicaOfApp('drain-live');
    const other = [0, 1, 2].find((i) => i !== on && replicas[i]!.child.exitCode === null && replicas[i]!.child.signalCode === null)!;
    const logFrom = haproxyLog.length;
    const stopped = replicas[on]!.stop();
    // Out of rotation by its readiness answer (its listeners still accept), not by a refused connection.
    const down = new RegExp(`vigil_postgres/vigil-${on + 1} is DOWN, reason: Layer7 wrong status, code: 503`);
    await waitFor(() => down.test(haproxyLog.slice(logFrom)), 20_000, `HAProxy to take vigil-${on + 1} out on its /readyz`);
    for (let k = 0; k < 2; k++) {
      const r = psql(alice, 'pg', `drain-new-${k}`, `SELECT 'new-${k}'`);
      expect(await r.exited, r.stderr()).toBe(0);
      expect(await replicaOfApp(`drain-new-${k}`)).toBe(other);
    }
    expect(await live.exited, live.stderr()).toBe(0);
    expect(live.stdout().trim()).toBe('finished');
    expect(await stopped).toBe(0);
  }, 60_000);
});

/**
 * Statements the target logged (log_statement = all) for this test's client sessions, as vigil cuts a
 * simple query, with the client's application name (vigil makes it `<user> via <client's name>`).
 */
function serverStatementsByApp(): { app: string; sql: string }[] {
  const names = new Set(serverLog(target).map((l) => l.application_name ?? '').filter((n) => /^(alice|carol) via /.test(n)));
  return [...names].flatMap((name) => {
    const app = name.replace(/^\w+ via /, '');
    return serverStatements(target, 'scram_user', (l) => l.application_name === name).flatMap((s) => (s.kind === 'execute' ? [s.sql] : splitStatements(s.sql)).map((sql) => ({ app, sql })));
  });
}
