import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeCertificate, option, optionValue, parseCertificate, parseCertificateLine, SSH_CERT_USER, type SshCertificateFields } from '../../src/identity/openssh-cert.ts';
import { fromKeyObject, parsePublicKeyBlob, parsePublicKeyLine, publicKeyBlob, signEd25519 } from '../../src/identity/ssh-keys.ts';
import { encodeOpenSshPrivateKey, parseOpenSshPrivateKey } from '../../src/identity/openssh-privkey.ts';
import { SshReader, SshWireError, sshMpint, sshString } from '../../src/identity/ssh-wire.ts';
import { CA_FILES } from '../../src/identity/ca.ts';
import { clientAuth, setupIdentity } from './helpers.ts';
import { tempDir } from '../support/tmp.ts';

const ca = crypto.generateKeyPairSync('ed25519').privateKey;

function fields(over: Partial<SshCertificateFields> = {}): SshCertificateFields {
  return {
    nonce: Buffer.alloc(32, 7),
    key: fromKeyObject(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey),
    serial: 0xfedcba9876543210n,
    certType: SSH_CERT_USER,
    keyId: 'vigil:alice:fedcba9876543210',
    principals: ['alice'],
    validAfter: 1_700_000_000n,
    validBefore: 1_700_003_600n,
    criticalOptions: [option('source-address', '10.0.0.0/8'), option('force-command', 'id')],
    extensions: [option('permit-pty'), option('permit-port-forwarding'), option('roles@vigil', 'a,b')],
    signatureKey: publicKeyBlob(fromKeyObject(ca)),
    ...over,
  };
}

