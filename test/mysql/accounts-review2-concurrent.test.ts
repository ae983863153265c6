import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import mysql from 'mysql2/promise';
import pino from 'pino';
import { startMariadb, type MariadbHandle } from '../support/mariadb.ts';
import { BackendAccounts } from '../../src/accounts/manager.ts';
import { SessionRegistry } from '../../src/sessions/registry.ts';
import { mysqlAccounts } from '../../proxies/mysql/provisioning.ts';
import type { Principal } from '../../src/identity/types.ts';
import type { TargetConfig } from '../../src/config/schema.ts';

/**
 * gateway.workers > 1: each worker process leases an engineer's one MariaDB user in its own
 * BackendAccounts. Her connections arriving at once on two processes (a client's connection pool) must all
 * get in: no process may set a password between another's setting its own and logging in with it, and
 * two may not both create the user and its own role.
 */
let db: MariadbHandle;
beforeAll(async () => {
  db = await startMariadb();
  await db.query(`
    CREATE USER vigil_admin@'%' IDENTIFIED BY 'admin-pw'; GRANT ALL ON *.* TO vigil_admin@'%' WITH GRANT OPTION;
    CREATE DATABASE shop; CREATE ROLE shop_reader; GRANT SELECT ON shop.* TO shop_reader; GRANT shop_reader TO vigil_admin@'%' WITH ADMIN OPTION;
  `);
  process.env.VIGIL_TEST_REVIEW2_ADMIN_PW = 'admin-pw';
}, 120_000);
afterAll(async () => db?.stop());

const principal = { user: 'alice', roles: ['oncall'], certSerial: '1', notAfter: new Date(Date.now() + 3_600_000) } as unknown as Principal;

/** One gateway process's part: its session registry wired to its BackendAccounts, as backendAccounts() does. */
function gatewayProcess() {
  const sessions = new SessionRegistry();
  const services = { sessions, log: pino({ level: 'silent' }), events: { emit: async () => {} } } as never;
  const accounts = new BackendAccounts(services);
  sessions.onEnd((id, reason) => accounts.release(id, reason));
  return { sessions, accounts };
}

describe('one engineer user leased by two gateway processes at once (MariaDB)', () => {
  it('every concurrent session logs in (no lost password, no half-created user)', async () => {
    const provisioning = { admin: { user: 'vigil_admin', password: { env: 'VIGIL_TEST_REVIEW2_ADMIN_PW' } }, name_pattern: 'vigil_{user}', roles_map: { oncall: ['shop_reader'] } };
    const target = { name: 'myp', protocol: 'mysql', host: '127.0.0.1', port: db.port, user_provisioning: provisioning } as unknown as TargetConfig;
    const driver = mysqlAccounts(target, provisioning as never, 10_000);
    const processes = [gatewayProcess(), gatewayProcess()];
    const failures: string[] = [];
    for (let round = 0; round < 6; round++) {
      const attempts = processes.flatMap((p) =>
        [0, 1].map(async () => {
          const handle = p.sessions.open({ protocol: 'mysql', principal, target: { name: 'myp', host: '127.0.0.1', port: db.port }, source: { ip: '127.0.0.1', port: 1 }, grantIds: [] } as never, () => {});
          try {
            const { value: conn } = await p.accounts.lease(
              { target, sessionId: handle.id, roles: ['oncall'], user: 'alice', eventBase: { actor: { user: 'alice' }, source: { ip: '127.0.0.1', port: 1 }, target: { name: 'myp', protocol: 'mysql' }, session_id: handle.id } as never, driver },
              (cred) => mysql.createConnection({ host: '127.0.0.1', port: db.port, user: cred.user, password: cred.password }),
            );
            const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT CURRENT_USER() AS u');
            expect(rows[0]!.u).toBe('vigil_alice@%');
            await conn.end();
          } catch (e) {
            failures.push(`round ${round}: ${(e as Error).message}`);
          }
          return handle;
        }),
      );
      const handles = await Promise.all(attempts);
      for (const h of handles) h.close('client_closed');
      for (const p of processes) await p.accounts.settle();
    }
    expect(failures).toEqual([]);
    // Ended everywhere: the user is locked.
    expect(await driver.listOpen()).toEqual([]);
  }, 120_000);
});
