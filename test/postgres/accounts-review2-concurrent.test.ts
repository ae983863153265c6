import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import pg from 'pg';
import pino from 'pino';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { BackendAccounts } from '../../src/accounts/manager.ts';
import { SessionRegistry } from '../../src/sessions/registry.ts';
import { postgresAccounts } from '../../proxies/postgres/provisioning.ts';
import type { Principal } from '../../src/identity/types.ts';
import type { TargetConfig } from '../../src/config/schema.ts';

/**
 * gateway.workers > 1 (or replicas): each process leases an engineer's one backend account in its own
 * BackendAccounts. Two of her connections arriving at once on two processes (a client's connection pool)
 * must both get in: neither may set a password between the other's setting it and logging in with it, nor
 * both create the role.
 */
let server: PostgresHandle;
beforeAll(async () => {
  server = await startPostgres();
}, 120_000);
afterAll(async () => server?.stop());

const principal = { user: 'alice', roles: ['oncall'], certSerial: '1', notAfter: new Date(Date.now() + 3_600_000) } as unknown as Principal;

/** One gateway process's part: its session registry, its BackendAccounts, the events it recorded. */
function gatewayProcess() {
  const sessions = new SessionRegistry();
  const events: { type: string; details: Record<string, unknown> }[] = [];
  const services = { sessions, log: pino({ level: 'silent' }), events: { emit: async (e: { type: string; details: Record<string, unknown> }) => void events.push(e) } } as never;
  const accounts = new BackendAccounts(services);
  sessions.onEnd((id, reason) => accounts.release(id, reason));
  return { sessions, events, accounts };
}

describe('one engineer account leased by two gateway processes at once', () => {
  it('every concurrent session logs in (no lost password, no duplicate CREATE ROLE)', async () => {
    const target = { name: 'pgp', protocol: 'postgres', host: '127.0.0.1', port: server.port, database: 'app', tls: 'disable', user_provisioning: { admin: { user: server.superuser }, name_pattern: 'vigil_{user}', roles_map: { oncall: ['pg_read_all_data'] } } } as unknown as TargetConfig;
    const driver = postgresAccounts(target as never, (target as never as { user_provisioning: never }).user_provisioning, 10_000);
    const processes = [gatewayProcess(), gatewayProcess()];
    const failures: string[] = [];
    for (let round = 0; round < 6; round++) {
      const attempts = processes.flatMap((p) =>
        [0, 1].map(async () => {
          const handle = p.sessions.open({ protocol: 'postgres', principal, target: { name: 'pgp', host: '127.0.0.1', port: server.port }, source: { ip: '127.0.0.1', port: 1 }, grantIds: [] } as never, () => {});
          try {
            const { value: client } = await p.accounts.lease(
              { target, sessionId: handle.id, roles: ['oncall'], user: 'alice', eventBase: { actor: { user: 'alice' }, source: { ip: '127.0.0.1', port: 1 }, target: { name: 'pgp', protocol: 'postgres' }, session_id: handle.id } as never, driver },
              async (cred) => {
                const c = new pg.Client({ host: '127.0.0.1', port: server.port, user: cred.user, password: cred.password, database: 'app' });
                c.on('error', () => {});
                await c.connect();
                return c;
              },
            );
            expect((await client.query('SELECT current_user AS u')).rows[0].u).toBe('vigil_alice');
            await client.end();
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
    // Ended everywhere: the account is locked.
    expect(server.psql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'vigil_alice'")).toBe('f');
  }, 120_000);
});
