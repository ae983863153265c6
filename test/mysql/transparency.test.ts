import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import mysql from 'mysql2/promise';
import { startWorld, PASSWORDS, type MyWorld } from './helpers.ts';
import { rawLogin } from './raw-client.ts';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { parseErr } from '../../proxies/mysql/handshake.ts';
import { COM } from '../../proxies/mysql/wire.ts';

/**
 * Issue #17 item 2: through vigil a MariaDB client sees what it sees direct (the same server identity,
 * the same errors, the same commands), with stock clients against a real MariaDB.
 */
let w: MyWorld;
beforeAll(async () => {
  w = await startWorld((db, secretFile) => ({
    targets: [
      { name: 'db', protocol: 'mysql', host: '127.0.0.1', port: db.port, user: 'native_user', password: { file: secretFile('native', PASSWORDS.native) }, logins: { few_user: { file: secretFile('few', PASSWORDS.native) } } },
    ],
    roles: [{ name: 'dba', targets: ['db'], databases: ['*'], logins: ['few_user'] }],
    mysql: { listen: '127.0.0.1:0', max_packet: '16MiB' },
  }));
}, 120_000);
afterAll(async () => w?.stop());

const direct = () => mysql.createConnection({ host: '127.0.0.1', port: w.db.port, user: 'native_user', password: PASSWORDS.native });
/** The version string a mysql2 connection read from the greeting. */
const greetingVersion = (c: mysql.Connection) => (c as unknown as { connection: { _handshakePacket: { serverVersion: string } } }).connection._handshakePacket.serverVersion;

function serverVersionLine(stdout: string, stderr: string): string {
  const line = stdout.split('\n').find((l) => l.startsWith('Server version:'));
  if (!line) throw new Error(`no server version in status output: ${stdout} ${stderr}`);
  return line.replace(/\s+/g, ' ');
}

describe('the greeting is the target server\'s own', () => {
  it('mysql2 sees the same server version in the greeting and from VERSION()', async () => {
    const d = await direct();
    const v = await w.connect('db');
    try {
      expect(greetingVersion(v)).toBe(greetingVersion(d));
      expect(greetingVersion(v)).toMatch(/MariaDB/);
      const [[dv]] = (await d.query('SELECT VERSION() AS v')) as unknown as [[{ v: string }]];
      const [[vv]] = (await v.query('SELECT VERSION() AS v')) as unknown as [[{ v: string }]];
      expect(vv!.v).toBe(dv!.v);
    } finally {
      await d.end();
      await v.end();
    }
  });

  it('the mariadb CLI status shows the same server version', async () => {
    const v = await w.cli(['--user=db', '-e', 'status']);
    // Direct needs no gateway: a synchronous run is fine here (it would block the in-process gateway).
    const d = spawnSync('mariadb', ['--no-defaults', '--host=127.0.0.1', `--port=${w.db.port}`, '--user=native_user', `--password=${PASSWORDS.native}`, '--skip-ssl', '-e', 'status'], { encoding: 'utf8', timeout: 20_000 });
    expect(serverVersionLine(v.stdout, v.stderr)).toBe(serverVersionLine(d.stdout, d.stderr));
  });

  it('mysql2 sends JSON parameters the MariaDB way (no 1210)', async () => {
    const v = await w.connect('db');
    try {
      const [rows] = (await v.execute('SELECT JSON_VALUE(?, "$.a") AS a', [{ a: 5 }])) as unknown as [{ a: string }[]];
      expect(rows[0]!.a).toBe('5');
    } finally {
      await v.end();
    }
  });

  it('the charset in the greeting is the server\'s', async () => {
    const d = await direct();
    const v = await w.connect('db');
    try {
      const cs = (c: mysql.Connection) => (c as unknown as { connection: { _handshakePacket: { characterSet: number } } }).connection._handshakePacket.characterSet;
      expect(cs(v)).toBe(cs(d));
    } finally {
      await d.end();
      await v.end();
    }
  });
});

