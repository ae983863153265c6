import { describe, it, expect } from 'vitest';
import { accountName, databaseRoles, sessionPassword, userProvisioningSchema } from '../../src/accounts/config.ts';
import { nativePasswordHash } from '../../proxies/mysql/provisioning.ts';
import { scramVerifier } from '../../proxies/postgres/provisioning.ts';
import { SessionRegistry, type EndReason } from '../../src/sessions/registry.ts';
import type { Principal } from '../../src/identity/types.ts';

describe('backend account names', () => {
  it('keeps a plain name as the pattern makes it', () => {
    expect(accountName('vigil_{user}', 'alice', 63)).toBe('vigil_alice');
    expect(accountName('{user}_ro', 'bob', 63)).toBe('bob_ro');
  });

  it('sanitizes to [a-z0-9_] and appends a hash of the exact user, so different users never collide', () => {
    const dotted = accountName('vigil_{user}', 'a.b', 63);
    const underscored = accountName('vigil_{user}', 'a_b', 63);
    const upper = accountName('vigil_{user}', 'A_B', 63);
    expect(dotted).toMatch(/^vigil_a_b_[0-9a-f]{8}$/);
    expect(underscored).toBe('vigil_a_b');
    expect(new Set([dotted, underscored, upper]).size).toBe(3);
    expect(accountName('vigil_{user}', `x'; DROP ROLE admin; --`, 63)).toMatch(/^[a-z0-9_]+$/);
    expect(accountName('{user}', '1st', 63)).toMatch(/^_1st_[0-9a-f]{8}$/);
  });

  it('shortens long names to the server limit, still distinct', () => {
    const a = accountName('vigil_{user}', 'averyveryverylongusername_one', 26);
    const b = accountName('vigil_{user}', 'averyveryverylongusername_two', 26);
    expect(a.length).toBeLessThanOrEqual(26);
    expect(b.length).toBeLessThanOrEqual(26);
    expect(a).not.toBe(b);
  });

  it('a safe name that ends like a tag is tagged too, so no user can choose the account of another', () => {
    for (const victim of ['Alice', 'bob.smith', 'x@y', 'A-B']) {
      const victimAccount = accountName('vigil_{user}', victim, 63);
      expect(victimAccount).toMatch(/_[0-9a-f]{8}$/);
      // A valid vigil user name chosen to read like the victim's sanitized name plus its tag.
      const chosen = victimAccount.slice('vigil_'.length);
      expect(chosen).toMatch(/^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$/);
      expect(accountName('vigil_{user}', chosen, 63)).not.toBe(victimAccount);
      expect(accountName('{user}', chosen, 63)).not.toBe(accountName('{user}', victim, 63));
    }
    // The victims' own accounts are what they always were (existing accounts keep working).
    expect(accountName('vigil_{user}', 'bob.smith', 63)).toBe('vigil_bob_smith_365b77fb');
    expect(accountName('vigil_{user}', 'Alice', 63)).toBe('vigil_alice_3bc51062');
    expect(accountName('vigil_{user}', 'bob_smith_365b77fb', 63)).toMatch(/^vigil_bob_smith_365b77fb_[0-9a-f]{8}$/);
    // Ordinary names that do not end like a tag keep their account.
    expect(accountName('vigil_{user}', 'ci_2024', 63)).toBe('vigil_ci_2024');
    expect(accountName('vigil_{user}', 'build_deadbeefcafe', 63)).toBe('vigil_build_deadbeefcafe');
  });

  it('a shortened name gets a 64-bit tag: anyone may choose a name with the same beginning', () => {
    // MySQL's limit (26, room for `_roles`): both names keep only `vigil_` and a few letters of the user.
    const victim = accountName('vigil_{user}', 'jonathan.richardson@example.com', 26);
    const other = accountName('vigil_{user}', 'jonathan.richardson@example.org', 26);
    for (const name of [victim, other]) {
      expect(name.length).toBeLessThanOrEqual(26);
      expect(name).toMatch(/^vigil_jon_[0-9a-f]{16}$/);
    }
    expect(victim).not.toBe(other);
    // Safe names too long for the server are shortened and tagged the same way.
    expect(accountName('vigil_{user}', 'a'.repeat(30), 26)).toMatch(/^vigil_aaa_[0-9a-f]{16}$/);
    // A name with more spellings than 2^16 (letter case, separators) gets the long tag even when whole.
    expect(accountName('vigil_{user}', 'Jonathan.Richardson@Example.com', 63)).toMatch(/^vigil_jonathan_richardson_example_com_[0-9a-f]{16}$/);
    // A 16-digit tag and an untagged name never meet either.
    expect(accountName('{user}', victim, 26)).not.toBe(victim);
  });

  it('maps vigil roles to the union of their database roles', () => {
    expect(databaseRoles({ oncall: ['r'], dba: ['w', 'r'] }, ['dba', 'oncall', 'unknown'])).toEqual(['r', 'w']);
    expect(databaseRoles({ oncall: ['r'] }, [])).toEqual([]);
  });

  it('requires {user} in name_pattern', () => {
    const schema = userProvisioningSchema({ base: '/', checkFiles: false });
    expect(schema.safeParse({ admin: { user: 'a' }, name_pattern: 'vigil_fixed' }).success).toBe(false);
    expect(schema.parse({ admin: { user: 'a' } })).toMatchObject({ name_pattern: 'vigil_{user}', roles_map: {} });
  });
});

describe('session secrets as sent to the server', () => {
  it('are fresh per session', () => {
    const a = sessionPassword();
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(sessionPassword()).not.toBe(a);
  });

  it('MariaDB gets the mysql_native_password hash, as PASSWORD() computes it', () => {
    expect(nativePasswordHash('password')).toBe('*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19');
  });

  it('Postgres gets a SCRAM-SHA-256 verifier that does not contain the password', () => {
    const v = scramVerifier('s3cret-value');
    expect(v).toMatch(/^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);
    expect(v).not.toContain('s3cret-value');
  });
});

describe('session registry end listeners (how accounts are released)', () => {
  const principal = { user: 'alice', roles: [], certSerial: '1', notAfter: new Date(Date.now() + 3_600_000) } as unknown as Principal;
  const info = { protocol: 'postgres', principal, target: { name: 't', host: 'h', port: 1 }, source: { ip: '127.0.0.1', port: 1 }, grantIds: [] };

  it('reports a cut session once, with the cut reason, even when the proxy closes it afterwards', () => {
    const reg = new SessionRegistry();
    const seen: [string, EndReason][] = [];
    reg.onEnd((id, reason) => seen.push([id, reason]));
    const h = reg.open(info, () => h.close('client_closed'));
    h.terminate('revoked', 'bye');
    h.close('client_closed');
    expect(seen).toEqual([[h.id, 'revoked']]);
  });

  it('reports a session the proxy closes by itself', () => {
    const reg = new SessionRegistry();
    const seen: EndReason[] = [];
    reg.onEnd((_id, reason) => seen.push(reason));
    reg.open(info, () => {}).close('client_closed');
    expect(seen).toEqual(['client_closed']);
  });

  it('reports grant expiry cut by the registry timer', async () => {
    const reg = new SessionRegistry();
    const seen: EndReason[] = [];
    reg.onEnd((_id, reason) => seen.push(reason));
    reg.open({ ...info, accessExpiresAt: new Date(Date.now() - 1) }, () => {});
    await new Promise((r) => setTimeout(r, 10));
    expect(seen).toEqual(['grant_expired']);
  });
});
