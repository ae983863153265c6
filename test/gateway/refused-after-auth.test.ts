import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import pg from 'pg';
import mysqlCallbacks from 'mysql2';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { encodeSslRequest, encodeStartupMessage } from '../../proxies/postgres/frontend.ts';
import { startPostgres, PASSWORDS, type PostgresHandle } from '../support/postgres.ts';
import { waitFor } from '../support/tmp.ts';
import { startWorld as startMyWorld, type MyWorld } from '../mysql/helpers.ts';
import { startWorld as startPgWorld, type PgWorld } from '../postgres/helpers.ts';
import { startWorld as startSshWorld, type SshWorld } from '../ssh/harness.ts';

/**
 * `auth.success` means "authenticated and authorized for this target": a connection the gateway then
 * refuses anyway must not leave one behind with no session and no refusal. What the proxy refuses about an
 * authorized request is decided before auth.success and recorded as auth.failure with a stable reason;
 * the disconnect that ends an SSH client's key guessing (ssh.max_auth_attempts) is on record too; a
 * client that leaves while its auth.success is being written gets session.start and session.end.
 */

const MAX_AUTH_ATTEMPTS = 3;

const ofSession = (events: AuditEvent[], sessionId: string) => events.filter((e) => e.session_id === sessionId).map((e) => e.type);

