import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type IssuedFiles } from '../support/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startPostgres, clientEnv, type PostgresHandle } from '../support/postgres.ts';
import { startMariadb, type MariadbHandle } from '../support/mariadb.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { searchAuditLog } from '../../recorder/audit/read.ts';
import { serverStatements, STATEMENT_LOG } from '../postgres/helpers.ts';
import { splitStatements } from '../../proxies/postgres/sql.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { spawnClient, gatewayWorkerPids, type ClientProcess, apiRequest } from '../support/workers.ts';

/**
 * `vigil serve` with gateway.workers: 2 — the protocol listeners in two cluster workers, the API and the
 * audit writer in the primary. psql, mariadb and ssh sessions land on both workers; every statement
 * PostgreSQL logged is in the one chain and `vigil audit verify` passes; the API's kill and a lock cut
 * sessions in either worker; a worker killed with SIGKILL is replaced (its sessions end as gateway_crash)
 * and new sessions work; SIGTERM drains (readiness fails, sessions end as shutdown, the process exits).
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MYSQL_PASSWORD = 'workers-pass';

let pg: PostgresHandle;
let maria: MariadbHandle;
let sshd: SshdHandle;
let gp: GatewayProcess | undefined;
let base: string;
let alice: IssuedFiles, bob: IssuedFiles, ada: IssuedFiles;
let config: Record<string, unknown>;
const clients: ClientProcess[] = [];

beforeAll(async () => {
  base = tempDir('vigil-workers-');
  fs.mkdirSync(path.join(base, 'witness'));
  [pg, maria, sshd] = await Promise.all([startPostgres({ conf: STATEMENT_LOG }), startMariadb(), startSshd()]);
  await maria.query(`CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY '${MYSQL_PASSWORD}'; GRANT ALL ON *.* TO 'app'@'127.0.0.1'`);
  const secret = path.join(base, 'mysql.pass');
  fs.writeFileSync(secret, MYSQL_PASSWORD, { mode: 0o600 });
  config = {
    data_dir: path.join(base, 'data'),
    gateway: { workers: 2, shutdown_drain: '3s', drain_notice: '2s' },
    audit: { witness: { file: path.join(base, 'witness', 'head.json') } },
    targets: [
      { name: 'pg1', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user' },
      { name: 'my1', protocol: 'mysql', host: '127.0.0.1', port: maria.port, user: 'app', password: { file: secret } },
      { name: 'web1', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub },
    ],
    roles: [{ name: 'engineer', targets: ['*'], logins: ['*'], databases: ['*'] }],
  };
  // Credentials from an in-process gateway on the same data dir (it creates the CA).
  const tg = await startTestGateway(config, base);
  [alice, bob, ada] = await Promise.all([tg.issue({ user: 'alice', roles: ['engineer'] }), tg.issue({ user: 'bob', roles: ['engineer'] }), tg.issue({ user: 'ada', roles: ['admin'] })]);
  await tg.stop();
  gp = await startGatewayProcess(config, base);
}, 180_000);

afterAll(async () => {
  for (const c of clients) c.child.kill('SIGKILL');
  await gp?.kill('SIGKILL');
  await Promise.all([pg?.stop(), maria?.stop(), sshd?.stop()]);
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

const client = (cmd: string, args: string[], env?: NodeJS.ProcessEnv): ClientProcess => spawnClient(clients, cmd, args, { env });

const pgConn = (who: IssuedFiles, user: string) =>
  `host=127.0.0.1 port=${gp!.ports.postgres} dbname=pg1 user=${user} sslmode=verify-full sslrootcert=${who.ca} sslcert=${who.crt} sslkey=${who.key}`;
/** A psql session that stays open, running each statement written to its stdin. */
const psql = (who: IssuedFiles, user: string) => client('psql', ['-X', '-qAt', '-d', pgConn(who, user)], clientEnv());
const mariadb = (who: IssuedFiles, sql: string) =>
  client('mariadb', ['--no-defaults', '--protocol=TCP', '-h', '127.0.0.1', '-P', String(gp!.ports.mysql), '-u', 'my1', `--ssl-ca=${who.ca}`, `--ssl-cert=${who.crt}`, `--ssl-key=${who.key}`, '--ssl-verify-server-cert', '--batch', '--skip-column-names', '-e', sql]);
