import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import mysql from 'mysql2/promise';
import { startMariadb, type MariadbHandle } from '../support/mariadb.ts';
import { mysqlAccounts } from '../../proxies/mysql/provisioning.ts';
import type { TargetConfig } from '../../src/config/schema.ts';

/**
 * MariaDB commits each statement of a user's creation on its own (CREATE ROLE, CREATE USER, GRANT,
 * SET DEFAULT ROLE). A gateway killed (or an admin refused) after the grant leaves a user vigil
 * recognises as its own but whose default role was never set: the next open must repair it, or every
 * session of that engineer runs with no role active.
 */
let db: MariadbHandle;
beforeAll(async () => {
  db = await startMariadb();
  await db.query(`
    CREATE USER vigil_admin@'%' IDENTIFIED BY 'admin-pw'; GRANT ALL ON *.* TO vigil_admin@'%' WITH GRANT OPTION;
    CREATE DATABASE shop; CREATE TABLE shop.items (id INT); INSERT INTO shop.items VALUES (7);
    CREATE ROLE shop_reader; GRANT SELECT ON shop.* TO shop_reader; GRANT shop_reader TO vigil_admin@'%' WITH ADMIN OPTION;
  `);
  process.env.VIGIL_TEST_REVIEW2_HALF_ADMIN_PW = 'admin-pw';
}, 120_000);
afterAll(async () => db?.stop());

describe('a MariaDB user whose creation stopped before SET DEFAULT ROLE', () => {
  it('is repaired by the next open: the session has its mapped roles', async () => {
    // What the first three creation statements leave, run as vigil runs them (as the admin).
    const admin = await mysql.createConnection({ host: '127.0.0.1', port: db.port, user: 'vigil_admin', password: 'admin-pw' });
    for (const sql of ['CREATE ROLE vigil_fay_roles', "CREATE USER 'vigil_fay'@'%' IDENTIFIED BY 'unknown'", "GRANT vigil_fay_roles TO 'vigil_fay'@'%'"]) await admin.query(sql);
    await admin.end();
    const provisioning = { admin: { user: 'vigil_admin', password: { env: 'VIGIL_TEST_REVIEW2_HALF_ADMIN_PW' } }, name_pattern: 'vigil_{user}', roles_map: {} };
    const driver = mysqlAccounts({ name: 'myp', protocol: 'mysql', host: '127.0.0.1', port: db.port } as unknown as TargetConfig, provisioning as never, 10_000);
    const opened = await driver.open('vigil_fay', ['shop_reader'], 'fay-session-secret');
    expect(opened.created).toBe(false);
    const fay = await mysql.createConnection({ host: '127.0.0.1', port: db.port, user: 'vigil_fay', password: 'fay-session-secret' });
    try {
      const [role] = await fay.query<mysql.RowDataPacket[]>('SELECT CURRENT_ROLE() AS r');
      expect(role[0]!.r).toBe('vigil_fay_roles');
      const [rows] = await fay.query<mysql.RowDataPacket[]>('SELECT id FROM shop.items');
      expect(rows.map((r) => r.id)).toEqual([7]);
    } finally {
      await fay.end();
    }
  }, 60_000);
});
