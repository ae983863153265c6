import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseCertificateLine } from '../../src/identity/openssh-cert.ts';
import { parseOpenSshPrivateKey } from '../../src/identity/openssh-privkey.ts';
import { VigilError } from '../../src/errors.ts';
import { clientAuth, setupIdentity, type TestIdentity } from './helpers.ts';
import type { AccessRecord } from '../../src/store/types.ts';

function write(dir: string, name: string, content: string, mode = 0o600): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, content.endsWith('\n') ? content : content + '\n', { mode });
  return p;
}

function grant(over: Partial<AccessRecord>): AccessRecord {
  const now = Date.now();
  return {
    id: 'g-1',
    user: 'alice',
    role: 'prod-dba',
    targets: [],
    reason: 'INC-1',
    ttlMs: 1_800_000,
    state: 'active',
    createdAt: new Date(now).toISOString(),
    requestExpiresAt: new Date(now + 3_600_000).toISOString(),
    approvals: [],
    breakGlass: false,
    grantedAt: new Date(now).toISOString(),
    expiresAt: new Date(now + 1_800_000).toISOString(),
    ...over,
  };
}

describe('identity.issue', () => {
  let t: TestIdentity;
  beforeAll(async () => {
    t = await setupIdentity({ certs: { max_ttl: '12h', default_ttl: '1h' } });
  });

  it('issues an SSH certificate that ssh-keygen -L shows valid, with principal, validity, extensions and critical options', async () => {
    const creds = await t.identity.issue({
      user: 'alice',
      roles: ['oncall', 'dba'],
      ttlMs: 3_600_000,
      extensions: ['permit-pty', 'permit-port-forwarding'],
      sourceAddresses: ['10.0.0.0/8', '127.0.0.1'],
      forceCommand: '/usr/bin/uptime',
    });
    const dir = fs.mkdtempSync(path.join(t.base, 'out-'));
    write(dir, 'alice', creds.sshPrivateKey!);
    const certFile = write(dir, 'alice-cert.pub', creds.sshCertificate, 0o644);
    const out = execFileSync('ssh-keygen', ['-L', '-f', certFile], { encoding: 'utf8' });
    expect(out).toContain('Type: ssh-ed25519-cert-v01@openssh.com user certificate');
    expect(out).toContain(`Key ID: "vigil:alice:${creds.serial}"`);
    expect(out).toContain(`Serial: ${BigInt('0x' + creds.serial).toString(10)}`);
    expect(out).toMatch(/Principals: \n\s+alice\n/);
    expect(out).toMatch(/Critical Options: \n\s+force-command \/usr\/bin\/uptime\n\s+source-address 10\.0\.0\.0\/8,127\.0\.0\.1\n/);
    expect(out).toMatch(/Extensions: \n(\s+.*\n)*\s+permit-port-forwarding\n\s+permit-pty\n/);
    // ssh-keygen prints local time without zone: compare with the same rendering
    const fmt = (d: Date) => {
      const p = (n: number) => String(n).padStart(2, '0');
      return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    };
    expect(out).toContain(`Valid: from ${fmt(creds.notBefore)} to ${fmt(creds.notAfter)}`);
    expect(creds.notAfter.getTime() - creds.notBefore.getTime()).toBe(3_660_000);
    const userCaFp = execFileSync('ssh-keygen', ['-l', '-f', write(dir, 'user_ca.pub', t.identity.sshUserCaPublicKey(), 0o644)], { encoding: 'utf8' }).split(' ')[1];
    expect(out).toContain(`Signing CA: ED25519 ${userCaFp}`);
    // the generated private key is what ssh accepts: ssh-keygen derives the same public key from it
    const pubFromPriv = execFileSync('ssh-keygen', ['-y', '-f', path.join(dir, 'alice')], { encoding: 'utf8' }).trim().split(' ').slice(0, 2).join(' ');
    expect(creds.sshPublicKey.startsWith(pubFromPriv)).toBe(true);
    // our own parser agrees, and the certificate passes our verification from an allowed address
    const cert = parseCertificateLine(creds.sshCertificate);
    expect(cert.principals).toEqual(['alice']);
    const key = parseOpenSshPrivateKey(creds.sshPrivateKey!).privateKey;
    const r = t.identity.verifySshAuth({ ...clientAuth(Buffer.from(creds.sshCertificate.split(' ')[1], 'base64'), key), sourceIp: '10.9.8.7' });
    expect(r.ok && r.principal).toMatchObject({ user: 'alice', roles: ['oncall', 'dba'], certSerial: creds.serial, forceCommand: '/usr/bin/uptime' });
    expect(t.store.issued.get(creds.serial)).toMatchObject({ user: 'alice', roles: ['oncall', 'dba'], kind: 'cert' });
  });

  it('certifies a user-supplied ed25519, ecdsa or rsa key made by ssh-keygen', async () => {
    const dir = fs.mkdtempSync(path.join(t.base, 'keys-'));
    for (const [type, bits] of [['ed25519', ''], ['ecdsa', '256'], ['rsa', '3072']] as const) {
      const file = path.join(dir, `id_${type}`);
      execFileSync('ssh-keygen', ['-q', '-t', type, ...(bits ? ['-b', bits] : []), '-N', '', '-f', file, '-C', 'alice@laptop']);
      const creds = await t.identity.issue({ user: 'alice', roles: ['oncall'], sshPublicKey: fs.readFileSync(`${file}.pub`, 'utf8') });
      expect(creds.sshPrivateKey).toBeUndefined();
      const certFile = write(dir, `id_${type}-cert.pub`, creds.sshCertificate, 0o644);
      const out = execFileSync('ssh-keygen', ['-L', '-f', certFile], { encoding: 'utf8' });
      expect(out).toContain('user certificate');
      expect(out).toMatch(/Principals: \n\s+alice\n/);
    }
  });

  it('writes an X.509 client certificate that openssl verifies against ca.crt, CN = user and one OU per role', async () => {
    const creds = await t.identity.issue({ user: 'alice', roles: ['oncall', 'dba'] });
    const dir = fs.mkdtempSync(path.join(t.base, 'x509-'));
    const crt = write(dir, 'alice.crt', creds.x509Certificate, 0o644);
    const ca = write(dir, 'ca.crt', creds.caCertificate, 0o644);
    write(dir, 'alice.key', creds.x509PrivateKey);
    expect(execFileSync('openssl', ['verify', '-purpose', 'sslclient', '-CAfile', ca, crt], { encoding: 'utf8' })).toContain('OK');
    const x = new crypto.X509Certificate(creds.x509Certificate);
    expect(x.subject).toBe('CN=alice\nOU=oncall\nOU=dba');
    expect(x.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(x.serialNumber.toLowerCase().replace(/^0+/, '')).toBe(creds.serial.replace(/^0+/, ''));
    expect(Date.parse(x.validFrom)).toBe(creds.notBefore.getTime());
    expect(Date.parse(x.validTo)).toBe(creds.notAfter.getTime());
    expect(x.checkPrivateKey(crypto.createPrivateKey(creds.x509PrivateKey))).toBe(true);
    // the gateway's TLS server certificate chains to the same root with the configured SANs
    const server = write(dir, 'server.crt', t.identity.tls().cert, 0o644);
    expect(execFileSync('openssl', ['verify', '-purpose', 'sslserver', '-verify_hostname', 'localhost', '-CAfile', ca, server], { encoding: 'utf8' })).toContain('OK');
    expect(execFileSync('openssl', ['verify', '-verify_ip', '127.0.0.1', '-CAfile', ca, server], { encoding: 'utf8' })).toContain('OK');
    const r = t.identity.verifyClientCertificate(x.raw, '127.0.0.1');
    expect(r.ok && r.principal).toMatchObject({ user: 'alice', roles: ['oncall', 'dba'], certSerial: creds.serial, credential: 'x509' });
  });

  it('caps the lifetime by certs.max_ttl and uses certs.default_ttl when none is asked', async () => {
    const long = await t.identity.issue({ user: 'alice', roles: [], ttlMs: 48 * 3_600_000 });
    expect(long.notAfter.getTime() - long.notBefore.getTime()).toBe(12 * 3_600_000 + 60_000);
    const dflt = await t.identity.issue({ user: 'alice', roles: [] });
    expect(dflt.notAfter.getTime() - dflt.notBefore.getTime()).toBe(3_600_000 + 60_000);
  });

  it('ties a certificate to an active grant of the same user and never lets it outlive the grant', async () => {
    await t.store.createAccess(grant({ id: 'g-ok', expiresAt: new Date(Date.now() + 600_000).toISOString() }));
    const creds = await t.identity.issue({ user: 'alice', roles: ['oncall'], ttlMs: 3_600_000, grantId: 'g-ok' });
    expect(creds.notAfter.getTime()).toBeLessThanOrEqual(Date.now() + 600_000);
    expect(creds.roles).toEqual(['oncall', 'prod-dba']);
    expect(creds.grantId).toBe('g-ok');
    const x = t.identity.verifyClientCertificate(new crypto.X509Certificate(creds.x509Certificate).raw, '127.0.0.1');
    expect(x.ok && x.principal.grantId).toBe('g-ok');
    expect(t.store.issued.get(creds.serial)?.grantId).toBe('g-ok');

    await t.store.createAccess(grant({ id: 'g-pending', state: 'pending', expiresAt: undefined }));
    await t.store.createAccess(grant({ id: 'g-bob', user: 'bob' }));
    const code = async (p: Promise<unknown>) => p.then(() => 'resolved', (e: VigilError) => e.code);
    expect(await code(t.identity.issue({ user: 'alice', roles: [], grantId: 'nope' }))).toBe('VIGIL_GRANT_NOT_FOUND');
    expect(await code(t.identity.issue({ user: 'alice', roles: [], grantId: 'g-pending' }))).toBe('VIGIL_GRANT_NOT_ACTIVE');
    expect(await code(t.identity.issue({ user: 'alice', roles: [], grantId: 'g-bob' }))).toBe('VIGIL_GRANT_WRONG_USER');
    expect(await code(t.identity.issueToken({ user: 'alice', roles: [], grantId: 'g-bob' }))).toBe('VIGIL_GRANT_WRONG_USER');
  });

  it('refuses bad requests with a clear error', async () => {
    const code = async (p: Promise<unknown>) => p.then(() => 'resolved', (e: VigilError) => e.code);
    expect(await code(t.identity.issue({ user: 'al ice', roles: [] }))).toBe('VIGIL_CERT_INVALID_REQUEST');
    expect(await code(t.identity.issue({ user: 'alice', roles: ['a,b'] }))).toBe('VIGIL_CERT_INVALID_REQUEST');
    expect(await code(t.identity.issue({ user: 'alice', roles: [], extensions: ['permit-everything'] }))).toBe('VIGIL_CERT_INVALID_REQUEST');
    expect(await code(t.identity.issue({ user: 'alice', roles: [], sourceAddresses: ['10.0.0.1/8'] }))).toBe('VIGIL_CERT_INVALID_REQUEST');
    expect(await code(t.identity.issue({ user: 'alice', roles: [], sshPublicKey: 'ssh-ed25519 AAAA' }))).toBe('VIGIL_CERT_INVALID_REQUEST');
    expect(await code(t.identity.issue({ user: 'alice', roles: [], ttlMs: 0 }))).toBe('VIGIL_CERT_INVALID_REQUEST');
  });

  it('issues host certificates for jump-host targets, signed by the host CA, that ssh-keygen shows', () => {
    const a = t.identity.sshTargetHostKey('pg-prod');
    expect(t.identity.sshTargetHostKey('pg-prod').certificate).toBe(a.certificate); // cached per target
    expect(t.identity.sshTargetHostKey('mysql-prod').certificate).not.toBe(a.certificate);
    const dir = fs.mkdtempSync(path.join(t.base, 'host-'));
    const file = write(dir, 'target-cert.pub', a.certificate, 0o644);
    const out = execFileSync('ssh-keygen', ['-L', '-f', file], { encoding: 'utf8' });
    expect(out).toContain('host certificate');
    expect(out).toMatch(/Principals: \n\s+pg-prod\n/);
    const caFp = execFileSync('ssh-keygen', ['-l', '-f', write(dir, 'host_ca.pub', t.identity.sshHostCaPublicKey(), 0o644)], { encoding: 'utf8' }).split(' ')[1];
    expect(out).toContain(`Signing CA: ED25519 ${caFp}`);
    // Each target has its own key, neither the gateway's nor another target's, and stable.
    expect(a.privateKey).not.toBe(t.identity.sshHostKey());
    expect(t.identity.sshTargetHostKey('mysql-prod').privateKey).not.toBe(a.privateKey);
    expect(t.identity.sshTargetHostKey('pg-prod').privateKey).toBe(a.privateKey);
    // The certificate certifies that key.
    const keyFile = write(dir, 'target-key', a.privateKey, 0o600);
    const pub = execFileSync('ssh-keygen', ['-y', '-f', keyFile], { encoding: 'utf8' }).trim().split(' ').slice(0, 2).join(' ');
    expect(out).toContain(`Public key: ED25519-CERT ${execFileSync('ssh-keygen', ['-l', '-f', write(dir, 'target-key.pub', pub, 0o644)], { encoding: 'utf8' }).split(' ')[1]}`);
  });
});
