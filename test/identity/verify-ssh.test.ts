import crypto from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { option, SSH_CERT_HOST } from '../../src/identity/openssh-cert.ts';
import { fromKeyObject, parseSignatureBlob, publicKeyBlob } from '../../src/identity/ssh-keys.ts';
import type { VerifyResult } from '../../src/identity/types.ts';
import { clientAuth, makeUserCert, setupIdentity, type TestIdentity } from './helpers.ts';

function reason(r: VerifyResult): string {
  return r.ok ? 'ok' : r.reason;
}

describe('verifySshAuth', () => {
  let t: TestIdentity;
  const userKey = crypto.generateKeyPairSync('ed25519').privateKey;
  const now = () => BigInt(Math.floor(Date.now() / 1000));
  beforeAll(async () => {
    t = await setupIdentity();
  });

  it('accepts a good certificate with a client signature and returns the principal', () => {
    const cert = makeUserCert(t.keys.userCa, userKey, {
      extensions: [option('permit-pty'), option('permit-port-forwarding'), option('roles@vigil', 'oncall,dba'), option('grant@vigil', 'g-1')],
      criticalOptions: [option('force-command', 'uptime')],
      serial: 0xabcdef0123456789n,
    });
    const r = t.identity.verifySshAuth(clientAuth(cert, userKey));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.principal).toMatchObject({
      user: 'alice',
      roles: ['oncall', 'dba'],
      certSerial: 'abcdef0123456789',
      credential: 'ssh-cert',
      grantId: 'g-1',
      forceCommand: 'uptime',
      extensions: ['permit-port-forwarding', 'permit-pty'],
    });
  });

  it('accepts the "would you accept this key" query without a signature', () => {
    const cert = makeUserCert(t.keys.userCa, userKey);
    const { signedData: _d, signature: _s, ...query } = clientAuth(cert, userKey);
    expect(reason(t.identity.verifySshAuth(query))).toBe('ok');
  });

  it('accepts the signature stripped of its algorithm header (as ssh2 may hand it over)', () => {
    const cert = makeUserCert(t.keys.userCa, userKey);
    const a = clientAuth(cert, userKey);
    const stripped = parseSignatureBlob(a.signature)!.sig;
    expect(reason(t.identity.verifySshAuth({ ...a, signature: stripped }))).toBe('ok');
  });

  it('verifies ecdsa (SSH mpint and DER forms) and rsa-sha2-256/512 user keys', () => {
    const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const ecAuth = clientAuth(makeUserCert(t.keys.userCa, ec), ec);
    expect(reason(t.identity.verifySshAuth(ecAuth))).toBe('ok');
    const der = crypto.sign('sha256', ecAuth.signedData, ec);
    expect(reason(t.identity.verifySshAuth({ ...ecAuth, signature: der }))).toBe('ok');

    const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const rsaCert = makeUserCert(t.keys.userCa, rsa);
    for (const alg of ['rsa-sha2-256', 'rsa-sha2-512']) {
      const a = clientAuth(rsaCert, rsa, { algo: `${alg}-cert-v01@openssh.com`, sigAlgo: alg });
      expect(reason(t.identity.verifySshAuth(a))).toBe('ok');
      expect(reason(t.identity.verifySshAuth({ ...a, signature: parseSignatureBlob(a.signature)!.sig }))).toBe('ok');
    }
  });

  it('rejects a signature made by a key other than the certificate’s', () => {
    const cert = makeUserCert(t.keys.userCa, userKey);
    const other = crypto.generateKeyPairSync('ed25519').privateKey;
    const good = clientAuth(cert, userKey);
    const forged = clientAuth(cert, other);
    const r = t.identity.verifySshAuth({ ...good, signature: forged.signature, signedData: forged.signedData });
    expect(reason(r)).toBe('bad_signature');
    expect(r.ok || r.message).toBe('signature check failed');
    // a signature over different data than presented
    const flipped = Buffer.from(good.signedData);
    flipped[10] ^= 1;
    expect(reason(t.identity.verifySshAuth({ ...good, signedData: flipped }))).toBe('bad_signature');
    // a valid signature whose signed data names another certificate of the same key
    const second = makeUserCert(t.keys.userCa, userKey, { serial: 99n });
    const r2 = t.identity.verifySshAuth({ ...clientAuth(second, userKey), keyBlob: cert });
    expect(reason(r2)).toBe('bad_signature');
    expect(r2.ok || r2.detail).toContain('does not cover');
  });

  it('rejects an expired certificate (no skew allowance on expiry), and one not yet valid beyond the allowance', () => {
    const expired = makeUserCert(t.keys.userCa, userKey, { validAfter: now() - 7200n, validBefore: now() - 120n });
    const r = t.identity.verifySshAuth(clientAuth(expired, userKey));
    expect(reason(r)).toBe('expired');
    expect(r.ok || r.message).toBe('certificate expired');
    expect(r.ok || r.user).toBe('alice');
    const future = makeUserCert(t.keys.userCa, userKey, { validAfter: now() + 600n, validBefore: now() + 3600n });
    expect(reason(t.identity.verifySshAuth(clientAuth(future, userKey)))).toBe('not_yet_valid');
    // the skew allowance covers validAfter only: a certificate that expired 20 s ago is refused ...
    const justExpired = makeUserCert(t.keys.userCa, userKey, { validAfter: now() - 3600n, validBefore: now() - 20n });
    expect(reason(t.identity.verifySshAuth(clientAuth(justExpired, userKey)))).toBe('expired');
    // ... while one whose validAfter is 20 s ahead of our clock is accepted
    const early = makeUserCert(t.keys.userCa, userKey, { validAfter: now() + 20n, validBefore: now() + 3600n });
    expect(reason(t.identity.verifySshAuth(clientAuth(early, userKey)))).toBe('ok');
  });

  it('rejects a certificate signed by another CA, or with a forged CA signature', () => {
    const otherCa = crypto.generateKeyPairSync('ed25519').privateKey;
    const r = t.identity.verifySshAuth(clientAuth(makeUserCert(otherCa, userKey), userKey));
    expect(reason(r)).toBe('wrong_ca');
    expect(r.ok || r.message).toBe('certificate not signed by this gateway');
    expect(r.ok || r.user).toBeUndefined(); // an untrusted certificate's claims never become the actor
    // our CA named as the signer, but signed by another key
    const forged = makeUserCert(otherCa, userKey, { signatureKey: publicKeyBlob(fromKeyObject(t.keys.userCa)) });
    const f = t.identity.verifySshAuth(clientAuth(forged, userKey));
    expect(reason(f)).toBe('wrong_ca');
    expect(f.ok || f.detail).toContain('does not verify');
    const body = makeUserCert(t.keys.userCa, userKey);
    const tampered = Buffer.from(body);
    tampered[tampered.length - 5] ^= 1; // flip a bit of the CA signature
    expect(reason(t.identity.verifySshAuth(clientAuth(tampered, userKey)))).toBe('wrong_ca');
  });

  it('rejects empty, missing or multiple principals and host certificates', () => {
    expect(reason(t.identity.verifySshAuth(clientAuth(makeUserCert(t.keys.userCa, userKey, { principals: [] }), userKey)))).toBe('principal_mismatch');
    expect(reason(t.identity.verifySshAuth(clientAuth(makeUserCert(t.keys.userCa, userKey, { principals: [''] }), userKey)))).toBe('principal_mismatch');
    expect(reason(t.identity.verifySshAuth(clientAuth(makeUserCert(t.keys.userCa, userKey, { principals: ['alice', 'root'] }), userKey)))).toBe('principal_mismatch');
    expect(reason(t.identity.verifySshAuth(clientAuth(makeUserCert(t.keys.userCa, userKey, { certType: SSH_CERT_HOST }), userKey)))).toBe('not_client_cert');
  });

  it('rejects a revoked serial', async () => {
    const cert = makeUserCert(t.keys.userCa, userKey, { serial: 0x77n });
    expect(reason(t.identity.verifySshAuth(clientAuth(cert, userKey)))).toBe('ok');
    await t.store.revoke({ serial: '0000000000000077', reason: 'test', by: 'bob', time: new Date().toISOString() });
    const r = t.identity.verifySshAuth(clientAuth(cert, userKey));
    expect(reason(r)).toBe('revoked');
    expect(r.ok || r.certSerial).toBe('0000000000000077');
  });

  it('rejects an unknown critical option', () => {
    const cert = makeUserCert(t.keys.userCa, userKey, { criticalOptions: [option('verify-required')] });
    const r = t.identity.verifySshAuth(clientAuth(cert, userKey));
    expect(reason(r)).toBe('unknown_critical_option');
    expect(r.ok || r.detail).toContain('verify-required');
  });

  it('honours source-address for IPv4, IPv6 and IPv4-mapped IPv6 clients', () => {
    const cert = makeUserCert(t.keys.userCa, userKey, { criticalOptions: [option('source-address', '10.1.0.0/16,2001:db8::/32')] });
    const a = clientAuth(cert, userKey);
    const at = (ip: string) => reason(t.identity.verifySshAuth({ ...a, sourceIp: ip }));
    expect(at('127.0.0.1')).toBe('source_address');
    expect(at('10.2.0.1')).toBe('source_address');
    expect(at('10.1.200.3')).toBe('ok');
    expect(at('::ffff:10.1.2.3')).toBe('ok');
    expect(at('2001:db8:1::5')).toBe('ok');
    expect(at('2001:db9::5')).toBe('source_address');
    const r = t.identity.verifySshAuth({ ...a, sourceIp: '192.0.2.1' });
    expect(r.ok || r.message).toBe('certificate not valid from this address');
    const ok = t.identity.verifySshAuth({ ...a, sourceIp: '10.1.0.9' });
    expect(ok.ok && ok.principal.sourceAddresses).toEqual(['10.1.0.0/16', '2001:db8::/32']);
  });

  it('rejects plain keys and malformed certificates', () => {
    const plain = crypto.generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' });
    const blob = Buffer.concat([Buffer.from([0, 0, 0, 11]), Buffer.from('ssh-ed25519'), Buffer.from([0, 0, 0, 32]), Buffer.from(plain.x!, 'base64url')]);
    expect(reason(t.identity.verifySshAuth({ keyAlgo: 'ssh-ed25519', keyBlob: blob, sourceIp: '127.0.0.1' }))).toBe('plain_key');
    const cert = makeUserCert(t.keys.userCa, userKey);
    expect(reason(t.identity.verifySshAuth({ ...clientAuth(cert, userKey), keyBlob: cert.subarray(0, 50) }))).toBe('malformed');
    // request algorithm that does not match the certificate inside
    expect(reason(t.identity.verifySshAuth({ ...clientAuth(cert, userKey), keyAlgo: 'ecdsa-sha2-nistp256-cert-v01@openssh.com' }))).toBe('malformed');
  });
});
