import { describe, it, expect } from 'vitest';
import { mayChangeRole, RoleProbeReader, roleProbeMessage, sessionAuthorization, startupMaySetRole } from '../../proxies/postgres/role.ts';
import { cstr, encodeMessage, int16, int32 } from '../../proxies/postgres/frontend.ts';

const msg = (type: string, ...parts: Buffer[]) => encodeMessage(type.charCodeAt(0), Buffer.concat(parts));

describe('postgres role tracking (pure)', () => {
  it('knows which statements may change current_user', () => {
    expect(mayChangeRole('SET', 'SET ROLE reader', false)).toBe(true);
    expect(mayChangeRole('SET', 'SET SESSION AUTHORIZATION bob', false)).toBe(true);
    expect(mayChangeRole('SET', 'SET standard_conforming_strings = off', false)).toBe(false);
    expect(mayChangeRole('RESET', 'RESET ALL', false)).toBe(true);
    expect(mayChangeRole('RESET', 'RESET search_path', false)).toBe(false);
    expect(mayChangeRole('DISCARD', 'DISCARD ALL', false)).toBe(true);
    expect(mayChangeRole('DISCARD', 'DISCARD PLANS', false)).toBe(false);
    expect(mayChangeRole('SELECT', "SELECT set_config('role', 'writer', false)", false)).toBe(true);
    expect(mayChangeRole('COMMIT', 'COMMIT', false)).toBe(false);
    expect(mayChangeRole('ROLLBACK', 'ROLLBACK', true)).toBe(true);
    expect(startupMaySetRole([['options', '-c role=writer']])).toBe(true);
    expect(startupMaySetRole([['application_name', 'x'], ['options', '-c search_path=a']])).toBe(false);
  });

  it('reads the probe answer, passes asynchronous messages on, and reports errors', () => {
    expect(roleProbeMessage().subarray(5).toString()).toBe('SELECT current_user\0');
    const r = new RoleProbeReader();
    expect(r.onMessage(0x54, msg('T', int16(1)))).toEqual({ kind: 'consumed' });
    expect(r.onMessage(0x4e, msg('N', cstr('SNOTICE')))).toEqual({ kind: 'relay' });
    expect(r.onMessage(0x44, msg('D', int16(1), int32(6), Buffer.from('reader')))).toEqual({ kind: 'consumed' });
    expect(r.onMessage(0x43, msg('C', cstr('SELECT 1')))).toEqual({ kind: 'consumed' });
    expect(r.onMessage(0x5a, msg('Z', Buffer.from('I')))).toEqual({ kind: 'done', role: 'reader', error: undefined });
    const failed = new RoleProbeReader();
    failed.onMessage(0x45, msg('E', cstr('SERROR'), cstr('C25P02'), cstr('Mcurrent transaction is aborted'), Buffer.from([0])));
    expect(failed.onMessage(0x5a, msg('Z', Buffer.from('E')))).toEqual({ kind: 'done', role: undefined, error: 'current transaction is aborted' });
    expect(sessionAuthorization(msg('S', cstr('session_authorization'), cstr('trust_user')))).toBe('trust_user');
    expect(sessionAuthorization(msg('S', cstr('TimeZone'), cstr('UTC')))).toBeUndefined();
  });
});
