import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../app/main.ts';
import { tempDir } from '../support/tmp.ts';

/** `vigil cert issue --format pkcs8,pkcs12`: key files for Java clients, checked with the OpenSSL CLI and keytool. */
async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d) => (o += d));
  err.on('data', (d) => (e += d));
  const code = await runCli(argv, out, err);
  return { code, out: o, err: e };
}

function setup() {
  const base = tempDir('vigil-cli-p12-');
  const configPath = path.join(base, 'vigil.yaml');
  fs.writeFileSync(configPath, [`data_dir: ${path.join(base, 'data')}`, 'roles:', '  - name: dba', '    targets: ["*"]', ''].join('\n'));
  return { base, configPath };
}

const mode = (p: string) => (fs.statSync(p).mode & 0o777).toString(8);
const openssl = (args: string[], input?: Buffer) => execFileSync('openssl', args, { input, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
const publicKeyOf = (args: string[]) => openssl(['pkey', '-pubout', ...args]);
const fingerprint = (pem: string) => openssl(['x509', '-noout', '-fingerprint', '-sha256'], Buffer.from(pem));

describe('vigil cert issue --format pkcs8,pkcs12', () => {
  it('writes alice.pk8 (DER PKCS#8) and alice.p12 (cert + key, empty password) that OpenSSL and Java read', async () => {
    const { base, configPath } = setup();
    const out = path.join(base, 'out');
    const r = await cli('cert', 'issue', '--config', configPath, '--user', 'alice', '--roles', 'dba', '--out', out, '--format', 'pkcs8,pkcs12');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const f = (n: string) => path.join(out, n);
    expect(mode(f('alice.pk8'))).toBe('600');
    expect(mode(f('alice.p12'))).toBe('600');
    expect(r.out).toContain(f('alice.p12'));

    // PKCS#8 DER, unencrypted: the same key as alice.key.
    const pk8 = openssl(['pkcs8', '-inform', 'DER', '-nocrypt', '-in', f('alice.pk8')]);
    expect(pk8).toContain('-----BEGIN PRIVATE KEY-----');
    expect(publicKeyOf(['-in', f('alice.pk8'), '-inform', 'DER'])).toBe(publicKeyOf(['-in', f('alice.key')]));

    // PKCS#12: MAC verifies with the empty password; it holds alice's certificate and key.
    const shown = spawnSync('openssl', ['pkcs12', '-info', '-in', f('alice.p12'), '-passin', 'pass:', '-nodes'], { encoding: 'utf8' });
    expect(shown.status, shown.stderr).toBe(0);
    expect(shown.stderr).toMatch(/MAC: sha256/);
    const info = shown.stdout;
    expect(info).toMatch(/friendlyName: user/);
    const cert = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(info)![0];
    expect(fingerprint(cert)).toBe(fingerprint(fs.readFileSync(f('alice.crt'), 'utf8')));
    const key = /-----BEGIN PRIVATE KEY-----[\s\S]*?-----END PRIVATE KEY-----/.exec(info)![0];
    expect(openssl(['pkey', '-pubout'], Buffer.from(key))).toBe(publicKeyOf(['-in', f('alice.key')]));

    // Java reads it as a KeyStore: one private key entry under the alias pgjdbc looks up, `user`.
    const ks = spawnSync('keytool', ['-list', '-keystore', f('alice.p12'), '-storetype', 'PKCS12', '-storepass', ''], { encoding: 'utf8' });
    expect(ks.stdout).toMatch(/^user, .*PrivateKeyEntry/m);
  });

  it('protects alice.p12 with --pkcs12-password-file; a wrong password fails the MAC', async () => {
    const { base, configPath } = setup();
    const out = path.join(base, 'out');
    const pw = path.join(base, 'p12.pass');
    fs.writeFileSync(pw, 'correct horse\n', { mode: 0o600 });
    const r = await cli('cert', 'issue', '--config', configPath, '--user', 'alice', '--roles', 'dba', '--out', out, '--format', 'pkcs12', '--pkcs12-password-file', pw);
    expect(r.code).toBe(0);
    expect(fs.existsSync(path.join(out, 'alice.pk8'))).toBe(false);
    const p12 = path.join(out, 'alice.p12');
    expect(openssl(['pkcs12', '-info', '-in', p12, '-passin', 'pass:correct horse', '-nodes'])).toContain('-----BEGIN PRIVATE KEY-----');
    expect(() => openssl(['pkcs12', '-info', '-in', p12, '-passin', 'pass:wrong', '-nodes'])).toThrow(/Mac verify error/);
    const bad = await cli('cert', 'issue', '--config', configPath, '--user', 'alice', '--roles', 'dba', '--out', out, '--format', 'jks');
    expect(bad.code).not.toBe(0);
    expect(bad.err).toMatch(/--format: expected pem, pkcs8 or pkcs12/);
  });
});
