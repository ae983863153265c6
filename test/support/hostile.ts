import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { startTestGateway, type TestGateway, type IssuedFiles } from './gateway.ts';
import { startPostgres, clientEnv, PASSWORDS as PG_PASSWORDS, type PostgresHandle } from './postgres.ts';
import { startMariadb, type MariadbHandle } from './mariadb.ts';
import { startSshd, type SshdHandle } from './sshd.ts';
import { tempDir, secretsDir } from './tmp.ts';
import { publicKeyLine } from '../../proxies/ssh/known-hosts.ts';
import { encodeSslRequest, encodeStartupMessage } from '../../proxies/postgres/frontend.ts';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { buildClientHandshake } from '../../proxies/mysql/handshake.ts';
import { CLIENT } from '../../proxies/mysql/wire.ts';
import { dataPaths } from '../../src/data-dir.ts';
import { fileURLToPath } from 'node:url';

/**
 * One gateway in front of a real PostgreSQL, MariaDB and sshd, with stock-client runners for an engineer
 * (psql, mariadb, ssh), and slowloris clients for every listener and phase (issue #16 item 4). Shared by
 * test/core/slow-clients.test.ts, test/core/hostile-scale.test.ts and bench/hostile.ts.
 */
export interface AllWorld {
  tg: TestGateway;
  pg: PostgresHandle;
  db: MariadbHandle;
  sshd: SshdHandle;
  alice: IssuedFiles;
  ports: Record<string, number>;
  psql(args: string[], opts?: { timeoutMs?: number }): Promise<Run>;
  mariadb(args: string[], opts?: { timeoutMs?: number }): Promise<Run>;
  ssh(command: string, opts?: { timeoutMs?: number }): Promise<Run>;
  /** argv of the stock clients (for clients a test keeps running). */
  psqlArgv(args: string[]): [string, string[], NodeJS.ProcessEnv];
  mariadbArgv(args: string[]): [string, string[]];
  sshArgv(command: string): [string, string[]];
  stop(): Promise<void>;
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv, timeoutMs = 60_000, input = ''): Promise<Run> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
    c.stdin.on('error', () => {});
    c.stdin.end(input);
  });
}

const MY_PASSWORD = 'n@tive-pw';