/** The stock client straight to the server (no gateway in the way, so a synchronous run is fine). */
function directCli(user: string, password: string, args: string[], input = ''): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('mariadb', ['--no-defaults', '--host=127.0.0.1', `--port=${w.db.port}`, `--user=${user}`, `--password=${password}`, '--skip-ssl', '--batch', ...args], { encoding: 'utf8', timeout: 30_000, input, maxBuffer: 1 << 26 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('backend errors and commands reach the client unchanged', () => {
  it('a login the server refuses (1044, no access to the database) gets the server\'s own ERR', async () => {
    await w.db.query(`CREATE USER few_user@'%' IDENTIFIED BY '${PASSWORDS.native}'; GRANT ALL ON shop.* TO few_user@'%';`);
    const d = directCli('few_user', PASSWORDS.native, ['--database=secret_db', '-e', 'SELECT 1']);
    expect(d.stderr).toMatch(/ERROR 1044 \(42000\)/);
    const v = await w.cli(['--user=db/few_user', '--database=secret_db', '-e', 'SELECT 1']);
    expect(v.stderr).toBe(d.stderr);
  });

  it('a statement over vigil\'s max_packet, sent in 16 MiB parts, gets ERR 1153 with the next sequence id', async () => {
    // 17 MiB: two wire packets (seq 0 full, seq 1 the rest); the limit is crossed at the second, so the
    // ERR is seq 2. With seq 1 the client reports a broken connection instead of the error.
    const sql = `SELECT LENGTH('${'x'.repeat(17 * 1024 * 1024)}') AS n;\n`;
    const v = await w.cli(['--user=db', '--max-allowed-packet=64M'], { input: sql, timeoutMs: 60_000 });
    expect(v.stderr.split('\n').find((l) => l.startsWith('ERROR'))).toMatch(/^ERROR 1153 \(08S01\) at line 1: vigil: packet of \d+ bytes exceeds the limit/);
    // The stock client does not check the ERR's sequence id; a bare client does.
    const c = await rawLogin(w.port, w.alice, 'db');
    c.send(encodePacket(0, Buffer.concat([Buffer.from([COM.QUERY]), Buffer.from(sql)])));
    const err = await c.next(30_000);
    expect(parseErr(err.payload).code).toBe(1153);
    expect(err.seq).toBe(2);
    c.socket.destroy();
  });

  it('COM_REFRESH is forwarded and recorded with the flags it names', async () => {
    const c = await rawLogin(w.port, w.alice, 'db');
    c.send(encodePacket(0, Buffer.from([COM.REFRESH, 0x04 | 0x10])));
    const reply = await c.next();
    expect(reply.payload[0]).toBe(0x00);
    expect(reply.seq).toBe(1);
    c.socket.destroy();
    const e = await w.tg.waitForEvent((x) => x.type === 'db.query' && x.details.command === 'COM_REFRESH');
    expect(e.outcome).toBe('success');
    expect(e.details.query).toBe('COM_REFRESH tables,status');
  });

  it('COM_REFRESH the backend login may not run gets the server\'s own ERR', async () => {
    const c = await rawLogin(w.port, w.alice, 'db/few_user');
    c.send(encodePacket(0, Buffer.from([COM.REFRESH, 0x04])));
    const reply = await c.next();
    expect(reply.payload[0]).toBe(0xff);
    expect(parseErr(reply.payload).code).toBe(1227);
    c.socket.destroy();
  });
});

describe('text that is not UTF-8', () => {
  it('a latin1 client\'s 0xE9 reaches the server as sent and is recorded as \\xE9, never U+FFFD', async () => {
    const input = Buffer.from("SELECT HEX('caf\xe9') AS h;\n", 'latin1');
    const r = await w.cli(['--user=db', '--default-character-set=latin1'], { input: input as unknown as string });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('h\n636166E9\n');
    const e = await w.tg.waitForEvent((x) => x.type === 'db.query' && String(x.details.query).startsWith('SELECT HEX('));
    expect(e.details.query).toBe("SELECT HEX('caf\\xE9') AS h");
    expect(e.details.text_escaped).toBe(true);
    expect(JSON.stringify(w.tg.events)).not.toContain('\ufffd');
  });
});
