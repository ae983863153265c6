import { afterEach, describe, expect, it, vi } from 'vitest';
import { END_MESSAGES, startAccessEnforcement } from '../../src/access/enforcement.ts';
import type { GatewayServices } from '../../src/gateway/services.ts';
import type { Principal } from '../../src/identity/types.ts';
import { silentLogger } from '../../src/log.ts';
import { SessionRegistry, type EndReason } from '../../src/sessions/registry.ts';
import { accessEnv } from '../access/support.ts';

/**
 * The enforcement loop is the backstop of certificate expiry. The session registry cuts a session at its
 * certificate's notAfter with a timer, but a timer runs on the monotonic clock: when the wall clock steps
 * past notAfter (a suspended VM resumed, NTP stepping), the certificate has expired while the timer still
 * waits. The loop compares notAfter with the time now on every pass.
 */

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('access enforcement: certificate expiry backstop', () => {
  it('ends a live session whose certificate notAfter has passed though the registry timer has not fired', async () => {
    const env = await accessEnv();
    cleanups.push(() => env.close());
    const services = { config: env.config, dataDir: env.dataDir, log: silentLogger(), events: env.events, store: env.store, sessions: new SessionRegistry() } as unknown as GatewayServices;
    const enf = startAccessEnforcement(services, { expire: false });
    cleanups.push(() => enf.stop());

    const start = Date.now();
    const principal: Principal = { user: 'alice', roles: ['dev'], certSerial: '00c0ffee', credential: 'x509', notBefore: new Date(start - 60_000), notAfter: new Date(start + 3_600_000), extensions: [] };
    const ended: { reason?: EndReason; message?: string } = {};
    const handle = services.sessions.open({ protocol: 'postgres', principal, target: { name: 'pg-stage', host: '127.0.0.1', port: 5433 }, source: { ip: '127.0.0.1', port: 1 }, grantIds: [] }, (reason, message) => {
      Object.assign(ended, { reason, message });
      handle.close(reason);
    });

    // Valid: a pass leaves it alone.
    await enf.tick();
    expect(ended.reason).toBeUndefined();

    // The wall clock steps two hours ahead; the registry's one-hour timer is still far from firing.
    vi.setSystemTime(start + 2 * 3_600_000);
    await enf.tick();
    expect(ended).toEqual({ reason: 'cert_expired', message: END_MESSAGES.certExpired });
    expect(services.sessions.size).toBe(0);
  });
});
