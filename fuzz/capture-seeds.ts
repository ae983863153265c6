/**
 * Regenerates the seed corpora (fuzz/corpus/<target>/seed-*) from real traffic of stock clients:
 * psql and pgbench against PostgreSQL 15 and the mariadb client against MariaDB, each through a
 * recording TCP relay (plaintext, so the relay sees the wire protocol); sftp against OpenSSH's
 * sftp-server and scp -O in both directions through a recording pipe (capture-pipe.mjs); an
 * interactive bash under `script` for the terminal; a real audit log, config, certificates and keys
 * for the file formats. Seeds are cut to each target's input size.
 *
 *   npx tsx fuzz/capture-seeds.ts [target...]
 */
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startPostgres, clientEnv } from '../test/support/postgres.ts';
import { startMariadb } from '../test/support/mariadb.ts';
import { MessageFramer } from '../proxies/postgres/framing.ts';
import { PacketFramer } from '../proxies/mysql/framing.ts';
import { parseClientHandshake, parseGreeting } from '../proxies/mysql/handshake.ts';
import { encodeSession, parseSession, type SessionChunk } from './engine/session.ts';
import { fixtureAuditKey, FIXTURES } from './engine/scratch.ts';
import { openAuditLog } from '../recorder/audit/index.ts';
import { createEvent } from '../src/events/envelope.ts';
import { silentLogger } from '../src/log.ts';
import { createCaCertificate, createClientCertificate, loadCa } from '../src/identity/x509.ts';
import { TARGETS } from './targets/index.ts';

/** Runs a client without blocking this process: the capture relay lives in the same event loop. */
function client(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<void> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { env: opts.env, timeout: 60_000 }, () => resolve());
    child.stdin?.end(opts.input ?? '');
  });
}

const here = path.dirname(fileURLToPath(import.meta.url));
const corpus = (t: string): string => path.join(here, 'corpus', t);
const only = process.argv.slice(2);
const want = (t: string): boolean => only.length === 0 || only.includes(t);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-capture-'));

/** Writes one seed; seeds are named by content so reruns do not duplicate them. */
function seed(target: string, data: Buffer, maxLen = 8192): void {
  if (!(target in TARGETS)) throw new Error(`no target ${target}`);
  const d = data.subarray(0, maxLen);
  fs.mkdirSync(corpus(target), { recursive: true });
  fs.writeFileSync(path.join(corpus(target), `seed-${crypto.createHash('sha1').update(d).digest('hex').slice(0, 16)}`), d);
}

