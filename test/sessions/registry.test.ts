import { describe, it, expect, vi, afterEach } from 'vitest';
import { SessionRegistry, type EndReason, type SessionInfo } from '../../src/sessions/registry.ts';

function info(user: string, notAfterMs: number, accessExpiresAt?: Date, grantIds: string[] = []): SessionInfo {
  return {
    protocol: 'postgres',
    principal: { user, roles: ['dba'], certSerial: `s-${user}`, credential: 'x509', notBefore: new Date(0), notAfter: new Date(Date.now() + notAfterMs), extensions: [] },
    target: { name: 'pg', host: '127.0.0.1', port: 5432, database: 'app' },
    source: { ip: '127.0.0.1', port: 40000 },
    grantIds,
    accessExpiresAt,
  };
}

describe('session registry', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('ends a session at certificate expiry, and at grant expiry when that comes first', () => {
    vi.useFakeTimers();
    const reg = new SessionRegistry();
    const ended: [string, EndReason, string][] = [];
    const a = reg.open(info('alice', 60_000), (r, m) => ended.push(['alice', r, m]));
    const b = reg.open(info('bob', 60_000, new Date(Date.now() + 10_000), ['g1']), (r, m) => ended.push(['bob', r, m]));
    vi.advanceTimersByTime(10_001);
    expect(ended).toEqual([['bob', 'grant_expired', expect.stringMatching(/grant has expired/)]]);
    expect(b.endReason).toBe('grant_expired');
    vi.advanceTimersByTime(50_000);
    expect(ended.map((e) => e.slice(0, 2))).toEqual([['bob', 'grant_expired'], ['alice', 'cert_expired']]);
    expect(a.endReason).toBe('cert_expired');
  });

  it('re-arms timers beyond the ~24.8-day setTimeout limit instead of firing early', () => {
    vi.useFakeTimers();
    const reg = new SessionRegistry();
    const ended: EndReason[] = [];
    reg.open(info('carol', 30 * 86_400_000), (r) => ended.push(r));
    vi.advanceTimersByTime(25 * 86_400_000);
    expect(ended).toEqual([]);
    vi.advanceTimersByTime(5 * 86_400_000 + 1);
    expect(ended).toEqual(['cert_expired']);
  });

  it('terminates once, keeps the first reason, and forgets closed sessions', () => {
    const reg = new SessionRegistry();
    let calls = 0;
    const h = reg.open(info('dave', 60_000, undefined, ['g2']), () => calls++);
    const other = reg.open(info('erin', 60_000), () => {});
    expect(reg.terminateWhere((s) => s.grantIds.includes('g2'), 'revoked', 'revoked')).toBe(1);
    h.terminate('locked', 'locked');
    expect(calls).toBe(1);
    expect(h.endReason).toBe('revoked');
    h.close('client_closed');
    expect(h.endReason).toBe('revoked');
    expect(reg.get(h.id)).toBeUndefined();
    expect(reg.list().map((s) => s.principal.user)).toEqual(['erin']);
    other.close('client_closed');
    expect(reg.size).toBe(0);
  });

  it('a session whose certificate already expired is ended right away; a throwing terminator does not escape', async () => {
    const reg = new SessionRegistry();
    const h = reg.open(info('frank', -1), () => {
      throw new Error('proxy bug');
    });
    await Promise.resolve();
    expect(h.endReason).toBe('cert_expired');
  });
});
