import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeSslRequest } from '../../proxies/postgres/frontend.ts';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { buildSslRequest } from '../../proxies/mysql/handshake.ts';
import { CLIENT } from '../../proxies/mysql/wire.ts';
import { RAW_CAPS } from '../mysql/raw-client.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { startWorld as startPgWorld, type PgWorld } from '../postgres/helpers.ts';
import { startWorld as startMyWorld, type MyWorld } from '../mysql/helpers.ts';
import { startWorld as startSshWorld, type SshWorld } from '../ssh/harness.ts';

/**
 * Refusals made before authentication for what the client asked (not for a bad credential) are on record
 * as `auth.failure` with a stable reason, the client's address and what it asked, within the per-source
 * refusal budget: a replication startup (Postgres), an unauthenticated allowance that is full (all three
 * listeners), bytes smuggled after a Postgres SSLRequest, an SSH password or keyboard-interactive attempt.
 */

const PER_SOURCE = 2;
/** gateway.max_unauthenticated: one more than one source may hold. */
const MAX_UNAUTHENTICATED = 3;

const refusal = (reason: string, ip: string) => (e: AuditEvent) => e.type === 'auth.failure' && e.details.reason === reason && e.source.ip === ip;

/** Connect from `localAddress`; resolves once connected (and, with `greeting`, once the server spoke first). */
async function connectFrom(port: number, localAddress: string, greeting = false): Promise<net.Socket> {
  const s = net.connect({ host: '127.0.0.1', port, localAddress });
  s.on('error', () => {});
  await new Promise((r) => s.once(greeting ? 'data' : 'connect', r));
  return s;
}

/** Hold `n` unauthenticated connections from `ip`, each seen by the gateway (the server's greeting came, or a PG SSLRequest was answered). */
async function holdSlots(port: number, ip: string, n: number, kind: 'greets' | 'postgres'): Promise<net.Socket[]> {
  const held: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    if (kind === 'greets') held.push(await connectFrom(port, ip, true));
    else {
      const s = await connectFrom(port, ip);
      const answered = new Promise((r) => s.once('data', r));
      s.write(encodeSslRequest());
      await answered; // 'S': the connection is counted
      held.push(s);
    }
  }
  return held;
}

/** End held connections and wait for the gateway's close of each (it releases the slot before closing). */
async function release(held: net.Socket[]): Promise<void> {
  await Promise.all(
    held.map((s) => {
      const closed = new Promise((r) => (s.closed ? r(undefined) : s.once('close', r)));
      s.resume();
      s.end();
      return closed;
    }),
  );
}

/** Run a stock client to its end (stdin closed, output collected). */
function runClient(cmd: string, args: string[], timeoutMs = 30_000): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    c.stdout.resume();
    c.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`${cmd} timed out; stderr: ${stderr}`));
    }, timeoutMs);
    c.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stderr });
    });
  });
}

