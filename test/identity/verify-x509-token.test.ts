import crypto from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCaCertificate, createClientCertificate, loadCa } from '../../src/identity/x509.ts';
import { signToken } from '../../src/identity/token.ts';
import type { VerifyResult } from '../../src/identity/types.ts';
import { setupIdentity, type TestIdentity } from './helpers.ts';

const reason = (r: VerifyResult) => (r.ok ? 'ok' : r.reason);
const der = (pem: string) => new crypto.X509Certificate(pem).raw;

describe('verifyClientCertificate', () => {
  let t: TestIdentity;
  beforeAll(async () => {
    t = await setupIdentity();
  });
  const window = (fromMs: number, toMs: number) => ({ notBefore: new Date(Date.now() + fromMs), notAfter: new Date(Date.now() + toMs) });

  it('accepts an issued certificate and returns user, roles and serial', async () => {
    const c = await t.identity.issue({ user: 'alice', roles: ['oncall', 'dba'] });
    const r = t.identity.verifyClientCertificate(der(c.x509Certificate), '127.0.0.1');
    expect(r.ok && r.principal).toMatchObject({ user: 'alice', roles: ['oncall', 'dba'], certSerial: c.serial, credential: 'x509', extensions: [] });
  });

  it('reads the user exactly from the certificate, whatever characters need escaping in printed names', async () => {
    const c = await t.identity.issue({ user: 'al+ice@example.com', roles: ['r.1'] });
    expect(new crypto.X509Certificate(c.x509Certificate).subject).toContain('\\+'); // node prints it escaped
    const r = t.identity.verifyClientCertificate(der(c.x509Certificate), '127.0.0.1');
    expect(r.ok && r.principal.user).toBe('al+ice@example.com');
  });

  it('rejects a certificate from another CA with the same subject names', () => {
    const other = createCaCertificate('0102030405060708');
    const otherCa = loadCa(other.certPem, other.keyPem);
    const c = createClientCertificate(otherCa, { user: 'alice', roles: ['admin'], serialHex: '1111111111111111', ...window(-60_000, 3_600_000) });
    const r = t.identity.verifyClientCertificate(der(c.certPem), '127.0.0.1');
    expect(reason(r)).toBe('wrong_ca');
    expect(r.ok || r.message).toBe('certificate not signed by this gateway');
    expect(r.ok || r.user).toBeUndefined();
  });

  it('rejects expired and not-yet-valid certificates beyond the skew allowance', () => {
    const expired = createClientCertificate(t.keys.x509, { user: 'alice', roles: [], serialHex: '2222222222222222', ...window(-7_200_000, -120_000) });
    const r = t.identity.verifyClientCertificate(der(expired.certPem), '127.0.0.1');
    expect(reason(r)).toBe('expired');
    expect(r.ok || [r.message, r.user, r.certSerial]).toEqual(['certificate expired', 'alice', '2222222222222222']);
    const future = createClientCertificate(t.keys.x509, { user: 'alice', roles: [], serialHex: '3333333333333333', ...window(600_000, 3_600_000) });
    expect(reason(t.identity.verifyClientCertificate(der(future.certPem), '127.0.0.1'))).toBe('not_yet_valid');
  });

  it('rejects a revoked serial', async () => {
    const c = await t.identity.issue({ user: 'alice', roles: [] });
    await t.store.revoke({ serial: c.serial, reason: 'laptop lost', by: 'bob', time: new Date().toISOString() });
    expect(reason(t.identity.verifyClientCertificate(der(c.x509Certificate), '127.0.0.1'))).toBe('revoked');
  });

  it('rejects the gateway’s own server certificate and the CA certificate used as client certificates', () => {
    const server = t.identity.verifyClientCertificate(der(t.identity.tls().cert), '127.0.0.1');
    expect(reason(server)).toBe('not_client_cert');
    expect(server.ok || server.detail).toContain('1.3.6.1.5.5.7.3.1');
    // the CA is self-issued, so checkIssued passes and it must be refused for being a CA
    expect(reason(t.identity.verifyClientCertificate(der(t.identity.tls().ca), '127.0.0.1'))).toBe('not_client_cert');
  });

  it('rejects a missing certificate, garbage, and a certificate with an empty CN', () => {
    expect(reason(t.identity.verifyClientCertificate(undefined, '127.0.0.1'))).toBe('no_certificate');
    expect(reason(t.identity.verifyClientCertificate(Buffer.alloc(0), '127.0.0.1'))).toBe('no_certificate');
    expect(reason(t.identity.verifyClientCertificate(Buffer.from('not a certificate'), '127.0.0.1'))).toBe('malformed');
    const empty = createClientCertificate(t.keys.x509, { user: '', roles: [], serialHex: '4444444444444444', ...window(-60_000, 3_600_000) });
    expect(reason(t.identity.verifyClientCertificate(der(empty.certPem), '127.0.0.1'))).toBe('principal_mismatch');
  });

  it('rejects a certificate whose bytes were altered after signing', async () => {
    const c = await t.identity.issue({ user: 'alice', roles: ['dba'] });
    const raw = Buffer.from(der(c.x509Certificate));
    const at = raw.indexOf(Buffer.from('dba'));
    raw.write('DBA', at); // same length: still parses, signature no longer matches
    expect(reason(t.identity.verifyClientCertificate(raw, '127.0.0.1'))).toBe('wrong_ca');
  });
});