export async function startAllWorld(config: Record<string, unknown> = {}): Promise<AllWorld> {
  const [pg, db, sshd] = await Promise.all([startPostgres(), startMariadb(), startSshd()]);
  await db.query(`
    CREATE DATABASE shop;
    CREATE USER native_user@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('${MY_PASSWORD}');
    GRANT ALL ON *.* TO native_user@'%';
  `);
  const base = tempDir('vigil-allw-');
  const secretFile = secretsDir(base);
  const tg = await startTestGateway(
    {
      targets: [
        { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'scram_user', password: { file: secretFile('scram', PG_PASSWORDS.scram_user) } },
        { name: 'db', protocol: 'mysql', host: '127.0.0.1', port: db.port, user: 'native_user', password: { file: secretFile('native', MY_PASSWORD) } },
        { name: 'web1', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub },
      ],
      roles: [{ name: 'eng', targets: ['*'], databases: ['*'], logins: ['*'] }],
      ...config,
    },
    base,
  );
  const alice = await tg.issue({ user: 'alice', roles: ['eng'], extensions: ['permit-pty'] });
  const ports = tg.ports;
  const knownHosts = path.join(base, 'known_hosts');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${ports.ssh} ${publicKeyLine(tg.gw.services.identity.sshHostKey())}\n`);
  const pgConn = `host=127.0.0.1 port=${ports.postgres} dbname=pg user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}`;
  const psqlArgv = (args: string[]): [string, string[], NodeJS.ProcessEnv] => ['psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-d', pgConn, ...args], clientEnv()];
  const mariadbArgv = (args: string[]): [string, string[]] => [
    'mariadb',
    ['--no-defaults', '--host=127.0.0.1', `--port=${ports.mysql}`, '--batch', `--ssl-ca=${alice.ca}`, `--ssl-cert=${alice.crt}`, `--ssl-key=${alice.key}`, '--user=db', ...args],
  ];
  const sshArgv = (command: string): [string, string[]] => [
    'ssh',
    [
      '-F', '/dev/null', '-p', String(ports.ssh),
      '-o', `IdentityFile=${alice.sshKey}`, '-o', `CertificateFile=${alice.sshCert}`, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
      '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', '-o', 'ConnectTimeout=30',
      'web1@127.0.0.1', command,
    ],
  ];
  return {
    tg, pg, db, sshd, alice, ports,
    psql: (args, o = {}) => {
      const [cmd, argv, env] = psqlArgv(args);
      return run(cmd, argv, env, o.timeoutMs);
    },
    mariadb: (args, o = {}) => run(...mariadbArgv(args), undefined, o.timeoutMs),
    ssh: (command, o = {}) => run(...sshArgv(command), undefined, o.timeoutMs),
    psqlArgv, mariadbArgv, sshArgv,
    async stop() {
      await tg.stop();
      await Promise.all([pg.stop(), db.stop(), sshd.stop()]);
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
}

/** Size of the audit log on disk (all segments and checkpoints). */
export function auditBytes(tg: TestGateway): number {
  let total = 0;
  const walk = (d: string) => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, ent.name);
      if (ent.isDirectory()) walk(p);
      else total += fs.statSync(p).size;
    }
  };
  walk(dataPaths(tg.dataDir).audit);
  return total;
}

export interface LoadResult {
  started: number;
  cut: number;
  completed: number;
  failed: number;
  /** From a connection's first trickled byte to the gateway's close. */
  cutAfterMs: { p50: number; p99: number; max: number };
  byPhase: Record<string, { cut: number; completed: number; failed: number }>;
  ms: number;
}

/** Run test/support/hostile-load.ts in its own process against `ports` (listener name -> port). */
export function hostileLoad(ports: Record<string, number>, args: string[]): Promise<LoadResult> {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  return new Promise((resolve, reject) => {
    const list = Object.entries(ports).map(([k, v]) => `${k}=${v}`).join(',');
    const c = spawn(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, 'test/support/hostile-load.ts'), '--ports', list, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1)!)) : reject(new Error(`hostile load exited ${code}: ${err}`))));
  });
}

// ---- slowloris clients --------------------------------------------------------------------------

/** Every phase a slowloris client can trickle in, per listener. */
export const PHASES = {
  postgres: ['startup', 'tls_handshake', 'startup_tls', 'password'],
  mysql: ['ssl_request', 'tls_handshake', 'handshake_response'],
  ssh: ['ident', 'kex', 'auth'],
  api: ['tls_handshake', 'headers'],
} as const;
export type Listener = keyof typeof PHASES;

export interface SlowResult {
  /** The gateway closed the connection before the trickled message was complete. */
  cutByGateway: boolean;
  /** Bytes trickled before the close. */
  sent: number;
  /** What the gateway sent before closing (for protocol-native errors). */
  received: Buffer;
  /** From the first trickled byte to the close. */
  ms?: number;
}

let helloCache: Buffer | undefined;
/** A real TLS ClientHello (captured from Node's TLS client), to trickle into a TLS handshake. */
export async function clientHello(): Promise<Buffer> {
  if (helloCache) return helloCache;
  helloCache = await new Promise<Buffer>((resolve) => {
    const srv = net.createServer((s) => {
      s.once('data', (d: Buffer) => {
        resolve(d);
        s.destroy();
        srv.close();
      });
    });
    srv.listen(0, '127.0.0.1', () => {
      const c = tls.connect({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port, servername: 'localhost', rejectUnauthorized: false });
      c.on('error', () => {});
    });
  });
  return helloCache;
}

function connect(port: number, localAddress: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    s.once('connect', () => {
      s.off('error', reject);
      s.on('error', () => {});
      resolve(s);
    });
    s.once('error', reject);
  });
}

function nextData(s: net.Socket | tls.TLSSocket): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const onData = (d: Buffer) => {
      s.off('close', onClose);
      resolve(d);
    };
    const onClose = () => {
      s.off('data', onData);
      resolve(undefined);
    };
    s.once('data', onData);
    s.once('close', onClose);
  });
}

function tlsOver(sock: net.Socket, ca?: Buffer): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const t = tls.connect({ socket: sock, servername: 'localhost', ca, rejectUnauthorized: false });
    t.once('secureConnect', () => resolve(t));
    t.once('error', reject);
  });
}

/**
 * Write `bytes` one byte every `everyMs`, then hold the connection open; resolves once the gateway
 * closes it (`cutByGateway`), or after `holdMs` more without a close (a deadline that never came).
 */
export function trickle(s: net.Socket | tls.TLSSocket, bytes: Buffer, everyMs = 1000, received: Buffer[] = [], holdMs = 30_000): Promise<SlowResult> {
  return new Promise((resolve) => {
    let sent = 0;
    let done = false;
    const t0 = Date.now();
    let giveUp: NodeJS.Timeout | undefined;
    s.on('data', (d: Buffer) => received.push(d));
    const finish = (cut: boolean) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      clearTimeout(giveUp);
      s.destroy();
      resolve({ cutByGateway: cut, sent, received: Buffer.concat(received), ms: Date.now() - t0 });
    };
    const timer = setInterval(() => {
      if (s.destroyed || !s.writable) return finish(true);
      if (sent >= bytes.length) {
        clearInterval(timer);
        giveUp = setTimeout(() => finish(false), holdMs);
        return;
      }
      s.write(bytes.subarray(sent, sent + 1));
      sent++;
    }, everyMs);
    s.once('close', () => finish(true));
    s.once('end', () => finish(true));
  });
}

function mysqlSslRequest(): Buffer {
  const p = Buffer.alloc(32);
  p.writeUInt32LE((CLIENT.LONG_PASSWORD | CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.PLUGIN_AUTH | CLIENT.SSL) >>> 0, 0);
  p.writeUInt32LE(1 << 24, 4);
  p[8] = 45;
  return encodePacket(1, p);
}

function mysqlResponse(): Buffer {
  const caps = (CLIENT.LONG_PASSWORD | CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.PLUGIN_AUTH | CLIENT.SSL) >>> 0;
  return encodePacket(2, buildClientHandshake({ capabilities: caps, maxPacket: 1 << 24, charset: 45, user: 'db', authResponse: Buffer.alloc(0), authPlugin: 'mysql_native_password', attributes: {} }));
}

/**
 * One slowloris client: it does everything before `phase` at full speed, then trickles that phase's
 * message one byte per `everyMs`. Resolves when the gateway closed the connection (or the whole message
 * went through, which a working deadline never allows).
 */
export async function slowloris(listener: Listener, phase: string, port: number, localAddress = '127.0.0.1', everyMs = 1000): Promise<SlowResult> {
  const hello = await clientHello();
  const s = await connect(port, localAddress);
  try {
    return await slowlorisOn(s, listener, phase, port, localAddress, everyMs, hello);
  } catch {
    // Closed by the gateway while the steps before the trickled phase ran (e.g. a TLS handshake slower
    // than the deadline on a loaded machine): still a cut, with nothing trickled.
    s.destroy();
    return { cutByGateway: true, sent: 0, received: Buffer.alloc(0) };
  }
}

async function slowlorisOn(s: net.Socket, listener: Listener, phase: string, port: number, localAddress: string, everyMs: number, hello: Buffer): Promise<SlowResult> {
  const received: Buffer[] = [];
  switch (`${listener}/${phase}`) {
    case 'postgres/startup':
      return trickle(s, encodeSslRequest(), everyMs, received);
    case 'postgres/tls_handshake': {
      s.write(encodeSslRequest());
      if (!(await nextData(s))) return { cutByGateway: true, sent: 0, received: Buffer.alloc(0) };
      return trickle(s, hello, everyMs, received);
    }
    case 'postgres/startup_tls':
    case 'postgres/password': {
      s.write(encodeSslRequest());
      if (!(await nextData(s))) return { cutByGateway: true, sent: 0, received: Buffer.alloc(0) };
      const t = await tlsOver(s);
      const startup = encodeStartupMessage([['user', 'alice'], ['database', 'pg']]);
      if (phase === 'startup_tls') return trickle(t, startup, everyMs, received);
      t.write(startup);
      const prompt = await nextData(t);
      if (!prompt) return { cutByGateway: true, sent: 0, received: Buffer.alloc(0) };
      // A password message of 200 bytes, trickled.
      const body = Buffer.concat([Buffer.alloc(199, 0x61), Buffer.from([0])]);
      const msg = Buffer.alloc(5);
      msg[0] = 0x70;
      msg.writeUInt32BE(4 + body.length, 1);
      return trickle(t, Buffer.concat([msg, body]), everyMs, received);
    }
    case 'mysql/ssl_request': {
      if (!(await nextData(s))) return { cutByGateway: true, sent: 0, received: Buffer.alloc(0) };
      return trickle(s, mysqlSslRequest(), everyMs, received);
    }
    case 'mysql/tls_handshake': {
      if (!(await nextData(s))) return { cutByGateway: true, sent: 0, received: Buffer.alloc(0) };
      s.write(mysqlSslRequest());
      return trickle(s, hello, everyMs, received);
    }
    case 'mysql/handshake_response': {
      if (!(await nextData(s))) return { cutByGateway: true, sent: 0, received: Buffer.alloc(0) };
      s.write(mysqlSslRequest());
      const t = await tlsOver(s);
      return trickle(t, mysqlResponse(), everyMs, received);
    }
    case 'ssh/ident':
      return trickle(s, Buffer.from('SSH-2.0-slowloris_0.1\r\n'), everyMs, received);
    case 'ssh/kex': {
      s.write('SSH-2.0-slowloris_0.1\r\n');
      // A KEXINIT-sized binary packet header and body, trickled.
      const pkt = Buffer.alloc(1024, 0x14);
      pkt.writeUInt32BE(1020, 0);
      pkt[4] = 4;
      return trickle(s, pkt, everyMs, received);
    }
    case 'ssh/auth':
      s.destroy();
      return sshStuckInAuth(port, localAddress);
    case 'api/tls_handshake':
      return trickle(s, hello, everyMs, received);
    case 'api/headers': {
      const t = await tlsOver(s);
      return trickle(t, Buffer.from('GET /healthz HTTP/1.1\r\nHost: vigil\r\nX-Slow: ' + 'a'.repeat(200) + '\r\n\r\n'), everyMs, received);
    }
    default:
      throw new Error(`no slowloris for ${listener}/${phase}`);
  }
}

/** An SSH client that completes the key exchange and then never offers a credential (the auth phase). */
async function sshStuckInAuth(port: number, localAddress: string): Promise<SlowResult> {
  const { default: ssh2 } = await import('ssh2');
  return new Promise((resolve) => {
    const c = new ssh2.Client();
    let handshook = false;
    c.on('handshake', () => (handshook = true));
    c.on('error', () => {});
    c.on('close', () => resolve({ cutByGateway: handshook, sent: 0, received: Buffer.alloc(0) }));
    c.connect({
      host: '127.0.0.1',
      port,
      localAddress,
      username: 'web1',
      readyTimeout: 120_000,
      // Never answers: the client sits in the authentication phase.
      authHandler: () => undefined,
    } as never);
  });
}

/** Per-source budget of the flood worlds (hostile-scale, hostile-1000). */
export const FLOOD_BUDGET = 20;

/**
 * A gateway for hundreds of slow connections: the unauthenticated caps raised so that the phase
 * deadlines, not the caps, are what end them; refusals budgeted per source over an hour.
 */
export function startFloodWorld(): Promise<AllWorld> {
  return startAllWorld({
    gateway: { auth_timeout: '4s', max_unauthenticated: 1100 },
    pre_auth: { handshake_timeout: '2s', max_per_source: 1100 },
    budgets: { refusals_per_window: FLOOD_BUDGET, window: '1h' },
  });
}