describe('postgres: pre-authentication refusals are recorded', () => {
  let w: PgWorld;
  beforeAll(async () => {
    w = await startPgWorld({ pre_auth: { max_per_source: PER_SOURCE }, gateway: { max_unauthenticated: MAX_UNAUTHENTICATED } });
    w.pg.psql('ALTER ROLE trust_user REPLICATION');
  }, 120_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('the source and listener allowances full: psql gets FATAL 53300 and auth.failure reason too_many_unauthenticated names the limit', async () => {
    // A plaintext startup (pg-dev allows it): libpq shows the FATAL as sent. (After an SSLRequest it shows
    // no server text at all: libpq ignores errors sent before TLS, CVE-2024-10977.)
    const plainPsql = () => w.psql(['-qAt', '-c', 'SELECT 1'], { conn: `host=127.0.0.1 port=${w.port} dbname=pg-dev user=alice sslmode=disable` });
    const held = await holdSlots(w.port, '127.0.0.1', PER_SOURCE, 'postgres');
    try {
      const bySource = await plainPsql();
      expect(bySource.code).not.toBe(0);
      expect(bySource.stderr).toMatch(/FATAL: {2}too many connections from your address are authenticating/);
      const sourceEv = await w.tg.waitForEvent((e) => refusal('too_many_unauthenticated', '127.0.0.1')(e) && e.details.limit === 'pre_auth.max_per_source', 15_000);
      expect(sourceEv.target).toMatchObject({ protocol: 'postgres' });
      expect(sourceEv.details).toMatchObject({ phase: 'accept' });

      held.push(...(await holdSlots(w.port, '127.0.8.1', MAX_UNAUTHENTICATED - PER_SOURCE, 'postgres')));
      const byListener = await plainPsql();
      expect(byListener.stderr).toMatch(/FATAL: {2}too many connections are authenticating/);
      const listenerEv = await w.tg.waitForEvent((e) => refusal('too_many_unauthenticated', '127.0.0.1')(e) && e.details.limit === 'gateway.max_unauthenticated', 15_000);
      expect(listenerEv.details).toMatchObject({ phase: 'accept' });
    } finally {
      await release(held);
    }
  }, 60_000);

  it('a replication startup: refused with FATAL 28000 and auth.failure reason replication_refused, naming the target and database asked', async () => {
    const r = await w.psql(['-qAt', '-c', 'IDENTIFY_SYSTEM'], { conn: w.conn('pg-trust/app', 'replication=database') });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/replication connections are not allowed through vigil/);
    const ev = await w.tg.waitForEvent(refusal('replication_refused', '127.0.0.1'), 15_000);
    expect(ev.outcome).toBe('failure');
    expect(ev.actor.user).toBe('unknown');
    expect(ev.target).toMatchObject({ name: 'pg-trust', protocol: 'postgres', database: 'app' });
    expect(ev.details).toMatchObject({ phase: 'startup', replication: 'database', user: 'alice', tls: true });
    // Nothing of the client's key or certificate is in the record.
    expect(JSON.stringify(ev)).not.toMatch(/BEGIN|PRIVATE/);
  }, 60_000);

  it('bytes pipelined after SSLRequest (CVE-2021-23214): closed, and auth.failure reason protocol_error, phase ssl_request', async () => {
    const ip = '127.0.8.2';
    const s = await connectFrom(w.port, ip);
    s.resume();
    s.write(Buffer.concat([encodeSslRequest(), Buffer.from([0x51, 0, 0, 0, 13]), Buffer.from('SELECT 1;\0')]));
    await new Promise((r) => s.once('close', r));
    const ev = await w.tg.waitForEvent(refusal('protocol_error', ip), 15_000);
    expect(ev.details).toMatchObject({ phase: 'ssl_request' });
    expect(String(ev.details.error)).toMatch(/after SSLRequest/);
  }, 60_000);

  it('plaintext after the server accepted TLS: closed, and auth.failure reason protocol_error, phase tls_handshake; a client that leaves mid-TLS is not recorded', async () => {
    const ip = '127.0.8.6';
    const s = await connectFrom(w.port, ip);
    const answered = new Promise<Buffer>((r) => s.once('data', r));
    s.write(encodeSslRequest());
    expect((await answered).toString('latin1')).toBe('S');
    s.resume();
    s.write(Buffer.from([0x51, 0, 0, 0, 13, ...Buffer.from('SELECT 1;\0')]));
    await new Promise((r) => s.once('close', r));
    const ev = await w.tg.waitForEvent(refusal('protocol_error', ip), 15_000);
    expect(ev.details).toMatchObject({ phase: 'tls_handshake' });
    expect(String(ev.details.error)).toMatch(/TLS handshake failed/);

    const gone = await connectFrom(w.port, '127.0.8.7');
    const answeredToo = new Promise((r) => gone.once('data', r));
    gone.write(encodeSslRequest());
    await answeredToo;
    gone.resetAndDestroy();
    // A later refusal from a third address is recorded: by then the one that left would have been too.
    const later = await connectFrom(w.port, '127.0.8.8');
    later.resume();
    later.write(Buffer.concat([encodeSslRequest(), Buffer.from('x')]));
    await w.tg.waitForEvent(refusal('protocol_error', '127.0.8.8'), 15_000);
    expect(w.tg.events.filter((e) => e.type === 'auth.failure' && e.source.ip === '127.0.8.7')).toEqual([]);
  }, 60_000);
});

