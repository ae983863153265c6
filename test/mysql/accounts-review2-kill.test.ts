import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import mysql from 'mysql2/promise';
import { startMariadb, type MariadbHandle } from '../support/mariadb.ts';
import { waitFor } from '../support/tmp.ts';
import { mysqlAccounts } from '../../proxies/mysql/provisioning.ts';
import type { TargetConfig } from '../../src/config/schema.ts';

/**
 * Locking an engineer's MariaDB user ends her connections at the server (a statement still running there
 * does not stop when vigil closes its socket). The admin has what README names for it, not SUPER or
 * PROCESS: SHOW PROCESSLIST then lists only the admin's own threads, so the connections must be ended
 * without listing them.
 */
let db: MariadbHandle;
beforeAll(async () => {
  db = await startMariadb();
  await db.query(`
    CREATE USER vigil_admin@'%' IDENTIFIED BY 'admin-pw';
    GRANT CREATE USER, CONNECTION ADMIN ON *.* TO vigil_admin@'%'; GRANT SELECT, UPDATE ON mysql.* TO vigil_admin@'%';
    CREATE DATABASE shop; CREATE ROLE shop_reader; GRANT SELECT ON shop.* TO shop_reader; GRANT shop_reader TO vigil_admin@'%' WITH ADMIN OPTION;
  `);
  process.env.VIGIL_TEST_REVIEW2_KILL_ADMIN_PW = 'admin-pw';
}, 120_000);
afterAll(async () => db?.stop());

const sleepers = async () => (await db.query("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'vigil_erin' AND INFO LIKE 'SELECT SLEEP%'"))[0]![0];

describe('locking a MariaDB user with the documented admin privileges', () => {
  it("kills the engineer's running connections", async () => {
    const provisioning = { admin: { user: 'vigil_admin', password: { env: 'VIGIL_TEST_REVIEW2_KILL_ADMIN_PW' } }, name_pattern: 'vigil_{user}', roles_map: {} };
    const driver = mysqlAccounts({ name: 'myp', protocol: 'mysql', host: '127.0.0.1', port: db.port } as unknown as TargetConfig, provisioning as never, 10_000);
    await driver.open('vigil_erin', ['shop_reader'], 'erin-session-secret');
    const erin = await mysql.createConnection({ host: '127.0.0.1', port: db.port, user: 'vigil_erin', password: 'erin-session-secret' });
    erin.on('error', () => {});
    const running = erin.query('SELECT SLEEP(600)').then(() => 'finished', (e: Error) => `ended: ${e.message}`);
    await waitFor(async () => (await sleepers()) === '1', 20_000, 'the statement runs at the server');
    const closed = await driver.close('vigil_erin');
    expect(closed.revoked).toEqual(['shop_reader']);
    expect(closed.killed).toBe(1);
    await waitFor(async () => (await sleepers()) === '0', 20_000, 'the statement is gone from the server');
    expect(await running).toMatch(/^ended: /);
    erin.destroy();
  }, 60_000);
});
