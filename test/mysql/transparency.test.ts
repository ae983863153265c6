import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import mysql from 'mysql2/promise';
import { startWorld, PASSWORDS, type MyWorld } from './helpers.ts';

/**
 * Issue #17 item 2: through vigil a MariaDB client sees what it sees direct (the same server identity,
 * the same errors, the same commands), with stock clients against a real MariaDB.
 */
let w: MyWorld;
beforeAll(async () => {
  w = await startWorld();
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
