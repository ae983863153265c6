import crypto from 'node:crypto';
import fs from 'node:fs';
import pg from 'pg';
import { readSecret } from '../../src/config/types.ts';
import type { AccountDriver } from '../../src/accounts/manager.ts';
import type { UserProvisioning } from '../../src/accounts/config.ts';
import type { PostgresTarget } from './config.ts';

/** Marks roles vigil created; an existing role without it is never adopted (a name collision is refused). */
export const MANAGED_COMMENT = 'managed by vigil user_provisioning';

/** How long a lease waits for another gateway process's work on the same account, in connect timeouts. */
const LOCK_WAIT_TIMEOUTS = 3;

const ident = (s: string) => `"${s.replace(/"/g, '""')}"`;
const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;

/**
 * The SCRAM-SHA-256 verifier of `password` (RFC 5802/7677, as PostgreSQL stores it). vigil sends this,
 * never the password: a statement log (log_statement, an error's STATEMENT line) then holds nothing that
 * logs in.
 */
export function scramVerifier(password: string, iterations = 4096): string {
  const salt = crypto.randomBytes(16);
  const salted = crypto.pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const clientKey = crypto.createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = crypto.createHash('sha256').update(clientKey).digest();
  const serverKey = crypto.createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/**
 * Engineers' accounts on a PostgreSQL target: a LOGIN role per engineer (NOLOGIN between sessions),
 * member of exactly the mapped roles. The admin role needs CREATEROLE and ADMIN on the mapped roles (or
 * superuser) and pg_signal_backend to end connections.
 */
export function postgresAccounts(t: PostgresTarget, cfg: UserProvisioning, timeoutMs: number): AccountDriver {
  const admin = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const ssl =
      t.tls === 'disable' ? false : t.tls === 'require' ? { rejectUnauthorized: false } : { ca: t.tls_ca ? fs.readFileSync(t.tls_ca) : undefined, servername: t.tls_servername ?? t.host };
    const c = new pg.Client({
      host: t.host,
      port: t.port,
      user: cfg.admin.user,
      password: cfg.admin.password ? readSecret(cfg.admin.password) : undefined,
      database: t.database,
      ssl,
      connectionTimeoutMillis: timeoutMs,
      application_name: 'vigil-provisioning',
    });
    c.on('error', () => {});
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end().catch(() => {});
    }
  };
  const memberships = async (c: pg.Client, account: string): Promise<string[]> =>
    (
      await c.query<{ rolname: string }>(
        'SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = $1 ORDER BY 1',
        [account],
      )
    ).rows.map((r) => r.rolname);

  const syncRoles = async (c: pg.Client, account: string, roles: readonly string[]) => {
    const held = await memberships(c, account);
    const granted = roles.filter((r) => !held.includes(r));
    const revoked = held.filter((r) => !roles.includes(r));
    for (const r of granted) await c.query(`GRANT ${ident(r)} TO ${ident(account)}`);
    for (const r of revoked) await c.query(`REVOKE ${ident(r)} FROM ${ident(account)}`);
    return { granted, revoked };
  };

  return {
    maxNameLength: 63,
    async sync(account, roles) {
      return admin(async (c) => {
        await c.query('BEGIN');
        try {
          const r = await syncRoles(c, account, roles);
          await c.query('COMMIT');
          return r;
        } catch (e) {
          await c.query('ROLLBACK').catch(() => {});
          throw e;
        }
      });
    },
    async open(account, roles, password) {
      return admin(async (c) => {
        await c.query('BEGIN');
        try {
          const found = await c.query<{ comment: string | null }>('SELECT shobj_description(oid, $2) AS comment FROM pg_roles WHERE rolname = $1', [account, 'pg_authid']);
          const verifier = literal(scramVerifier(password));
          const created = found.rows.length === 0;
          if (created) {
            await c.query(`CREATE ROLE ${ident(account)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD ${verifier}`);
            await c.query(`COMMENT ON ROLE ${ident(account)} IS ${literal(MANAGED_COMMENT)}`);
          } else if (found.rows[0]!.comment !== MANAGED_COMMENT) {
            throw new Error(`role "${account}" exists and is not managed by vigil`);
          } else {
            await c.query(`ALTER ROLE ${ident(account)} LOGIN PASSWORD ${verifier}`);
          }
          const { granted, revoked } = await syncRoles(c, account, roles);
          await c.query('COMMIT');
          return { created, granted, revoked };
        } catch (e) {
          await c.query('ROLLBACK').catch(() => {});
          throw e;
        }
      });
    },
    async close(account) {
      return admin(async (c) => {
        const found = await c.query<{ comment: string | null }>('SELECT shobj_description(oid, $2) AS comment FROM pg_roles WHERE rolname = $1', [account, 'pg_authid']);
        if (found.rows.length === 0 || found.rows[0]!.comment !== MANAGED_COMMENT) return { revoked: [], killed: 0 };
        // Locked (one transaction with the revokes) before the kill, so that nothing logs in again in between.
        await c.query('BEGIN');
        let revoked: string[];
        try {
          await c.query(`ALTER ROLE ${ident(account)} NOLOGIN`);
          revoked = await memberships(c, account);
          for (const r of revoked) await c.query(`REVOKE ${ident(r)} FROM ${ident(account)}`);
          await c.query('COMMIT');
        } catch (e) {
          await c.query('ROLLBACK').catch(() => {});
          throw e;
        }
        const killed = await c.query<{ ok: boolean }>('SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()', [account]);
        return { revoked, killed: killed.rows.filter((r) => r.ok).length };
      });
    },
    async listOpen() {
      return admin(async (c) => {
        const r = await c.query<{ rolname: string }>("SELECT rolname FROM pg_roles WHERE rolcanlogin AND shobj_description(oid, 'pg_authid') = $1 ORDER BY 1", [MANAGED_COMMENT]);
        return r.rows.map((x) => x.rolname);
      });
    },
    async exclusive(account, fn) {
      return admin(async (c) => {
        // A session-level advisory lock: the admin connection holds it until it ends (also if vigil dies).
        // Bounded: the holder only opens or locks the account and logs in once, each within the timeout.
        await c.query(`SET lock_timeout = ${Math.max(1, Math.round(LOCK_WAIT_TIMEOUTS * timeoutMs))}`);
        await c.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [`${MANAGED_COMMENT}: ${account}`]);
        return fn();
      });
    },
    async kill(account, backendId) {
      return admin(async (c) => {
        const r = await c.query<{ ok: boolean }>('SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE pid = $1 AND usename = $2', [backendId, account]);
        return r.rows.some((x) => x.ok);
      });
    },
  };
}
