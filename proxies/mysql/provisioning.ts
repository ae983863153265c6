import crypto from 'node:crypto';
import fs from 'node:fs';
import mysql from 'mysql2/promise';
import { readSecret } from '../../src/config/types.ts';
import type { AccountDriver } from '../../src/accounts/manager.ts';
import type { UserProvisioning } from '../../src/accounts/config.ts';
import type { TargetConfig } from '../../src/config/schema.ts';

/**
 * Engineers' accounts on a MariaDB target: a user `'NAME'@'%'` per engineer (ACCOUNT LOCK between
 * sessions) whose default role `NAME_roles` holds exactly the mapped roles. The own role exists because
 * MariaDB activates one default role only; it is also how vigil recognises an account it created (a user
 * without it is never adopted: a name collision is refused). The admin needs CREATE USER, ADMIN on the
 * mapped roles, CONNECTION ADMIN (or SUPER) to kill connections, SELECT and UPDATE on mysql.*, and PROCESS
 * to find one connection of the account (kill).
 */
const str = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
const ident = (s: string) => `\`${s.replace(/`/g, '``')}\``;

/** mysql_native_password's stored form of `password`: vigil sends this, never the password (general log, binlog). */
export function nativePasswordHash(password: string): string {
  const stage1 = crypto.createHash('sha1').update(password, 'utf8').digest();
  return `*${crypto.createHash('sha1').update(stage1).digest('hex').toUpperCase()}`;
}

/** How long a lease waits for another gateway process's work on the same account, in connect timeouts. */
const LOCK_WAIT_TIMEOUTS = 3;

export const ownRole = (account: string) => `${account}_roles`;