describe('mysql: pre-authentication refusals are recorded', () => {
  let w: MyWorld;
  beforeAll(async () => {
    w = await startMyWorld({ pre_auth: { max_per_source: PER_SOURCE }, gateway: { max_unauthenticated: MAX_UNAUTHENTICATED } });
  }, 120_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('the source and listener allowances full: the stock client gets ERR 1040 and auth.failure reason too_many_unauthenticated names the limit', async () => {
    const held = await holdSlots(w.port, '127.0.0.1', PER_SOURCE, 'greets');
    try {
      const bySource = await w.cli(['-e', 'SELECT 1']);
      expect(bySource.code).not.toBe(0);
      expect(bySource.stderr).toMatch(/1040.*Too many connections from your address waiting to authenticate/);
      const sourceEv = await w.tg.waitForEvent((e) => refusal('too_many_unauthenticated', '127.0.0.1')(e) && e.details.limit === 'pre_auth.max_per_source', 15_000);
      expect(sourceEv.target).toMatchObject({ protocol: 'mysql' });
      expect(sourceEv.details).toMatchObject({ phase: 'accept' });

      held.push(...(await holdSlots(w.port, '127.0.8.1', MAX_UNAUTHENTICATED - PER_SOURCE, 'greets')));
      const byListener = await w.cli(['-e', 'SELECT 1']);
      expect(byListener.stderr).toMatch(/1040.*Too many connections waiting to authenticate/);
      await w.tg.waitForEvent((e) => refusal('too_many_unauthenticated', '127.0.0.1')(e) && e.details.limit === 'gateway.max_unauthenticated', 15_000);
    } finally {
      await release(held);
    }
  }, 60_000);

  it('plaintext smuggled after the SSLRequest: the TLS handshake fails, and auth.failure reason protocol_error, phase tls_handshake', async () => {
    const ip = '127.0.8.9';
    const s = await connectFrom(w.port, ip, true); // the greeting
    s.resume();
    // SSLRequest, then a COM_QUERY in clear where the ClientHello belongs.
    s.write(Buffer.concat([encodePacket(1, buildSslRequest(RAW_CAPS | CLIENT.SSL, 1 << 24, 45)), encodePacket(0, Buffer.from('\x03SELECT 1'))]));
    await new Promise((r) => s.once('close', r));
    const ev = await w.tg.waitForEvent(refusal('protocol_error', ip), 15_000);
    expect(ev.target).toMatchObject({ protocol: 'mysql' });
    expect(ev.details).toMatchObject({ phase: 'tls_handshake' });
    expect(String(ev.details.error)).toMatch(/TLS handshake failed/);
  }, 60_000);
});

describe('ssh: pre-authentication refusals are recorded', () => {
  let w: SshWorld;
  let knownHosts: string;
  beforeAll(async () => {
    w = await startSshWorld({ config: { pre_auth: { max_per_source: PER_SOURCE }, gateway: { connect_timeout: '3s', auth_timeout: '5s', max_unauthenticated: MAX_UNAUTHENTICATED } } });
    knownHosts = path.join(w.gw.dataDir, '..', 'known_hosts');
  }, 120_000);
  afterAll(async () => {
    await w?.stop();
  });

  const sshArgs = (extra: string[]) => [
    '-F', '/dev/null', '-p', String(w.port),
    '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes',
    '-o', 'ConnectTimeout=10', ...extra,
  ];

  it('the source and listener allowances full: the client is dropped before the greeting and auth.failure reason too_many_unauthenticated names the limit', async () => {
    const ssh = (ip: string) => runClient('ssh', sshArgs(['-o', 'BatchMode=yes', '-b', ip, `${w.sshd.user}@web1@127.0.0.1`, 'true']));
    const held = await holdSlots(w.port, '127.0.8.3', PER_SOURCE, 'greets');
    try {
      const bySource = await ssh('127.0.8.3');
      expect(bySource.code).not.toBe(0);
      expect(bySource.stderr).toMatch(/Connection (closed|reset)/);
      const sourceEv = await w.gw.waitForEvent((e) => refusal('too_many_unauthenticated', '127.0.8.3')(e) && e.details.limit === 'pre_auth.max_per_source', 15_000);
      expect(sourceEv.target).toMatchObject({ protocol: 'ssh' });
      expect(sourceEv.details).toMatchObject({ phase: 'accept' });

      held.push(...(await holdSlots(w.port, '127.0.8.4', MAX_UNAUTHENTICATED - PER_SOURCE, 'greets')));
      const byListener = await ssh('127.0.8.5');
      expect(byListener.code).not.toBe(0);
      await w.gw.waitForEvent((e) => refusal('too_many_unauthenticated', '127.0.8.5')(e) && e.details.limit === 'gateway.max_unauthenticated', 15_000);
    } finally {
      await release(held);
    }
  }, 60_000);

  it('password and keyboard-interactive attempts: refused, each an auth.failure reason method_not_allowed with the target asked, never the password', async () => {
    // OpenSSH never offers a method the server does not list (publickey only); a password guesser does:
    // ssh2's client is told to try both regardless.
    const password = 'hunter2-never-recorded';
    const tries: (ssh2.PasswordAuthMethod | ssh2.KeyboardInteractiveAuthMethod)[] = [
      { type: 'password', username: `${w.sshd.user}@web1`, password },
      { type: 'keyboard-interactive', username: `${w.sshd.user}@web1`, prompt: (_n, _i, _l, _p, finish) => finish([password]) },
    ];
    const refused = await new Promise<Error>((resolve) => {
      const c = new ssh2.Client();
      c.on('error', (e) => resolve(e));
      c.on('ready', () => resolve(new Error('authenticated')));
      c.connect({ host: '127.0.0.1', port: w.port, username: `${w.sshd.user}@web1`, hostVerifier: () => true, authHandler: (_left, _partial, next) => next((tries.shift() ?? false) as ssh2.AnyAuthMethod) }); // false: no more (ssh2, not in its types)
    });
    expect(refused.message).toMatch(/All configured authentication methods failed/);
    for (const method of ['password', 'keyboard-interactive']) {
      const ev = await w.gw.waitForEvent((e) => refusal('method_not_allowed', '127.0.0.1')(e) && e.details.method === method, 15_000);
      expect(ev.actor.user).toBe('unknown');
      expect(ev.target).toMatchObject({ name: 'web1', protocol: 'ssh', login: w.sshd.user });
      expect(ev.details).toMatchObject({ phase: 'auth', user: `${w.sshd.user}@web1`, allowed: ['publickey'] });
    }
    expect(JSON.stringify(w.gw.events)).not.toContain(password);
  }, 60_000);
});
