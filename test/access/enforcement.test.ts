import { execFile } from 'node:child_process';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startAccessEnforcement } from '../../src/access/enforcement.ts';
import { AccessService } from '../../src/access/service.ts';
import { EventBus } from '../../src/events/bus.ts';
import type { GatewayServices } from '../../src/gateway/services.ts';
import { silentLogger } from '../../src/log.ts';
import { SessionRegistry, type EndReason } from '../../src/sessions/registry.ts';
import { openStateStore } from '../../src/store/index.ts';
import type { Principal } from '../../src/identity/types.ts';
import { waitFor } from '../support/tmp.ts';
import { accessEnv, actor, MemorySink, POLICY, type AccessEnv } from './support.ts';

const TSX = path.resolve(import.meta.dirname, '../../node_modules/.bin/tsx');

const bob = actor('bob', ['sre-lead']);
const admin = actor('root', ['admin']);

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The parts of the services bundle enforcement uses, over a real store and session registry. */
function services(env: AccessEnv, store = env.store, events = env.events): GatewayServices {
  return { config: env.config, dataDir: env.dataDir, log: silentLogger(), events, store, sessions: new SessionRegistry() } as unknown as GatewayServices;
}

function principal(user: string, roles: string[] = [], serial = '00aa'): Principal {
  return { user, roles, certSerial: serial, credential: 'x509', notBefore: new Date(), notAfter: new Date(Date.now() + 3_600_000), extensions: [] };
}

/** Register a live session the way a proxy does; records how it was ended. */
function liveSession(svc: GatewayServices, p: Principal, grantIds: string[] = [], accessExpiresAt?: Date) {
  const ended: { reason?: EndReason; message?: string; at?: number } = {};
  const handle = svc.sessions.open(
    { protocol: 'postgres', principal: p, target: { name: 'pg-prod', host: '127.0.0.1', port: 5432 }, source: { ip: '127.0.0.1', port: 1 }, grantIds, accessExpiresAt },
    (reason, message) => {
      Object.assign(ended, { reason, message, at: Date.now() });
      handle.close(reason);
    },
  );
  return ended;
}

async function env0(overrides: Record<string, unknown> = {}) {
  const env = await accessEnv(overrides);
  cleanups.push(() => env.close());
  return env;
}

async function grant(env: AccessEnv, user: string, ttlMs: number) {
  const req = await env.access.request(actor(user), { role: 'prod-dba', reason: 'INC-1', ttlMs });
  return env.access.approve(bob, req.id);
}