describe('OpenSSH certificate codec', () => {
  it('round-trips every field, with options sorted as PROTOCOL.certkeys requires', () => {
    const f = fields();
    const blob = encodeCertificate(f, (d) => signEd25519(ca, d));
    const c = parseCertificate(blob);
    expect(c.algo).toBe('ecdsa-sha2-nistp256-cert-v01@openssh.com');
    expect(c.serial).toBe(f.serial);
    expect(c.keyId).toBe(f.keyId);
    expect(c.principals).toEqual(['alice']);
    expect([c.validAfter, c.validBefore]).toEqual([f.validAfter, f.validBefore]);
    expect(c.criticalOptions.map((o) => [o.name, optionValue(o)])).toEqual([
      ['force-command', 'id'],
      ['source-address', '10.0.0.0/8'],
    ]);
    expect(c.extensions.map((o) => o.name)).toEqual(['permit-port-forwarding', 'permit-pty', 'roles@vigil']);
    expect(publicKeyBlob(c.key)).toEqual(publicKeyBlob(f.key));
    expect(crypto.verify(null, c.signedBytes, crypto.createPublicKey(ca), new SshReader(c.signature, 4 + 11).string())).toBe(true);
  });

  it('fails cleanly (SshWireError, never anything else) when truncated at every byte boundary', () => {
    const blob = encodeCertificate(fields(), (d) => signEd25519(ca, d));
    for (let i = 0; i < blob.length; i++) {
      expect(() => parseCertificate(blob.subarray(0, i)), `cut at ${i}`).toThrow(SshWireError);
    }
    expect(() => parseCertificate(Buffer.concat([blob, Buffer.from([0])]))).toThrow(/trailing/);
  });

  it('parses a certificate that sits at any offset of a larger buffer identically', () => {
    const blob = encodeCertificate(fields(), (d) => signEd25519(ca, d));
    const ref = parseCertificate(blob);
    for (let pad = 1; pad < 9; pad++) {
      const big = Buffer.concat([Buffer.alloc(pad, 0xee), blob, Buffer.alloc(3, 0xdd)]);
      const c = parseCertificate(big.subarray(pad, pad + blob.length));
      expect(c.signedBytes).toEqual(ref.signedBytes);
      expect(c.signature).toEqual(ref.signature);
    }
  });

  it('refuses duplicate options, oversized lengths, unknown cert types and bad key sizes', () => {
    const dup = Buffer.concat([sshString('permit-pty'), sshString(''), sshString('permit-pty'), sshString('')]);
    expect(() => parseCertificate(Buffer.concat([sshString('ssh-ed25519-cert-v01@openssh.com'), sshString(Buffer.alloc(32)), sshString(Buffer.alloc(31))]))).toThrow(/32 bytes/);
    expect(() => parseCertificate(Buffer.concat([sshString('ssh-dss-cert-v01@openssh.com'), sshString(Buffer.alloc(32))]))).toThrow(/unsupported key type/);
    expect(() => parseCertificate(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x41]))).toThrow(SshWireError);
    expect(() => parseCertificate(Buffer.alloc(0))).toThrow(SshWireError);
    // a certificate whose extensions list names permit-pty twice
    const withDup = Buffer.concat([
      sshString('ssh-ed25519-cert-v01@openssh.com'),
      sshString(Buffer.alloc(32)),
      sshString(Buffer.alloc(32, 1)),
      Buffer.alloc(8),
      Buffer.from([0, 0, 0, 1]),
      sshString('id'),
      sshString(''),
      Buffer.alloc(16),
      sshString(''),
      sshString(dup),
    ]);
    expect(() => parseCertificate(withDup)).toThrow(/duplicate extension/);
    expect(() => encodeCertificate(fields({ extensions: [option('x'), option('x')] }), (d) => signEd25519(ca, d))).toThrow(/duplicate/);
  });

  it('reads public key lines of every supported type made by ssh-keygen, and refuses mismatched ones', () => {
    const dir = tempDir();
    for (const [type, bits, name] of [
      ['ed25519', '', 'ssh-ed25519'],
      ['ecdsa', '256', 'ecdsa-sha2-nistp256'],
      ['ecdsa', '384', 'ecdsa-sha2-nistp384'],
      ['ecdsa', '521', 'ecdsa-sha2-nistp521'],
      ['rsa', '2048', 'ssh-rsa'],
    ]) {
      const file = path.join(dir, `k-${type}${bits}`);
      execFileSync('ssh-keygen', ['-q', '-t', type, ...(bits ? ['-b', bits] : []), '-N', '', '-f', file]);
      const line = fs.readFileSync(`${file}.pub`, 'utf8');
      const { key, blob } = parsePublicKeyLine(line);
      expect(key.type).toBe(name);
      expect(publicKeyBlob(key)).toEqual(blob);
      // and node's view of the same private key gives the same blob
      if (type !== 'ed25519') {
        const pem = execFileSync('ssh-keygen', ['-e', '-m', 'PKCS8', '-f', `${file}.pub`], { encoding: 'utf8' });
        expect(publicKeyBlob(fromKeyObject(crypto.createPublicKey(pem)))).toEqual(blob);
      }
      for (let i = 0; i < blob.length; i++) expect(() => parsePublicKeyBlob(blob.subarray(0, i))).toThrow(SshWireError);
    }
    const ed = parsePublicKeyLine(fs.readFileSync(path.join(dir, 'k-ed25519.pub'), 'utf8'));
    expect(() => parsePublicKeyLine(`ssh-rsa ${ed.blob.toString('base64')}`)).toThrow(/says "ssh-rsa"/);
    expect(() => parsePublicKeyBlob(Buffer.concat([sshString('ssh-rsa'), sshMpint(Buffer.from([1, 0, 1])), sshMpint(Buffer.concat([Buffer.from([0x7f]), crypto.randomBytes(255)]))]))).toThrow(/2047 bits is shorter than 2048/);
  });

  it('writes OpenSSH private keys that ssh-keygen reads, and reads its keys back', () => {
    const dir = tempDir();
    const key = crypto.generateKeyPairSync('ed25519').privateKey;
    const file = path.join(dir, 'id');
    fs.writeFileSync(file, encodeOpenSshPrivateKey(key, 'alice'), { mode: 0o600 });
    const pub = execFileSync('ssh-keygen', ['-y', '-f', file], { encoding: 'utf8' });
    expect(parsePublicKeyLine(pub).blob).toEqual(publicKeyBlob(fromKeyObject(key)));
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'made-by-keygen', '-f', path.join(dir, 'k2')]);
    const parsed = parseOpenSshPrivateKey(fs.readFileSync(path.join(dir, 'k2'), 'utf8'));
    expect(parsed.comment).toBe('made-by-keygen');
    expect(publicKeyBlob(fromKeyObject(parsed.privateKey))).toEqual(parsePublicKeyLine(fs.readFileSync(path.join(dir, 'k2.pub'), 'utf8')).blob);
  });

  it('accepts a certificate signed by `ssh-keygen -s` with vigil’s user CA file (interop both ways)', async () => {
    const t = await setupIdentity();
    const dir = tempDir();
    const userFile = path.join(dir, 'id');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', userFile]);
    execFileSync('ssh-keygen', ['-q', '-s', path.join(t.dataDir, 'ca', CA_FILES.userCa), '-I', 'made-by-keygen', '-n', 'alice', '-z', '4242', '-V', '-5m:+1h', '-O', 'source-address=127.0.0.0/8', '-O', 'force-command=id', `${userFile}.pub`]);
    const cert = parseCertificateLine(fs.readFileSync(`${userFile}-cert.pub`, 'utf8'));
    expect(cert.serial).toBe(4242n);
    const userKey = parseOpenSshPrivateKey(fs.readFileSync(userFile, 'utf8')).privateKey;
    const blob = Buffer.from(fs.readFileSync(`${userFile}-cert.pub`, 'utf8').split(' ')[1], 'base64');
    const r = t.identity.verifySshAuth(clientAuth(blob, userKey));
    expect(r.ok && r.principal).toMatchObject({ user: 'alice', certSerial: '0000000000001092', forceCommand: 'id', sourceAddresses: ['127.0.0.0/8'] });
    expect(r.ok && r.principal.extensions).toEqual(['permit-X11-forwarding', 'permit-agent-forwarding', 'permit-port-forwarding', 'permit-pty', 'permit-user-rc']);
  });
});
