import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAllWorld, slowloris, type AllWorld, type Listener, type SlowResult } from '../support/hostile.ts';
import { waitFor } from '../support/tmp.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Slow and half-open clients (issue #16 item 4), on one gateway in front of a real PostgreSQL, MariaDB and
 * sshd: a slowloris in each phase of each listener is cut by that phase's deadline, the cuts are recorded
 * within the per-source budget, a client that stops reading is ended after the write-stall timeout with
 * a complete record, a vanished client is closed by the idle timeout (and its socket has TCP keepalive).
 * Every hostile client runs next to an engineer's stock psql, mariadb and ssh.
 */

const BUDGET = 3;
const STALL_MS = 2000;
const IDLE_MS = 8000;

let w: AllWorld;
beforeAll(async () => {
  w = await startAllWorld({
    gateway: { auth_timeout: '4s', idle_timeout: `${IDLE_MS}ms` },
    pre_auth: { handshake_timeout: '2s' },
    slow_clients: { write_stall_timeout: `${STALL_MS}ms`, keepalive: '1s' },
    budgets: { refusals_per_window: BUDGET, window: '1h' },
  });
}, 180_000);
afterAll(async () => {
  await w?.stop();
});

/** The engineer's three stock clients, each must work. */
async function engineerWorks(tag: string): Promise<void> {
  const [p, m, s] = await Promise.all([
    w.psql(['-Atc', `SELECT '${tag}-pg'`]),
    w.mariadb(['-N', '-e', `SELECT '${tag}-my'`]),
    w.ssh(`echo ${tag}-ssh`),
  ]);
  expect(p.stdout.trim(), p.stderr).toBe(`${tag}-pg`);
  expect(m.stdout.trim(), m.stderr).toBe(`${tag}-my`);
  expect(s.stdout.trim(), s.stderr).toBe(`${tag}-ssh`);
}

const timeoutsFrom = (ip: string) => (e: AuditEvent) => e.type === 'auth.failure' && e.source.ip === ip && (e.details as { reason?: string }).reason === 'timeout';