/** A TCP relay that keeps every chunk of both directions, in order. */
async function captureRelay(backendPort: number): Promise<{ port: number; sessions: SessionChunk[][]; close(): void }> {
  const sessions: SessionChunk[][] = [];
  const server = net.createServer((client) => {
    const chunks: SessionChunk[] = [];
    sessions.push(chunks);
    const backend = net.connect(backendPort, '127.0.0.1');
    client.on('data', (d) => {
      chunks.push({ dir: 0, bytes: Buffer.from(d) });
      backend.write(d);
    });
    backend.on('data', (d) => {
      chunks.push({ dir: 1, bytes: Buffer.from(d) });
      client.write(d);
    });
    client.on('close', () => backend.destroy());
    backend.on('close', () => client.destroy());
    client.on('error', () => backend.destroy());
    backend.on('error', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, sessions, close: () => server.close() };
}

const stream = (s: SessionChunk[], dir: number): Buffer => Buffer.concat(s.filter((c) => c.dir === dir).map((c) => c.bytes));

/** Consecutive windows of a session's chunks, each encoding to at most `max` bytes. */
function windows(s: SessionChunk[], max: number): Buffer[] {
  const out: Buffer[] = [];
  let cur: SessionChunk[] = [];
  let size = 0;
  for (const c of s) {
    const b = c.bytes.subarray(0, max - 3);
    if (size + 3 + b.length > max && cur.length > 0) {
      out.push(encodeSession(cur));
      cur = [];
      size = 0;
    }
    cur.push({ dir: c.dir, bytes: b });
    size += 3 + b.length;
  }
  if (cur.length) out.push(encodeSession(cur));
  return out;
}

async function postgres(): Promise<void> {
  const pg = await startPostgres();
  const relay = await captureRelay(pg.port);
  try {
    pg.psql("CREATE TABLE fuzz_t (id int primary key, name text, secret_password text); INSERT INTO fuzz_t VALUES (1, 'a', 'x'), (2, 'b', 'y');");
    const env = clientEnv({ PGHOST: '127.0.0.1', PGPORT: String(relay.port), PGUSER: pg.superuser, PGDATABASE: 'app', PGSSLMODE: 'disable', PGGSSENCMODE: 'disable' });
    const psql = (sql: string): Promise<void> => client('psql', ['-X', '-v', 'ON_ERROR_STOP=0', '-c', sql], { env });
    await psql("SELECT * FROM fuzz_t WHERE name = 'a'; SELECT 1/0; SET standard_conforming_strings = off; SELECT 'it''s', E'\\\\x', $$dollar$$");
    await psql("BEGIN; UPDATE fuzz_t SET secret_password = 'hunter2' WHERE id = 1; ROLLBACK; ALTER ROLE " + pg.superuser + " PASSWORD NULL");
    await psql('COPY fuzz_t TO STDOUT');
    await client('psql', ['-X', '-c', 'COPY fuzz_t FROM STDIN'], { env, input: '3\tc\tz\n4\td\tw\n\\.\n' });
    await psql('SELECT n, repeat(\'x\', n) FROM generate_series(1, 40) n');
    await psql('CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $f$ SELECT 1; $f$; SELECT f(); DROP FUNCTION f()');
    const script = path.join(work, 'bench.sql');
    fs.writeFileSync(script, '\\set id random(1, 2)\nSELECT name FROM fuzz_t WHERE id = :id;\nUPDATE fuzz_t SET name = name WHERE id = :id;\n');
    for (const mode of ['simple', 'extended', 'prepared']) await client('pgbench', ['-n', '-t', '3', '-M', mode, '-f', script, 'app'], { env });
  } finally {
    relay.close();
    await pg.stop();
  }
  for (const s of relay.sessions) {
    if (s.length < 2) continue;
    // The first client chunk is the startup packet (untyped); the rest is typed.
    const startup = s.find((c) => c.dir === 0)!.bytes;
    const after = s.slice(s.indexOf(s.find((c) => c.dir === 0)!) + 1);
    seed('pg-framing', Buffer.concat([Buffer.from([1]), startup]), 2048);
    seed('pg-framing', Buffer.concat([Buffer.from([0]), stream(after, 0)]), 2048);
    seed('pg-framing', Buffer.concat([Buffer.from([0]), stream(s, 1)]), 2048);
    seed('pg-frontend', startup, 2048);
    for (const w of windows(s.filter((c) => c !== s.find((x) => x.dir === 0)), 8192).slice(0, 3)) seed('pg-tracker', w);
    const perType = new Map<string, number>();
    const cut = (dir: number, data: Buffer, onMsg: (type: number, m: Buffer) => void): void => {
      try {
        new MessageFramer({ maxLength: 1 << 24 }).push(data, (t, m) => onMsg(t, m!));
      } catch {
        /* a capture cut mid-message */
      }
    };
    cut(0, stream(after, 0), (t, m) => {
      const k = `f${t}`;
      if ((perType.get(k) ?? 0) >= 3) return;
      perType.set(k, (perType.get(k) ?? 0) + 1);
      seed('pg-frontend', m, 2048);
      if (t === 0x51 || t === 0x50) seed('pg-sql', t === 0x51 ? m.subarray(5, m.length - 1) : m.subarray(5), 2048);
    });
    cut(1, stream(s, 1), (t, m) => {
      const k = `b${t}`;
      if ((perType.get(k) ?? 0) >= 3) return;
      perType.set(k, (perType.get(k) ?? 0) + 1);
      seed('pg-backend', Buffer.concat([m.subarray(0, 1), m.subarray(5)]), 2048);
    });
  }
}

const SHAPE_OF: Record<number, number> = { 0x03: 0, 0x16: 3, 0x17: 0, 0x1c: 2, 0x04: 4, 0x09: 5 };

async function mysql(): Promise<void> {
  const db = await startMariadb();
  const relay = await captureRelay(db.port);
  try {
    await db.query("CREATE USER fuzz@'%' IDENTIFIED BY 'fuzz-pass'; GRANT ALL ON *.* TO fuzz@'%'; CREATE DATABASE app; CREATE TABLE app.t (id int primary key, name varchar(20), secret_password varchar(20), b blob, d datetime);");
    const cli = (sql: string): Promise<void> => client('mariadb', ['--no-defaults', '--ssl=0', '-h', '127.0.0.1', '-P', String(relay.port), '-u', 'fuzz', '-pfuzz-pass', 'app', '-e', sql]);
    await cli("INSERT INTO t VALUES (1, 'a', 'x', 0x00ff, '2024-01-02 03:04:05'), (2, NULL, 'y', NULL, NULL); SELECT * FROM t; SELECT 1/0, 'it''s', \"dq\"");
    await cli("SET PASSWORD FOR fuzz@'%' = PASSWORD('fuzz-pass'); SELECT * FROM nonexistent; USE app; SHOW TABLES");
    await cli("PREPARE s FROM 'SELECT * FROM t WHERE id = ?'; SET @a = 1; EXECUTE s USING @a; DEALLOCATE PREPARE s");
    await cli("CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END; CALL p(); DROP PROCEDURE p");
    await cli('SELECT n FROM (SELECT 1 n UNION SELECT 2 UNION SELECT 3) x /*!50700 WHERE n > 0 */; KILL QUERY 999999');
    // Binary protocol: mysql2's prepared statements (COM_STMT_PREPARE/EXECUTE, binary rows).
    const mysql2 = await import('mysql2/promise');
    const conn = await mysql2.createConnection({ host: '127.0.0.1', port: relay.port, user: 'fuzz', password: 'fuzz-pass', database: 'app' });
    await conn.execute('SELECT * FROM t WHERE id > ? AND name <> ?', [0, 'zz']);
    await conn.execute('INSERT INTO t (id, name, b, d) VALUES (?, ?, ?, ?)', [3, 'c', Buffer.from([1, 2, 3]), new Date(0)]);
    await conn.query('SELECT ?, ? AS x', [1, 'two']);
    await conn.end();
  } finally {
    relay.close();
    await db.stop();
  }
  for (const s of relay.sessions) {
    const packets: { dir: number; seq: number; payload: Buffer }[] = [];
    const framers = [new PacketFramer(1 << 24), new PacketFramer(1 << 24)];
    for (const c of s) framers[c.dir].push(c.bytes, (p) => packets.push({ dir: c.dir, seq: p.seq, payload: Buffer.from(p.payload) }));
    seed('mysql-framing', Buffer.concat([Buffer.from([0xff]), stream(s, 0)]), 4096);
    seed('mysql-framing', Buffer.concat([Buffer.from([0x01]), stream(s, 1)]), 4096);
    let caps = 0;
    let greetingCaps = 0;
    let commandPhase = false;
    const respSession: SessionChunk[] = [];
    const perCmd = new Map<number, number>();
    for (const p of packets) {
      if (!commandPhase) {
        if (p.dir === 1 && p.seq === 0) {
          seed('mysql-handshake', Buffer.concat([Buffer.from([0]), p.payload]), 2048);
          greetingCaps = parseGreeting(p.payload).capabilities;
        } else if (p.dir === 0 && p.seq === 1) {
          seed('mysql-handshake', Buffer.concat([Buffer.from([1]), p.payload]), 2048);
          caps = parseClientHandshake(p.payload).capabilities & greetingCaps;
        } else if (p.dir === 1 && p.payload[0] === 0xfe) seed('mysql-handshake', Buffer.concat([Buffer.from([5]), p.payload]), 2048);
        else if (p.dir === 1 && p.payload[0] === 0x00) {
          seed('mysql-handshake', Buffer.concat([Buffer.from([2]), p.payload]), 2048);
          commandPhase = true;
        }
        continue;
      }
      if (p.dir === 0) {
        const cmd = p.payload[0];
        if ((perCmd.get(cmd) ?? 0) < 4) {
          perCmd.set(cmd, (perCmd.get(cmd) ?? 0) + 1);
          const capsIdx = caps & (1 << 27) ? 1 : 0;
          seed('mysql-commands', Buffer.concat([Buffer.from([capsIdx, 4]), p.payload]), 2048);
          if (cmd === 0x03) seed('mysql-sql', p.payload.subarray(1), 2048);
        }
        const shape = SHAPE_OF[cmd] ?? 0;
        respSession.push({ dir: 0, bytes: Buffer.from([shape | (respSession.length === 0 && caps & (1 << 24) ? 0x80 : 0)]) });
      } else {
        if (p.payload[0] === 0xff) seed('mysql-handshake', Buffer.concat([Buffer.from([3]), p.payload]), 2048);
        const h = Buffer.alloc(4);
        h.writeUIntLE(p.payload.length, 0, 3);
        h[3] = p.seq;
        respSession.push({ dir: 1, bytes: Buffer.concat([h, p.payload]) });
      }
    }
    for (const w of windows(respSession, 8192).slice(0, 3)) seed('mysql-response', w);
  }
}

function sftpAndScp(): void {
  const dir = path.join(work, 'files');
  fs.mkdirSync(path.join(dir, 'tree', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'a.txt'), 'hello\n');
  fs.writeFileSync(path.join(dir, 'tree', 'sub', 'bin'), crypto.randomBytes(3000));
  fs.writeFileSync(path.join(dir, 'tree', 'x.txt'), 'x\n');
  const pipe = path.join(here, 'capture-pipe.mjs');
  const batch = path.join(work, 'batch');
  fs.writeFileSync(batch, ['put a.txt b.txt', 'ls -l', 'mkdir d', 'rename b.txt d/c.txt', 'get d/c.txt e.txt', 'symlink d/c.txt l', 'ln d/c.txt h', 'chmod 600 d/c.txt', 'df', 'rm h', 'rm d/c.txt', 'rmdir d', 'rm l', '-get nonexistent', 'put -r tree', 'ls tree/sub', 'get -r tree tree2'].join('\n') + '\n');
  const out = path.join(work, 'sftp.session');
  try {
    execFileSync('sftp', ['-b', batch, '-D', `${process.execPath} ${pipe} ${out} -- /usr/lib/openssh/sftp-server`], { cwd: dir, stdio: 'ignore' });
  } catch {
    /* a refused operation ends the batch with status 1; the session so far is captured */
  }
  const s = parseSession(fs.readFileSync(out));
  seed('sftp', Buffer.concat([Buffer.from([0]), stream(s, 0)]), 4096);
  seed('sftp', Buffer.concat([Buffer.from([1]), stream(s, 1)]), 4096);
  for (const w of windows(s, 8192).slice(0, 4)) seed('sftp-observer', w);

  const wrapper = path.join(work, 'scp-ssh');
  let n = 0;
  const scp = (...args: string[]): void => {
    const file = path.join(work, `scp-${n++}.session`);
    fs.writeFileSync(wrapper, `#!/bin/sh\nexec ${process.execPath} ${pipe} ${file} --scp -- "$@"\n`, { mode: 0o700 });
    try {
      execFileSync('scp', ['-O', '-S', wrapper, ...args], { cwd: dir, stdio: 'ignore' });
    } catch {
      /* the failing transfer is a seed too */
    }
    const data = fs.readFileSync(file);
    seed('scp', data);
  };
  scp('a.txt', `localhost:${dir}/up.txt`);
  scp('-p', '-r', 'tree', `localhost:${dir}/tree-up`);
  scp(`localhost:${dir}/a.txt`, path.join(dir, 'down.txt'));
  scp('-r', `localhost:${dir}/tree`, path.join(dir, 'tree-down'));
  scp(`localhost:${dir}/nonexistent`, path.join(dir, 'nothing'));
}

async function terminal(): Promise<void> {
  const chunks: SessionChunk[] = [];
  const child = spawn('script', ['-qfc', 'bash --norc --noprofile -i', '/dev/null'], { env: { PATH: process.env.PATH, TERM: 'xterm', PS1: 'user@host:\\w$ ', HOME: work }, cwd: work, stdio: ['pipe', 'pipe', 'ignore'] });
  const exited = new Promise((r) => child.once('exit', r));
  child.stdout.on('data', (d: Buffer) => chunks.push({ dir: 1, bytes: Buffer.from(d) }));
  const type = async (s: string): Promise<void> => {
    for (const ch of s) {
      chunks.push({ dir: 0, bytes: Buffer.from(ch) });
      child.stdin.write(ch);
      await new Promise((r) => setTimeout(r, 15));
    }
    await new Promise((r) => setTimeout(r, 300));
  };
  await new Promise((r) => setTimeout(r, 800));
  await type('echo hello\r');
  await type('ls -la /\r');
  await type('printf "\\033[31mred\\033[0m \\xe2\\x82\\xac\\n"\r');
  await type('cat <<EOF\rline one\rEOF\r');
  await type('echo typo\x7f\x7fpo fixed\r');
  await type('echo a \\\rcontinued\r');
  await type('exit\r');
  await exited;
  for (const w of windows(chunks, 4096).slice(0, 4)) seed('terminal', w, 4096);
  // The same session as the asciicast writer sees it: output 0, input 1.
  const cast = chunks.map((c) => ({ dir: c.dir === 1 ? 0 : 1, bytes: c.bytes }));
  for (const w of windows(cast, 8192).slice(0, 3)) seed('asciicast', w);
  seed('asciicast', encodeSession([{ dir: 0, bytes: Buffer.from([0xe2, 0x82]) }, { dir: 0, bytes: Buffer.concat([Buffer.from([0xac]), Buffer.alloc(100), Buffer.from('ok')]) }, { dir: 2, bytes: Buffer.from([100, 30]) }]));
}

async function audit(): Promise<void> {
  const dir = path.join(work, 'audit');
  const keyFile = path.join(work, 'audit.key');
  fs.writeFileSync(keyFile, fixtureAuditKey().privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const w = await openAuditLog(dir, { signingKeyFile: keyFile, segmentMaxBytes: 1 << 20, checkpointIntervalMs: 60_000, checkpointEvery: 3, log: silentLogger() });
  const base = { actor: { user: 'alice', roles: ['dba'] }, source: { ip: '10.0.0.7', port: 50000 }, target: { name: 'orders-db', protocol: 'postgres' as const }, session_id: 'sess-1' };
  const events = [
    createEvent({ ...base, type: 'session.start', outcome: 'success' }),
    createEvent({ ...base, type: 'db.query', outcome: 'success', details: { statement: "SELECT * FROM orders WHERE note = '\u2028'", rows: 3 } }),
    createEvent({ ...base, type: 'db.query', outcome: 'failure', details: { statement: 'SELECT 1/0', sqlstate: '22012' } }),
    createEvent({ ...base, type: 'session.end', outcome: 'success' }),
  ];
  for (const e of events) await w.append(e);
  await w.close();
  const seg = fs.readdirSync(dir).find((n) => n.startsWith('seg-'))!;
  const data = fs.readFileSync(path.join(dir, seg));
  fs.mkdirSync(fileURLToPath(FIXTURES), { recursive: true });
  fs.writeFileSync(fileURLToPath(new URL('audit-segment.jsonl', FIXTURES)), data);
  seed('audit', data, 16384);
  seed('audit', data.subarray(0, data.lastIndexOf('\n', data.length - 2) + 1), 16384);
}

function files(): void {
  const example = fs.readFileSync(path.join(here, '..', 'config', 'vigil.example.yaml'));
  seed('config', example);
  seed('config', Buffer.from('listen:\n  api: 127.0.0.1:0\ntargets:\n  - name: db\n    protocol: postgres\n    host: 127.0.0.1\n    port: 5432\n'));
  seed('api-body', Buffer.from('\n/v1/access/requests\n{"user":"alice","role":"dba","targets":["orders-db"],"reason":"incident 42","ttl":"1h"}'));
  seed('api-body', Buffer.from('\x01/v1/access/requests/01J0/approve\n{"comment":"ok"}'));
  seed('api-body', Buffer.from('\x01/v1/certificates\n{"ssh_public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl","ttl":"8h"}'));
  seed('token', Buffer.from('{"v":1,"sub":"alice","roles":["dba"],"serial":"0a1b","nbf":1700000000,"exp":1700003600,"grant":"g1"}'));
  const ca = createCaCertificate('01');
  const caMat = loadCa(ca.certPem, ca.keyPem);
  const client = createClientCertificate(caMat, { user: 'alice', roles: ['dba'], serialHex: '0abc', notBefore: new Date(), notAfter: new Date(Date.now() + 3600_000), grantId: 'g1' });
  for (const pem of [ca.certPem, client.certPem]) {
    const der = new crypto.X509Certificate(pem).raw;
    seed('der', der, 2048);
    seed('x509', der, 4096);
  }
  // A real OpenSSH user certificate and key, from ssh-keygen.
  const k = path.join(work, 'id_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', k]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', `${k}-ca`]);
  execFileSync('ssh-keygen', ['-q', '-s', `${k}-ca`, '-I', 'alice', '-n', 'alice,root', '-V', '+1h', '-O', 'force-command=ls', '-O', 'source-address=10.0.0.0/8', `${k}.pub`], { stdio: 'ignore' });
  const blobOf = (file: string): Buffer => Buffer.from(fs.readFileSync(file, 'utf8').split(' ')[1], 'base64');
  seed('openssh-cert', blobOf(`${k}-cert.pub`), 4096);
  seed('openssh-cert', blobOf(`${k}.pub`), 4096);
}

try {
  if (want('postgres')) await postgres();
  if (want('mysql')) await mysql();
  if (want('ssh')) sftpAndScp();
  if (want('terminal')) await terminal();
  if (want('audit')) await audit();
  if (want('files')) files();
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
