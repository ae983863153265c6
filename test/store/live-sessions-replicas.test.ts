import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { clientEnv, PASSWORDS, startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { startCuttableRelay, type CuttableRelay } from '../support/cuttable-relay.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { apiCall, startReplica } from '../support/replicas.ts';
import { runCliCaptured } from '../support/cli.ts';

/**
 * The live-session registry across replicas on one PostgreSQL store: a session held by one replica is
 * listed and killed through another, a replica that died stops being listed once its lease ran out, and
 * without the store a replica answers with what it holds itself. A reaches the store through a relay the
 * test can cut; B (in process) and C (its own process, to be killed with SIGKILL) directly.
 */

let storeDb: PostgresHandle;
let relay: CuttableRelay;
let a: TestGateway;
let b: TestGateway;
let c: GatewayProcess | undefined;
let root: IssuedFiles, alice: IssuedFiles, bob: IssuedFiles;
const DIRECT_ENV = 'VIGIL_TEST_LIVE_SESSIONS_URL';
const RELAYED_ENV = 'VIGIL_TEST_LIVE_SESSIONS_RELAYED_URL';
const SCHEMA = 'livesessions';

function gatewayConfig(urlEnv: string) {
  return {
    ssh: { enabled: false },
    mysql: { enabled: false },
    store: { kind: 'postgres', url: { env: urlEnv }, schema: SCHEMA },
    targets: [{ name: 'pg-dev', protocol: 'postgres', host: '127.0.0.1', port: storeDb.port, database: 'app', user: 'trust_user', labels: { env: 'dev' } }],
    roles: [{ name: 'engineer', target_labels: { env: 'dev' }, logins: ['*'] }, { name: 'admin' }],
  };
}

const replicaOf = (dataDir: string) => fs.readFileSync(path.join(dataDir, 'replica-id'), 'utf8').trim();

beforeAll(async () => {
  storeDb = await startPostgres();
  relay = await startCuttableRelay(storeDb.port);
  const url = (port: number) => `postgres://scram_user:${PASSWORDS.scram_user}@127.0.0.1:${port}/app?sslmode=disable`;
  process.env[DIRECT_ENV] = url(storeDb.port);
  process.env[RELAYED_ENV] = url(relay.port);
  a = await startTestGateway(gatewayConfig(RELAYED_ENV), tempDir('vigil-live-a-'));
  b = await startReplica(a, gatewayConfig(DIRECT_ENV), 'vigil-live-b-');
  [root, alice, bob] = await Promise.all([
    a.issue({ user: 'root', roles: ['admin'] }),
    a.issue({ user: 'alice', roles: ['engineer'] }),
    a.issue({ user: 'bob', roles: ['engineer'] }),
  ]);
}, 180_000);

afterAll(async () => {
  await c?.kill();
  await a?.stop();
  await b?.stop();
  await relay?.close();
  delete process.env[DIRECT_ENV];
  delete process.env[RELAYED_ENV];
  await storeDb?.stop();
});

/** A long-running psql session through the gateway listening on `port`. */
function psql(port: number, who: IssuedFiles, sql = 'SELECT pg_sleep(60)') {
  const child = spawn(
    'psql',
    ['-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-d', `host=127.0.0.1 port=${port} dbname=pg-dev user=${who.creds.user} sslmode=verify-full sslrootcert=${who.ca} sslcert=${who.crt} sslkey=${who.key}`, '-c', sql],
    { stdio: ['ignore', 'pipe', 'pipe'], env: clientEnv() },
  );
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const exited = new Promise<number | null>((r) => child.once('close', (code) => (clearTimeout(timer), r(code))));
  return { exited, stderr: () => err, kill: () => child.kill('SIGKILL') };
}

const liveOn = (gw: TestGateway, user: string) =>
  waitFor(() => gw.gw.services.sessions.list().find((s) => s.principal.user === user), 15_000, `a live session of ${user}`);

/** The live sessions as `who` sees them through `gw`'s API. */
async function listed(gw: TestGateway, who: IssuedFiles) {
  const r = await apiCall(gw, 'GET', '/v1/sessions?live=1', who);
  expect(r.status).toBe(200);
  return r.body as { sessions: { id: string; user: string; replica: string; target: { name: string } }[]; partial?: boolean };
}

describe('live sessions of every replica, on a PostgreSQL store', () => {
  it("a psql session on B is listed by A's API and killed through it; the client is told who killed it", async () => {
    const p = psql(b.ports.postgres, alice);
    const live = await liveOn(b, 'alice');

    // Published off the hot path: A sees it once B's publish landed.
    const row = await waitFor(async () => (await listed(a, root)).sessions.find((s) => s.id === live.id), 15_000, "B's session listed on A");
    expect(row).toMatchObject({ user: 'alice', replica: replicaOf(b.dataDir), target: { name: 'pg-dev' } });
    // Same visibility as for local sessions: alice sees her own, bob (no admin, no auditor) does not.
    expect((await listed(a, alice)).sessions.map((s) => s.id)).toContain(live.id);
    expect((await listed(a, bob)).sessions.map((s) => s.id)).not.toContain(live.id);
    // `vigil sessions list --live` through A names the replica holding each session.
    const cli = await runCliCaptured(['sessions', 'list', '--live', '--api', `https://127.0.0.1:${a.ports.api}`, '--cert', root.crt, '--key', root.key, '--ca', root.ca]);
    expect(cli.code, cli.err).toBe(0);
    const [header, ...lines] = cli.out.trim().split('\n');
    expect(header).toMatch(/STATEMENTS\s+REPLICA$/);
    expect(lines.find((l) => l.startsWith(live.id))).toMatch(new RegExp(`alice .* ${replicaOf(b.dataDir)}$`));

    // A non-admin cannot kill another user's session on another replica; the refusal is recorded on A.
    const refused = await apiCall(a, 'POST', `/v1/sessions/${live.id}/kill`, bob, { reason: 'not mine' });
    expect(refused.status).toBe(403);
    const refusal = await a.waitForEvent((e) => e.type === 'session.kill' && e.outcome === 'failure' && e.details.session_id === live.id);
    expect(refusal.actor.user).toBe('bob');
    expect(refusal.details).toMatchObject({ session_user: 'alice', replica: replicaOf(b.dataDir) });
    expect(b.gw.services.sessions.get(live.id)?.endReason).toBeUndefined();

    const killed = await apiCall(a, 'POST', `/v1/sessions/${live.id}/kill`, root, { reason: 'INC-9 runaway query' });
    expect(killed.status).toBe(200);
    expect(killed.body).toMatchObject({ killed: { id: live.id, user: 'alice', replica: replicaOf(b.dataDir) }, ended: true });
    const kill = await a.waitForEvent((e) => e.type === 'session.kill' && e.outcome === 'success' && e.details.session_id === live.id);
    expect(kill.actor.user).toBe('root');
    expect(kill.details).toMatchObject({ reason: 'INC-9 runaway query', session_user: 'alice', session_target: 'pg-dev', replica: replicaOf(b.dataDir) });
    const end = await b.waitForEvent((e) => e.type === 'session.end' && e.session_id === live.id, 15_000);
    expect(end.details.reason).toBe('terminated');
    expect(await p.exited).not.toBe(0);
    // The protocol's own message (FATAL 57P01), as for a kill on the holding replica.
    expect(p.stderr()).toContain('terminated by root: INC-9 runaway query');
    expect(b.events.some((e) => e.type === 'session.kill')).toBe(false); // recorded once, by the replica that authorised it

    await waitFor(async () => !(await listed(a, root)).sessions.some((s) => s.id === live.id), 15_000, 'the killed session gone from the listing');
    const unknown = await apiCall(a, 'POST', '/v1/sessions/01JNOSUCHSESSION000000000/kill', root, { reason: 'x' });
    expect(unknown.status).toBe(404);
  }, 90_000);

  it('without the store, A lists its own sessions (partial) and answers 503 to killing one of B', async () => {
    const onA = psql(a.ports.postgres, bob);
    const onB = psql(b.ports.postgres, alice);
    const mine = await liveOn(a, 'bob');
    const theirs = await liveOn(b, 'alice');
    await waitFor(async () => (await listed(a, root)).sessions.some((s) => s.id === theirs.id), 15_000, "B's session listed on A");

    await relay.down();
    try {
      const partial = await listed(a, root);
      expect(partial.partial).toBe(true);
      expect(partial.sessions.map((s) => s.id)).toEqual([mine.id]);
      const refused = await apiCall(a, 'POST', `/v1/sessions/${theirs.id}/kill`, root, { reason: 'during outage' });
      expect(refused.status).toBe(503);
      expect(refused.body.error.code).toBe('VIGIL_STORE_UNAVAILABLE');
      expect(b.gw.services.sessions.get(theirs.id)?.endReason).toBeUndefined();
    } finally {
      await relay.up();
    }
    const whole = await waitFor(async () => {
      const l = await listed(a, root);
      return l.partial ? undefined : l;
    }, 20_000, 'a whole listing again');
    expect(whole.sessions.map((s) => s.id)).toEqual(expect.arrayContaining([mine.id, theirs.id]));
    onA.kill();
    onB.kill();
    await Promise.all([onA.exited, onB.exited]);
  }, 90_000);

  it('a replica killed without cleanup stops being listed once its lease ran out', async () => {
    const base = tempDir('vigil-live-c-');
    fs.mkdirSync(path.join(base, 'data'), { recursive: true, mode: 0o700 });
    fs.cpSync(path.join(a.dataDir, 'ca'), path.join(base, 'data', 'ca'), { recursive: true });
    c = await startGatewayProcess(gatewayConfig(DIRECT_ENV), base);
    const p = psql(c.ports.postgres, alice);
    const replicaC = replicaOf(path.join(base, 'data'));
    const row = await waitFor(async () => (await listed(a, root)).sessions.find((s) => s.replica === replicaC), 20_000, "C's session listed on A");

    await c.kill('SIGKILL');
    await p.exited;
    await waitFor(async () => !(await listed(a, root)).sessions.some((s) => s.id === row.id), 40_000, "C's session no longer listed");
    // Nothing removed it (C died): its row is still there, ignored because C's lease ran out.
    expect(storeDb.psql(`SELECT count(*) FROM ${SCHEMA}.live_sessions WHERE id = '${row.id}'`).trim()).toBe('1');
    const gone = await apiCall(a, 'POST', `/v1/sessions/${row.id}/kill`, root, { reason: 'too late' });
    expect(gone.status).toBe(404);

    // C started again over its data dir (the same replica id) removes what its crashed run left.
    c = await startGatewayProcess(gatewayConfig(DIRECT_ENV), base);
    expect(storeDb.psql(`SELECT count(*) FROM ${SCHEMA}.live_sessions WHERE replica = '${replicaC}'`).trim()).toBe('0');
  }, 120_000);
});