describe('slowloris: one byte per second in every phase of every listener', () => {
  // listener, phase trickled, phase the gateway reports, deadline that must cut it.
  const cases: [Listener, string, string | undefined, string | undefined][] = [
    ['postgres', 'startup', 'startup', 'handshake_timeout'],
    ['postgres', 'tls_handshake', 'tls_handshake', 'handshake_timeout'],
    ['postgres', 'startup_tls', 'startup', 'handshake_timeout'],
    ['postgres', 'password', 'password', 'auth_timeout'],
    ['mysql', 'ssl_request', 'ssl_request', 'handshake_timeout'],
    ['mysql', 'tls_handshake', 'tls_handshake', 'handshake_timeout'],
    ['mysql', 'handshake_response', 'handshake_response', 'auth_timeout'],
    ['ssh', 'ident', 'ident', 'handshake_timeout'],
    ['ssh', 'kex', 'kex', 'handshake_timeout'],
    ['ssh', 'auth', 'auth', 'auth_timeout'],
    // The API records its own refusals (api.request); its cuts are Node's deadlines, configured here.
    ['api', 'tls_handshake', undefined, undefined],
    ['api', 'headers', undefined, undefined],
  ];

  it('each is cut by its phase deadline (recorded with the phase) while psql, mariadb and ssh work alongside', async () => {
    // One source address per case: each is within its budget, so every cut is recorded one by one.
    const runs = cases.map(([listener, phase], i) => slowloris(listener, phase, w.ports[listener]!, `127.0.3.${i + 1}`));
    await engineerWorks('during');
    const results: SlowResult[] = await Promise.all(runs);
    await engineerWorks('after');
    for (let i = 0; i < cases.length; i++) {
      const [listener, phase, reported, deadline] = cases[i]!;
      const r = results[i]!;
      expect(r.cutByGateway, `${listener}/${phase} cut`).toBe(true);
      // A few bytes at most went through: the message was never completed.
      expect(r.sent, `${listener}/${phase} bytes`).toBeLessThan(20);
      if (!reported) continue;
      const ev = await w.tg.waitForEvent(timeoutsFrom(`127.0.3.${i + 1}`), 10_000);
      expect(ev.target.protocol).toBe(listener);
      expect(ev.details, `${listener}/${phase}`).toMatchObject({ reason: 'timeout', phase: reported, deadline });
    }
    // Where the protocol can still speak, the client is told why (Postgres FATAL, MySQL ERR).
    const byCase = (l: string, p: string) => results[cases.findIndex(([a, b]) => a === l && b === p)]!.received.toString('latin1');
    expect(byCase('postgres', 'password')).toMatch(/authentication timed out/);
    expect(byCase('mysql', 'handshake_response')).toMatch(/authentication timed out/);
  }, 120_000);

  it('cuts beyond the per-source budget are counted into one summary, not written one by one', async () => {
    const ip = '127.0.4.1';
    const N = 12;
    const budget = w.tg.gw.services.refusals!;
    const before = new Map([...budget.counts()].map(([k, v]) => [k, { ...v }]));
    const floods = (['postgres', 'mysql', 'ssh'] as const).flatMap((l) =>
      Array.from({ length: N }, () => slowloris(l, l === 'postgres' ? 'startup' : l === 'mysql' ? 'ssl_request' : 'ident', w.ports[l]!, ip, 500)),
    );
    await engineerWorks('flood');
    const results = await Promise.all(floods);
    expect(results.every((r) => r.cutByGateway)).toBe(true);
    for (const protocol of ['postgres', 'mysql', 'ssh']) {
      await waitFor(() => {
        const c = budget.counts().get(protocol)!;
        const b = before.get(protocol) ?? { recorded: 0, suppressed: 0 };
        return c.recorded + c.suppressed - b.recorded - b.suppressed >= N || undefined;
      }, 20_000, `${protocol} cuts counted`);
      // A cut is counted when it is decided and its event written just after: wait for the writes.
      const cuts = () => w.tg.events.filter((e) => timeoutsFrom(ip)(e) && e.target.protocol === protocol);
      await waitFor(() => cuts().length >= BUDGET || undefined, 10_000, `${protocol} cut events written`);
      expect(cuts()).toHaveLength(BUDGET);
    }
    budget.sweep(true);
    for (const protocol of ['postgres', 'mysql', 'ssh']) {
      const s = await w.tg.waitForEvent((e) => e.type === 'auth.failure.summary' && e.source.ip === ip && e.target.protocol === protocol, 10_000);
      const d = s.details as { suppressed: number; reasons: Record<string, number> };
      expect(d.suppressed).toBe(N - BUDGET);
      expect(Object.keys(d.reasons).every((r) => r.startsWith('timeout_'))).toBe(true);
    }
  }, 120_000);
});

/** Spawn a stock client whose output we collect, to SIGSTOP it later (it then neither reads nor closes). */
function startClient(cmd: string, args: string[], env?: NodeJS.ProcessEnv): { child: ChildProcess; out: () => number; exited: Promise<void> } {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
  let n = 0;
  child.stdout!.on('data', (d: Buffer) => (n += d.length));
  child.stderr!.on('data', () => {});
  child.stdin!.on('error', () => {});
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  return { child, out: () => n, exited };
}

async function stopAndKill(c: { child: ChildProcess; exited: Promise<void> }): Promise<void> {
  c.child.kill('SIGKILL');
  await c.exited;
}

const sessionOf = (protocol: string, after: number) => (e: AuditEvent) => e.type === 'session.start' && e.target.protocol === protocol && w.tg.events.indexOf(e) >= after;