describe('access enforcement', () => {
  it('writes access.expired at the expiry time with nobody connected, exactly once, and marks the grant expired', async () => {
    const env = await env0();
    const enf = startAccessEnforcement(services(env));
    cleanups.push(() => enf.stop());
    const g = await grant(env, 'alice', 1000);
    const ev = await waitFor(() => env.of('access.expired')[0], 3000, 'access.expired');
    const late = Date.parse(ev.time) - Date.parse(g.expiresAt!);
    expect(late).toBeGreaterThanOrEqual(0);
    expect(late).toBeLessThan(1000);
    expect(ev).toMatchObject({ outcome: 'success', actor: { user: 'vigil' }, target: { name: `grant/${g.id}`, protocol: 'vigil' } });
    expect(ev.details).toMatchObject({ request_id: g.id, user: 'alice', role: 'prod-dba', expires_at: g.expiresAt });
    expect(await env.store.getAccess(g.id)).toMatchObject({ state: 'expired', expiryRecorded: true });
    await new Promise((r) => setTimeout(r, 600));
    expect(env.of('access.expired')).toHaveLength(1);
  });

  it('two store connections sweeping at once write access.expired once between them', async () => {
    const env = await env0();
    // A second store connection and its own audit sink stand for a second gateway process.
    const store2 = await openStateStore(env.dataDir);
    cleanups.push(() => store2.close());
    const sink2 = new MemorySink();
    const other = new AccessService({ config: env.config, store: store2, events: new EventBus(sink2) });
    const grants = await Promise.all([1, 2, 3, 4, 5].map(() => grant(env, 'alice', 300)));
    await new Promise((r) => setTimeout(r, 350));
    await Promise.all([env.access.expireDue({ ip: 'local' }), other.expireDue({ ip: 'local' }), env.access.expireDue({ ip: 'local' })]);
    const written = [...env.of('access.expired'), ...sink2.events.filter((e) => e.type === 'access.expired')];
    expect(written.map((e) => e.details.request_id).sort()).toEqual(grants.map((g) => g.id).sort());
  });

  it('separate processes sweeping one data dir write each access.expired exactly once', async () => {
    const env = await env0();
    const grants = await Promise.all(Array.from({ length: 8 }, (_, i) => grant(env, 'alice', 2500 + i * 150)));
    const configJson = JSON.stringify({ data_dir: env.dataDir, ...POLICY });
    const sweep = () =>
      new Promise<string[]>((resolve, reject) => {
        execFile(TSX, [path.join(import.meta.dirname, 'fixtures/sweeper.ts'), env.dataDir, configJson, '6000'], { timeout: 60_000 }, (err, stdout, stderr) => {
          if (err) reject(new Error(`${err.message}\n${stderr}`));
          else resolve(JSON.parse(stdout));
        });
      });
    // Three processes plus this one, all sweeping while the grants come due one after another.
    const inProcess = (async () => {
      const ids: string[] = [];
      const until = Date.now() + 6000;
      while (Date.now() < until) {
        ids.push(...(await env.access.expireDue({ ip: 'local' })).map((r) => r.id));
        await new Promise((r) => setTimeout(r, 5));
      }
      return ids;
    })();
    const all = (await Promise.all([sweep(), sweep(), sweep(), inProcess])).flat();
    expect(all.sort()).toEqual(grants.map((g) => g.id).sort());
    for (const g of grants) expect(await env.store.getAccess(g.id)).toMatchObject({ state: 'expired', expiryRecorded: true });
  }, 120_000);

  it('catches up on grants that expired while no gateway was running', async () => {
    const env = await env0();
    const g = await grant(env, 'alice', 50);
    await new Promise((r) => setTimeout(r, 100));
    expect(env.of('access.expired')).toHaveLength(0);
    const enf = startAccessEnforcement(services(env));
    cleanups.push(() => enf.stop());
    const ev = await waitFor(() => env.of('access.expired')[0], 2000, 'catch-up access.expired');
    expect(ev.details.request_id).toBe(g.id);
    expect(ev.details.late_ms as number).toBeGreaterThanOrEqual(50);
  });

  it('ends live sessions of a revoked grant, a locked user and a revoked certificate, changed from another connection', async () => {
    const env = await env0();
    const svc = services(env);
    const enf = startAccessEnforcement(svc);
    cleanups.push(() => enf.stop());
    const g = await grant(env, 'alice', 3_600_000);
    const onGrant = liveSession(svc, principal('alice', [], 's1'), [g.id], new Date(g.expiresAt!));
    const lockedUser = liveSession(svc, principal('dan', ['dev'], 's2'));
    const revokedCert = liveSession(svc, principal('erin', ['dev'], 's3'));
    const untouched = liveSession(svc, principal('fay', ['dev'], 's4'));

    // Another process (the CLI) changes the shared store through its own connection.
    const store2 = await openStateStore(env.dataDir);
    cleanups.push(() => store2.close());
    const cli = new AccessService({ config: env.config, store: store2, events: new EventBus(new MemorySink()) });

    let t = Date.now();
    await cli.revoke(admin, g.id, { reason: 'incident over' });
    await waitFor(() => onGrant.reason, 1000, 'grant session cut');
    expect(onGrant).toMatchObject({ reason: 'revoked', message: 'Your access grant has been revoked; the session is closed.' });
    expect(onGrant.at! - t).toBeLessThan(1000);

    t = Date.now();
    await cli.lock(admin, { user: 'dan', reason: 'offboarding' });
    await waitFor(() => lockedUser.reason, 1000, 'locked session cut');
    expect(lockedUser.reason).toBe('locked');
    expect(lockedUser.message).toMatch(/locked/);

    await store2.revoke({ serial: 's3', reason: 'key leaked', by: 'root', time: new Date().toISOString() });
    await waitFor(() => revokedCert.reason, 1000, 'revoked-cert session cut');
    expect(revokedCert).toMatchObject({ reason: 'revoked', message: 'Your vigil certificate has been revoked; the session is closed.' });

    expect(untouched.reason).toBeUndefined();
    expect(svc.sessions.list().map((s) => s.principal.user)).toEqual(['fay']);
  });

  it('a session on a grant is ended at the grant expiry, and the expiry is recorded', async () => {
    const env = await env0();
    const svc = services(env);
    const enf = startAccessEnforcement(svc);
    cleanups.push(() => enf.stop());
    const g = await grant(env, 'alice', 700);
    const s = liveSession(svc, principal('alice'), [g.id], new Date(g.expiresAt!));
    await waitFor(() => s.reason, 2000, 'session cut at expiry');
    expect(s.reason).toBe('grant_expired');
    expect(s.at! - Date.parse(g.expiresAt!)).toBeLessThan(300);
    await waitFor(() => env.of('access.expired')[0], 1000, 'access.expired');
  });
});