export function mysqlAccounts(t: TargetConfig, cfg: UserProvisioning, timeoutMs: number): AccountDriver {
  const admin = async <T>(fn: (c: mysql.Connection) => Promise<T>): Promise<T> => {
    const c = await mysql.createConnection({
      host: t.host,
      port: t.port,
      user: cfg.admin.user,
      password: cfg.admin.password ? readSecret(cfg.admin.password) : undefined,
      connectTimeout: timeoutMs,
      ssl: t.tls ? { ca: t.tls_ca ? fs.readFileSync(t.tls_ca as string) : undefined, rejectUnauthorized: t.tls_ca !== undefined } : undefined,
      connectAttributes: { program_name: 'vigil-provisioning' },
    });
    c.on('error', () => {});
    try {
      return await fn(c);
    } finally {
      await c.end().catch(() => c.destroy());
    }
  };
  const user = (account: string) => `${str(account)}@'%'`;
  const held = async (c: mysql.Connection, account: string): Promise<string[]> => {
    const [rows] = await c.query<mysql.RowDataPacket[]>("SELECT Role FROM mysql.roles_mapping WHERE User = ? AND Host = '' ORDER BY Role", [ownRole(account)]);
    return rows.map((r) => String(r.Role));
  };
  // SHOW PROCESSLIST rather than information_schema: no temporary table on the server for it. It lists
  // other users' threads only to an admin with PROCESS (see kill).
  const threads = async (c: mysql.Connection, account: string): Promise<number[]> => {
    const [rows] = await c.query<mysql.RowDataPacket[]>('SHOW FULL PROCESSLIST');
    return rows.filter((r) => r.User === account).map((r) => Number(r.Id));
  };
  const managed = async (c: mysql.Connection, account: string): Promise<boolean | undefined> => {
    const [u] = await c.query<mysql.RowDataPacket[]>("SELECT 1 FROM mysql.user WHERE User = ? AND Host = '%'", [account]);
    if (u.length === 0) return undefined;
    const [m] = await c.query<mysql.RowDataPacket[]>("SELECT 1 FROM mysql.roles_mapping WHERE User = ? AND Host = '%' AND Role = ?", [account, ownRole(account)]);
    return m.length > 0;
  };

  const syncRoles = async (c: mysql.Connection, account: string, roles: readonly string[]) => {
    const has = await held(c, account);
    const granted = roles.filter((r) => !has.includes(r));
    const revoked = has.filter((r) => !roles.includes(r));
    for (const r of granted) await c.query(`GRANT ${ident(r)} TO ${ident(ownRole(account))}`);
    for (const r of revoked) await c.query(`REVOKE ${ident(r)} FROM ${ident(ownRole(account))}`);
    return { granted, revoked };
  };

  return {
    async sync(account, roles) {
      return admin((c) => syncRoles(c, account, roles));
    },
    // MariaDB allows 80 characters (MySQL 32); the own role adds 6.
    maxNameLength: 26,
    async open(account, roles, password) {
      return admin(async (c) => {
        const hash = str(nativePasswordHash(password));
        const state = await managed(c, account);
        const created = state === undefined;
        if (state === false) throw new Error(`user "${account}" exists and is not managed by vigil`);
        if (created) {
          const [r] = await c.query<mysql.RowDataPacket[]>("SELECT 1 FROM mysql.user WHERE User = ? AND is_role = 'Y'", [ownRole(account)]);
          if (r.length > 0) throw new Error(`role "${ownRole(account)}" exists and is not managed by vigil`);
          await c.query(`CREATE ROLE ${ident(ownRole(account))}`);
          await c.query(`CREATE USER ${user(account)} IDENTIFIED BY PASSWORD ${hash}`);
          await c.query(`GRANT ${ident(ownRole(account))} TO ${user(account)}`);
          await c.query(`SET DEFAULT ROLE ${ident(ownRole(account))} FOR ${user(account)}`);
        } else {
          // Again on every open: creation is four statements MariaDB commits one by one, and a gateway
          // stopped (or refused) after the grant left a user whose sessions would run with no role active.
          await c.query(`SET DEFAULT ROLE ${ident(ownRole(account))} FOR ${user(account)}`);
          await c.query(`ALTER USER ${user(account)} IDENTIFIED BY PASSWORD ${hash} ACCOUNT UNLOCK`);
        }
        return { created, ...(await syncRoles(c, account, roles)) };
      });
    },
    async close(account) {
      return admin(async (c) => {
        if ((await managed(c, account)) !== true) return { revoked: [], killed: 0 };
        // Locked before the kill, so that nothing logs in again in between.
        await c.query(`ALTER USER ${user(account)} ACCOUNT LOCK`);
        const revoked = await held(c, account);
        for (const r of revoked) await c.query(`REVOKE ${ident(r)} FROM ${ident(ownRole(account))}`);
        // By account, not by listing its threads: SHOW PROCESSLIST shows an admin without PROCESS only its
        // own threads, while KILL ... USER needs CONNECTION ADMIN alone. It answers how many it ended.
        const [k] = await c.query<mysql.ResultSetHeader>(`KILL CONNECTION USER ${user(account)}`);
        return { revoked, killed: k.affectedRows };
      });
    },
    async listOpen() {
      return admin(async (c) => {
        // Managed = has its own role granted (see ownRole); open = not ACCOUNT LOCKed.
        const [rows] = await c.query<mysql.RowDataPacket[]>(
          // mysql.global_priv, not the mysql.user view: MariaDB keeps ACCOUNT LOCK only in the JSON there.
          "SELECT g.User FROM mysql.global_priv g JOIN mysql.roles_mapping m ON m.User = g.User AND m.Host = g.Host AND m.Role = CONCAT(g.User, '_roles') " +
            "WHERE g.Host = '%' AND COALESCE(JSON_VALUE(g.Priv, '$.account_locked'), 'false') NOT IN ('1', 'true') ORDER BY 1",
        );
        return rows.map((r) => String(r.User));
      });
    },
    async exclusive(account, fn) {
      return admin(async (c) => {
        // Held by the admin connection until it ends (also if vigil dies). Bounded: the holder only opens
        // or locks the account and logs in once, each within the timeout.
        const waitSeconds = Math.max(1, Math.ceil((LOCK_WAIT_TIMEOUTS * timeoutMs) / 1000));
        const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT GET_LOCK(?, ?) AS got', [`vigil_user_provisioning:${account}`, waitSeconds]);
        if (Number(rows[0]?.got) !== 1) throw new Error(`another gateway process kept the account "${account}" busy for ${waitSeconds}s`);
        return fn();
      });
    },
    async kill(account, backendId) {
      return admin(async (c) => {
        if (!(await threads(c, account)).includes(backendId)) return false;
        await c.query(`KILL CONNECTION ${Number(backendId)}`).catch(() => {});
        return true;
      });
    },
  };
}