describe('clients that stop reading a large result', () => {
  it('postgres, mysql and ssh: the backend is paused (memory bounded), the session ends with write_stall, the record stays complete; psql, mariadb and ssh work alongside', async () => {
    const mark = w.tg.events.length;
    const rss0 = process.memoryUsage().rss;
    // Each result is ~2 GB; each client is stopped (SIGSTOP) once the session is live: it reads nothing more.
    const [pc, pe] = w.psqlArgv(['-Atc', "SELECT repeat('x', 1000) FROM generate_series(1, 2000000)"]);
    const [mc, ma] = w.mariadbArgv(['-N', '-e', "SELECT REPEAT('x', 1000) FROM information_schema.COLLATIONS a, information_schema.COLLATIONS b, information_schema.COLLATIONS c LIMIT 2000000"]);
    const [sc, sa] = w.sshArgv('head -c 2000000000 /dev/zero');
    const clients = [startClient(pc, pe, w.psqlArgv([])[2]), startClient(mc, ma), startClient(sc, sa)];
    const protocols = ['postgres', 'mysql', 'ssh'];
    const starts = await Promise.all(protocols.map((p) => w.tg.waitForEvent(sessionOf(p, mark), 30_000)));
    // The ssh client has seen output (the command runs), the database clients have their query running:
    // its result is flowing through the gateway (a client stopped before it sent the query would only idle).
    await waitFor(() => clients[2]!.out() > 0 || undefined, 30_000, 'ssh output');
    const flowing = (id: string | undefined) => (w.tg.gw.services.sessions.list().find((s) => s.id === id)?.stats?.bytesToClient ?? 0) > 100_000;
    await waitFor(() => (flowing(starts[0]!.session_id) && flowing(starts[1]!.session_id)) || undefined, 30_000, 'both results flowing');
    for (const c of clients) c.child.kill('SIGSTOP');
    try {
      const t0 = Date.now();
      const ends = await Promise.all(starts.map((s) => w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === s.session_id, 60_000)));
      console.log(`[slow-clients] stalled sessions ended ${Date.now() - t0} ms after the clients stopped reading`);
      const rss1 = process.memoryUsage().rss;
      console.log(`[slow-clients] stalled readers of 3 x 2 GB: gateway+test rss ${rss0} -> ${rss1} (delta ${rss1 - rss0})`);
      for (const e of ends) expect((e.details as { reason: string }).reason, `${e.target.protocol} ${JSON.stringify(e.details)}`).toBe("write_stall");
      // Nothing like the 6 GB of results was buffered: the backends were not read while the clients were full.
      expect(rss1 - rss0).toBeLessThan(200 * 1024 * 1024);
      // The statements that were running are recorded (outcome unknown, with why the session ended).
      for (const s of starts.slice(0, 2)) {
        const q = w.tg.events.find((e) => e.type === 'db.query' && e.session_id === s.session_id);
        expect(q?.outcome, s.target.protocol).toBe('unknown');
        expect((q?.details as { end_reason?: string }).end_reason).toBe('write_stall');
      }
      const exec = await w.tg.waitForEvent((e) => e.type === 'ssh.exec' && e.session_id === starts[2]!.session_id, 10_000);
      expect((exec.details as { command: string }).command).toBe('head -c 2000000000 /dev/zero');
      await engineerWorks('stall');
    } finally {
      await Promise.all(clients.map(stopAndKill));
    }
  }, 120_000);
});

describe('half-open clients', () => {
  it('accepted sockets have TCP keepalive; a client that vanished without a FIN is closed by the idle timeout and session.end is recorded', async () => {
    const mark = w.tg.events.length;
    // An interactive psql and a remote sleep: live sessions with nothing in flight.
    const [pc, pa, env] = w.psqlArgv([]);
    const psql = startClient(pc, pa, env);
    const [sc, sa] = w.sshArgv('sleep 120');
    const ssh = startClient(sc, sa);
    try {
      const starts = await Promise.all(['postgres', 'ssh'].map((p) => w.tg.waitForEvent(sessionOf(p, mark), 30_000)));
      // The kernel arms a keepalive timer on the gateway's side of each accepted connection.
      // While unacknowledged output is queued the kernel shows its retransmit timer instead, so look
      // again until the connection is quiet.
      for (const port of [w.ports.postgres, w.ports.ssh]) {
        let ss = '';
        for (let i = 0; i < 50 && !/timer:\(keepalive/.test(ss); i++) {
          if (i > 0) await new Promise((r) => setTimeout(r, 100));
          ss = execFileSync('ss', ['-tnoH', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
        }
        expect(ss, `ss for port ${port}`).toMatch(/timer:\(keepalive/);
      }
      // The clients vanish: no FIN, no reads, no writes (as a host that lost power or network).
      psql.child.kill('SIGSTOP');
      ssh.child.kill('SIGSTOP');
      const ends = await Promise.all(starts.map((s) => w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === s.session_id, 60_000)));
      for (const e of ends) expect((e.details as { reason: string }).reason, e.target.protocol).toBe('idle_timeout');
      await engineerWorks('halfopen');
    } finally {
      await Promise.all([psql, ssh].map(stopAndKill));
    }
  }, 120_000);
});