describe('mysql: a login named for a user_provisioning target', () => {
  let w: MyWorld;
  beforeAll(async () => {
    w = await startMyWorld((db, secretFile) => ({
      targets: [
        {
          name: 'myp',
          protocol: 'mysql',
          host: '127.0.0.1',
          port: db.port,
          user: 'unused_with_provisioning',
          user_provisioning: { admin: { user: 'vigil_admin', password: { file: secretFile('vigil-admin', 'never-used') } }, roles_map: { dba: ['shop_reader'] } },
        },
      ],
      roles: [{ name: 'dba', targets: ['myp'], databases: ['*'] }],
    }));
  }, 120_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('is refused before auth.success: ERR 1045 with the reason, and auth.failure reason login_not_allowed (no auth.success)', async () => {
    // The target's own `user`: every role reaching the target may name it, so authorization lets it through.
    const r = await w.cli(['--user=myp/unused_with_provisioning', '-e', 'SELECT 1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/1045.*target myp gives every engineer their own database account; connect as myp/);
    const ev = await w.tg.waitForEvent((e) => /^auth\.(success|failure)$/.test(e.type) && e.target.name === 'myp' && e.target.login === 'unused_with_provisioning', 15_000);
    expect(ev.type).toBe('auth.failure');
    expect(ev.actor.user).toBe('alice');
    expect(ev.details).toMatchObject({ reason: 'login_not_allowed', method: 'x509' });
    expect(ofSession(w.tg.events, ev.session_id!)).toEqual(['auth.failure']);
  }, 60_000);

  it('connecting as the bare target is still admitted (the check concerns a named login only)', async () => {
    // No vigil_admin account exists on the server: the session starts, then its account cannot be prepared.
    const r = await w.cli(['--user=myp', '-e', 'SELECT 1']);
    expect(r.stderr).toMatch(/could not prepare your database account on target myp/);
    const ok = await w.tg.waitForEvent((e) => e.type === 'auth.success' && e.target.name === 'myp' && e.target.login === undefined, 15_000);
    const end = await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === ok.session_id, 15_000);
    expect(end.details.reason).toBe('backend_error');
  }, 60_000);
});

describe('ssh: refusals around authentication', () => {
  let w: SshWorld;
  beforeAll(async () => {
    w = await startSshWorld({
      config: { ssh: { max_auth_attempts: MAX_AUTH_ATTEMPTS } },
      // A target with no default login: `ssh nologin@gateway` names no login.
      targets: (sshd) => [{ name: 'nologin', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, private_key: sshd.clientKey, host_key: sshd.hostKeyPub }],
    });
  }, 120_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('more public keys than ssh.max_auth_attempts: disconnected, and auth.failure reason too_many_attempts after one per key', async () => {
    const ip = '127.0.9.1';
    const user = `${w.sshd.user}@web1`;
    // Plain keys, no vigil certificate: each is refused on its own (auth.failure), then the one too many.
    const keys = Array.from({ length: MAX_AUTH_ATTEMPTS + 2 }, () => ssh2.utils.generateKeyPairSync('ed25519').private);
    const ended = await new Promise<Error | undefined>((resolve) => {
      const c = new ssh2.Client();
      c.on('error', (e) => resolve(e));
      c.on('ready', () => resolve(new Error('authenticated')));
      c.on('close', () => resolve(undefined));
      c.connect({
        host: '127.0.0.1',
        port: w.port,
        localAddress: ip,
        username: user,
        hostVerifier: () => true,
        authHandler: (_left, _partial, next) => {
          const key = keys.shift();
          next((key ? { type: 'publickey', username: user, key } : false) as ssh2.AnyAuthMethod); // false: no more (ssh2, not in its types)
        },
      });
    });
    expect(ended?.message ?? '').not.toBe('authenticated');
    const ev = await w.gw.waitForEvent((e) => e.type === 'auth.failure' && e.source.ip === ip && e.details.reason === 'too_many_attempts', 15_000);
    expect(ev.actor.user).toBe('unknown');
    expect(ev.target).toMatchObject({ name: 'web1', protocol: 'ssh', login: w.sshd.user });
    expect(ev.details).toMatchObject({ phase: 'auth', user, limit: 'ssh.max_auth_attempts', max_auth_attempts: MAX_AUTH_ATTEMPTS });
    const fromIp = w.gw.events.filter((e) => e.type === 'auth.failure' && e.source.ip === ip);
    // One per key tried within the limit, then exactly one for the disconnect.
    expect(fromIp.filter((e) => e.details.reason !== 'too_many_attempts')).toHaveLength(MAX_AUTH_ATTEMPTS);
    expect(fromIp.filter((e) => e.details.reason === 'too_many_attempts')).toHaveLength(1);
  }, 60_000);

  it('a target with no default login and none named: auth.failure reason login_not_allowed with the hint, never auth.success', async () => {
    const creds = await w.issue();
    const r = await w.run('ssh', [...w.opts(creds), 'nologin@127.0.0.1', 'true']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no default login; connect as LOGIN@nologin/);
    const ev = await w.gw.waitForEvent((e) => e.type === 'auth.failure' && e.target.name === 'nologin', 15_000);
    expect(ev.details.reason).toBe('login_not_allowed');
    expect(ofSession(w.gw.events, ev.session_id!)).not.toContain('auth.success');
  }, 60_000);
});


// ---- a client that leaves while its auth.success is being written ------------------------------------
// Authorization reads the grants table of the state store (PostgreSQL here): held locked, an admission
// waits there, between verifying the credential and writing auth.success, while the client leaves.

const STORE_URL_ENV = 'VIGIL_TEST_REFUSED_AFTER_AUTH_STORE';
let store: PostgresHandle;
beforeAll(async () => {
  store = await startPostgres();
  process.env[STORE_URL_ENV] = `postgres://scram_user:${PASSWORDS.scram_user}@127.0.0.1:${store.port}/app?sslmode=disable`;
}, 120_000);
afterAll(async () => {
  await store?.stop();
  delete process.env[STORE_URL_ENV];
});
const storeConfig = (schema: string) => ({ store: { kind: 'postgres', url: { env: STORE_URL_ENV }, schema } });

/** Does the gateway still hold a connection accepted on `port` (established, or the peer's FIN not yet acted on)? */
const gatewayHolds = (port: number) => execFileSync('ss', ['-Htn', 'state', 'established', 'state', 'close-wait', `( sport = :${port} )`]).toString().trim() !== '';

/**
 * Start a client (`connect`), wait until its admission waits on the locked grants table, make it leave
 * (`leave`), wait until the gateway has closed its side, then let the admission go on.
 */
async function leaveDuringAdmission(schema: string, gatewayPort: number, connect: () => Promise<void> | void, leave: () => void): Promise<void> {
  const holder = new pg.Client({ connectionString: process.env[STORE_URL_ENV] });
  await holder.connect();
  await holder.query('BEGIN');
  await holder.query(`LOCK TABLE ${schema}.access IN ACCESS EXCLUSIVE MODE`);
  try {
    // The gateway's own grant sweeps (every 250 ms, one at a time each) queue on the lock too: the
    // admission is the waiter that comes on top of theirs once they have all queued.
    const waiters = async () => (await holder.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND relation = '${schema}.access'::regclass`)).rows[0].n;
    let background = -1;
    let stableSince = Date.now();
    await waitFor(async () => {
      const n = await waiters();
      if (n !== background) [background, stableSince] = [n, Date.now()];
      return n > 0 && Date.now() - stableSince >= 2000 ? true : undefined;
    }, 30_000, "the gateway's background grant reads queued on the lock");
    await connect();
    await waitFor(async () => (await waiters()) > background, 30_000, 'an admission waiting on the locked grants table');
    leave();
    await waitFor(() => !gatewayHolds(gatewayPort), 30_000, 'the gateway closing the connection of the client that left');
  } finally {
    await holder.query('COMMIT');
    await holder.end();
  }
}

/** The record of the one admission to `target`: auth.success, then a session opened and ended at once. */
async function expectSessionEndedAtOnce(tg: { events: AuditEvent[]; waitForEvent(p: (e: AuditEvent) => boolean, ms?: number): Promise<AuditEvent> }, target: string): Promise<AuditEvent> {
  const ok = await tg.waitForEvent((e) => e.type === 'auth.success' && e.target.name === target, 15_000);
  const end = await tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === ok.session_id, 15_000);
  expect(end.details).toMatchObject({ reason: 'client_closed', target_reached: false });
  expect(ofSession(tg.events, ok.session_id!).filter((t) => t.startsWith('auth.') || t.startsWith('session.'))).toEqual(['auth.success', 'session.start', 'session.end']);
  return end;
}

describe('postgres: a client that leaves while it is being admitted', () => {
  const SCHEMA = 'left_pg';
  let w: PgWorld;
  beforeAll(async () => {
    w = await startPgWorld(storeConfig(SCHEMA));
  }, 180_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('auth.success is followed by session.start and session.end (client_closed, target not reached)', async () => {
    let sock: tls.TLSSocket | undefined;
    await leaveDuringAdmission(
      SCHEMA,
      w.port,
      async () => {
        const raw = net.connect({ host: '127.0.0.1', port: w.port });
        raw.on('error', () => {});
        await new Promise((r) => raw.once('connect', r));
        const answered = new Promise<Buffer>((r) => raw.once('data', r));
        raw.write(encodeSslRequest());
        expect((await answered).toString('latin1')).toBe('S');
        sock = tls.connect({ socket: raw, ca: fs.readFileSync(w.alice.ca), cert: fs.readFileSync(w.alice.crt), key: fs.readFileSync(w.alice.key), servername: '127.0.0.1' });
        sock.on('error', () => {});
        await new Promise((r) => sock!.once('secureConnect', r));
        sock.write(encodeStartupMessage([['user', 'alice'], ['database', 'pg-trust/app']]));
      },
      () => sock!.destroy(),
    );
    await expectSessionEndedAtOnce(w.tg, 'pg-trust');
  }, 120_000);
});

describe('mysql: a client that leaves while it is being admitted', () => {
  const SCHEMA = 'left_mysql';
  let w: MyWorld;
  beforeAll(async () => {
    w = await startMyWorld(storeConfig(SCHEMA));
  }, 180_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('auth.success is followed by session.start and session.end (client_closed, target not reached)', async () => {
    let c: mysqlCallbacks.Connection | undefined;
    await leaveDuringAdmission(
      SCHEMA,
      w.port,
      () => {
        c = mysqlCallbacks.createConnection({ host: '127.0.0.1', port: w.port, user: 'db', ssl: { ca: fs.readFileSync(w.alice.ca), cert: fs.readFileSync(w.alice.crt), key: fs.readFileSync(w.alice.key) } });
        c.on('error', () => {});
      },
      () => c!.destroy(),
    );
    await expectSessionEndedAtOnce(w.tg, 'db');
  }, 120_000);
});

describe('ssh: a client that leaves while it is being admitted', () => {
  const SCHEMA = 'left_ssh';
  let w: SshWorld;
  beforeAll(async () => {
    w = await startSshWorld({ config: storeConfig(SCHEMA) });
  }, 180_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('auth.success is followed by session.start and session.end (client_closed, target not reached)', async () => {
    const creds = await w.issue();
    let client: ChildProcess | undefined;
    await leaveDuringAdmission(
      SCHEMA,
      w.port,
      () => {
        client = spawn('ssh', [...w.opts(creds), `${w.sshd.user}@web1@127.0.0.1`, 'true'], { stdio: 'ignore' });
      },
      () => client!.kill('SIGKILL'),
    );
    await expectSessionEndedAtOnce(w.gw, 'web1');
  }, 120_000);
});