function ssh(who: IssuedFiles, command: string) {
  const knownHosts = path.join(base, 'known_hosts');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${gp!.ports.ssh} ${gp!.sshHostKey}\n`);
  return client('ssh', [
    '-F', '/dev/null', '-p', String(gp!.ports.ssh), '-o', `IdentityFile=${who.sshKey}`, '-o', `CertificateFile=${who.sshCert}`, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
    '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', `${sshd.user}@web1@127.0.0.1`, command,
  ]);
}

const api = (method: string, p: string, body?: unknown) => apiRequest(gp!.ports.api, ada, method, p, body);

interface SessionRow {
  id: string;
  user: string;
  protocol: string;
  worker_pid?: number;
  started_at: string;
}
const liveSessions = async (): Promise<SessionRow[]> => (await api('GET', '/v1/sessions?live=1')).body.sessions;

const workerPids = () => gatewayWorkerPids(gp!.pid);

/** Running (a zombie left to a container's init that does not reap counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Open a session and wait until the primary lists it; returns its row. */
async function opened(start: () => unknown, user: string, protocol: string): Promise<SessionRow> {
  const before = new Set((await liveSessions()).map((s) => s.id));
  start();
  return waitFor(async () => (await liveSessions()).find((s) => !before.has(s.id) && s.user === user && s.protocol === protocol), 20_000, `live ${protocol} session of ${user}`);
}

describe('vigil serve with gateway.workers: 2', () => {
  const psqlSessions: { row: SessionRow; c: ClientProcess }[] = [];
  const mysqlClients: ClientProcess[] = [];

  it('spreads psql, mariadb and ssh sessions over both workers; each statement is recorded by the primary', async () => {
    const workers = workerPids();
    expect(workers, gp!.output().slice(-3000)).toHaveLength(2);
    for (let i = 0; i < 4; i++) {
      let c!: ReturnType<typeof client>;
      const row = await opened(() => {
        c = psql(alice, 'alice');
        c.child.stdin.write(`SELECT 'wk-${i}-start';\n`);
      }, 'alice', 'postgres');
      psqlSessions.push({ row, c });
    }
    const my: SessionRow[] = [];
    const sh: SessionRow[] = [];
    for (let i = 0; i < 4; i++) my.push(await opened(() => mysqlClients.push(mariadb(alice, `SELECT 'my-${i}'; SELECT SLEEP(600)`)), 'alice', 'mysql'));
    for (let i = 0; i < 4; i++) sh.push(await opened(() => ssh(alice, `echo ssh-${i}; sleep 60`), 'alice', 'ssh'));
    for (const rows of [psqlSessions.map((s) => s.row), my, sh]) {
      // Each protocol's sessions are held by both workers (the primary hands connections round robin).
      expect(new Set(rows.map((r) => r.worker_pid)), JSON.stringify(rows)).toEqual(new Set(workers));
    }
    // Statements in every psql session, whichever worker holds it.
    for (const [i, s] of psqlSessions.entries()) for (let n = 0; n < 10; n++) s.c.child.stdin.write(`SELECT 'wk-${i}-${n}';\n`);
    await waitFor(() => psqlSessions.every((s, i) => s.c.stdout().includes(`wk-${i}-9`)), 30_000, 'psql answers');
    // Each then waits on the server: psql reads the socket (and sees a cut) only while a statement runs.
    for (const s of psqlSessions) s.c.child.stdin.write('SELECT pg_sleep(120);\n');
    await waitFor(() => pg.psql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(120);'", 'postgres').trim() === '4', 30_000, 'sleeps running');
  }, 120_000);

  it('a kill through the API and a lock cut sessions in either worker', async () => {
    // Kill: one psql session on each worker (the API runs in the primary, so both are another process).
    const [a, b] = [psqlSessions[0], psqlSessions[1]];
    expect(a.row.worker_pid).not.toBe(b.row.worker_pid);
    const cutMs: number[] = [];
    for (const s of [a, b]) {
      const t0 = Date.now();
      const r = await api('POST', `/v1/sessions/${s.row.id}/kill`, { reason: 'INC-22' });
      expect(r).toMatchObject({ status: 200, body: { ended: true } });
      await waitFor(() => s.c.done(), 10_000, 'psql exit after the kill');
      cutMs.push(Date.now() - t0);
      expect(s.c.stderr()).toContain('terminated by ada: INC-22');
    }
    // Lock: bob's sessions on both workers end.
    const bobs: ReturnType<typeof client>[] = [];
    const rows: SessionRow[] = [];
    for (let i = 0; i < 2; i++) {
      rows.push(await opened(() => {
        const c = psql(bob, 'bob');
        c.child.stdin.write('SELECT pg_sleep(120);\n');
        bobs.push(c);
      }, 'bob', 'postgres'));
    }
    expect(new Set(rows.map((r) => r.worker_pid)).size).toBe(2);
    const t0 = Date.now();
    expect((await api('POST', '/v1/locks', { user: 'bob', reason: 'left the team' })).status).toBe(201);
    await waitFor(() => bobs.every((c) => c.done()), 10_000, 'bob\'s psql sessions cut');
    const lockMs = Date.now() - t0;
    for (const c of bobs) expect(c.stderr()).toContain('locked');
    await waitFor(async () => !(await liveSessions()).some((s) => s.user === 'bob'), 10_000, 'bob gone from the list');
    console.log(`cut by kill (API call to client exit): ${cutMs.join(', ')} ms; by lock: ${lockMs} ms (both bob sessions)`);
  }, 120_000);

  it('a config reload (SIGHUP to the primary) cuts sessions in both workers and applies in each for new ones', async () => {
    const doc = JSON.parse(fs.readFileSync(gp!.configFile, 'utf8'));
    doc.targets = doc.targets.filter((t: { name: string }) => t.name !== 'my1');
    fs.writeFileSync(gp!.configFile, JSON.stringify(doc, null, 2));
    process.kill(gp!.pid, 'SIGHUP');
    // The primary decides for every worker's sessions: all four mariadb sessions (two per worker) end.
    await waitFor(() => mysqlClients.every((c) => c.done()), 20_000, 'mariadb sessions cut by the reload');
    for (const c of mysqlClients) expect(c.stderr()).toContain('The vigil configuration changed');
    // Each worker applied it too: new connections (round robin: one per worker) find no target my1.
    await waitFor(() => gp!.output().split('\n').filter((l) => l.includes('configuration reloaded')).length >= 3, 20_000, 'reload logged by the primary and both workers');
    for (let i = 0; i < 2; i++) {
      const c = mariadb(alice, "SELECT 'after-reload'");
      expect(await c.exited).not.toBe(0);
      expect(c.stdout()).not.toContain('after-reload');
    }
    expect((await liveSessions()).filter((s) => s.protocol === 'mysql')).toEqual([]);
  }, 120_000);

  let killedSession: SessionRow;
  it('a worker killed with SIGKILL is replaced; its sessions end; new sessions work on both workers', async () => {
    const [victim] = psqlSessions.slice(2).filter((s) => !s.c.done());
    killedSession = victim.row;
    const before = workerPids();
    process.kill(victim.row.worker_pid!, 'SIGKILL');
    await waitFor(() => victim.c.done(), 10_000, 'psql exit after its worker died');
    const after = await waitFor(() => {
      const now = workerPids();
      return now.length === 2 && !now.includes(victim.row.worker_pid!) ? now : undefined;
    }, 30_000, 'a new worker');
    const [replacement] = after.filter((p) => !before.includes(p));
    expect(replacement).toBeDefined();
    // It takes connections once it listens (until then the other worker takes them all).
    await waitFor(() => gp!.output().includes(`gateway worker ready (pid ${replacement})`), 60_000, 'the new worker ready');
    await waitFor(async () => !(await liveSessions()).some((s) => s.worker_pid === victim.row.worker_pid), 10_000, 'dead worker\'s sessions gone from the list');
    const fresh: SessionRow[] = [];
    for (let i = 0; i < 4; i++) {
      let c!: ReturnType<typeof client>;
      fresh.push(await opened(() => {
        c = psql(alice, 'alice');
        c.child.stdin.write(`SELECT 'after-${i}';\n`);
      }, 'alice', 'postgres'));
      await waitFor(() => c.stdout().includes(`after-${i}`), 20_000, 'answer after the restart');
      c.child.stdin.end();
      await waitFor(() => c.done(), 10_000, 'psql exit');
    }
    expect(new Set(fresh.map((r) => r.worker_pid))).toEqual(new Set(after));
  }, 120_000);

  it('SIGTERM drains: readiness fails, live sessions end as shutdown, the process exits; the one chain verifies', async () => {
    const drained = await opened(() => psql(alice, 'alice').child.stdin.write("SELECT 'drain-me';\n"), 'alice', 'postgres');
    const workers = workerPids();
    gp!.child.kill('SIGTERM');
    await waitFor(() => {
      const r = spawnSync('curl', ['-sk', `https://127.0.0.1:${gp!.ports.api}/readyz`], { encoding: 'utf8' });
      return r.stdout.includes('draining');
    }, 10_000, '/readyz draining');
    expect(await gp!.exited).toBe(0);
    for (const p of workers) expect(alive(p)).toBe(false);

    const verify = spawnSync(process.execPath, [path.join(ROOT, 'bin/vigil.js'), 'audit', 'verify', '--config', gp!.configFile, '--witness', path.join(base, 'witness', 'head.json')], { encoding: 'utf8' });
    expect(verify.stdout).toContain('complete up to the witnessed head');
    expect(verify.status, verify.stdout + verify.stderr).toBe(0);

    const { records } = await searchAuditLog(path.join(base, 'data', 'audit'));
    const events: AuditEvent[] = records.map((r) => r.event);
    // Every statement PostgreSQL ran for these sessions has its db.query in the chain.
    const server = serverStatements(pg, 'trust_user').flatMap((s) => splitStatements(s.sql)).filter((q) => /'(wk|after|drain)-/.test(q));
    const recorded = events.filter((e) => e.type === 'db.query').map((e) => String(e.details.sql));
    expect(server.length).toBeGreaterThanOrEqual(4 * 11 + 4 + 1);
    expect(server.filter((q) => !recorded.includes(q))).toEqual([]);
    // The mariadb and ssh statements too.
    for (let i = 0; i < 4; i++) {
      expect(events.filter((e) => e.type === 'db.query' && e.target.protocol === 'mysql' && e.details.query === `SELECT 'my-${i}'`), `my-${i}`).toHaveLength(1);
      expect(events.filter((e) => e.type.startsWith('ssh.exec') && String(e.details.command).includes(`echo ssh-${i}`)).length, `ssh-${i}`).toBeGreaterThan(0);
    }
    const endOf = (id: string) => events.find((e) => e.type === 'session.end' && e.session_id === id);
    expect(endOf(killedSession.id)?.details).toMatchObject({ reason: 'gateway_crash', worker_pid: killedSession.worker_pid });
    expect(endOf(drained.id)?.details).toMatchObject({ reason: 'shutdown' });
    expect(endOf(psqlSessions[0].row.id)?.details).toMatchObject({ reason: 'terminated' });
    // One config.reloaded for the one reload: workers follow it without recording it again.
    expect(events.filter((e) => e.type === 'config.reloaded')).toHaveLength(1);
    // Every session that started has ended in the chain.
    const started = events.filter((e) => e.type === 'session.start').map((e) => e.session_id);
    expect(started.filter((id) => !endOf(id!))).toEqual([]);
  }, 120_000);

  it('strict durability across the IPC hop; when the primary is killed, its workers end their sessions and exit; the restart ends the session in the chain', async () => {
    // Strict: a worker forwards a statement only once the primary acknowledged its intent record as durable.
    gp = await startGatewayProcess({ ...config, audit: { ...(config.audit as object), durability: 'strict' } }, base);
    const workers = workerPids();
    expect(workers).toHaveLength(2);
    let c!: ClientProcess;
    const row = await opened(() => {
      c = psql(alice, 'alice');
      c.child.stdin.write("SELECT 'orphan';\nSELECT pg_sleep(120);\n");
    }, 'alice', 'postgres');
    await waitFor(() => c.stdout().includes('orphan'), 20_000, 'strict statement answered');
    await gp.kill('SIGKILL');
    // No orphan keeps a listener or a session: nothing it did could be recorded any more.
    await waitFor(() => workers.every((p) => !alive(p)), 20_000, 'workers gone after the primary');
    await waitFor(() => c.done(), 10_000, 'psql cut');
    gp = await startGatewayProcess(config, base);
    await gp.stop();
    const { records } = await searchAuditLog(path.join(base, 'data', 'audit'));
    const end = records.map((r) => r.event).find((e) => e.type === 'session.end' && e.session_id === row.id);
    expect(end?.details).toMatchObject({ reason: 'gateway_crash' });
    const intent = records.map((r) => r.event).find((e) => e.type === 'db.query.start' && e.session_id === row.id && e.details.sql === "SELECT 'orphan'");
    expect(intent).toBeDefined();
  }, 180_000);
});