describe('tokens', () => {
  let t: TestIdentity;
  beforeAll(async () => {
    t = await setupIdentity();
  });

  it('issues a token that verifies to the same identity, recorded in the store', async () => {
    const tok = await t.identity.issueToken({ user: 'alice', roles: ['dba'], ttlMs: 600_000 });
    expect(tok.token).toMatch(/^vigil\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    const r = t.identity.verifyToken(tok.token, '127.0.0.1');
    expect(r.ok && r.principal).toMatchObject({ user: 'alice', roles: ['dba'], certSerial: tok.serial, credential: 'token' });
    expect(r.ok && r.principal.notAfter.getTime()).toBe(tok.notAfter.getTime());
    expect(t.store.issued.get(tok.serial)?.kind).toBe('token');
  });

  it('rejects altered, foreign-signed, expired and revoked tokens', async () => {
    const tok = await t.identity.issueToken({ user: 'alice', roles: ['dba'] });
    const [p, body, sig] = tok.token.split('.');
    const altered = Buffer.from(body, 'base64url').toString().replace('"dba"', '"admin"');
    expect(reason(t.identity.verifyToken(`${p}.${Buffer.from(altered).toString('base64url')}.${sig}`, '127.0.0.1'))).toBe('token_invalid');
    expect(reason(t.identity.verifyToken('vigil.x.y', '127.0.0.1'))).toBe('token_invalid');
    expect(reason(t.identity.verifyToken('hunter2', '127.0.0.1'))).toBe('token_invalid');

    const foreign = crypto.generateKeyPairSync('ed25519').privateKey;
    const now = Math.floor(Date.now() / 1000);
    const payload = { v: 1 as const, sub: 'alice', roles: ['admin'], serial: '5555555555555555', nbf: now - 60, exp: now + 600 };
    expect(reason(t.identity.verifyToken(signToken(payload, foreign), '127.0.0.1'))).toBe('token_invalid');

    const expired = t.identity.verifyToken(signToken({ ...payload, nbf: now - 7200, exp: now - 600 }, t.keys.tokenKey), '127.0.0.1');
    expect(reason(expired)).toBe('expired');
    expect(expired.ok || expired.message).toBe('token expired');

    await t.store.revoke({ serial: tok.serial, reason: 'leaked in chat', by: 'bob', time: new Date().toISOString() });
    const revoked = t.identity.verifyToken(tok.token, '127.0.0.1');
    expect(reason(revoked)).toBe('revoked');
    expect(revoked.ok || revoked.message).toBe('token revoked');
  });
});
